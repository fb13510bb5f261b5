"""Deployment bundle: models, preprocessing, labels and runtime programs in one folder.

A bundle is what goes on the board (NXP BlueBox 2.0 with RTMaps, see
docs/DEPLOY.md)::

    model.tflite         float32, builtin ops only
    model_int8.tflite    full-integer int8 (when calibration data is known)
    model.onnx           float32, dynamic batch
    labels.txt           one class name per line
    manifest.json        input, preprocessing, quantization, classes, sha256 of
                         every file, source metrics, verification, kprune version
    kprune_runtime.py    preprocessing + inference (numpy + a runtime only)
    kprune_images.py     PNG / PGM / PPM / .npy reading (numpy only; Pillow if present)
    run_bundle.py        classify image files from the command line
    rtmaps_kprune.py     the RTMaps Python component (class rtmaps_python)
    kprune_profile.py    times a latency-profile plan (`kprune profile --plan-only`) on the board

Every model file is verified with its runtime before the bundle is written;
the folder appears complete or not at all.

Bundles are for image classifiers (one (batch, height, width, channels) input,
one output of class scores): their programs read image files and camera
frames. Other models are refused with that fix: `kprune export` exports and
verifies models of any inputs and outputs.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import keras

from kprune.card import read_card
from kprune.data import Preprocessing, choose_preprocessing, dataset_info, load
from kprune.errors import InvalidArgumentError, VerificationError
from kprune.export.artifact import image_input_shape, progress_steps, resolve_model, sha256_of
from kprune.export.onnx import export_onnx
from kprune.export.tflite import export_tflite
from kprune.export.verify import (
    DEFAULT_MAX_ABS_DIFF,
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
FORMAT_VERSION = 1
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


@dataclass(frozen=True)
class ModelContext:
    """What a deployment needs to know besides the weights.

    Attributes:
        preprocessing: ``Preprocessing.to_dict()`` of the model's input transform.
        class_names: One name per output class.
        dataset: Dataset name for calibration and verification, or None.
        card: The model card beside the ``.keras`` file, or None.
    """

    preprocessing: dict
    class_names: list[str]
    dataset: str | None
    card: dict | None


def model_context(
    network: keras.Model,
    model_path: Path | None,
    dataset: str | None = None,
    data_dir: str | None = None,
    preprocess: str | Preprocessing | None = None,
) -> ModelContext:
    """Preprocessing, classes and dataset of a model, for its deployment.

    Preprocessing follows `choose_preprocessing`: ``preprocess`` when given,
    else the model card's, else raw pixels (0..255, as Keras' loaders give).
    Classes and dataset come from the card, else from ``dataset``.

    Raises:
        InvalidArgumentError: If the preprocessing does not fit the model, is
            ``dataset`` without a dataset, or the classes do not match the
            model's outputs.
    """
    card = read_card(model_path) if model_path is not None else None
    dataset = dataset or (card or {}).get("dataset")
    input_shape = image_input_shape(network)
    chosen = choose_preprocessing(preprocess, model_path, input_shape)
    class_names = (card or {}).get("class_names")
    info = None
    if dataset is not None and (class_names is None or chosen.preprocessing == "dataset"):
        info = dataset_info(dataset, data_dir=data_dir)
        class_names = class_names or list(info.class_names)
    if chosen.preprocessing == "dataset":
        if info is None:
            raise InvalidArgumentError(
                "`preprocess` is dataset, but no dataset is known (no model card names one). "
                "Fix: pass --dataset (fashion_mnist, cifar10 or folder:PATH)."
            )
        preprocessing = info.preprocessing(input_shape).to_dict()
    else:
        preprocessing = chosen.preprocessing.to_dict()
    num_classes = int(network.outputs[0].shape[-1])
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    if len(class_names) != num_classes:
        raise InvalidArgumentError(
            f"The model has {num_classes} outputs but {len(class_names)} class names "
            f"({dataset or 'model card'}). Fix: pass the dataset the model was trained on."
        )
    return ModelContext(preprocessing, list(class_names), dataset, card)


def write_bundle(
    model: str | os.PathLike | keras.Model,
    out_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    int8: bool = True,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    verify_samples: int = DEFAULT_SAMPLES,
    split: str = "test",
    opset: int | None = None,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    data_dir: str | None = None,
    preprocess: str | Preprocessing | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Writes a verified deployment bundle for an NXP BlueBox 2.0 / RTMaps target.

    Args:
        model: A ``.keras`` file (its model card gives preprocessing, classes
            and dataset) or a ``keras.Model``.
        out_dir: The bundle folder to create.
        dataset: Dataset for preprocessing and classes when there is no card,
            and for calibration and verification; defaults to the card's.
        int8: Also write ``model_int8.tflite``, calibrated on
            ``calibration_samples`` images of the train split.
        calibration_samples: Images that calibrate int8 quantization.
        verify_samples: Images of ``split`` that every model file is verified on.
        split: Split for verification and the accuracy of each file.
        opset: ONNX opset (default: tf2onnx's).
        max_abs_diff: Threshold for float32 files (see `verify_export`).
        min_agreement: Threshold for int8 files (see `verify_export`).
        data_dir: Where to look for the dataset first.
        preprocess: The input transform, written into manifest.json and used
            for calibration and verification (see `choose_preprocessing`):
            default the model card's, else raw pixels 0..255.
        overwrite: Replace ``out_dir`` if it exists.
        progress: Show progress.

    Returns:
        The manifest, as written to ``manifest.json``.

    Raises:
        InvalidArgumentError: If ``out_dir`` exists (without ``overwrite``) or
            the preprocessing or dataset cannot be determined.
        UnsupportedModelError: If the model is not an image classifier (one
            ``(batch, H, W, C)`` input, one output); use `kprune export` then.
        VerificationError: If a model file disagrees with Keras; nothing is written.

    Example:
        >>> write_bundle("models/squeezenet1_1_fmnist_sgd.keras", "bundle/")
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InvalidArgumentError(
            f"{out_dir} already exists. Fix: choose another --out or pass --force to replace it."
        )
    network, model_path = resolve_model(model)
    input_shape = image_input_shape(network, "`kprune bundle`")
    context = model_context(network, model_path, dataset, data_dir, preprocess)
    if context.dataset is None:
        raise InvalidArgumentError(
            "A bundle is verified on real images, and int8 is calibrated on them, but no "
            "dataset is known. Fix: pass --dataset (fashion_mnist, cifar10 or folder:PATH)."
        )
    common = dict(
        input_shape=input_shape,
        data_dir=data_dir,
        shuffle=False,
        batch_size=64,
        preprocessing=Preprocessing.from_dict(context.preprocessing),
    )
    verification_data = load(context.dataset, split, limit=verify_samples, **common)
    calibration_data = load(context.dataset, "train", limit=calibration_samples, **common) if int8 else None

    with named_write_errors(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        with progress_steps(progress, 5 if int8 else 4) as step:
            artifacts = _export(network, staging, calibration_data, calibration_samples, opset, step)
            report = verify_export(
                network,
                list(artifacts.values()),
                verification_data,
                samples=verify_samples,
                max_abs_diff=max_abs_diff,
                min_agreement=min_agreement,
            )
            step("verified")
            _copy_programs(staging, context.class_names)
            manifest = _manifest(network, model_path, context, artifacts, report, split)
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


def _copy_programs(staging: Path, class_names: list[str]) -> None:
    write_atomically(staging / LABELS_NAME, ("\n".join(class_names) + "\n").encode())
    for name in TEMPLATES:
        source = resources.files("kprune.export.templates").joinpath(name)
        write_atomically(staging / name, source.read_bytes())


def _manifest(network, model_path, context, artifacts, report, split) -> dict:
    verification = {**report.to_dict(), "dataset": context.dataset, "split": split}
    card = context.card or {}
    onnx = artifacts["onnx"]
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kprune_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": network.name,
            "source": str(model_path) if model_path else None,
            "source_sha256": sha256_of(model_path) if model_path else None,
            "params": count_params(network),
            "flops": count_flops(network),
            "flops_convention": "2 per multiply-accumulate, one image",
        },
        "input": {
            "name": onnx.input.name,
            "shape": [None, *image_input_shape(network)],
            "dtype": "float32",
            "layout": "NHWC",
        },
        "output": {
            "name": onnx.output.name,
            "shape": [None, len(context.class_names)],
            "dtype": "float32",
            "kind": "probabilities" if outputs_probabilities(network) else "logits",
        },
        "preprocessing": context.preprocessing,
        "class_names": context.class_names,
        "artifacts": {key: artifact.to_dict() for key, artifact in artifacts.items()},
        "metrics": {
            "model_card": {key: card[key] for key in _CARD_METRICS if key in card},
            "verification": verification,
        },
    }


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
