"""write_bundle: files, manifest and sha256; run_bundle.py and the RTMaps component vs Keras."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import kprune
from kprune import baselines
from kprune.data import Preprocessing
from kprune.data import synthetic as synthetic_data
from kprune.errors import InvalidArgumentError, VerificationError
from kprune.export import check_bundle, write_bundle

STUB = Path(__file__).parent / "rtmaps_stub"
EXPECTED_FILES = {
    "model.tflite",
    "model_int8.tflite",
    "model.onnx",
    "labels.txt",
    "manifest.json",
    "kprune_runtime.py",
    "kprune_images.py",
    "run_bundle.py",
    "rtmaps_kprune.py",
    "kprune_profile.py",
}
# Runs a bundle program with TensorFlow and kprune made unimportable.
ISOLATED = (
    "import sys, runpy; sys.modules['tensorflow'] = None; sys.modules['kprune'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture(scope="module")
def bundle_dir(model_file, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundles") / "bundle"
    write_bundle(model_file, folder, verify_samples=160, calibration_samples=200)
    return folder


@pytest.fixture(scope="module")
def raw_test_images():
    """Synthetic test images as raw uint8 pixels (before preprocessing), and labels."""
    arrays, _ = synthetic_data.load_arrays((16, 16, 3))
    images, labels = arrays["test"]
    return images[:40], labels[:40]


def keras_classes(model, raw_images, preprocessing: dict) -> np.ndarray:
    """Keras' top-1 classes of raw images, preprocessed by kprune's training transform."""
    transform = Preprocessing(
        input_shape=tuple(preprocessing["input_shape"]),
        scale=preprocessing["scale"],
        mean=tuple(preprocessing["mean"]),
        std=tuple(preprocessing["std"]),
    )
    inputs = np.stack([transform.apply(tf.constant(image)).numpy() for image in raw_images])
    return np.asarray(model(inputs, training=False))


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    from PIL import Image

    paths = []
    for index, image in enumerate(images):
        path = folder / f"class_{index % 3}" / f"{index:03d}.png"  # nested, like a dataset
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze()).save(path)
        paths.append(path)
    return paths  # in the order of `images`


def run_bundle(bundle: Path, folder: Path, backend: str) -> list[dict]:
    command = [
        sys.executable,
        "-c",
        ISOLATED,
        str(bundle / "run_bundle.py"),
        str(folder),
        "--backend",
        backend,
        "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bundle_holds_every_file_with_its_sha256(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())

    assert {path.name for path in bundle_dir.iterdir()} == EXPECTED_FILES
    assert set(manifest["files"]) == EXPECTED_FILES - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest() == digest
    assert not list(bundle_dir.parent.glob(".tmp-*"))


def test_bundle_is_readable_like_any_new_folder(bundle_dir):
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(bundle_dir.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's 0700
    for path in bundle_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path.name  # not mkstemp's 0600


def test_manifest_describes_input_preprocessing_and_quantization(bundle_dir, model_file):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    card = json.loads(model_file.with_name("position_cnn.card.json").read_text())

    # The keys and order of classifier manifests before raw-output bundles existed.
    assert list(manifest) == [
        "format",
        "format_version",
        "kprune_version",
        "created",
        "model",
        "input",
        "output",
        "preprocessing",
        "class_names",
        "artifacts",
        "metrics",
        "files",
    ]
    assert manifest["format_version"] == 1
    assert manifest["input"] == {
        "name": "input",
        "shape": [None, 16, 16, 3],
        "dtype": "float32",
        "layout": "NHWC",
    }
    assert manifest["output"]["kind"] == "probabilities"
    assert manifest["preprocessing"] == card["preprocessing"]
    assert manifest["preprocessing"]["channel_order"] == "RGB"
    assert manifest["class_names"] == card["class_names"]
    assert (bundle_dir / "labels.txt").read_text().splitlines() == card["class_names"]
    int8 = manifest["artifacts"]["tflite_int8"]
    assert int8["quantize"] == "int8" and int8["quantized_io"]["input"]["scale"] > 0
    assert manifest["artifacts"]["onnx"]["opset"] == 15
    assert manifest["kprune_version"] == kprune.__version__
    assert manifest["model"]["source_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert manifest["metrics"]["model_card"] == {"dataset": "synthetic", "test_accuracy": 1.0}
    verification = manifest["metrics"]["verification"]
    assert verification["passed"] and verification["samples"] == 160
    assert {entry["file"] for entry in verification["artifacts"]} == {
        "model.tflite",
        "model_int8.tflite",
        "model.onnx",
    }


def test_check_bundle_names_a_modified_file(bundle_dir, tmp_path):
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(bundle_dir, copy)
    assert check_bundle(copy)["format"] == "kprune-bundle"
    with open(copy / "labels.txt", "a") as stream:
        stream.write("extra\n")
    (copy / "model.onnx").unlink()

    with pytest.raises(VerificationError, match="labels.txt was modified.*|model.onnx is missing"):
        check_bundle(copy)


def test_existing_folder_needs_overwrite(model_file, bundle_dir, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")

    with pytest.raises(InvalidArgumentError, match="already exists.*--force"):
        write_bundle(model_file, target, int8=False, verify_samples=16)
    assert (target / "keep.txt").read_text() == "mine"
    write_bundle(model_file, target, int8=False, verify_samples=16, overwrite=True)
    assert (target / "model.onnx").is_file() and not (target / "keep.txt").exists()
    assert "tflite_int8" not in json.loads((target / "manifest.json").read_text())["artifacts"]


def test_failed_verification_writes_nothing(model_file, tmp_path):
    with pytest.raises(VerificationError, match="disagree"):
        write_bundle(model_file, tmp_path / "bundle", int8=False, verify_samples=16, max_abs_diff=1e-30)
    assert list(tmp_path.iterdir()) == []


def test_without_card_or_dataset_the_fix_is_named(trained_cnn, tmp_path):
    with pytest.raises(InvalidArgumentError, match="--dataset"):
        write_bundle(trained_cnn, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["tflite", "onnx", "tflite_int8"])
def test_run_bundle_on_pngs_predicts_like_keras(bundle_dir, trained_cnn, raw_test_images, tmp_path, backend):
    images, labels = raw_test_images
    paths = write_pngs(tmp_path, images)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    by_path = dict(zip(map(str, paths), keras_classes(trained_cnn, images, manifest["preprocessing"])))

    results = run_bundle(bundle_dir, tmp_path, backend)

    assert [result["path"] for result in results] == sorted(by_path)
    expected = np.array([by_path[result["path"]].argmax() for result in results])
    predicted = np.array([result["class_id"] for result in results])
    np.testing.assert_array_equal(predicted, expected)
    assert [result["label"] for result in results] == [f"class_{k}" for k in predicted]
    if backend != "tflite_int8":
        probabilities = np.array([by_path[result["path"]].max() for result in results])
        np.testing.assert_allclose([r["probability"] for r in results], probabilities, atol=1e-4)


def test_run_bundle_resizes_like_the_training_pipeline(bundle_dir, trained_cnn, tmp_path):
    arrays, _ = synthetic_data.load_arrays((20, 20, 3))
    images = arrays["test"][0][:12]  # 20×20 images for a 16×16 model
    paths = write_pngs(tmp_path, images)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    expected = keras_classes(trained_cnn, images, manifest["preprocessing"]).argmax(-1)
    by_path = dict(zip(map(str, paths), expected))

    results = run_bundle(bundle_dir, tmp_path, "onnx")

    assert [r["class_id"] for r in results] == [int(by_path[r["path"]]) for r in results]


def test_run_bundle_reports_a_tampered_model(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    content = bytearray((copy / "model.onnx").read_bytes())
    content[-8] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(content))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.npy").write_bytes(b"")

    result = subprocess.run(
        [sys.executable, str(copy / "run_bundle.py"), str(tmp_path / "images"), "--backend", "onnx"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1 and "model.onnx" in result.stderr and "modified" in result.stderr


def load_component(bundle: Path, monkeypatch):
    """The bundle's rtmaps_kprune.py module, importing the stand-in rtmaps package."""
    monkeypatch.syspath_prepend(str(STUB))
    for name in [n for n in sys.modules if n == "rtmaps" or n.startswith("rtmaps.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "kprune_runtime", raising=False)
    spec = importlib.util.spec_from_file_location("rtmaps_kprune", bundle / "rtmaps_kprune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_component(module, frames, backend: str, model_path: str = "") -> dict[str, list]:
    """Dynamic, Birth, Core per (pixels, channel_seq) frame, Death; returns what was written."""
    import rtmaps.types

    component = module.rtmaps_python()
    component.Dynamic()
    component.properties["backend"].data = component.properties["backend"].choices.index(backend)
    component.properties["model_path"].data = model_path
    component.properties["threads"].data = 2
    component.Birth()
    for index, (pixels, order) in enumerate(frames):
        frame = rtmaps.types.IplImage(np.ascontiguousarray(pixels), "COLR", order)
        component.inputs["image"].ioelt = rtmaps.types.Ioelt(frame, ts=1000 + index)
        component.Core()
    component.Death()
    assert component.classifier is None
    return {name: component.outputs[name].written for name in component.outputs}


@pytest.fixture
def rtmaps_component(bundle_dir, monkeypatch):
    """Loads the bundle's rtmaps_kprune.py against the stand-in rtmaps package."""
    yield load_component(bundle_dir, monkeypatch)
    sys.modules.pop("kprune_runtime", None)


@pytest.mark.parametrize(
    ("backend", "model_path"),
    [
        ("tflite", ""),
        ("onnx", "model.onnx"),
        ("tflite_int8", "."),
    ],
)
def test_rtmaps_component_classifies_frames_like_keras(
    rtmaps_component, bundle_dir, trained_cnn, raw_test_images, backend, model_path
):
    import rtmaps.core
    import rtmaps.types

    images, _ = raw_test_images
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    expected = keras_classes(trained_cnn, images, manifest["preprocessing"])
    declared = rtmaps_component.rtmaps_python()
    declared.Dynamic()
    assert declared.inputs["image"].kind == rtmaps.types.IPL_IMAGE
    assert set(declared.outputs) == {"class_id", "label", "probability", "probabilities"}
    assert declared.properties["backend"].choices == ["tflite", "tflite_int8", "onnx"]
    # Cameras often deliver BGR: every other frame comes reversed, labelled as such.
    frames = [(image[:, :, ::-1], "BGR") if k % 2 else (image, "RGB") for k, image in enumerate(images)]
    location = {"": "", ".": str(bundle_dir)}.get(model_path, str(bundle_dir / model_path))

    outputs = run_component(rtmaps_component, frames, backend, location)

    class_ids = [element.data for element in outputs["class_id"]]
    if backend == "tflite_int8":
        assert np.mean(np.array(class_ids) == expected.argmax(-1)) >= 0.95
    else:
        assert class_ids == expected.argmax(-1).tolist()
        np.testing.assert_allclose([e.data for e in outputs["probability"]], expected.max(-1), atol=1e-4)
    assert [e.data for e in outputs["label"]] == [f"class_{k}" for k in class_ids]
    assert [e.ts for e in outputs["class_id"]] == [1000 + k for k in range(len(images))]
    assert outputs["probabilities"][0].data.shape == (10,)
    assert any("loaded" in text for _, text in rtmaps.core.messages)


def test_rtmaps_component_refuses_a_model_of_another_backend(rtmaps_component, bundle_dir):
    component = rtmaps_component.rtmaps_python()
    component.Dynamic()
    component.properties["backend"].data = component.properties["backend"].choices.index("onnx")
    component.properties["model_path"].data = str(bundle_dir / "model.tflite")

    with pytest.raises(ValueError, match="does not fit backend onnx"):
        component.Birth()


@pytest.mark.realdata
@pytest.mark.slow
def test_run_bundle_on_real_fashion_mnist_pngs(tmp_path, monkeypatch):
    """A CNN trained briefly on real Fashion-MNIST; run_bundle.py on 100 real test PNGs
    and the RTMaps component on the same images as frames, both against Keras."""
    from kprune.data import fashion_mnist

    if fashion_mnist.find() is None:
        pytest.skip("Fashion-MNIST is not installed (scripts/checks/fetch_data.sh)")
    import keras

    from tests.export.conftest import make_position_cnn

    keras.utils.set_random_seed(0)
    train = kprune.data.load("fashion_mnist", "train", batch_size=64, limit=3000)
    model = make_position_cnn(input_shape=(28, 28, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.dataset, epochs=2, shuffle=False, verbose=0)
    kprune.save_model(model, tmp_path / "fmnist.keras")
    write_bundle(
        tmp_path / "fmnist.keras",
        tmp_path / "bundle",
        dataset="fashion_mnist",
        verify_samples=300,
        calibration_samples=300,
    )
    arrays, _ = fashion_mnist.load_arrays()
    raw_images, labels = arrays["test"][0][:100], arrays["test"][1][:100]
    paths = write_pngs(tmp_path / "images", raw_images)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    expected = keras_classes(model, raw_images, manifest["preprocessing"]).argmax(-1)
    by_path = dict(zip(map(str, paths), expected))

    for backend in ("tflite", "onnx"):
        results = run_bundle(tmp_path / "bundle", tmp_path / "images", backend)
        assert [r["class_id"] for r in results] == [int(by_path[r["path"]]) for r in results]
    assert np.mean(expected == labels) > 0.5  # it learned something real
    assert manifest["class_names"][0] == "T-shirt/top"

    # The RTMaps component, fed the same real images as gray camera frames.
    module = load_component(tmp_path / "bundle", monkeypatch)
    frames = [(image[:, :, 0], "GRAY") for image in raw_images]
    written = run_component(module, frames, "tflite", str(tmp_path / "bundle"))
    assert [e.data for e in written["class_id"]] == expected.tolist()
    assert [e.data for e in written["label"]] == [manifest["class_names"][k] for k in expected]
    sys.modules.pop("kprune_runtime", None)


MODELS = Path(__file__).parents[2] / "models"
BASELINE = baselines.DIRECTORY / "squeezenet1_1_fmnist_sgd.keras"  # shipped inside the package
PRUNED = MODELS / "squeezenet1_1_fmnist_pruned.keras"
PRUNED_BUNDLE = MODELS / "squeezenet1_1_fmnist_pruned_bundle"


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_baseline_bundle_on_real_images(tmp_path):
    """The shipped SqueezeNet: int8 keeps ≥ 98% agreement on 500 real test images."""
    from kprune.data import fashion_mnist

    if not BASELINE.is_file():
        pytest.skip(f"{BASELINE.name} is not in kprune/baselines/ yet")
    if fashion_mnist.find() is None:
        pytest.skip("Fashion-MNIST is not installed (scripts/checks/fetch_data.sh)")

    manifest = write_bundle(BASELINE, tmp_path / "bundle", verify_samples=500)

    checks = {c["file"]: c for c in manifest["metrics"]["verification"]["artifacts"]}
    assert checks["model.tflite"]["max_abs_diff"] <= 1e-4
    assert checks["model.onnx"]["max_abs_diff"] <= 1e-4
    assert checks["model_int8.tflite"]["top1_agreement"] >= 0.98
    assert not [op for a in manifest["artifacts"].values() for op in a["ops"] if "Flex" in op]
    arrays, _ = fashion_mnist.load_arrays()
    raw_images = arrays["test"][0][:50]
    paths = write_pngs(tmp_path / "images", raw_images)
    model = kprune.load_model(BASELINE)
    expected = keras_classes(model, raw_images, manifest["preprocessing"]).argmax(-1)
    by_path = dict(zip(map(str, paths), expected))
    results = run_bundle(tmp_path / "bundle", tmp_path / "images", "tflite")
    assert [r["class_id"] for r in results] == [int(by_path[r["path"]]) for r in results]


@pytest.mark.realdata
def test_shipped_pruned_model_and_its_bundle(tmp_path):
    """The files in models/ as shipped: the pruned SqueezeNet is ≥ 90% smaller, within one
    point of the baseline by its card, and its committed bundle is intact and predicts
    like the Keras model on real test images with both runtimes."""
    from kprune.card import read_card
    from kprune.data import fashion_mnist

    if not PRUNED.is_file():
        pytest.skip(f"{PRUNED.name} is not in models/ yet")
    if fashion_mnist.find() is None:
        pytest.skip("Fashion-MNIST is not installed (scripts/checks/fetch_data.sh)")
    import keras

    model = keras.models.load_model(PRUNED)  # plain Keras, no custom objects
    baseline_card, card = read_card(BASELINE), read_card(PRUNED)
    assert kprune.count_params(model) == card["params"]
    assert card["params"] <= 0.1 * baseline_card["params"]
    assert card["test_accuracy"] >= baseline_card["test_accuracy"] - 0.01
    assert "kprune prune" in card["trained_from"]["command"]  # the card reaches back to the baseline

    manifest = check_bundle(PRUNED_BUNDLE)
    assert manifest["model"]["source_sha256"] == hashlib.sha256(PRUNED.read_bytes()).hexdigest()
    assert manifest["metrics"]["verification"]["passed"]
    arrays, _ = fashion_mnist.load_arrays()
    raw_images = arrays["test"][0][:50]
    paths = write_pngs(tmp_path / "images", raw_images)
    expected = keras_classes(model, raw_images, manifest["preprocessing"]).argmax(-1)
    by_path = dict(zip(map(str, paths), expected))
    for backend in ("tflite", "onnx"):
        results = run_bundle(PRUNED_BUNDLE, tmp_path / "images", backend)
        assert [r["class_id"] for r in results] == [int(by_path[r["path"]]) for r in results]
