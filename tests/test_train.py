"""Training helpers: fit learns, the NaN guard, evaluate, loss choice, seeding."""

import keras
import numpy as np
import pytest

from kprune.data import as_dataset, load
from kprune.errors import InvalidArgumentError, TrainingDivergedError
from kprune.models import squeezenet
from kprune.training.determinism import deterministic, seed_everything
from kprune.training.losses import loss_for, outputs_probabilities
from kprune.training.setup import TrainingSetup, TrainSettings, predict_labels

FAST = TrainSettings(optimizer="adam", learning_rate=3e-3, warmup_epochs=0)


def position_model(dropout=0.0):
    """Keeps spatial positions (Flatten), which the synthetic classes are told apart by."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Dropout(dropout)(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


@pytest.fixture
def synthetic_splits():
    common = dict(input_shape=(16, 16, 3))
    return load("synthetic", "train", batch_size=32, **common), load(
        "synthetic", "test", batch_size=80, **common
    )


def test_fit_improves_accuracy(synthetic_splits):
    train, test = synthetic_splits
    keras.utils.set_random_seed(0)
    model = position_model()
    before = TrainingSetup().evaluate(model, test)["accuracy"]
    history = TrainingSetup(FAST).fit(model, train, test, epochs=2, progress=False)
    after = TrainingSetup().evaluate(model, test)["accuracy"]
    assert before < 0.3 and after > 0.8
    assert len(history.history["loss"]) == 2
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] == pytest.approx(after, abs=1e-6)


def test_fractional_epochs_train_part_of_an_epoch(synthetic_splits):
    train, _ = synthetic_splits  # 576 examples → 18 batches of 32
    steps = []

    class CountSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    TrainingSetup(FAST).fit(position_model(), train, epochs=0.5, callbacks=[CountSteps()], progress=False)
    assert train.num_batches == 18 and len(steps) == 9


def test_nan_layer_stops_training(synthetic_splits):
    train, _ = synthetic_splits
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * float("nan"))(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    steps = []

    class CountSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    with pytest.raises(
        TrainingDivergedError,
        match=r"The training loss became nan at step 1 on finite data: the "
        r"training diverged\. Fix: lower the learning rate \(--lr\)",
    ):
        TrainingSetup(FAST).fit(
            keras.Model(inputs, outputs), train, epochs=3, callbacks=[CountSteps()], progress=False
        )
    assert len(steps) == 1  # stopped at once, not after three epochs


def test_huge_learning_rate_diverges(synthetic_splits, tiny_cnn_factory):
    train, _ = synthetic_splits
    keras.utils.set_random_seed(0)
    settings = TrainSettings(optimizer="sgd", learning_rate=1e6, warmup_epochs=0)
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        TrainingSetup(settings).fit(tiny_cnn_factory(softmax=False), train, epochs=1, progress=False)


@pytest.mark.parametrize("softmax", [True, False])
def test_evaluate_matches_numpy(tiny_arrays, softmax, tiny_cnn_factory):
    images, labels = tiny_arrays
    keras.utils.set_random_seed(1)
    model = tiny_cnn_factory(softmax=softmax)
    outputs = model.predict(images, verbose=0).astype(np.float64)
    if not softmax:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        outputs = shifted / shifted.sum(axis=1, keepdims=True)
    expected_accuracy = np.mean(outputs.argmax(axis=1) == labels)
    expected_loss = -np.mean(np.log(outputs[np.arange(len(labels)), labels]))
    result = TrainingSetup().evaluate(model, (images, labels))  # 48 examples: batches of 64 → one
    assert result["examples"] == 48
    assert result["accuracy"] == pytest.approx(expected_accuracy, abs=1e-9)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-4)
    result = TrainingSetup().evaluate(model, as_dataset((images, labels), batch_size=20))  # 20 + 20 + 8
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-4)
    np.testing.assert_array_equal(predict_labels(model, (images, labels)), outputs.argmax(axis=1))


def test_evaluate_empty_dataset(tiny_cnn):
    empty = (np.zeros((0, 16, 16, 3), "float32"), np.zeros((0,), "int32"))
    with pytest.raises(InvalidArgumentError, match="Cannot evaluate on an empty dataset"):
        TrainingSetup().evaluate(tiny_cnn, empty)


def test_evaluate_leaves_compile_state(tiny_cnn, tiny_arrays):
    TrainingSetup().evaluate(tiny_cnn, tiny_arrays)
    assert not tiny_cnn.compiled


def test_outputs_probabilities(tiny_cnn_factory):
    assert outputs_probabilities(tiny_cnn_factory(softmax=True))
    assert not outputs_probabilities(tiny_cnn_factory(softmax=False))
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(3)(inputs)
    assert outputs_probabilities(keras.Model(inputs, keras.layers.Softmax()(logits)))
    assert outputs_probabilities(keras.Model(inputs, keras.layers.Activation("softmax")(logits)))
    assert not outputs_probabilities(keras.Model(inputs, keras.layers.Activation("relu")(logits)))
    assert outputs_probabilities(squeezenet("1.1", (32, 32, 3), 10, stem="cifar"))
    raw = squeezenet("1.1", (32, 32, 3), 10, stem="cifar", classifier_activation=None)
    assert not outputs_probabilities(raw)
    # A model that ends in a nested model ending in softmax.
    outer_inputs = keras.Input((16, 16, 3))
    nested = keras.Model(outer_inputs, tiny_cnn_factory()(outer_inputs))
    assert outputs_probabilities(nested)


def test_loss_matches_output_kind(tiny_cnn_factory):
    probabilities = tiny_cnn_factory(softmax=True)
    logits = tiny_cnn_factory(softmax=False)
    assert loss_for(probabilities).get_config()["from_logits"] is False
    assert loss_for(logits).get_config()["from_logits"] is True


def test_label_smoothing_loss_matches_numpy():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
    labels = np.array([0, 1])
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    smoothing = 0.1
    targets = np.full((2, 3), smoothing / 3) + (1 - smoothing) * np.eye(3)[labels]
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean((targets * log_probabilities).sum(axis=1))
    loss = loss_for(model, label_smoothing=smoothing)(labels, logits)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_schedule_warms_up_then_decays(tiny_cnn_factory):
    model = tiny_cnn_factory()
    settings = TrainSettings(optimizer="sgd", learning_rate=0.1, warmup_epochs=0.25)
    TrainingSetup(settings).compile(model, total_steps=100)

    def rate_at(step):
        model.optimizer.iterations.assign(step)
        return float(model.optimizer.learning_rate)

    assert rate_at(0) == pytest.approx(0.01)  # warm-up starts at lr / 10
    assert rate_at(25) == pytest.approx(0.1)  # peak after 25 warm-up steps
    # then cosine decay over the 75 remaining steps: 0.1 · (1 + cos(π · 30 / 75)) / 2
    assert rate_at(55) == pytest.approx(0.1 * (1 + np.cos(np.pi * 30 / 75)) / 2, rel=1e-5)
    assert rate_at(100) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"optimizer": "rmsprop"},
            r"`optimizer` must be one of \('sgd', 'adam', 'adamw'\). "
            r"Received optimizer='rmsprop'",
        ),
        ({"learning_rate": 0.0}, r"`learning_rate` must be positive. Received learning_rate=0.0"),
    ],
)
def test_settings_validation(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        TrainSettings(**kwargs)


def test_seeded_runs_are_reproducible():
    def run(seed):
        with deterministic():
            seed_everything(seed)  # then build data and model, as train_and_save does
            train = load(
                "synthetic", "train", input_shape=(16, 16, 3), batch_size=32, augment=True, seed=seed
            )
            model = position_model(dropout=0.3)
            TrainingSetup(FAST).fit(model, train, epochs=0.5, progress=False)
            return model.get_weights()

    first, second, other = run(3), run(3), run(4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_determinism_is_restored_after_the_block():
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    with deterministic():
        assert tf_config.is_op_determinism_enabled()
    assert tf_config.is_op_determinism_enabled() == before
