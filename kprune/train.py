"""Compile, fit and evaluate helpers shared by `kprune train` and the pruning loop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from kprune.data import as_dataset
from kprune.errors import InvalidArgumentError, TrainingDivergedError

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


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether the model ends in a softmax (else its outputs are logits)."""
    layer = model.outputs[0]._keras_history.operation
    if isinstance(layer, keras.Model):  # ends in a nested model: ask its own last layer
        return outputs_probabilities(layer)
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(activation, "__name__", "") == "softmax"


def loss_for(model: keras.Model, label_smoothing: float = 0.0) -> keras.losses.Loss:
    """Categorical cross-entropy on integer labels, matched to the model's output."""
    from_logits = not outputs_probabilities(model)
    if label_smoothing:
        return _SmoothedSparseCrossentropy(from_logits, label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


class _SmoothedSparseCrossentropy(keras.losses.Loss):
    # SparseCategoricalCrossentropy has no label smoothing: one-hot the labels inside.
    def __init__(self, from_logits: bool, label_smoothing: float, **kwargs):
        super().__init__(name=kwargs.pop("name", "smoothed_crossentropy"), **kwargs)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), keras.ops.shape(y_pred)[:-1])
        return keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1]), y_pred,
            from_logits=self.from_logits, label_smoothing=self.label_smoothing,
        )  # fmt: skip

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


def compile_model(
    model: keras.Model, settings: TrainSettings, total_steps: int
) -> keras.Model:
    """Compiles ``model`` in place with the optimizer and schedule of ``settings``."""
    warmup_steps = 0
    if settings.warmup_epochs and total_steps > 1:
        warmup_steps = min(total_steps - 1, int(settings.warmup_epochs * total_steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=settings.learning_rate * (0.1 if warmup_steps else 1.0),
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=settings.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    if settings.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=settings.momentum, nesterov=True,
            weight_decay=settings.weight_decay or None,
        )
    elif settings.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=loss_for(model, settings.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def fit(
    model: keras.Model,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: float = 1,
    settings: TrainSettings | None = None,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: bool = True,
    description: str = "train",
) -> keras.callbacks.History:
    """Compiles and trains ``model`` in place; stops on a NaN or infinite loss.

    Args:
        model: The model to train (modified in place).
        train_data: A `kprune.data.Split`, a tf.data.Dataset of batches or
            ``(x, y)`` arrays. Repeated as needed.
        val_data: Evaluated after every epoch, if given.
        epochs: Number of epochs; a fraction trains part of an epoch.
        settings: Optimizer and schedule; `TrainSettings()` by default.
        steps_per_epoch: Batches per epoch; defaults to one pass over the data.
        callbacks: Extra Keras callbacks.
        progress: Show a rich progress bar.
        description: Label of the progress bar.

    Returns:
        The Keras ``History``.

    Raises:
        TrainingDivergedError: If the loss becomes NaN or infinite.
    """
    settings = settings or TrainSettings()
    dataset = as_dataset(train_data)
    if steps_per_epoch is None:
        steps_per_epoch = _num_batches(train_data, dataset)
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    whole_epochs = max(1, math.ceil(total_steps / steps_per_epoch))
    steps_per_epoch = min(steps_per_epoch, total_steps)
    compile_model(model, settings, total_steps)

    guard = _DivergenceGuard()
    all_callbacks = [guard, *callbacks]
    if progress:
        from kprune.progress import KerasProgress

        all_callbacks.append(KerasProgress(description))
    history = model.fit(
        dataset.repeat(),
        validation_data=None if val_data is None else as_dataset(val_data),
        epochs=whole_epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=all_callbacks,
        shuffle=False,  # the pipeline shuffles; Keras would only warn that it cannot
        verbose=0,
    )
    if guard.diverged_at is not None:
        raise TrainingDivergedError(
            f"The training loss became {guard.loss} at step {guard.diverged_at}. "
            "Fix: lower the learning rate (--lr) or check the input data."
        )
    return history


def evaluate(model: keras.Model, data: Any, progress: bool = False) -> dict[str, float]:
    """Loss and top-1 accuracy of ``model`` on ``data`` (one pass).

    The model is used as is; its compile state is not changed.
    """
    dataset = as_dataset(data)
    loss_fn = loss_for(model)
    total_loss = total_correct = total = 0.0

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        outputs = model(images, training=False)
        losses = loss_fn(labels, outputs) * tf.cast(tf.shape(labels)[0], tf.float32)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), labels), tf.float32)
        )
        return losses, correct

    iterator = dataset
    if progress:
        from kprune.progress import track

        iterator = track(dataset, description="evaluate", total=_num_batches(data, dataset))
    for images, labels in iterator:
        batch_loss, correct = step(images, tf.cast(labels, tf.int32))
        total_loss += float(batch_loss)
        total_correct += float(correct)
        total += int(labels.shape[0])
    if total == 0:
        raise InvalidArgumentError("Cannot evaluate on an empty dataset.")
    return {"loss": total_loss / total, "accuracy": total_correct / total, "examples": int(total)}


def predict_labels(model: keras.Model, data: Any) -> np.ndarray:
    """Top-1 class of every example of ``data``."""
    outputs = model.predict(as_dataset(data).map(lambda x, y: x), verbose=0)
    return np.argmax(outputs, axis=-1)


def _num_batches(original: Any, dataset: tf.data.Dataset) -> int:
    if hasattr(original, "num_batches"):
        return original.num_batches
    cardinality = int(dataset.cardinality())
    if cardinality <= 0:
        raise InvalidArgumentError(
            "Cannot tell how many batches the dataset has; pass steps_per_epoch."
        )
    return cardinality


class _DivergenceGuard(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.diverged_at = None
        self.loss = None
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.diverged_at, self.loss = self._step, float(loss)
            self.model.stop_training = True


def train_and_save(
    model: str | keras.Model,
    dataset: str,
    out: str,
    *,
    epochs: float = 30,
    batch_size: int = 128,
    settings: TrainSettings | None = None,
    augment: bool = True,
    seed: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
    model_options: dict | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Trains a model on a dataset, saves it and its model card; returns the card.

    The model is a ``.keras`` path, a registered name (built for the
    dataset's image shape and classes) or a ``keras.Model``. Validation data
    is the held-out part of train; the test split is evaluated once, at the end.
    """
    import time

    from kprune.card import command_line, environment, read_card, write_card
    from kprune.data import dataset_info, load
    from kprune.metrics import count_flops, count_params
    from kprune.modelio import load_model, resolve_model_path, save_model
    from kprune.models import build

    started = time.time()
    seed_everything(seed)
    info = dataset_info(dataset, data_dir=data_dir)
    source_card = None
    if isinstance(model, str) and not model.endswith(".keras"):
        network = build(model, info.image_shape, info.num_classes, **(model_options or {}))
    else:
        network = load_model(model)
        if isinstance(model, str):  # a saved model continues its history: keep its card
            source_card = read_card(resolve_model_path(model))
    input_shape = tuple(network.input_shape[1:])
    common = dict(input_shape=input_shape, data_dir=data_dir, seed=seed, limit=limit)
    train_split = load(dataset, "train", batch_size=batch_size, augment=augment, **common)
    val_split = load(dataset, "val", batch_size=256, **common)
    test_split = load(dataset, "test", batch_size=256, **common)
    settings = settings or TrainSettings()
    history = fit(network, train_split, val_split, epochs=epochs, settings=settings,
                  progress=progress)
    test = evaluate(network, test_split)
    save_model(network, out)
    card = {
        "model": network.name,
        "architecture": model if isinstance(model, str) else network.name,
        "dataset": dataset,
        "data_source": info.source,
        "train_examples": train_split.num_examples,
        "val_examples": val_split.num_examples,
        "test_examples": test_split.num_examples,
        "input_shape": list(input_shape),
        "preprocessing": train_split.preprocessing.to_dict(),
        "class_names": list(info.class_names),
        "epochs": epochs,
        "batch_size": batch_size,
        "augment": augment,
        "training": asdict(settings),
        "seed": seed,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "params": count_params(network),
        "flops": count_flops(network),
        "wall_time_s": round(time.time() - started, 1),
        "command": command or command_line(),
        **({"trained_from": {k: v for k, v in source_card.items() if k != "environment"}}
           if source_card else {}),
        "environment": environment(),
    }
    write_card(out, card)
    return card
