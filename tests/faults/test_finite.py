"""Bad values never become a model: NaN/Inf in the data are refused before work starts, and
weights that fine-tuning made non-finite are never checkpointed or returned."""

import json

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import InvalidArgumentError, TrainingDivergedError

rng = np.random.default_rng(0)
X = rng.uniform(0, 1, size=(600, 16, 16, 3)).astype("float32")
Y = rng.integers(0, 3, 600)
OPTIONS = dict(
    target_filters=2,
    filters_per_step=1,
    finetune_steps=3,
    final_finetune_epochs=0.2,
    rank_batches=1,
    progress=False,
    check_chance=False,
)


def _model(classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probs")(
        keras.layers.GlobalAveragePooling2D()(h)
    )
    return keras.Model(inputs, outputs)


def _with_nan(images: np.ndarray, start: int = 0, share: float = 0.01) -> np.ndarray:
    images = images.copy()
    part = images[start:]
    part[np.random.default_rng(1).uniform(size=part.shape) < share] = np.nan
    return images


def _assert_untouched(model, weights):
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_nan_pixels_in_the_training_data_are_refused_before_any_work(tmp_path):
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(InvalidArgumentError) as error:
        kprune.prune(model, (_with_nan(X), Y), (X[:64], Y[:64]), run_dir=tmp_path / "run", **OPTIONS)
    message = str(error.value)
    assert message.startswith("NaN in the training inputs: batch 1 has ") and "Fix: clean the data" in message
    assert "\n" not in message
    assert not (tmp_path / "run" / "checkpoint").exists()
    _assert_untouched(model, weights)


def test_infinite_labels_and_nan_validation_data_are_named():
    labels = Y.astype("float32")
    labels[5] = np.inf
    with pytest.raises(
        InvalidArgumentError, match=r"^Infinite values in the training labels: batch 1 has 1 of"
    ):
        kprune.prune(_model(), (X, labels), (X[:64], Y[:64]), **OPTIONS)
    with pytest.raises(InvalidArgumentError, match=r"^NaN in the validation inputs: batch 1"):
        kprune.prune(_model(), (X, Y), (_with_nan(X[:64]), Y[:64]), **OPTIONS)


def test_weights_made_non_finite_by_later_bad_data_are_rolled_back(tmp_path):
    """NaN only past the checked batches: the loss stays finite (ReLU hides NaN), the
    first convolution's kernel turns NaN at that batch; the step is refused, the data
    named, and the checkpoint stays."""
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    data = (_with_nan(X, start=4 * 64), Y)  # arrays are cut into batches of 64: the checked 4 are clean
    # the weights turn NaN at the first bad batch (the 5th); the search over the data names it
    with pytest.raises(
        TrainingDivergedError,
        match=r"^Fine-tuning stopped at pruning step 1: NaN in the training "
        r"inputs: batch 5 has .* \(searched after the weights turned NaN or infinite at training "
        r"batch 5\)\. Fix: clean the data",
    ):
        kprune.prune(
            model,
            data,
            (X[:64], Y[:64]),
            run_dir=tmp_path,
            finetune_steps=20,
            **{k: v for k, v in OPTIONS.items() if k != "finetune_steps"},
        )
    saved, state = kprune.pruning.checkpoint.load(tmp_path)
    assert state["step"] == 0 and not (tmp_path / "pruned.keras").exists()
    assert all(np.isfinite(w).all() for w in saved.get_weights())
    _assert_untouched(model, weights)
    assert json.loads((tmp_path / "report.json").read_text())["finished"] is False


def _nan_gradient_loss(labels, outputs):
    """Cross-entropy whose value is finite and whose gradient is NaN."""
    import tensorflow as tf

    @tf.custom_gradient
    def nan_gradient(values):
        return tf.identity(values), lambda upstream: upstream * np.nan

    return keras.losses.sparse_categorical_crossentropy(labels, nan_gradient(outputs))


def test_nan_gradients_under_a_finite_loss_are_named(tmp_path):
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(TrainingDivergedError) as error:
        kprune.prune(
            model,
            (X, Y),
            (X[:64], Y[:64]),
            run_dir=tmp_path,
            loss=_nan_gradient_loss,
            **{**OPTIONS, "criterion": "l1"},
        )  # Taylor's scores would be NaN first
    message = str(error.value)
    assert message.startswith("Fine-tuning stopped at pruning step 1: The weights of layer(s) ")
    assert (
        "turned NaN or infinite at step 1 under a finite loss, on finite data (non-finite gradients)"
        in message
    )
    assert "Fix: lower the learning rate" in message and "\n" not in message
    _, state = kprune.pruning.checkpoint.load(tmp_path)
    assert state["step"] == 0 and not (tmp_path / "pruned.keras").exists()
    _assert_untouched(model, weights)


def test_a_loss_that_turns_nan_midway_stops_at_that_batch(tmp_path):
    import tensorflow as tf

    calls = tf.Variable(0)

    def loss(labels, outputs):  # NaN from its 8th call on (during fine-tuning); finite gradients
        calls.assign_add(1)
        return keras.losses.sparse_categorical_crossentropy(labels, outputs) + tf.where(
            calls >= 8, np.nan, 0.0
        )

    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(
        TrainingDivergedError,
        match=r"^Fine-tuning stopped at pruning step \d+: The training loss "
        r"became nan at step \d+ on finite data: the training diverged\. Fix: lower the learning "
        r"rate \(--lr\)\. The last good checkpoint is in ",
    ):
        kprune.prune(
            model,
            (X, Y),
            (X[:64], Y[:64]),
            run_dir=tmp_path,
            loss=loss,
            **{**OPTIONS, "finetune_steps": 10, "criterion": "l1"},
        )
    saved, _ = kprune.pruning.checkpoint.load(tmp_path)
    assert all(np.isfinite(w).all() for w in saved.get_weights()) and not (tmp_path / "pruned.keras").exists()
    _assert_untouched(model, weights)


def test_nan_ranking_scores_name_the_layer_and_the_batch():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, name="conv")(inputs)  # no ReLU: NaN inputs give NaN activations
    model = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    )
    data = (_with_nan(X[: 6 * 64], start=4 * 64), Y[: 6 * 64])  # the checked 4 batches are clean
    with pytest.raises(
        InvalidArgumentError,
        match=r"^The taylor scores of conv are not finite: NaN in the "
        r"ranking inputs: batch 5 has [\d,]+ of [\d,]+ values not finite\. Fix: clean the data",
    ):
        kprune.rank(model, data, "taylor", num_batches=6)


def test_a_model_with_nan_weights_is_refused_before_any_work(tmp_path):
    model = _model()
    kernel, bias = model.get_layer("conv").get_weights()
    kernel[0, 0, 0, 0] = np.inf
    model.get_layer("conv").set_weights([kernel, bias])
    with pytest.raises(
        InvalidArgumentError, match=r"^Model '.*' holds NaN or infinite weights \(layer\(s\) conv\)"
    ):
        kprune.prune(model, (X, Y), (X[:64], Y[:64]), run_dir=tmp_path / "run", **OPTIONS)
    assert not (tmp_path / "run").exists()


def test_a_diverging_cli_run_ends_in_one_line_and_keeps_its_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from kprune.cli import app

    model_file = tmp_path / "model.keras"
    _model(classes=10).save(model_file)  # the synthetic dataset's 10 classes
    original = model_file.read_bytes()
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "prune",
            "--model",
            str(model_file),
            "--dataset",
            "synthetic",
            "--target-params",
            "0.5",
            "--filters-per-step",
            "1",
            "--finetune-steps",
            "5",
            "--rank-batches",
            "1",
            "--lr",
            "1e12",
            "--optimizer",
            "sgd",
            "--no-chance-check",
            "--no-distill",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert (
        len(lines) == 1
        and result.stderr.strip().endswith(lines[0])
        and lines[0].startswith("Error: Fine-tuning stopped at pruning step 1: The training loss became")
    ), result.stderr
    assert "Traceback" not in result.output
    _, state = kprune.pruning.checkpoint.load(out)
    assert state["step"] == 0 and not (out / "pruned.keras").exists()
    assert not list(out.rglob(".tmp-*")) and model_file.read_bytes() == original
