"""Defaults that fit the user's model: step size, fine-tune lengths, the compiled optimizer,
distillation in the loop, and the model kept within the accuracy budget."""

import json

import keras
import numpy as np
import pytest

import kprune
from kprune.data import load
from kprune.pruning import checkpoint
from kprune.training import recovery
from tests.test_schedule import SHAPE, _Kill, train_stream


def _cnn(width: int, name: str) -> keras.Model:
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name=name)


@pytest.fixture(scope="module")
def val():
    return load("synthetic", "val", input_shape=SHAPE, batch_size=64)


FAST = dict(
    criterion="l2_weight",
    finetune_steps=0,
    final_finetune_epochs=0,
    rank_batches=1,
    progress=False,
    check_chance=False,
)


def _rule_steps(channels: list[int], share: float, fraction: float) -> list[int]:
    """The step rule, written out: each step removes `fraction` of the channels that can still
    go (each layer keeps one), at least one, until `share` of all channels are gone."""
    total, removed, counts = sum(channels), 0, []
    while removed < round(share * total):
        removable = total - removed - len(channels)
        count = min(max(1, int(round(fraction * removable))), round(share * total) - removed)
        counts.append(count)
        removed += count
    return counts


@pytest.mark.parametrize("width", [8, 64])
def test_each_step_removes_a_share_of_what_can_still_go(width, val):
    model = _cnn(width, f"cnn{width}")
    result = kprune.prune(model, train_stream, val, target_filters=0.5, **FAST)
    totals = [
        sum(step["filters"][name] for name in ("conv_a", "conv_b"))
        for step in result.report["steps"]
        if not step.get("phase")
    ]
    removed = [before - after for before, after in zip(totals, totals[1:])]
    assert removed == _rule_steps([width, width], 0.5, recovery.STEP_FRACTION)


def test_a_small_and_a_large_model_take_a_similar_number_of_steps(val):
    steps = {}
    for width in (16, 128):
        result = kprune.prune(_cnn(width, f"cnn{width}"), train_stream, val, target_filters=0.5, **FAST)
        steps[width] = len(result.history.steps)
    # 50% of the channels at 5% of what is left per step: log(0.5)/log(0.95) ≈ 13.5 steps
    assert 11 <= steps[16] <= 15 and 12 <= steps[128] <= 15, steps
    assert recovery.estimated_steps(0.5, 0.05) == 14


def test_an_absolute_step_still_works(val):
    result = kprune.prune(_cnn(16, "cnn"), train_stream, val, target_filters=8, filters_per_step=4, **FAST)
    assert len(result.history.steps) == 2


@pytest.mark.parametrize(
    "batches, per_step, final",
    [
        (27, 20, 270),  # a small dataset: 20 batches per step, 10 epochs at the end
        (844, 84, 8440),  # Fashion-MNIST at 64: a tenth of an epoch per step, 10 epochs at the end
        (5000, 200, 10_000),  # a large dataset: at most 200 per step, 10,000 batches at the end ...
        (20_000, 200, 20_000),  # ... but never less than one epoch
        (None, 20, 1000),  # a generator that cannot tell: 100 batches taken as an epoch
    ],
)
def test_finetune_lengths_scale_with_the_data(batches, per_step, final):
    assert recovery.finetune_steps(batches) == per_step
    assert recovery.final_finetune_steps(batches) == final


class _Optimizers(keras.callbacks.Callback):
    """Records the optimizer class and the learning rate at the start and end of every fit."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append(
            [
                type(self.model.optimizer).__name__,
                float(self.model.optimizer.learning_rate),
                self.params["steps"],
            ]
        )

    def on_train_end(self, logs=None):
        self.seen[-1].append(float(self.model.optimizer.learning_rate))


@pytest.mark.parametrize(
    "compiled, options, expected",
    [
        (keras.optimizers.Adam(3e-4), {}, ("Adam", 3e-4)),
        (keras.optimizers.Adam(3e-4), {"optimizer": "sgd"}, ("SGD", 0.01)),
        (keras.optimizers.Adam(3e-4), {"learning_rate": 1e-3}, ("Adam", 1e-3)),
        (None, {}, ("SGD", 0.01)),
    ],
)
def test_finetuning_uses_the_compiled_optimizer_with_cosine_decay(compiled, options, expected, val):
    model = _cnn(8, "cnn")
    if compiled is not None:
        model.compile(
            optimizer=compiled,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    recorder = _Optimizers()
    result = kprune.prune(
        model,
        train_stream,
        val,
        target_filters=2,
        filters_per_step=2,
        criterion="l2_weight",
        finetune_steps=3,
        final_finetune_epochs=0.2,
        rank_batches=1,
        progress=False,
        check_chance=False,
        callbacks=[recorder],
        **options,
    )
    (name, start, steps, end), (final_name, final_start, final_steps, final_end) = recorder.seen
    assert (name, final_name) == (expected[0], expected[0])
    np.testing.assert_allclose([start, final_start], expected[1], rtol=1e-6)
    assert steps == 3 and final_steps >= 1
    assert end == pytest.approx(0.0, abs=1e-9) and final_end == pytest.approx(0.0, abs=1e-9)  # cosine to 0
    # the report says what Keras saw
    recorded = result.report["fine_tuning"]
    assert (recorded["batches_per_step"], recorded["final_batches"]) == (steps, final_steps)
    np.testing.assert_allclose(
        [recorded["learning_rate"], recorded["final_learning_rate"]], expected[1], rtol=1e-6
    )
    assert recorded["description"].startswith(f"Fine-tuning: {expected[0]}")


class _TeacherOutputs(keras.callbacks.Callback):
    """The teacher's outputs on fixed images at the start and end of every distilled fit."""

    def __init__(self, images):
        super().__init__()
        self.images, self.outputs = images, []

    def on_train_begin(self, logs=None):
        self.outputs.append(np.asarray(self.model._teacher_outputs(self.images)[0]))

    def on_train_end(self, logs=None):
        self.outputs.append(np.asarray(self.model._teacher_outputs(self.images)[0]))


def test_the_teacher_is_the_frozen_unpruned_model_in_inference_mode(val):
    keras.utils.set_random_seed(0)
    model = _cnn(8, "cnn")
    weights = [w.copy() for w in model.get_weights()]
    images = next(iter(val.dataset))[0][:8]
    recorder = _TeacherOutputs(images)
    result = kprune.prune(
        model,
        train_stream,
        val,
        target_filters=4,
        filters_per_step=2,
        criterion="taylor",
        finetune_steps=4,
        final_finetune_epochs=0.2,
        rank_batches=1,
        progress=False,
        check_chance=False,
        distill=True,
        callbacks=[recorder],
    )
    assert len(recorder.outputs) == 6  # two pruning steps and the final fine-tune
    expected = model(images, training=False).numpy()
    for outputs in recorder.outputs:
        np.testing.assert_allclose(outputs, expected, atol=1e-5)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the user's model is untouched
    assert result.model.get_layer("conv_a").filters + result.model.get_layer("conv_b").filters == 12


def test_a_resumed_distilled_run_equals_an_uninterrupted_one(val, tmp_path):
    keras.utils.set_random_seed(0)
    model = _cnn(8, "cnn")
    options = dict(
        target_filters=6,
        filters_per_step=2,
        criterion="taylor",
        finetune_steps=3,
        final_finetune_epochs=0.2,
        rank_batches=1,
        progress=False,
        check_chance=False,
        distill=True,
        distill_temperature=2.0,
        distill_weight=0.7,
        seed=5,
    )
    whole = kprune.prune(model, train_stream, val, run_dir=tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        kprune.prune(
            model, train_stream, val, run_dir=tmp_path / "killed", callbacks=[_Kill(at_fit=2)], **options
        )
    assert json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"] == 1
    resumed = kprune.prune(model, train_stream, val, run_dir=tmp_path / "killed", resume=True, **options)
    assert resumed.history.steps == whole.history.steps
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    written = json.loads((tmp_path / "killed" / "report.json").read_text())["fine_tuning"]
    assert written == resumed.report["fine_tuning"] == whole.report["fine_tuning"]
    assert written["batches_per_step"] == 3


def test_a_regression_model_is_distilled_end_to_end(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 8, 3)).astype("float32")
    y = np.stack([x.mean(axis=(1, 2, 3)), x[..., 0].std(axis=(1, 2))], axis=1).astype("float32")
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(2, name="box")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.fit(x, y, epochs=3, verbose=0)
    result = kprune.prune(
        model,
        (x, y),
        (x[:64], y[:64]),
        target_filters=4,
        filters_per_step=2,
        finetune_steps=3,
        final_finetune_epochs=0.5,
        rank_batches=1,
        progress=False,
        distill=True,
        run_dir=tmp_path,
    )
    assert result.model.get_layer("conv").filters == 8
    assert result.report["config"]["distill"] is True
    assert np.isfinite(result.report["steps"][-1]["val_loss"])


def _prune_a_trained_cnn(val, tmp_path, finetune):
    """A compiled CNN trained for 3 epochs, pruned by 2 filters in 2 steps with ``finetune``
    (1 batch per step, 50 in the final fine-tune)."""
    keras.utils.set_random_seed(0)
    model = _cnn(8, "cnn")
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_stream(0).dataset, epochs=3, verbose=0)
    return kprune.prune(
        model,
        train_stream,
        val,
        target_filters=2,
        filters_per_step=1,
        criterion="l2_weight",
        finetune_steps=1,
        final_finetune_epochs=50 / val_batches_of_train(),
        rank_batches=1,
        progress=False,
        run_dir=tmp_path,
        finetune=finetune,
    )


def test_the_model_within_one_point_is_kept_when_the_target_costs_more(val, tmp_path):
    fits = []

    def finetune(candidate, data, steps):  # the last step's fine-tune breaks the model
        fits.append(steps)
        if len(fits) == 2:
            candidate.set_weights([np.zeros_like(w) for w in candidate.get_weights()])
        return candidate

    result = _prune_a_trained_cnn(val, tmp_path, finetune)
    within = result.within_budget
    assert within is not None and within["final_val_drop"] > 1.0 and within["limit"] == 1.0
    assert within == result.report["within_budget"]
    if within["step"]:  # a step stayed within one point: its model is kept beside pruned.keras
        assert within["val_drop"] <= 1.0
        kept = keras.models.load_model(tmp_path / within["file"])
        assert kept.count_params() == result.report["steps"][within["step"]]["params"]
    message = kprune.pruning.loop.over_budget_message(within, tmp_path)
    assert "more than 1 point" in message


def val_batches_of_train() -> int:
    return train_stream(0).num_batches


def test_a_final_fine_tune_that_lowers_validation_is_discarded(val, tmp_path):
    fits = []

    def finetune(candidate, data, steps):  # the final fine-tune (50 batches) breaks the model
        fits.append(steps)
        if steps == 50:
            candidate.set_weights([np.zeros_like(w) for w in candidate.get_weights()])
        return candidate

    result = _prune_a_trained_cnn(val, tmp_path, finetune)
    assert fits[-1] == 50
    *_, last_step, final = result.report["steps"]
    assert final["phase"] == "final" and final["final_finetune_discarded"] is True
    assert final["val_accuracy"] == last_step["val_accuracy"] > 0.2  # the zeroed model scores 0.1
    assert any(np.any(w != 0) for w in result.model.get_weights())
    saved, _ = checkpoint.load(tmp_path)
    for kept, returned in zip(saved.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(kept, returned)
