"""The pruning loop on a small CNN trained on the synthetic dataset."""

import json

import keras
import numpy as np
import pytest

import kprune
from kprune.data import load
from kprune.errors import InvalidArgumentError, TrainingDivergedError
from kprune.surgery import replay
from kprune.training.setup import TrainingSetup, TrainSettings

SHAPE = (16, 16, 3)


def _model():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(24, 3, padding="same", name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    x = keras.layers.ReLU(name="relu_b")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_b")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # the synthetic classes are positions
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="small")


def train_stream(seed):
    return load("synthetic", "train", input_shape=SHAPE, batch_size=32, seed=seed)


@pytest.fixture(scope="module")
def val():
    return load("synthetic", "val", input_shape=SHAPE, batch_size=64)


@pytest.fixture(scope="module")
def trained(val):
    keras.utils.set_random_seed(0)
    model = _model()
    setup = TrainingSetup(TrainSettings(learning_rate=1e-2))
    setup.fit(model, train_stream(0), epochs=4, progress=False)
    accuracy = setup.evaluate(model, val)["accuracy"]
    assert accuracy > 0.6, accuracy  # a model worth pruning
    return model


QUICK = dict(finetune_steps=3, final_finetune_epochs=0.1, rank_batches=2, progress=False)


def test_target_params_is_reached_and_history_replays(trained, val, tmp_path):
    before = [w.copy() for w in trained.get_weights()]
    result = kprune.prune(
        trained,
        train_stream,
        val,
        target_params=0.5,
        filters_per_step=8,
        run_dir=tmp_path,
        snapshots=[0.2, 0.4],
        **QUICK,
    )
    assert kprune.count_params(result.model) <= 0.5 * kprune.count_params(trained)
    assert result.report["stop_reason"] == "target reached"
    for old, new in zip(before, trained.get_weights()):
        np.testing.assert_array_equal(old, new)  # the input model is untouched
    replayed = replay(trained, result.history)
    assert [w.shape for w in replayed.weights] == [w.shape for w in result.model.weights]
    steps = json.loads((tmp_path / "report.json").read_text())["steps"]
    assert steps[0]["step"] == 0 and steps[-1]["phase"] == "final"
    assert all({"removed", "params", "flops", "val_accuracy", "val_loss", "seconds"} <= set(s) for s in steps)
    for name in (
        "pruned.keras",
        "history.json",
        "accuracy_vs_params.png",
        "filters_per_layer.png",
        "timeline.png",
    ):
        assert (tmp_path / name).is_file(), name
    keras.models.load_model(tmp_path / "pruned.keras")
    for fraction in (0.2, 0.4):
        snapshot = keras.models.load_model(tmp_path / "snapshots" / f"params-{round(100 * fraction)}.keras")
        assert 1 - snapshot.count_params() / trained.count_params() >= fraction


def _hand_flops(model):
    """2 × multiply-accumulates of the convolutions and the dense layer, from their weight shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def test_flops_target_saves_snapshots_at_fractions_of_flops(trained, val, tmp_path):
    kprune.prune(
        trained,
        train_stream,
        val,
        target_flops=0.5,
        filters_per_step=4,
        run_dir=tmp_path,
        snapshots=[0.2, 0.4],
        **QUICK,
    )
    assert not list((tmp_path / "snapshots").glob("params-*"))
    for fraction in (0.2, 0.4):
        snapshot = keras.models.load_model(tmp_path / "snapshots" / f"flops-{round(100 * fraction)}.keras")
        removed = 1 - _hand_flops(snapshot) / _hand_flops(trained)
        assert fraction <= removed < fraction + 0.15, (fraction, removed)  # the first step past it


def test_accuracy_budget_rolls_back_the_step_that_broke_it(trained, val):
    result = kprune.prune(
        trained,
        train_stream,
        val,
        criterion="random",
        max_accuracy_drop=0.0,
        filters_per_step=12,
        finetune_steps=0,
        final_finetune_epochs=0,
        rank_batches=1,
        progress=False,
    )
    steps = result.report["steps"]
    rolled = [s for s in steps if s.get("rolled_back")]
    assert len(rolled) == 1
    assert "rolled back" in result.report["stop_reason"]
    kept = [s for s in steps if not s.get("rolled_back")]
    assert result.model.count_params() == kept[-1]["params"]
    assert 100 * (steps[0]["val_accuracy"] - rolled[0]["val_accuracy"]) > 0.0
    assert all(100 * (steps[0]["val_accuracy"] - s["val_accuracy"]) <= 0.0 for s in kept)


def test_round_to_and_minimum_are_respected(trained, val):
    result = kprune.prune(
        trained,
        train_stream,
        val,
        target_filters=0.7,
        round_to=4,
        min_filters_per_layer=6,
        filters_per_step=12,
        **QUICK,
    )
    for name in ("conv_a", "conv_b"):
        filters = result.model.get_layer(name).filters
        assert filters % 4 == 0 and filters >= 8, (name, filters)  # 6 rounded up to 8


def test_ignored_layers_keep_their_filters(trained, val):
    result = kprune.prune(
        trained, train_stream, val, target_filters=10, ignore=["conv_a"], filters_per_step=5, **QUICK
    )
    assert result.model.get_layer("conv_a").filters == 16
    assert result.model.get_layer("conv_b").filters == 14


class _Kill(keras.callbacks.Callback):
    """Stands for a kill: raises in the middle of the n-th fine-tune."""

    def __init__(self, at_fit: int):
        super().__init__()
        self.at_fit, self.fits = at_fit, 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.fits == self.at_fit and batch == 1:
            raise KeyboardInterrupt


def test_resume_after_a_kill_equals_an_uninterrupted_run(trained, val, tmp_path):
    options = dict(target_params=0.5, filters_per_step=8, seed=3, **QUICK)
    whole = kprune.prune(trained, train_stream, val, run_dir=tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        kprune.prune(
            trained, train_stream, val, run_dir=tmp_path / "killed", callbacks=[_Kill(at_fit=3)], **options
        )
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2  # steps 1 and 2 completed; step 3 was killed
    resumed = kprune.prune(trained, train_stream, val, run_dir=tmp_path / "killed", resume=True, **options)
    assert resumed.history.steps == whole.history.steps
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    finished = kprune.prune(trained, train_stream, val, run_dir=tmp_path / "killed", resume=True, **options)
    assert finished.history.steps == whole.history.steps  # a finished run resumes to itself


def test_resume_refuses_other_settings_and_missing_runs(trained, val, tmp_path):
    with pytest.raises(InvalidArgumentError, match="Nothing to resume"):
        kprune.prune(trained, train_stream, val, run_dir=tmp_path, resume=True, target_params=0.5, **QUICK)
    kprune.prune(trained, train_stream, val, run_dir=tmp_path, target_filters=4, filters_per_step=4, **QUICK)
    with pytest.raises(InvalidArgumentError, match=r"used other settings \(filters_per_step"):
        kprune.prune(
            trained,
            train_stream,
            val,
            run_dir=tmp_path,
            resume=True,
            target_filters=4,
            filters_per_step=2,
            **QUICK,
        )


def test_diverging_finetune_keeps_the_last_good_checkpoint(trained, val, tmp_path):
    with pytest.raises(TrainingDivergedError, match=f"pruning step 1.*last good checkpoint is in {tmp_path}"):
        kprune.prune(
            trained, train_stream, val, run_dir=tmp_path, target_params=0.5, learning_rate=1e12, **QUICK
        )
    model, state = kprune.pruning.checkpoint.load(tmp_path)
    assert state["step"] == 0
    assert model.count_params() == trained.count_params()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"target_params": 1.5}, r"`target_params`: Input should be less than 1. Received target_params=1.5"),
        ({"target_params": 0.5, "target_flops": 0.5}, "give one target, not 2"),
        ({"target_params": 0.5, "filters_per_stp": 3}, "`filters_per_stp`: unknown key"),
        ({}, "Give a target"),
        ({"target_params": 0.5, "criterion": "tailor"}, "Unknown criterion 'tailor'"),
    ],
)
def test_bad_options_are_refused_before_any_work(trained, val, options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        kprune.prune(trained, train_stream, val, progress=False, **options)


def test_a_step_that_prunes_the_network_dead_is_rolled_back(trained, val, monkeypatch):
    from kprune.pruning import loop
    from kprune.training.checks import output_spread

    real = loop._Loop._finetune

    def finetune_that_kills_step_2(self, model, step, *args, **kwargs):
        model = real(self, model, step, *args, **kwargs)
        if step == 2:  # the fault: every channel before the head dead (ReLU of a negative constant)
            gamma, beta, mean, variance = model.get_layer("bn_b").get_weights()
            model.get_layer("bn_b").set_weights([0 * gamma, beta * 0 - 1, mean, variance])
        return model

    monkeypatch.setattr(loop._Loop, "_finetune", finetune_that_kills_step_2)
    result = kprune.prune(trained, train_stream, val, target_filters=0.8, filters_per_step=4, **QUICK)
    steps = [s for s in result.report["steps"] if "phase" not in s]
    assert [s["step"] for s in steps] == [0, 1, 2] and steps[-1]["rolled_back"]
    assert result.report["stop_reason"].startswith("step 2 left the model's outputs the same for every input")
    assert "rolled back to step 1" in result.report["stop_reason"]
    # the model returned is step 1's, fine-tuned: it still classifies
    assert result.model.count_params() == steps[1]["params"]
    assert TrainingSetup(TrainSettings()).evaluate(result.model, val)["accuracy"] > 0.5
    assert output_spread(result.model, next(iter(val))) > 0.1


def test_the_output_spread_is_the_widest_range_of_an_output_across_the_batch(trained, val):
    from kprune.training.checks import output_spread

    x = next(iter(val))[0]
    outputs = trained.predict(x, verbose=0)
    expected = max(outputs[:, j].max() - outputs[:, j].min() for j in range(outputs.shape[1]))  # NumPy oracle
    assert output_spread(trained, (x, None)) == pytest.approx(float(expected), rel=1e-5) and expected > 0.1
    dead = keras.models.clone_model(trained)
    dead.set_weights(trained.get_weights())
    kernel, bias = dead.get_layer("logits").get_weights()
    dead.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    assert output_spread(dead, (x, None)) == 0.0
