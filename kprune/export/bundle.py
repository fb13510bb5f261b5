"""Deployment bundle: models, preprocessing, labels and runtime programs in one folder.

A bundle is what goes on the board (NXP BlueBox 2.0 with RTMaps, see
docs/DEPLOY.md)::

    model.tflite         float32, builtin ops only
    model_int8.tflite    full-integer int8 (when calibration data is known)
    model.onnx           float32, dynamic batch
    labels.txt           one class name per line (classifiers only)
    manifest.json        task, input, outputs, preprocessing, quantization, classes,
                         sha256 of every file, source metrics, verification, kprune version
    kprune_runtime.py    preprocessing + inference (numpy + a runtime only)
    kprune_images.py     PNG / PGM / PPM / .npy reading (numpy only; Pillow if present)
    run_bundle.py        classify image files, or write a raw model's outputs as .npy
    rtmaps_kprune.py     the RTMaps Python component (class rtmaps_python), classifiers only
    kprune_profile.py    times a latency-profile plan (`kprune profile --plan-only`) on the board

Every model file is verified with its runtime before the bundle is written;
the folder appears complete or not at all.

A bundle's model takes one image input (batch, height, width, channels); its
programs read image files and camera frames. Two tasks (`context.TASKS`):

- ``classifier``: one output of class scores (batch, classes). The manifest
  has ``output``, ``class_names`` and labels.txt, and no ``task`` key (format
  version 1, as before raw bundles existed); verification reports top-1
  agreement and accuracy.
- ``raw``: any number of outputs of any shape (a detector's boxes and
  objectness, a regressor's values). The manifest says ``"task": "raw"``
  (format version 2) and lists ``outputs`` by their Keras names, in the
  model's order; run_bundle.py writes each as .npy. Quantized files are
  judged by the relative error of each output (see `verify_export`).

Calibration and verification examples come from a named dataset, or from the
user's own preprocessed model inputs (``data=``, ``calibration_data=``: a
numpy array, a ``tf.data.Dataset``, an ``.npz`` file…), which a model trained
on custom data needs. Models of other inputs are refused with that fix:
`kprune export` exports and verifies models of any inputs and outputs.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import keras

from kprune.data import Preprocessing
from kprune.errors import InvalidArgumentError, VerificationError
from kprune.export.artifact import (
    image_input_shape,
    model_tensors,
    progress_steps,
    resolve_model,
    sha256_of,
)
from kprune.export.context import bundle_examples, bundle_task, model_context
from kprune.export.onnx import export_onnx
from kprune.export.tflite import export_tflite
from kprune.export.verify import (
    DEFAULT_MAX_ABS_DIFF,
    DEFAULT_MAX_RELATIVE_ERROR,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_SAMPLES,
    verify_export,
)
from kprune.files import named_write_errors, usual_permissions, write_atomically
from kprune.metrics import count_flops, count_params
from kprune.training.losses import outputs_probabilities
from kprune.version import __version__

TEMPLATES = (
    "kprune_runtime.py",
    "kprune_images.py",
    "run_bundle.py",
    "rtmaps_kprune.py",
    "kprune_profile.py",
)
ARTIFACT_FILES = {
    "tflite": "model.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
FORMAT_NAME = "kprune-bundle"
# The lowest kprune_runtime format that reads a bundle: classifier bundles are
# read by every runtime, raw-output ones ("task": "raw") from version 2 on.
FORMAT_VERSION = 1
RAW_FORMAT_VERSION = 2
DEFAULT_CALIBRATION_SAMPLES = 300
_CARD_METRICS = (
    "dataset",
    "test_accuracy",
    "test_examples",
    "val_accuracy",
    "params",
    "flops",
    "architecture",
    "epochs",
)


def write_bundle(
    model: str | os.PathLike | keras.Model,
    out_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    data: Any = None,
    calibration_data: Any = None,
    task: str | None = None,
    int8: bool = True,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    verify_samples: int = DEFAULT_SAMPLES,
    split: str = "test",
    opset: int | None = None,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR,
    data_dir: str | None = None,
    preprocess: str | Preprocessing | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Writes a verified deployment bundle for an NXP BlueBox 2.0 / RTMaps target.

    Args:
        model: A ``.keras`` file (its model card gives preprocessing, classes
            and dataset) or a ``keras.Model``, with one image input.
        out_dir: The bundle folder to create.
        dataset: Dataset for preprocessing and classes when there is no card,
            and for calibration and verification; defaults to the card's.
        data: Your own verification examples instead of ``dataset``: model
            inputs, preprocessed, in any form `verify_export` takes (an array
            (N, H, W, C), ``(x, y)``, a ``tf.data.Dataset``, an ``.npz``
            path). For models trained on data that is not a named dataset.
        calibration_data: Your own int8 calibration examples, like ``data``;
            defaults to ``data``, else ``calibration_samples`` images of the
            dataset's train split.
        task: ``"classifier"`` or ``"raw"`` (every output written as it is;
            see the module docstring); default: a classifier when the model
            has one output shaped (batch, classes), else raw.
        int8: Also write ``model_int8.tflite``, calibrated on
            ``calibration_samples`` examples.
        calibration_samples: Examples that calibrate int8 quantization.
        verify_samples: Examples that every model file is verified on.
        split: Split of ``dataset`` for verification and the accuracy of each file.
        opset: ONNX opset (default: tf2onnx's).
        max_abs_diff: Threshold for float32 files (see `verify_export`).
        min_agreement: Threshold for int8 classifier outputs (see `verify_export`).
        max_relative_error: Threshold for the other outputs of int8 files,
            e.g. a detector's boxes (see `verify_export`).
        data_dir: Where to look for the dataset first.
        preprocess: The input transform, written into manifest.json and used
            for a dataset's calibration and verification images (see
            `choose_preprocessing`): default the model card's, else raw pixels
            0..255. ``data`` is already transformed; run_bundle.py applies
            this transform to image files.
        overwrite: Replace ``out_dir`` if it exists.
        progress: Show progress.

    Returns:
        The manifest, as written to ``manifest.json``.

    Raises:
        InvalidArgumentError: If ``out_dir`` exists (without ``overwrite``),
            the preprocessing cannot be determined, no examples are known
            (neither ``data`` nor a dataset), or ``data`` does not fit the model.
        UnsupportedModelError: If the model has not one ``(batch, H, W, C)``
            input; use `kprune export` then.
        VerificationError: If a model file disagrees with Keras; nothing is written.

    Example:
        >>> write_bundle("models/squeezenet1_1_fmnist_sgd.keras", "bundle/")
        >>> write_bundle(detector, "detector_bundle/", data=canvases, preprocess="raw")
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InvalidArgumentError(
            f"{out_dir} already exists. Fix: choose another --out or pass --force to replace it."
        )
    network, model_path = resolve_model(model)
    image_input_shape(network, "`kprune bundle`", any_outputs=True)  # refuses other inputs first
    task = bundle_task(network, task)
    context = model_context(network, model_path, dataset, data_dir, preprocess, task)
    verification_data, calibration = bundle_examples(
        network,
        context,
        data=data,
        calibration_data=calibration_data,
        int8=int8,
        verify_samples=verify_samples,
        calibration_samples=calibration_samples,
        split=split,
        data_dir=data_dir,
    )

    with named_write_errors(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        with progress_steps(progress, 5 if int8 else 4) as step:
            artifacts = _export(network, staging, calibration, calibration_samples, opset, step)
            report = verify_export(
                network,
                list(artifacts.values()),
                verification_data,
                samples=verify_samples,
                max_abs_diff=max_abs_diff,
                min_agreement=min_agreement,
                max_relative_error=max_relative_error,
            )
            step("verified")
            _copy_programs(staging, task, context.class_names)
            split_used = split if data is None else None
            manifest = _manifest(network, model_path, context, artifacts, report, split_used, task)
            manifest["files"] = {
                path.name: sha256_of(path) for path in sorted(staging.iterdir()) if path.is_file()
            }
            write_atomically(staging / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
            step("manifest.json")
        with named_write_errors(out_dir):
            _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _export(network, staging, calibration_data, calibration_samples, opset, step) -> dict:
    artifacts = {"tflite": export_tflite(network, staging / ARTIFACT_FILES["tflite"])}
    step(ARTIFACT_FILES["tflite"])
    if calibration_data is not None:
        artifacts["tflite_int8"] = export_tflite(
            network,
            staging / ARTIFACT_FILES["tflite_int8"],
            "int8",
            calibration_data,
            num_samples=calibration_samples,
        )
        step(ARTIFACT_FILES["tflite_int8"])
    artifacts["onnx"] = export_onnx(network, staging / ARTIFACT_FILES["onnx"], opset=opset)
    step(ARTIFACT_FILES["onnx"])
    return artifacts


def _copy_programs(staging: Path, task: str, class_names: list[str]) -> None:
    if task == "classifier":
        write_atomically(staging / LABELS_NAME, ("\n".join(class_names) + "\n").encode())
    for name in TEMPLATES:
        source = resources.files("kprune.export.templates").joinpath(name)
        write_atomically(staging / name, source.read_bytes())


def _manifest(network, model_path, context, artifacts, report, split, task) -> dict:
    verification = {**report.to_dict(), "dataset": context.dataset if split else None, "split": split}
    card = context.card or {}
    onnx = artifacts["onnx"]
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION if task == "classifier" else RAW_FORMAT_VERSION,
        "kprune_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if task != "classifier":  # classifier manifests keep their keys, readable by older runtimes
        manifest["task"] = task
    manifest["model"] = {
        "name": network.name,
        "source": str(model_path) if model_path else None,
        "source_sha256": sha256_of(model_path) if model_path else None,
        "params": count_params(network),
        "flops": count_flops(network),
        "flops_convention": "2 per multiply-accumulate, one image",
    }
    manifest["input"] = {
        "name": onnx.inputs[0].name,
        "shape": [None, *image_input_shape(network, any_outputs=True)],
        "dtype": "float32",
        "layout": "NHWC",
    }
    if task == "classifier":
        manifest["output"] = {
            "name": onnx.output.name,
            "shape": [None, len(context.class_names)],
            "dtype": "float32",
            "kind": "probabilities" if outputs_probabilities(network) else "logits",
        }
    else:
        manifest["outputs"] = [
            {"name": tensor.name, "shape": [None, *tensor.shape[1:]], "dtype": "float32"}
            for tensor in model_tensors(network).outputs
        ]
    manifest["preprocessing"] = context.preprocessing
    if task == "classifier":
        manifest["class_names"] = context.class_names
    manifest["artifacts"] = {key: artifact.to_dict() for key, artifact in artifacts.items()}
    manifest["metrics"] = {
        "model_card": {key: card[key] for key in _CARD_METRICS if key in card},
        "verification": verification,
    }
    return manifest


def check_bundle(bundle_dir: str | os.PathLike) -> dict:
    """Checks every file of a bundle against the sha256 in its manifest.

    Returns:
        The manifest.

    Raises:
        VerificationError: If a file is missing, modified, or not listed.
        InvalidArgumentError: If the folder is not a bundle.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InvalidArgumentError(
            f"{bundle_dir} is not a kprune bundle (no {MANIFEST_NAME}). Fix: pass the "
            "folder written by `kprune bundle`."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VerificationError(f"{manifest_path} is not valid JSON: {error}.") from error
    if manifest.get("format") != FORMAT_NAME:
        raise InvalidArgumentError(f"{manifest_path} is not a kprune bundle manifest.")
    recorded = manifest.get("files", {})
    problems = []
    for name, expected in sorted(recorded.items()):
        path = bundle_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_of(path) != expected:
            problems.append(f"{name} was modified (sha256 differs from the manifest)")
    for key, entry in manifest.get("artifacts", {}).items():
        if entry.get("file") not in recorded:
            problems.append(f"{entry.get('file')} ({key}) has no sha256 in the manifest")
    if problems:
        raise VerificationError(
            f"Bundle {bundle_dir} does not match its manifest: {'; '.join(problems)}. "
            "Fix: copy the bundle again, or write it again with `kprune bundle`."
        )
    return manifest


def bundle_artifacts(bundle_dir: str | os.PathLike, manifest: dict) -> list[Path]:
    """The model files a bundle's manifest lists, in manifest order."""
    return [Path(bundle_dir) / entry["file"] for entry in manifest.get("artifacts", {}).values()]


def _move_into_place(staging: Path, out_dir: Path) -> None:
    usual_permissions(staging)
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".old-{out_dir.name}-", dir=out_dir.parent))
    os.replace(out_dir, retired / out_dir.name)
    os.replace(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)
