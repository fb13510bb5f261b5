"""Exported files against the Keras model, run by the runtimes that deploy them.

Each ``.tflite`` file runs in ``ai_edge_litert``'s interpreter and each
``.onnx`` file in onnxruntime (through the bundle's own runtime code for one
input and one output), on the same examples as Keras, and every output is
compared:

- float32 files must match Keras within ``max_abs_diff`` on every value of
  every output;
- quantized ones (float16, dynamic, int8) must agree on the top-1 class for at
  least ``min_agreement`` of the examples on each classifier output
  (`classifier_outputs`), and keep the relative RMS error
  ``sqrt(mean((file - keras)²)) / sqrt(mean(keras²))`` of every other output
  (regression values, embeddings, sequences) within ``max_relative_error``.
  Quantization noise of a calibrated int8 file is a few percent of the
  output's magnitude; a file of another model is off by about 100%.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np

from kprune import keras_internals
from kprune.errors import InvalidArgumentError, ModelFileError, VerificationError
from kprune.export.artifact import (
    ExportedArtifact,
    model_tensors,
    resolve_model,
    structured_inputs,
)
from kprune.export.describe import describe_artifact
from kprune.export.examples import collect_inputs
from kprune.export.runners import Runner, open_artifact
from kprune.export.templates import kprune_runtime as runtime
from kprune.progress import track

DEFAULT_SAMPLES = 500
DEFAULT_MAX_ABS_DIFF = 1e-4
DEFAULT_MIN_AGREEMENT = 0.98
DEFAULT_MAX_RELATIVE_ERROR = 0.1
_BATCH = 32


@dataclass(frozen=True)
class ArtifactCheck:
    """How one exported file compares with Keras on the verification examples.

    ``max_abs_diff`` is over every output; ``top1_agreement`` the lowest over
    the classifier outputs (None without one); ``relative_error`` the highest
    relative RMS error over the other outputs (None without one).
    """

    artifact: ExportedArtifact
    max_abs_diff: float
    top1_agreement: float | None
    accuracy: float | None
    criterion: str
    passed: bool
    relative_error: float | None = None

    def summary(self) -> str:
        parts = [f"max abs diff {self.max_abs_diff:.2e}"]
        if self.top1_agreement is not None:
            parts.append(f"top-1 agreement {self.top1_agreement:.2%}")
        if self.relative_error is not None:
            parts.append(f"relative error {self.relative_error:.2%}")
        if self.accuracy is not None:
            parts.append(f"accuracy {self.accuracy:.4f}")
        verdict = "ok" if self.passed else f"FAILED ({self.criterion})"
        return f"{self.artifact.label}: {', '.join(parts)} — {verdict}"

    def to_dict(self) -> dict:
        values = {
            "file": self.artifact.path.name,
            "format": self.artifact.format,
            "quantize": self.artifact.quantize,
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "accuracy": self.accuracy,
            "criterion": self.criterion,
            "passed": self.passed,
        }
        if self.relative_error is not None:
            values["relative_error"] = self.relative_error
        return values


@dataclass(frozen=True)
class VerificationReport:
    """All checks of one verification run, with the thresholds that judged them."""

    checks: tuple[ArtifactCheck, ...]
    samples: int
    keras_accuracy: float | None
    max_abs_diff: float
    min_agreement: float
    max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR

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
            f"model on {self.samples} examples: {lines}. Fix: export again from this exact "
            "model (a file that changed after export or came from another model fails "
            "like this); for int8, calibrate on more real examples (--calibration-samples). "
            "The thresholds are --max-diff, --min-agreement and max_relative_error."
        )

    def to_dict(self) -> dict:
        thresholds = {"max_abs_diff": self.max_abs_diff, "min_agreement": self.min_agreement}
        if any(check.relative_error is not None for check in self.checks):
            thresholds["max_relative_error"] = self.max_relative_error
        return {
            "passed": self.passed,
            "samples": self.samples,
            "keras_accuracy": self.keras_accuracy,
            "thresholds": thresholds,
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
    max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR,
    raise_on_failure: bool = True,
    progress: bool = False,
) -> VerificationReport:
    """Runs exported files with their runtimes and compares them with Keras.

    Args:
        model: The Keras model the files were exported from (or its path).
        artifacts: ``.tflite`` / ``.onnx`` paths or `ExportedArtifact` objects.
        data: Preprocessed examples shaped like the model's inputs: a
            `kprune.data.Split`, a ``tf.data.Dataset`` of ``x`` or ``(x, y)``
            elements, an ``(x, y)`` tuple, or ``x`` alone (no accuracy then),
            where ``x`` is an array (one input), a list of arrays (one per
            input, in ``model.inputs`` order) or a dict keyed by input name.
        samples: How many examples of ``data`` to use.
        max_abs_diff: Largest allowed |file − Keras| of any output value, for
            float32 files.
        min_agreement: Smallest allowed fraction of examples whose top-1 class
            equals Keras', on each classifier output of a quantized file.
        max_relative_error: Largest allowed relative RMS error of each other
            output of a quantized file (see the module docstring).
        raise_on_failure: Raise instead of returning a failed report.
        progress: Show a progress bar.

    Returns:
        A `VerificationReport` with max abs diff, top-1 agreement, relative
        error and accuracy of every file.

    Raises:
        VerificationError: If a file fails its threshold (with
            ``raise_on_failure``), or its inputs or outputs are not the model's.
        ModelFileError: If a file cannot be read or run.
        InvalidArgumentError: On a threshold out of range, or data that is
            empty or does not fit the model's inputs.

    Example:
        >>> test = kprune.data.load("fashion_mnist", "test", limit=500)
        >>> verify_export("model.keras", ["model.tflite", "model.onnx"], test)
        >>> verify_export(series_model, ["series.tflite"], (x_test, y_test))
    """
    _check_thresholds(samples, max_abs_diff, min_agreement, max_relative_error)
    network, _ = resolve_model(model)
    tensors = model_tensors(network)
    inputs, labels = collect_inputs(data, tensors, samples)
    described = [a if isinstance(a, ExportedArtifact) else describe_artifact(a) for a in artifacts]
    if not described:
        raise InvalidArgumentError("`artifacts` is empty: nothing to verify.")
    reference = keras_outputs(network, inputs)
    classifiers = classifier_outputs(network)
    scored = classifiers.index(True) if labels is not None and any(classifiers) else None
    keras_accuracy = None
    if scored is not None:
        keras_accuracy = float(np.mean(reference[scored].argmax(axis=-1) == labels))

    iterator = described
    if progress:
        iterator = track(described, description="verify", total=len(described))
    checks = []
    for artifact in iterator:
        outputs = run_artifact(artifact, inputs, open_artifact(artifact, tensors))
        for output, expected, tensor in zip(outputs, reference, tensors.outputs):
            if output.shape != expected.shape:
                raise VerificationError(
                    f"{artifact.path} gives outputs of shape {output.shape[1:]} for "
                    f"{tensor.name!r}, the model {expected.shape[1:]}. Fix: it was exported "
                    "from another model; export again."
                )
        difference = max(float(np.max(np.abs(o - r))) for o, r in zip(outputs, reference))
        agreements = [
            float(np.mean(o.argmax(axis=-1) == r.argmax(axis=-1)))
            for o, r, classifier in zip(outputs, reference, classifiers)
            if classifier
        ]
        errors = [
            relative_rms_error(o, r)
            for o, r, classifier in zip(outputs, reference, classifiers)
            if not classifier
        ]
        agreement = min(agreements) if agreements else None
        relative_error = max(errors) if errors else None
        accuracy = None
        if scored is not None:
            accuracy = float(np.mean(outputs[scored].argmax(axis=-1) == labels))
        if artifact.exact:
            criterion = f"max abs diff ≤ {max_abs_diff:.0e}"
            passed = bool(np.isfinite(difference)) and difference <= max_abs_diff
        else:
            criterion, passed = _quantized_verdict(
                agreement, relative_error, min_agreement, max_relative_error
            )
        checks.append(
            ArtifactCheck(artifact, difference, agreement, accuracy, criterion, passed, relative_error)
        )
    report = VerificationReport(
        tuple(checks),
        len(inputs[0]),
        keras_accuracy,
        max_abs_diff,
        min_agreement,
        max_relative_error,
    )
    if raise_on_failure:
        report.raise_for_failures()
    return report


def _quantized_verdict(
    agreement: float | None,
    relative_error: float | None,
    min_agreement: float,
    max_relative_error: float,
) -> tuple[str, bool]:
    criteria, passed = [], True
    if agreement is not None:
        criteria.append(f"top-1 agreement ≥ {min_agreement:.0%}")
        passed = passed and agreement >= min_agreement
    if relative_error is not None:
        criteria.append(f"relative error ≤ {max_relative_error:.3g}")
        within = bool(np.isfinite(relative_error)) and relative_error <= max_relative_error
        passed = passed and within
    return " and ".join(criteria), passed


def relative_rms_error(values: np.ndarray, reference: np.ndarray) -> float:
    """``sqrt(mean((values − reference)²)) / sqrt(mean(reference²))``; 0 when both are 0."""
    error = float(np.sqrt(np.mean(np.square(values.astype(np.float64) - reference))))
    scale = float(np.sqrt(np.mean(np.square(reference.astype(np.float64)))))
    if scale == 0.0:
        return 0.0 if error == 0.0 else float("inf")
    return error / scale


def classifier_outputs(network: keras.Model) -> list[bool]:
    """Which outputs hold class scores, judged by top-1 agreement when quantized.

    An output does when its last axis has more than one entry and it ends in
    a softmax, or its compiled loss is a categorical cross-entropy, or it is
    the model's only output and no compiled loss says otherwise (kprune's
    image classifiers, whose scores may be logits). The others (regression
    values, features) are judged by their relative error.
    """
    losses = _compiled_losses(network)
    flags = []
    for tensor, loss in zip(network.outputs, losses):
        if tensor.shape[-1] is None or int(tensor.shape[-1]) < 2:
            flags.append(False)
        elif _ends_in_softmax(tensor) or "categoricalcrossentropy" in loss:
            flags.append(True)
        else:
            flags.append(len(network.outputs) == 1 and not loss)
    return flags


def _ends_in_softmax(tensor) -> bool:
    layer, _, _ = keras_internals.producer(tensor)
    while isinstance(layer, keras.Model):  # a nested model: ask its own last layer
        layer, _, _ = keras_internals.producer(layer.outputs[0])
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def _compiled_losses(network: keras.Model) -> list[str]:
    """The compiled loss of each output, as a lower-case name without '_' ('' if none)."""
    loss = getattr(network, "loss", None)
    count = len(network.outputs)
    if isinstance(loss, dict):
        names = list(getattr(network, "output_names", None) or [])
        losses = [loss.get(name) for name in names] if len(names) == count else [None] * count
    elif isinstance(loss, (list, tuple)):
        losses = list(loss) + [None] * (count - len(loss))
    else:
        losses = [loss] * count
    return [_loss_name(entry) for entry in losses]


def _loss_name(loss) -> str:
    if loss is None:
        return ""
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
    return name.lower().replace("_", "")


def keras_outputs(network: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The model's outputs (in ``model.outputs`` order) in inference mode, batch by batch."""
    parts: list[list[np.ndarray]] = [[] for _ in network.outputs]
    for start in range(0, len(inputs[0]), _BATCH):
        batch = [values[start : start + _BATCH] for values in inputs]
        structured = structured_inputs(network, batch)
        outputs = keras.tree.flatten(network(structured, training=False))
        for part, output in zip(parts, outputs):
            part.append(np.asarray(output))
    return [np.concatenate(part) for part in parts]


def run_artifact(artifact: ExportedArtifact, inputs: list[np.ndarray], runner: Runner) -> list[np.ndarray]:
    """Outputs of a file run by ``runner`` (`open_artifact`), batch by batch.

    Raises:
        ModelFileError: If the runtime cannot run the file.
    """
    parts: list[list[np.ndarray]] = [[] for _ in artifact.outputs]
    try:
        for start in range(0, len(inputs[0]), _BATCH):
            outputs = runner([values[start : start + _BATCH] for values in inputs])
            for part, output in zip(parts, outputs):
                part.append(np.asarray(output, dtype=np.float32))
    except (runtime.BundleError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"Cannot run {artifact.path}: {error}. Fix: export it again.") from error
    return [np.concatenate(part) for part in parts]


def _check_thresholds(
    samples: int, max_abs_diff: float, min_agreement: float, max_relative_error: float
) -> None:
    if samples < 1:
        raise InvalidArgumentError(f"`samples` must be positive. Received samples={samples}.")
    if not max_abs_diff > 0:
        raise InvalidArgumentError(f"`max_abs_diff` must be positive. Received max_abs_diff={max_abs_diff}.")
    if not 0 < min_agreement <= 1:
        raise InvalidArgumentError(
            f"`min_agreement` must be in (0, 1]. Received min_agreement={min_agreement}."
        )
    if not max_relative_error > 0:
        raise InvalidArgumentError(
            f"`max_relative_error` must be positive. Received max_relative_error={max_relative_error}."
        )
