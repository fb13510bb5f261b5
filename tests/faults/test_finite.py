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
OPTIONS = dict(target_filters=2, filters_per_step=1, finetune_steps=3, final_finetune_epochs=0.2,
               rank_batches=1, progress=False, check_chance=False)  # fmt: skip


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.GlobalAveragePooling2D()(h))
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
    with pytest.raises(InvalidArgumentError, match=r"^Infinite values in the training labels: batch 1 has 1 of"):
        kprune.prune(_model(), (X, labels), (X[:64], Y[:64]), **OPTIONS)
    with pytest.raises(InvalidArgumentError, match=r"^NaN in the validation inputs: batch 1"):
        kprune.prune(_model(), (X, Y), (_with_nan(X[:64]), Y[:64]), **OPTIONS)


def test_weights_made_non_finite_by_later_bad_data_are_rolled_back(tmp_path):
    """NaN only past the checked batches: the loss stays finite (ReLU hides NaN), the
    first convolution's kernel turns NaN; the step is refused and the checkpoint stays."""
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    data = (_with_nan(X, start=4 * 64), Y)  # arrays are cut into batches of 64: the checked 4 are clean
    with pytest.raises(TrainingDivergedError, match="NaN or infinite weights in layer.*conv.*pruning step 1"
                                                    "|pruning step 1.*NaN or infinite weights in layer.*conv"):
        kprune.prune(model, data, (X[:64], Y[:64]), run_dir=tmp_path, finetune_steps=20, **{
            k: v for k, v in OPTIONS.items() if k != "finetune_steps"})  # fmt: skip
    saved, state = kprune.checkpoint.load(tmp_path)
    assert state["step"] == 0 and not (tmp_path / "pruned.keras").exists()
    assert all(np.isfinite(w).all() for w in saved.get_weights())
    _assert_untouched(model, weights)
    assert json.loads((tmp_path / "report.json").read_text())["finished"] is False
