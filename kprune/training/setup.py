"""The training setup: how kprune computes a model's loss, fine-tunes it and evaluates it.

Ranking (Taylor needs the loss of each example), the pruning loop (fine-tune,
then evaluate against the accuracy budget) and ``kprune train`` all ask one
`TrainingSetup`, so they agree on the loss, the metrics and the optimizer.

`TrainingSetup.for_model` takes the loss, loss weights and metrics the model
was compiled with; what the model does not say comes from the defaults —
sparse categorical cross-entropy matched to the output, and accuracy — or
from what the caller gives. The optimizer follows `TrainSettings` (a linear
warm-up, then cosine decay to zero at the last step) unless an optimizer
object is given. A ``finetune`` callable ``(model, data, steps) -> model``
replaces kprune's fine-tune for users with their own training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kprune import keras_internals
from kprune.data import as_dataset, batches_per_epoch
from kprune.errors import InvalidArgumentError, TrainingDivergedError
from kprune.interrupts import CheckInterrupts
from kprune.progress import EvaluateProgress, KerasProgress
from kprune.training.accuracy import finite_accuracies
from kprune.training.checks import (
    CHECKED_BATCHES,
    CLEAN_DATA,
    check_batch,
    check_data,
    first_non_finite,
    non_finite_weights,
)
from kprune.training.distill import Distillation, DistillingModel
from kprune.training.distribute import fit_multi_worker, is_multi_worker
from kprune.training.losses import (
    distillation_kinds,
    example_loss,
    loss_for,
    lower_is_better,
    output_names,
)

__all__ = ["OPTIMIZERS", "TrainSettings", "TrainingSetup", "predict_labels"]

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class TrainSettings:
    """How to train: optimizer, learning-rate schedule and regularization.

    The schedule is a linear warm-up over ``warmup_epochs`` followed by a
    cosine decay to zero at the last step (Loshchilov & Hutter 2017).
    """

    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.05  # decoupled (AdamW, Loshchilov & Hutter 2019)
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgumentError(
                f"`optimizer` must be one of {OPTIMIZERS}. Received optimizer={self.optimizer!r}."
            )
        if not self.learning_rate > 0:
            raise InvalidArgumentError(
                f"`learning_rate` must be positive. Received learning_rate={self.learning_rate}."
            )


@dataclass
class TrainingSetup:
    """How to compute the loss, fine-tune and evaluate: shared by rank, prune and train.

    Build it with `for_model` to take what the model was compiled with.

    Attributes:
        settings: Optimizer name, learning-rate schedule and regularization.
        loss: A Keras loss (object, name, function ``(y_true, y_pred)``), or a
            list or dict of them for several outputs; None: the model's
            compiled loss, else sparse categorical cross-entropy.
        loss_weights: Weights of the outputs' losses (list or dict).
        metrics: What ``compile(metrics=...)`` takes; None: ``["accuracy"]``
            for a one-output model, none for several outputs.
        optimizer: A ``keras.optimizers.Optimizer`` to use as it is (a fresh
            copy per fine-tune) instead of the one `TrainSettings` describes.
        optimizer_template: A ``keras.optimizers.Optimizer`` whose class and
            hyperparameters fine-tuning copies (e.g. the model's compiled
            one), with the settings' learning rate and schedule.
        distillation: Temperature and weight of distillation from ``teacher``
            (`kprune.training.distill`); None: no distillation.
        teacher: The frozen model that ``distillation`` learns from.
        monitor: The metric the accuracy budget watches (a key of
            `evaluate`'s result, e.g. ``accuracy`` or ``out_auc``); None: the
            first compiled metric, else ``loss``.
        finetune_fn: ``(model, data, steps) -> model``: fine-tune your way.
        source: ``"compiled"`` when the loss came from the model's compile().

    Example:
        >>> setup = TrainingSetup.for_model(model, TrainSettings(optimizer="sgd"))
        >>> setup.fit(model, train_data, epochs=1)
        >>> setup.evaluate(model, val_data)[setup.monitor_name(model)]
    """

    settings: TrainSettings = field(default_factory=TrainSettings)
    loss: Any = None
    loss_weights: Any = None
    metrics: Any = None
    optimizer: Any = None
    monitor: str | None = None
    finetune_fn: Callable | None = None
    source: str = "default"
    optimizer_template: Any = None
    distillation: Distillation | None = None
    teacher: Any = None

    @classmethod
    def for_model(cls, model: keras.Model, settings: TrainSettings | None = None, **given) -> TrainingSetup:
        """The setup of ``model``: its compiled loss, loss weights and metrics,
        replaced by any of ``loss``, ``loss_weights``, ``metrics``,
        ``optimizer``, ``monitor``, ``finetune_fn`` given (None: not given)."""
        compiled = _compiled_arguments(model)
        values = {key: value for key, value in given.items() if value is not None}
        for key in ("loss", "loss_weights", "metrics"):
            if key not in values and compiled.get(key) is not None:
                values[key] = compiled[key]
        source = "compiled" if "loss" not in given or given["loss"] is None else "given"
        if values.get("loss") is None:
            source = "default"
        return cls(settings or TrainSettings(), source=source, **values)

    def describe(self) -> str:
        """One line saying where the loss and metrics come from."""
        if self.source == "default":
            return (
                "The model is not compiled: kprune uses sparse categorical cross-entropy "
                "and accuracy (compile the model, or pass loss= and metrics=, to change that)."
            )
        return (
            f"Loss and metrics: the {self.source} ones ({_short(self.loss)}; metrics {_short(self.metrics)})."
        )

    def describe_finetuning(self) -> str:
        """One line saying how fine-tuning trains: optimizer, learning rate, distillation."""
        if self.finetune_fn is not None:
            return "Fine-tuning: your finetune callable (kprune's optimizer and distillation are not used)."
        if self.optimizer is not None:
            optimizer = f"the given {type(keras.optimizers.get(self.optimizer)).__name__} as it is"
        else:
            name = (
                type(keras.optimizers.get(self.optimizer_template)).__name__
                + " (the model's compiled optimizer)"
                if self.optimizer_template is not None
                else self.settings.optimizer.upper()
            )
            optimizer = f"{name}, learning rate {self.settings.learning_rate:g} with cosine decay"
        distill = (
            "distillation from the unpruned model (temperature "
            f"{self.distillation.temperature:g}, weight {self.distillation.weight:g})"
            if self.distillation is not None
            else "no distillation"
        )
        return f"Fine-tuning: {optimizer}; {distill}."

    # --- the loss -------------------------------------------------------------
    def example_loss(self, model: keras.Model) -> Callable:
        """``(labels, outputs, sample_weight=None) -> loss of each example`` (for Taylor);
        ``outputs`` in ``model.outputs`` order."""
        return example_loss(model, self._loss(model), self.loss_weights)

    def training_loss(self, model: keras.Model) -> Any:
        """The loss ``fit`` minimizes (with the settings' label smoothing when it is ours)."""
        loss = self._loss(model)
        return loss_for(model, self.settings.label_smoothing) if loss is None else loss

    def _loss(self, model: keras.Model) -> Any:
        return self.loss if self.loss is not None else _compiled_arguments(model).get("loss")

    def _metrics(self, model: keras.Model) -> Any:
        if self.metrics is not None:
            return self.metrics
        return ["accuracy"] if len(model.outputs) == 1 else None

    def monitor_name(self, model: keras.Model) -> str:
        """The metric the accuracy budget watches (see the ``monitor`` attribute)."""
        if self.monitor is not None:
            return self.monitor
        metrics = self._metrics(model) or []
        names = output_names(model)
        per_output = metrics if isinstance(metrics, dict) else dict(enumerate(metrics))
        for key, entry in per_output.items():
            entries = entry if isinstance(entry, (list, tuple)) else [entry]
            if not entries or entries[0] is None:
                continue
            name = _metric_name(entries[0])
            if isinstance(metrics, dict) or (len(names) > 1 and isinstance(entry, (list, tuple))):
                output = key if isinstance(key, str) else names[key]
                return f"{output}_{name}" if len(names) > 1 else name
            return name
        return "loss"

    def higher_is_better(self, model: keras.Model) -> bool:
        return not lower_is_better(self.monitor_name(model))

    # --- training -------------------------------------------------------------
    def compile(self, model: keras.Model, total_steps: int) -> keras.Model:
        """Compiles ``model`` in place: the setup's loss and metrics, and its optimizer
        (the given one, or the settings' with its learning-rate schedule)."""
        model.compile(
            optimizer=self._optimizer(total_steps),
            loss=self.training_loss(model),
            loss_weights=self.loss_weights,
            metrics=_fresh(self._metrics(model)),
        )
        return model

    def _optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        if self.optimizer is not None:
            optimizer = keras.optimizers.get(self.optimizer)
            return type(optimizer).from_config(optimizer.get_config())  # one per model
        schedule = self._schedule(total_steps)
        if self.optimizer_template is not None:  # its class and hyperparameters, our schedule
            template = keras.optimizers.get(self.optimizer_template)
            return type(template).from_config({**template.get_config(), "learning_rate": schedule})
        settings = self.settings
        if settings.optimizer == "sgd":
            return keras.optimizers.SGD(
                schedule,
                momentum=settings.momentum,
                nesterov=True,
                weight_decay=settings.weight_decay or None,
            )
        if settings.optimizer == "adam":
            return keras.optimizers.Adam(schedule)
        return keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay)

    def _schedule(self, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
        """A linear warm-up over ``warmup_epochs``, then cosine decay to zero at the last step."""
        settings = self.settings
        warmup_steps = 0
        if settings.warmup_epochs and total_steps > 1:
            warmup_steps = min(total_steps - 1, int(settings.warmup_epochs * total_steps))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=settings.learning_rate * (0.1 if warmup_steps else 1.0),
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=settings.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )

    def fit(
        self,
        model: keras.Model,
        train_data: Any,
        val_data: Any = None,
        *,
        epochs: float = 1,
        steps_per_epoch: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        progress: bool = True,
        description: str = "train",
        epochs_done: int = 0,
    ) -> keras.callbacks.History:
        """Compiles and trains ``model`` in place; stops on a NaN or infinite loss.

        Args:
            model: The model to train (modified in place).
            train_data: Anything `kprune.data.as_dataset` takes (a `Split`,
                tf.data, ``(x, y[, sample_weight])`` arrays, a PyDataset, a
                generator). Repeated as needed.
            val_data: Evaluated after every epoch, if given.
            epochs: Number of epochs; a fraction trains part of an epoch.
            steps_per_epoch: Batches per epoch; defaults to one pass over the data.
            callbacks: Extra Keras callbacks.
            progress: Show a rich progress bar.
            description: Label of the progress bar.
            epochs_done: Epochs a resumed training (a ``BackupAndRestore``
                callback) has already trained; their batches are drawn and
                dropped, so the later epochs see the data an uninterrupted
                run would.

        Returns:
            The Keras ``History``.

        Raises:
            TrainingDivergedError: At the first batch whose loss or updated
                weights are NaN or infinite, naming the cause: NaN in the data
                (one pass over it is searched), the loss, or the gradients.
        """
        dataset = as_dataset(train_data)
        if steps_per_epoch is None:
            steps_per_epoch = batches_per_epoch(train_data, dataset)
        if steps_per_epoch is None:
            raise InvalidArgumentError("Cannot tell how many batches the dataset has; pass steps_per_epoch.")
        total_steps = max(1, int(round(epochs * steps_per_epoch)))
        whole_epochs = max(1, math.ceil(total_steps / steps_per_epoch))
        steps_per_epoch = min(steps_per_epoch, total_steps)
        if self.distillation is not None and self.teacher is not None:
            # The student's own layers in a graph whose loss adds the teacher's term.
            kinds = distillation_kinds(model, self._loss(model))
            model = DistillingModel(model, self.teacher, kinds, self.distillation)
        self.compile(model, total_steps)

        guard = _FiniteGuard()
        all_callbacks = [guard, CheckInterrupts(), *callbacks]
        if progress:
            all_callbacks.append(KerasProgress(description))
        strategy = tf.distribute.get_strategy()
        if is_multi_worker(strategy):
            if epochs_done:
                raise InvalidArgumentError("Resuming a training is not supported across workers.")
            if val_data is not None:
                raise InvalidArgumentError(
                    "Validation during fit is not supported across workers. "
                    "Fix: pass val_data=None and call evaluate() after fit."
                )
            history = fit_multi_worker(
                model,
                dataset,
                strategy,
                epochs=whole_epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=all_callbacks,
            )
        else:
            history = model.fit(
                dataset.repeat().skip(epochs_done * steps_per_epoch),
                validation_data=None if val_data is None else as_dataset(val_data),
                epochs=whole_epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=all_callbacks,
                shuffle=False,  # the pipeline shuffles; Keras would only warn that it cannot
                verbose=0,
            )
        if guard.stopped_at is not None:
            raise guard.error(model, dataset, steps_per_epoch)
        return history

    def finetune(
        self,
        model: keras.Model,
        data: Any,
        steps: int,
        *,
        learning_rate: float | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> keras.Model:
        """Fine-tunes ``model`` for ``steps`` batches and returns it (or what
        ``finetune_fn`` returns). ``learning_rate`` replaces the settings' for
        this call (e.g. a final fine-tune with its own rate)."""
        if self.finetune_fn is not None:
            tuned = self.finetune_fn(model, data, steps)
            if not isinstance(tuned, keras.Model):
                raise InvalidArgumentError(
                    f"The finetune callable must return the fine-tuned keras.Model. "
                    f"Received {type(tuned).__name__}."
                )
            broken = non_finite_weights(tuned)
            if broken:
                raise TrainingDivergedError(
                    f"The finetune callable left NaN or infinite weights in layer(s) {', '.join(broken[:5])}. "
                    "Fix: check its data and learning rate."
                )
            return tuned
        setup = self
        if learning_rate is not None:
            setup = replace(self, settings=replace(self.settings, learning_rate=learning_rate))
        setup.fit(model, data, epochs=1, steps_per_epoch=steps, callbacks=callbacks, progress=False)
        return model

    # --- evaluation -----------------------------------------------------------
    def evaluate(self, model: keras.Model, data: Any, progress: bool = False) -> dict[str, float]:
        """The loss and every metric of ``model`` on ``data`` (one pass), by Keras' own
        ``evaluate``, and ``examples``: how many examples that pass saw.

        Accuracies count a NaN or infinite prediction as wrong
        (`kprune.training.accuracy.FiniteAccuracy`), never as the argmax of NaN.

        The model is used as is: a new graph over the same layers is compiled,
        so the model's own compile state does not change.
        """
        dataset = as_dataset(data)
        view = keras.Model(model.inputs, model.outputs, name=model.name)
        loss = self._loss(model)
        view.compile(
            loss=loss if loss is not None else loss_for(model),  # no label smoothing
            loss_weights=self.loss_weights,
            metrics=finite_accuracies(_fresh(self._metrics(model))),
        )
        callbacks = [
            CheckInterrupts(),
            *([EvaluateProgress(batches_per_epoch(data, dataset))] if progress else []),
        ]
        examples = tf.Variable(0, dtype=tf.int64, trainable=False)

        def count(*batch):
            examples.assign_add(tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.int64))
            return batch

        result = view.evaluate(dataset.map(count), return_dict=True, verbose=0, callbacks=callbacks)
        if int(examples.numpy()) == 0:
            raise InvalidArgumentError("Cannot evaluate on an empty dataset.")
        return {**{key: float(value) for key, value in result.items()}, "examples": int(examples.numpy())}

    def near_chance(self, model: keras.Model, metrics: dict, monitor: str) -> str | None:
        """Why a classifier's accuracy looks like guessing (within 20% of 1/classes), or None."""
        if not monitor.endswith("accuracy") or "top_k" in monitor or len(model.outputs) != 1:
            return None
        classes = model.outputs[0].shape[-1] or 0
        value = metrics.get(monitor)
        if classes < 2 or value is None or value > 1.2 / classes:
            return None
        return (
            f"Before pruning, the model scores {value:.1%} {monitor} on the validation data: "
            f"about chance for {classes} classes ({1 / classes:.1%}), so its inputs or labels are "
            "probably not what it was trained on. Fix: check the preprocessing (--preprocess) "
            "and the labels, or pass check_chance=False (--no-chance-check) to prune anyway."
        )

    def check(self, model: keras.Model, data: Any, what: str = "training") -> None:
        """Runs the model and the per-example loss on one batch of ``data``, and checks
        that its first batches hold finite values (`kprune.training.checks.check_data`).
        ``what`` names the data in messages (``"training"``, ``"test"``…).

        Raises:
            InvalidArgumentError: Naming the problem and the fix, if the loss
                cannot be computed on the model's outputs and the data's labels.
        """
        first = list(as_dataset(data).take(CHECKED_BATCHES))  # read once, checked twice
        if not first:
            raise InvalidArgumentError("The data is empty: no batch to rank or fine-tune on.")
        batch = first[0]
        check_data(first, what)
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        if labels is None:
            raise InvalidArgumentError(
                "The data gives no labels: kprune needs (x, y) batches to compute the loss."
            )
        check_batch(model, batch, distillation_kinds(model, self._loss(model)), what)
        outputs = keras.tree.flatten(model(x, training=False))
        try:
            values = self.example_loss(model)(labels, outputs, sample_weight)
        except InvalidArgumentError:
            raise
        except Exception as error:  # any failure of the user's loss on these labels
            raise InvalidArgumentError(
                f"The loss ({_short(self._loss(model) or 'sparse categorical cross-entropy')}) "
                f"cannot be computed on the outputs of model {model.name!r} "
                f"{[tuple(o.shape) for o in outputs]} and the labels "
                f"{[tuple(t.shape) for t in keras.tree.flatten(labels)]}: {_first_line(error)} "
                "Fix: give labels that match the outputs, or the loss that fits them (loss=)."
            ) from None
        if tuple(values.shape) != (outputs[0].shape[0],):
            raise InvalidArgumentError(
                f"The loss gives shape {tuple(values.shape)} per batch, not one value per example. "
                "Fix: use a loss that reduces each example to one value."
            )


def predict_labels(model: keras.Model, data: Any) -> np.ndarray:
    """Top-1 class of every example of ``data``."""
    outputs = model.predict(as_dataset(data).map(lambda x, y: x), verbose=0)
    return np.argmax(outputs, axis=-1)


def _compiled_arguments(model: keras.Model) -> dict:
    """What ``model.compile()`` was given (loss, loss_weights, metrics), or {}."""
    if not getattr(model, "compiled", False):
        return {}
    config = keras_internals.compile_arguments(model)
    return {
        "loss": getattr(model, "loss", None) or config.get("loss"),
        "loss_weights": config.get("loss_weights"),
        "metrics": config.get("metrics"),
    }


def _fresh(metrics: Any) -> Any:
    """The metrics with every Metric object copied (they hold state of one model)."""

    def copy(metric):
        if isinstance(metric, keras.metrics.Metric):
            return type(metric).from_config(metric.get_config())
        return metric

    return keras.tree.map_structure(copy, metrics) if metrics is not None else None


def _metric_name(metric: Any) -> str:
    if isinstance(metric, str):
        return metric
    return getattr(metric, "name", None) or getattr(metric, "__name__", str(metric))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else getattr(value, "name", None) or repr(value)
    return str(text)[:80]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__).rstrip(".") + "."


class _FiniteGuard(keras.callbacks.Callback):
    """Stops ``fit`` at the first batch whose loss or updated weights are not finite.

    The weights are checked besides the loss because NaN inputs need not show in
    the loss (see `kprune.training.checks`): their gradients are NaN and the weights turn
    NaN under a finite loss. One sum of every trainable weight times 0 is NaN
    exactly when one of them is NaN or infinite: a single cheap op per batch.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at: int | None = None  # the training batch (1-based) that turned non-finite
        self.loss: float | None = None
        self._step = 0
        self._weights_finite = None

    def on_train_begin(self, logs=None):
        weights = self.model.trainable_weights

        @tf.function
        def weights_finite():
            sums = [tf.reduce_sum(tf.cast(weight.value, tf.float32) * 0.0) for weight in weights]
            return tf.math.is_finite(tf.add_n(sums)) if sums else tf.constant(True)

        self._weights_finite = weights_finite

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        loss = (logs or {}).get("loss")
        if (loss is not None and not np.isfinite(loss)) or not bool(self._weights_finite()):
            self.stopped_at, self.loss = self._step, None if loss is None else float(loss)
            self.model.stop_training = True

    def error(self, model: keras.Model, dataset: Any, batches: int) -> TrainingDivergedError:
        """Why training stopped: NaN in the data (one pass over it is searched),
        a non-finite loss, or non-finite gradients under a finite loss."""
        loss_broken = self.loss is not None and not np.isfinite(self.loss)
        what = f"the loss became {self.loss}" if loss_broken else "the weights turned NaN or infinite"
        found = first_non_finite(dataset, "training", batches)
        if found:
            return TrainingDivergedError(
                f"{found} (searched after {what} at training batch {self.stopped_at}). Fix: {CLEAN_DATA}."
            )
        if loss_broken:
            return TrainingDivergedError(
                f"The training loss became {self.loss} at step {self.stopped_at} on finite data: "
                "the training diverged. Fix: lower the learning rate (--lr)."
            )
        layers = ", ".join(non_finite_weights(model)[:5])
        return TrainingDivergedError(
            f"The weights of layer(s) {layers} turned NaN or infinite at step {self.stopped_at} under a "
            "finite loss, on finite data (non-finite gradients): the training diverged. "
            "Fix: lower the learning rate (--lr)."
        )
