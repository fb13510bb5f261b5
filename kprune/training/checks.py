"""Checks of the user's data before work starts, and of training's results.

`check_batch` compares one batch with the model: the inputs' shapes against
the model's inputs, the labels against its outputs (the class range of
integer labels, the width of one-hot labels, the keys of a dict), each
mismatch named on both sides in one line.

Finite values: bad data and diverged training never become a model.

NaN pixels need not show in the loss: ReLU maps NaN to 0 on this CPU, so the
forward pass and the loss stay finite while the gradient of the first
convolution is NaN; its kernel turns NaN and every later output is constant —
a model that evaluates at a plausible-looking chance accuracy. So kprune
checks the data before work starts (`check_data`) and the weights after every
fine-tune (`non_finite_weights`), besides the loss of every batch.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import keras
import numpy as np

from kprune.errors import InvalidArgumentError
from kprune.training.losses import output_names, per_output

CHECKED_BATCHES = 4  # the cheap pass over the start of the data


def check_data(data: Iterable, what: str, batches: int = CHECKED_BATCHES) -> None:
    """Refuses NaN or infinite values in the first ``batches`` batches of ``data``.

    Args:
        data: ``(x, y[, sample_weight])`` batches: a tf.data dataset, or batches
            already read.
        what: Which data it is, for the message (e.g. ``"training"``).

    Raises:
        InvalidArgumentError: Naming the part (inputs, labels, sample weights),
            the batch and the count of bad values, and the fix.
    """
    found = first_non_finite(data, what, batches)
    if found:
        raise InvalidArgumentError(f"{found}. Fix: {CLEAN_DATA}.")


CLEAN_DATA = "clean the data (e.g. drop those examples, or np.nan_to_num) before pruning"


def first_non_finite(data: Iterable, what: str, batches: int) -> str | None:
    """Where the first NaN or infinite value of the first ``batches`` batches is, or None.

    Example:
        >>> first_non_finite(dataset, "training", 100)
        'NaN in the training inputs: batch 3 has 12 of 768 values not finite'
    """
    for number, batch in enumerate(itertools.islice(data, batches), start=1):
        parts = keras.utils.unpack_x_y_sample_weight(batch)
        for part, name in zip(parts, ("inputs", "labels", "sample weights")):
            for array in keras.tree.flatten(part) if part is not None else []:
                values = np.asarray(array)
                if not np.issubdtype(values.dtype, np.floating):
                    continue
                bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                if bad:
                    kind = "NaN" if np.isnan(values).any() else "Infinite values"
                    return (
                        f"{kind} in the {what} {name}: batch {number} has {bad:,} of "
                        f"{values.size:,} values not finite"
                    )
    return None


def check_batch(model: keras.Model, batch: Any, kinds: list[str], what: str = "training") -> None:
    """Checks one ``(x, y[, sample_weight])`` batch against ``model``.

    Args:
        kinds: What each output is (`kprune.training.losses.distillation_kinds`): the
            class range and one-hot width are checked for classifier outputs.
        what: Which data it is, for the message (e.g. ``"test"``).

    Raises:
        InvalidArgumentError: One line naming the mismatch, both sides, and the fix.
    """
    x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
    names = [tensor.name for tensor in model.inputs]
    if isinstance(x, dict):  # keyed by input name; other keys are Keras' to match (or refuse)
        given = [x[name] for name in names] if set(names) <= set(x) else []
    else:
        given = keras.tree.flatten(x)
    for tensor, name, values in zip(model.inputs, names, given):
        expected, actual = tuple(tensor.shape[1:]), tuple(np.shape(values)[1:])
        fits = len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual))
        if not fits:
            raise InvalidArgumentError(
                f"The {what} inputs have shape {actual} per example (batch 1: {tuple(np.shape(values))}), "
                f"but model {model.name!r} takes {expected} (input {name!r}). Fix: resize the data to the "
                "model's input, or give the model that fits the data."
            )
        if not np.issubdtype(np.asarray(values).dtype, np.number):
            raise InvalidArgumentError(
                f"The {what} inputs are {np.asarray(values).dtype}, but model {model.name!r} takes "
                f"numbers (input {name!r}, {tensor.dtype}). Fix: decode the data to numbers first."
            )
    if y is None:
        return
    outputs = output_names(model)
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(outputs))
        if unknown:
            raise InvalidArgumentError(
                f"The labels name outputs {unknown} that model {model.name!r} does not have; its "
                f"outputs: {outputs}. Fix: key the labels by these output names."
            )
    labels = per_output(model, y, "labels")
    for tensor, name, kind, values in zip(model.outputs, outputs, kinds, labels):
        if values is None or kind == "match":
            continue
        _check_classes(np.asarray(values), int(tensor.shape[-1] or 0), name, len(tensor.shape))


def _check_classes(labels: np.ndarray, classes: int, output: str, rank: int) -> None:
    if classes < 2:
        return
    if labels.ndim == rank and labels.shape[-1] not in (1, classes):
        raise InvalidArgumentError(
            f"The labels are one-hot vectors of width {labels.shape[-1]}, but output {output!r} has "
            f"{classes} classes. Fix: one-hot encode with {classes} classes, or give integer labels."
        )
    if labels.ndim == rank and labels.shape[-1] == classes:
        return  # one-hot
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise InvalidArgumentError(
            f"The labels run from {labels.min():g} to {labels.max():g}, but output {output!r} has "
            f"{classes} classes (labels 0..{classes - 1}). Fix: give labels in that range, or a model "
            "whose output has one unit per class."
        )


def non_finite_weights(model: keras.Model) -> list[str]:
    """Names of the layers of ``model`` that hold a NaN or infinite weight."""
    return [
        layer.name
        for layer in model.layers
        if any(not np.isfinite(np.asarray(w)).all() for w in layer.get_weights())
    ]


def output_spread(model: keras.Model, batch: Any) -> float:
    """How much the outputs of ``model`` differ across the examples of ``batch``: the widest
    range (max − min over the batch) of any output value. About 0 when no signal from the
    input reaches the outputs, as in a network whose pruned layers kept only dead
    (always-zero) channels."""
    x = keras.utils.unpack_x_y_sample_weight(batch)[0]
    outputs = keras.tree.flatten(model(x, training=False))
    return max(
        float(np.ptp(np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float64), axis=0).max())
        for o in outputs
    )
