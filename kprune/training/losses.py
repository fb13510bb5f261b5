"""The loss of each example, for any output structure, and which way a metric is better.

Taylor ranking needs C_n, the loss of example n alone (Molchanov et al. 2017):
`example_loss` builds it from the loss a model was compiled with — one loss,
a list or a dict of losses for several outputs, with ``loss_weights`` and
sample weights — as the weighted sum over outputs of each output's unreduced
loss, averaged over any axes after the batch. Without a loss, a one-output
classifier gets sparse categorical cross-entropy matched to its output
(probabilities after a softmax, logits otherwise).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from kprune import keras_internals
from kprune.errors import InvalidArgumentError

# Metric names (after any "<output>_" prefix) for which lower is better.
_LOWER_IS_BETTER = (
    "loss",
    "error",
    "mae",
    "mse",
    "rmse",
    "mape",
    "msle",
    "logcosh",
    "crossentropy",
    "hinge",
    "poisson",
    "divergence",
    "kld",
)


def outputs_probabilities(model: keras.Model, output: int = 0) -> bool:
    """Whether output ``output`` of the model ends in a softmax (else it gives logits)."""
    tensor = model.outputs[output]
    layer, _, index = keras_internals.producer(tensor)
    if isinstance(layer, keras.Model):  # ends in a nested model: ask its own last layer
        return outputs_probabilities(layer, index)
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(activation, "__name__", "") == "softmax"


def loss_for(model: keras.Model, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Categorical cross-entropy on integer labels, matched to the model's output."""
    from_logits = not outputs_probabilities(model)
    if label_smoothing:
        return SmoothedSparseCrossentropy(from_logits, label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Keras' sparse one has none)."""

    def __init__(self, from_logits: bool, label_smoothing: float, **kwargs):
        super().__init__(name=kwargs.pop("name", "smoothed_crossentropy"), **kwargs)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), keras.ops.shape(y_pred)[:-1])
        return keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1]),
            y_pred,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


def output_names(model: keras.Model) -> list[str]:
    """The model's output names in ``model.outputs`` order (``output_<i>`` where
    Keras gives none or the same twice, e.g. for a Sequential)."""
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model.outputs) or len(set(names)) != len(names):
        names = [f"output_{index}" for index in range(len(model.outputs))]
    return names


def per_output(model: keras.Model, value: Any, what: str) -> list:
    """``value`` (one, a list, or a dict by output name) as one entry per model output."""
    names = output_names(model)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise InvalidArgumentError(
                f"`{what}` names outputs {unknown} that model {model.name!r} does not have. "
                f"Its outputs: {names}."
            )
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)) and len(names) > 1:
        if len(value) != len(names):
            raise InvalidArgumentError(
                f"`{what}` has {len(value)} entries for the {len(names)} outputs {names} "
                f"of model {model.name!r}. Fix: give one per output, or a dict by output name."
            )
        return list(value)
    return [value] * len(names)


def unreduced(loss: Any) -> Callable | None:
    """A loss as ``(labels, outputs) -> per-example values`` (None stays None)."""
    if loss is None:
        return None
    loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # no reduction over the batch
    if callable(loss):
        return loss
    raise InvalidArgumentError(
        f"Cannot use {loss!r} as a loss. Fix: pass a keras.losses.Loss, a loss name "
        "such as 'sparse_categorical_crossentropy', or a function (y_true, y_pred)."
    )


def example_loss(model: keras.Model, loss: Any, loss_weights: Any = None) -> Callable:
    """``(labels, outputs, sample_weight=None) -> loss of each example``, shape (batch,).

    ``outputs`` lists the model's outputs in ``model.outputs`` order (or is
    the one output);
    ``labels`` is one array, a list in that order, or a dict by output name.
    Of several outputs, one whose loss is None (``loss={"a": ..., "b": None}``) adds
    nothing, as in Keras' own ``compile``; one output without a loss gets the default.

    Raises:
        InvalidArgumentError: A model with several outputs and no loss, or a
            ``loss``/``loss_weights`` that does not fit the outputs.
    """
    names = output_names(model)
    losses = [unreduced(item) for item in per_output(model, loss, "loss")]
    if len(names) == 1 and losses[0] is None:
        losses = [loss_for(model).call]
    if not any(losses):
        raise InvalidArgumentError(
            f"Model {model.name!r} has {len(names)} outputs {names} and no loss. Fix: "
            "compile it with its losses (model.compile(loss={...})) or pass loss=."
        )
    weights = [1.0 if w is None else float(w) for w in per_output(model, loss_weights, "loss_weights")]

    def compute(labels, outputs: Sequence, sample_weight=None):
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        if isinstance(labels, dict):
            labels = [labels.get(name) for name in names]
        elif len(names) == 1 or not isinstance(labels, (list, tuple)):
            labels = [labels] * len(names)
        total = 0.0
        for function, weight, target, output in zip(losses, weights, labels, outputs):
            if function is None:  # an output the loss leaves out (loss={..., name: None}), as in Keras
                continue
            values = function(target, output)
            if len(values.shape) == 0:
                raise InvalidArgumentError(
                    "The loss gives one number per batch, not one value per example. Fix: "
                    "use a keras.losses.Loss or a function that returns one value per example."
                )
            values = keras.ops.reshape(values, (keras.ops.shape(values)[0], -1))
            total = total + weight * keras.ops.mean(values, axis=1)
        if sample_weight is not None:
            total = total * keras.ops.reshape(keras.ops.cast(sample_weight, total.dtype), (-1,))
        return total

    return compute


def distillation_kinds(model: keras.Model, loss: Any) -> list[str]:
    """What each output is, for distillation: ``"probabilities"`` or ``"logits"`` for a
    classifier output (trained with a categorical cross-entropy; no loss means the
    default one), ``"match"`` for any other output."""
    kinds = []
    for index, item in enumerate(per_output(model, loss, "loss")):
        if item is None and len(model.outputs) == 1:
            item = loss_for(model)
        if isinstance(item, str):
            name = item
        else:
            name = getattr(item, "name", None) or getattr(item, "__name__", "") or type(item).__name__
        classifier = "categorical_crossentropy" in name or "CategoricalCrossentropy" in type(item).__name__
        classifier = classifier or isinstance(item, SmoothedSparseCrossentropy)
        if not classifier:
            kinds.append("match")
            continue
        from_logits = getattr(item, "from_logits", None)
        if from_logits is None:
            from_logits = not outputs_probabilities(model, index)
        kinds.append("logits" if from_logits else "probabilities")
    return kinds


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of metric ``metric`` (e.g. ``loss``, ``out_mae``) is better."""
    return metric.lower().endswith(_LOWER_IS_BETTER)
