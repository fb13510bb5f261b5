"""Exported files against the Keras model, run by the runtimes that deploy them.

Each ``.tflite`` file runs in ``ai_edge_litert``'s interpreter and each
``.onnx`` file in onnxruntime, through the bundle's own runtime code, on the
same images as Keras. Float32 files must match Keras within ``max_abs_diff``
on every output value; quantized ones (float16, dynamic, int8) must agree on
the top-1 class for at least ``min_agreement`` of the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np

from kprune.data import Split
from kprune.errors import InvalidArgumentError, ModelFileError, VerificationError
from kprune.export.artifact import (
    ExportedArtifact,
    image_input_shape,
    resolve_model,
)
from kprune.export.describe import describe_artifact
from kprune.export.templates import kprune_runtime as runtime
from kprune.progress import track

DEFAULT_SAMPLES = 500
DEFAULT_MAX_ABS_DIFF = 1e-4
DEFAULT_MIN_AGREEMENT = 0.98
_BATCH = 32


@dataclass(frozen=True)
class ArtifactCheck:
    """How one exported file compares with Keras on the verification images."""

    artifact: ExportedArtifact
    max_abs_diff: float
    top1_agreement: float
    accuracy: float | None
    criterion: str
    passed: bool

    def summary(self) -> str:
        accuracy = "" if self.accuracy is None else f", accuracy {self.accuracy:.4f}"
        verdict = "ok" if self.passed else f"FAILED ({self.criterion})"
        return (
            f"{self.artifact.label}: max abs diff {self.max_abs_diff:.2e}, top-1 agreement "
            f"{self.top1_agreement:.2%}{accuracy} — {verdict}"
        )

    def to_dict(self) -> dict:
        return {
            "file": self.artifact.path.name,
            "format": self.artifact.format,
            "quantize": self.artifact.quantize,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "accuracy": self.accuracy,
            "criterion": self.criterion,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class VerificationReport:
    """All checks of one verification run, with the thresholds that judged them."""

    checks: tuple[ArtifactCheck, ...]
    samples: int
    keras_accuracy: float | None
    max_abs_diff: float
    min_agreement: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[ArtifactCheck]:
        return [check for check in self.checks if not check.passed]

    def raise_for_failures(self) -> None:
        """Raises VerificationError naming every failed file.

        Raises:
            VerificationError: If any check failed.
        """
        failed = self.failures()
        if not failed:
            return
        lines = "; ".join(check.summary() for check in failed)
        raise VerificationError(
            f"{len(failed)} of {len(self.checks)} exported files disagree with the Keras "
            f"model on {self.samples} images: {lines}. Fix: export again from this exact "
            "model (a file that changed after export or came from another model fails "
            "like this); for int8, calibrate on more real images (--calibration-samples). "
            "The thresholds are --max-diff and --min-agreement."
        )

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "samples": self.samples,
            "keras_accuracy": self.keras_accuracy,
            "thresholds": {"max_abs_diff": self.max_abs_diff, "min_agreement": self.min_agreement},
            "artifacts": [check.to_dict() for check in self.checks],
        }


def verify_export(
    model: str | os.PathLike | keras.Model,
    artifacts: Sequence[str | os.PathLike | ExportedArtifact],
    data: Any,
    *,
    samples: int = DEFAULT_SAMPLES,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    raise_on_failure: bool = True,
    progress: bool = False,
) -> VerificationReport:
    """Runs exported files with their runtimes and compares them with Keras.

    Args:
        model: The Keras model the files were exported from (or its path).
        artifacts: ``.tflite`` / ``.onnx`` paths or `ExportedArtifact` objects.
        data: Preprocessed images: a `kprune.data.Split`, a ``tf.data.Dataset``
            of ``(images, labels)`` batches, an ``(images, labels)`` tuple of
            arrays, or an array of images (no accuracy then).
        samples: How many images of ``data`` to use.
        max_abs_diff: Largest allowed |file − Keras| of any output value, for
            float32 files.
        min_agreement: Smallest allowed fraction of images whose top-1 class
            equals Keras', for quantized files.
        raise_on_failure: Raise instead of returning a failed report.
        progress: Show a progress bar.

    Returns:
        A `VerificationReport` with max abs diff, top-1 agreement and
        accuracy of every file.

    Raises:
        VerificationError: If a file fails its threshold (with
            ``raise_on_failure``), or its input or output shape is not the model's.
        ModelFileError: If a file cannot be read or run.
        InvalidArgumentError: On a threshold out of range or empty data.

    Example:
        >>> test = kprune.data.load("fashion_mnist", "test", limit=500)
        >>> verify_export("model.keras", ["model.tflite", "model.onnx"], test)
    """
    _check_thresholds(samples, max_abs_diff, min_agreement)
    network, _ = resolve_model(model)
    input_shape = image_input_shape(network)
    images, labels = collect_examples(data, samples)
    if tuple(images.shape[1:]) != input_shape:
        raise InvalidArgumentError(
            f"The verification images have shape {tuple(images.shape[1:])}, the model "
            f"expects {input_shape}. Fix: load the dataset with input_shape={input_shape}."
        )
    described = [a if isinstance(a, ExportedArtifact) else describe_artifact(a) for a in artifacts]
    if not described:
        raise InvalidArgumentError("`artifacts` is empty: nothing to verify.")
    reference = keras_outputs(network, images)
    keras_top1 = reference.argmax(axis=-1)
    keras_accuracy = None if labels is None else float(np.mean(keras_top1 == labels))

    iterator = described
    if progress:
        iterator = track(described, description="verify", total=len(described))
    checks = []
    for artifact in iterator:
        outputs = run_artifact(artifact, images)
        if outputs.shape != reference.shape:
            raise VerificationError(
                f"{artifact.path} gives outputs of shape {outputs.shape[1:]}, the model "
                f"{reference.shape[1:]}. Fix: it was exported from another model; export again."
            )
        difference = float(np.max(np.abs(outputs - reference)))
        top1 = outputs.argmax(axis=-1)
        agreement = float(np.mean(top1 == keras_top1))
        accuracy = None if labels is None else float(np.mean(top1 == labels))
        if artifact.exact:
            criterion = f"max abs diff ≤ {max_abs_diff:.0e}"
            passed = bool(np.isfinite(difference)) and difference <= max_abs_diff
        else:
            criterion = f"top-1 agreement ≥ {min_agreement:.0%}"
            passed = agreement >= min_agreement
        checks.append(ArtifactCheck(artifact, difference, agreement, accuracy, criterion, passed))
    report = VerificationReport(
        tuple(checks), len(images), keras_accuracy, max_abs_diff, min_agreement
    )
    if raise_on_failure:
        report.raise_for_failures()
    return report


def collect_examples(data: Any, samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``samples`` images (float32) and labels (or None) of ``data``."""
    import tensorflow as tf


    if isinstance(data, np.ndarray):
        return data[:samples].astype(np.float32), None
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = (np.asarray(part) for part in data)
        return images[:samples].astype(np.float32), labels[:samples].astype(np.int64)
    dataset = data.dataset if isinstance(data, Split) else data
    if not isinstance(dataset, tf.data.Dataset):
        raise InvalidArgumentError(
            "`data` must be a kprune.data.Split, a tf.data.Dataset of (images, labels) "
            f"batches, an (images, labels) tuple or an array. Received {type(data).__name__}."
        )
    images, labels, count = [], [], 0
    for element in dataset:
        if isinstance(element, (tuple, list)):
            images.append(element[0].numpy())
            labels.append(element[1].numpy())
        else:
            images.append(element.numpy())
        count += len(images[-1])
        if count >= samples:
            break
    if not images:
        raise InvalidArgumentError("`data` holds no images: nothing to verify on.")
    stacked_labels = np.concatenate(labels)[:samples].astype(np.int64) if labels else None
    return np.concatenate(images)[:samples].astype(np.float32), stacked_labels


def keras_outputs(network: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's outputs in inference mode, batch by batch."""
    parts = [
        np.asarray(network(images[start : start + _BATCH], training=False))
        for start in range(0, len(images), _BATCH)
    ]
    return np.concatenate(parts).astype(np.float32)


def run_artifact(artifact: ExportedArtifact, images: np.ndarray) -> np.ndarray:
    """Outputs of a file run by its runtime (the bundle's runtime code), batch by batch.

    Raises:
        VerificationError: If the file's input shape is not the images'.
        ModelFileError: If the runtime cannot load or run the file.
    """
    expected = tuple(artifact.input.shape[1:])
    if expected != tuple(images.shape[1:]):
        raise VerificationError(
            f"{artifact.path} expects inputs of shape {expected}, the model "
            f"{tuple(images.shape[1:])}. Fix: it was exported from another model; export again."
        )
    try:
        runner = runtime.open_model(artifact.path)
        parts = [runner.predict(images[i : i + _BATCH]) for i in range(0, len(images), _BATCH)]
    except (runtime.BundleError, RuntimeError, ValueError) as error:
        raise ModelFileError(
            f"Cannot run {artifact.path}: {error}. Fix: export it again."
        ) from error
    return np.concatenate(parts)


def _check_thresholds(samples: int, max_abs_diff: float, min_agreement: float) -> None:
    if samples < 1:
        raise InvalidArgumentError(f"`samples` must be positive. Received samples={samples}.")
    if not max_abs_diff > 0:
        raise InvalidArgumentError(
            f"`max_abs_diff` must be positive. Received max_abs_diff={max_abs_diff}."
        )
    if not 0 < min_agreement <= 1:
        raise InvalidArgumentError(
            f"`min_agreement` must be in (0, 1]. Received min_agreement={min_agreement}."
        )
