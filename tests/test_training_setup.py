"""The training setup: which loss it takes, per example, and a fine-tune of N steps."""

import keras
import numpy as np
import pytest

from kprune.data import as_dataset, batches_per_epoch
from kprune.errors import InvalidArgumentError
from kprune.training.setup import TrainingSetup, TrainSettings


def _model(softmax=True):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax" if softmax else None)(inputs))


def _arrays(count=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 4)).astype("float32"), rng.integers(0, 3, size=count)


def test_example_loss_is_per_example_cross_entropy_by_default():
    model = _model(softmax=False)
    images, labels = _arrays()
    logits = model(images).numpy()
    losses = np.asarray(TrainingSetup().example_loss(model)(labels, logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(losses, -log_softmax[np.arange(10), labels], rtol=1e-5)


def test_example_loss_takes_the_compiled_loss_then_the_given_one():
    model = _model()
    images, labels = _arrays()
    probabilities = model(images).numpy()
    model.compile(loss=keras.losses.MeanSquaredError())
    one_hot = np.eye(3)[labels]
    compiled = np.asarray(TrainingSetup().example_loss(model)(one_hot, probabilities))
    np.testing.assert_allclose(compiled, ((one_hot - probabilities) ** 2).mean(axis=1), rtol=1e-5)
    given = TrainingSetup(loss="mean_absolute_error").example_loss(model)(one_hot, probabilities)
    np.testing.assert_allclose(np.asarray(given), np.abs(one_hot - probabilities).mean(axis=1), rtol=1e-5)


def test_an_output_the_loss_dict_leaves_out_adds_nothing_as_in_keras():
    """loss={"a": mse, "b": None}: Keras trains "a" only; so does the per-example loss,
    and labels for "b" may be left out."""
    inputs = keras.Input((4,))
    a = keras.layers.Dense(2, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    model = keras.Model(inputs, [a, b])
    model.compile(loss={"a": "mse", "b": None}, loss_weights={"a": 2.0, "b": None})
    images, _ = _arrays()
    outputs = [o.numpy() for o in model(images)]
    targets = np.random.default_rng(1).normal(size=(10, 2)).astype("float32")
    expected = 2.0 * ((outputs[0] - targets) ** 2).mean(axis=1)
    loss = TrainingSetup.for_model(model).example_loss(model)
    np.testing.assert_allclose(np.asarray(loss({"a": targets}, outputs)), expected, rtol=1e-5)
    keras_value = model.compute_loss(images, {"a": targets, "b": np.zeros((10, 3))}, model(images))
    np.testing.assert_allclose(float(keras_value), expected.mean(), rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"has 2 outputs .* and no loss"):
        TrainingSetup(loss={"a": None, "b": None}).example_loss(model)


def test_finetune_runs_the_given_steps_at_the_given_learning_rate():
    model = _model()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    setup = TrainingSetup(TrainSettings(optimizer="sgd", learning_rate=0.5, warmup_epochs=0))
    data = as_dataset(_arrays(40), batch_size=8)
    assert setup.finetune(model, data, 3, learning_rate=0.1, callbacks=[Record()]) is model
    assert len(seen) == 3
    assert seen[0] == pytest.approx(0.1)  # cosine decay starts at the given rate
    assert setup.settings.learning_rate == 0.5  # the setup itself is unchanged


def test_batches_per_epoch_from_cardinality_or_unknown():
    data = as_dataset(_arrays(20), batch_size=8)
    assert batches_per_epoch(data) == 3
    assert batches_per_epoch(data.repeat()) is None
