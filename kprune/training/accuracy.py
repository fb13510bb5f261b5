"""Accuracy that counts a non-finite prediction as wrong.

Keras' accuracy metrics take the argmax (or the 0.5 threshold) of each
prediction. The argmax of a row of NaN is class 0, so a model whose outputs
are NaN scores the share of class-0 examples: a plausible-looking accuracy
(0.36 on 3 classes) for a broken model. `FiniteAccuracy` computes the same
matches as Keras' own function and zeroes those of a prediction holding a NaN
or an infinite value; on finite predictions it equals Keras' metric.

`finite_accuracies` swaps it in for the accuracy entries of a ``metrics``
argument (the names Keras resolves, and Keras' accuracy metric objects), keeping
each one's name, so the numbers kprune reports and decides on keep their keys.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Keras' name → its per-example match function; "accuracy" is resolved by shapes.
_FUNCTIONS = {
    "binary_accuracy": keras.metrics.binary_accuracy,
    "categorical_accuracy": keras.metrics.categorical_accuracy,
    "sparse_categorical_accuracy": keras.metrics.sparse_categorical_accuracy,
    "top_k_categorical_accuracy": keras.metrics.top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": keras.metrics.sparse_top_k_categorical_accuracy,
}
_CLASSES = {
    keras.metrics.BinaryAccuracy: "binary_accuracy",
    keras.metrics.CategoricalAccuracy: "categorical_accuracy",
    keras.metrics.SparseCategoricalAccuracy: "sparse_categorical_accuracy",
    keras.metrics.TopKCategoricalAccuracy: "top_k_categorical_accuracy",
    keras.metrics.SparseTopKCategoricalAccuracy: "sparse_top_k_categorical_accuracy",
}


class FiniteAccuracy(keras.metrics.Mean):
    """A Keras accuracy metric whose non-finite predictions count as wrong.

    Args:
        kind: ``"accuracy"`` (binary, sparse or categorical by the shapes, as
            Keras resolves it) or one of Keras' accuracy function names.
        name: The metric's name; defaults to ``kind``.
        options: The Keras function's options (``threshold``, ``k``).

    Example:
        >>> model.compile(loss="sparse_categorical_crossentropy", metrics=[FiniteAccuracy()])
    """

    def __init__(self, kind: str = "accuracy", name: str | None = None, dtype=None, **options):
        super().__init__(name=name or kind, dtype=dtype)
        if kind not in ("accuracy", "acc", *_FUNCTIONS):
            raise ValueError(
                f"`kind` must be 'accuracy' or one of {sorted(_FUNCTIONS)}. Received kind={kind!r}."
            )
        self.kind = kind
        self.options = options

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        kind = self._resolved(y_true, y_pred)
        matches = _FUNCTIONS[kind](y_true, y_pred, **self.options)
        # binary predictions are judged one value at a time, the others one row at a time
        finite = ops.isfinite(y_pred)
        if kind != "binary_accuracy":
            finite = ops.all(finite, axis=-1)
        finite = ops.reshape(ops.cast(finite, matches.dtype), ops.shape(matches))
        return super().update_state(matches * finite, sample_weight=sample_weight)

    def _resolved(self, y_true, y_pred) -> str:
        if self.kind not in ("accuracy", "acc"):
            return self.kind
        if y_pred.shape[-1] == 1:
            return "binary_accuracy"
        sparse = len(y_true.shape) < len(y_pred.shape) or y_true.shape[-1] == 1
        return "sparse_categorical_accuracy" if sparse else "categorical_accuracy"

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, **self.options}


def finite_accuracies(metrics: Any) -> Any:
    """``metrics`` (a ``compile`` argument) with each accuracy entry a `FiniteAccuracy`.

    Other metrics are kept as they are: a regression metric of NaN outputs is
    NaN, which already says what happened.
    """

    def swap(metric):
        if isinstance(metric, str) and metric.lower() in ("accuracy", "acc", *_FUNCTIONS):
            return FiniteAccuracy(metric.lower(), name=metric)
        kind = _CLASSES.get(type(metric))
        if kind is None:
            return metric
        config = metric.get_config()
        options = {key: config[key] for key in ("threshold", "k") if key in config}
        return FiniteAccuracy(kind, name=metric.name, **options)

    return keras.tree.map_structure(swap, metrics) if metrics is not None else None
