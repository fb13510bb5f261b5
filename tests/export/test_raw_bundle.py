"""Raw-output bundles: a two-head detector bundled from the user's own arrays, run by
run_bundle.py and kprune_runtime.RawModel against Keras' model.predict; the RTMaps
component and the runtime's Classifier refuse such a bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kprune.data import Preprocessing
from kprune.errors import InvalidArgumentError
from kprune.export import check_bundle, write_bundle
from kprune.export.context import bundle_task
from kprune.export.templates import kprune_runtime as runtime
from tests.export.test_bundle import ISOLATED, load_component

SHAPE = (16, 16, 1)
# Pixels 0..255 → 0..1: what the user's canvases hold, and what run_bundle.py applies to files.
PREPROCESSING = Preprocessing(SHAPE, scale=1.0 / 255.0)
RAW_FILES = {
    "model.tflite",
    "model_int8.tflite",
    "model.onnx",
    "manifest.json",
    "kprune_runtime.py",
    "kprune_images.py",
    "run_bundle.py",
    "rtmaps_kprune.py",
    "kprune_profile.py",
}


def tiny_detector(seed: int = 0) -> keras.Model:
    """16×16×1 canvas → ``boxes`` (4, 4, 4) regression and ``objectness`` (4, 4, 1) sigmoid."""
    keras.utils.set_random_seed(seed)
    canvas = keras.Input(SHAPE, name="canvas")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(canvas)
    x = keras.layers.MaxPooling2D(2, name="pool_a")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_b")(x)
    boxes = keras.layers.Conv2D(4, 1, name="boxes")(x)
    objectness = keras.layers.Conv2D(1, 1, activation="sigmoid", name="objectness")(x)
    return keras.Model(canvas, [boxes, objectness], name="tiny_detector")


def canvases(count: int, seed: int) -> np.ndarray:
    """uint8 canvases: noise on a dark background and one bright square each, like a detector's."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, size=(count, *SHAPE), dtype=np.uint8)
    for image, (row, col) in zip(pixels, rng.integers(0, 12, size=(count, 2))):
        image[row : row + 4, col : col + 4] = 220
    return pixels


def model_inputs(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / np.float32(255.0)


def relative_rms(values: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean((values - reference) ** 2)) / np.sqrt(np.mean(reference**2)))


@pytest.fixture(scope="module")
def detector() -> keras.Model:
    return tiny_detector()


@pytest.fixture(scope="module")
def raw_bundle(detector, tmp_path_factory) -> Path:
    """Bundled from the Python API: verification on a numpy array, int8 calibration on a
    tf.data.Dataset of batches, both the user's own preprocessed canvases."""
    folder = tmp_path_factory.mktemp("raw") / "bundle"
    calibration = tf.data.Dataset.from_tensor_slices(model_inputs(canvases(96, seed=1))).batch(16)
    write_bundle(
        detector,
        folder,
        data=model_inputs(canvases(64, seed=2)),
        calibration_data=calibration,
        preprocess=PREPROCESSING,
        verify_samples=64,
        calibration_samples=96,
    )
    return folder


def test_raw_bundle_manifest_names_the_outputs_and_passes_check_bundle(raw_bundle):
    manifest = check_bundle(raw_bundle)

    assert {path.name for path in raw_bundle.iterdir()} == RAW_FILES  # no labels.txt
    assert manifest["task"] == "raw" and manifest["format_version"] == 2
    assert "output" not in manifest and "class_names" not in manifest
    assert manifest["input"]["shape"] == [None, *SHAPE]
    assert manifest["outputs"] == [
        {"name": "boxes", "shape": [None, 4, 4, 4], "dtype": "float32"},
        {"name": "objectness", "shape": [None, 4, 4, 1], "dtype": "float32"},
    ]
    assert manifest["preprocessing"]["scale"] == pytest.approx(1 / 255)
    verification = manifest["metrics"]["verification"]
    assert verification["passed"] and verification["samples"] == 64
    assert verification["dataset"] is None and verification["thresholds"]["max_relative_error"] == 0.1
    checks = {check["file"]: check for check in verification["artifacts"]}
    assert checks["model.tflite"]["max_abs_diff"] <= 1e-4 and checks["model.onnx"]["max_abs_diff"] <= 1e-4
    int8 = checks["model_int8.tflite"]
    assert int8["top1_agreement"] is None and 0 < int8["relative_error"] <= 0.1
    assert int8["criterion"] == "relative error ≤ 0.1"


@pytest.mark.parametrize("backend", ["tflite", "onnx", "tflite_int8"])
def test_run_bundle_writes_every_output_like_keras(raw_bundle, detector, tmp_path, backend):
    from PIL import Image

    pixels = canvases(10, seed=3)
    images = tmp_path / "images"
    images.mkdir()
    for index, image in enumerate(pixels[:6]):
        Image.fromarray(image[:, :, 0]).save(images / f"canvas_{index}.png")
    np.save(images / "z_batch.npy", pixels[6:])  # one file, four canvases
    out = tmp_path / "outputs"
    command = [sys.executable, "-c", ISOLATED, str(raw_bundle / "run_bundle.py"), str(images)]
    command += ["--backend", backend, "--out", str(out), "--json"]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    expected_names = [str(images / f"canvas_{k}.png") for k in range(6)]
    expected_names += [f"{images / 'z_batch.npy'}[{k}]" for k in range(4)]
    assert (out / "inputs.txt").read_text().splitlines() == expected_names
    assert json.loads(result.stdout)["inputs"] == expected_names
    boxes, objectness = detector.predict(model_inputs(pixels), verbose=0)
    for name, reference in (("boxes", boxes), ("objectness", objectness)):
        written = np.load(out / f"{name}.npy")
        assert written.shape == reference.shape and written.dtype == np.float32
        if backend == "tflite_int8":
            assert relative_rms(written, reference) <= 0.1
        else:
            np.testing.assert_allclose(written, reference, atol=1e-4)


def test_run_bundle_on_a_raw_bundle_needs_out(raw_bundle, tmp_path):
    np.save(tmp_path / "canvas.npy", canvases(1, seed=4)[0])

    result = subprocess.run(
        [sys.executable, str(raw_bundle / "run_bundle.py"), str(tmp_path / "canvas.npy")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "raw outputs (boxes, objectness)" in result.stderr and "Fix: pass --out FOLDER" in result.stderr


def test_raw_model_gives_outputs_by_name_and_classifier_refuses(raw_bundle, detector):
    pixels = canvases(5, seed=5)
    model = runtime.RawModel(raw_bundle, "onnx")

    outputs = model.run(list(pixels))

    assert list(outputs) == ["boxes", "objectness"]
    for reference, name in zip(detector.predict(model_inputs(pixels), verbose=0), outputs):
        np.testing.assert_allclose(outputs[name], reference, atol=1e-4)
    model.close()
    with pytest.raises(runtime.BundleError, match="raw outputs .*Fix: run it with kprune_runtime.RawModel"):
        runtime.Classifier(raw_bundle)


def test_rtmaps_component_refuses_a_raw_bundle_when_born(raw_bundle, monkeypatch):
    module = load_component(raw_bundle, monkeypatch)
    component = module.rtmaps_python()
    component.Dynamic()
    component.properties["model_path"].data = str(raw_bundle)

    with pytest.raises(ValueError, match=r"classifies images only.*Fix: run it with run_bundle\.py --out"):
        component.Birth()
    assert component.classifier is None
    sys.modules.pop("kprune_runtime", None)


def test_task_is_raw_unless_one_output_holds_class_scores(detector):
    classifier = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3)])

    assert bundle_task(detector) == "raw"
    assert bundle_task(classifier) == "classifier" and bundle_task(classifier, "raw") == "raw"
    with pytest.raises(InvalidArgumentError, match=r"`task` is classifier.*Fix: --task raw"):
        bundle_task(detector, "classifier")
    with pytest.raises(InvalidArgumentError, match=r"`task` must be one of"):
        bundle_task(detector, "detector")


def test_without_examples_or_with_misfit_ones_nothing_is_written(detector, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"no dataset is known.*--data FILE\.npz, data=images"):
        write_bundle(detector, tmp_path / "bundle", preprocess=PREPROCESSING)
    with pytest.raises(InvalidArgumentError, match=r"examples of shape \(8, 8, 1\), the model expects"):
        write_bundle(detector, tmp_path / "bundle", data=np.zeros((4, 8, 8, 1), np.float32), int8=False)
    assert list(tmp_path.iterdir()) == []
