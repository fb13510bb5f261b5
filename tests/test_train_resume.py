"""`train_and_save` backs up every epoch; a killed training resumes to the uninterrupted result."""

import json

import keras
import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.training.setup import TrainSettings
from kprune.training.train import EpochBackup, train_and_save, training_backup_dir


def position_model():
    keras.utils.set_random_seed(1)  # the same initial weights for every run below
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Dropout(0.3)(keras.layers.Flatten()(x))  # a seeded random layer, resumed too
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="position")


def run(out, **changes):
    arguments = {
        "dataset": "synthetic",
        "epochs": 3,
        "batch_size": 32,
        "limit": 96,
        "augment": True,
        "seed": 5,
        "settings": TrainSettings(optimizer="sgd", learning_rate=0.05, warmup_epochs=1),
        "progress": False,
    }
    return train_and_save(position_model(), out=str(out), **{**arguments, **changes})


class KilledAfterFirstEpoch(EpochBackup):
    """Stops the process right after the first epoch's backup is written, as a kill would."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        raise KeyboardInterrupt


def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    reference = run(tmp_path / "reference.keras")
    assert not training_backup_dir(tmp_path / "reference.keras").exists()  # removed once written

    out = tmp_path / "killed.keras"
    with monkeypatch.context() as patch:
        patch.setattr("kprune.training.train.EpochBackup", KilledAfterFirstEpoch)
        with pytest.raises(KeyboardInterrupt):
            run(out)
    backup = training_backup_dir(out)
    assert not out.exists()
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1

    with pytest.raises(
        InvalidArgumentError, match=r"killed\.training holds an unfinished training.*--resume"
    ):
        run(out)
    with pytest.raises(InvalidArgumentError, match=r"Cannot resume .*: epochs, seed differ"):
        run(out, resume=True, epochs=4, seed=6)

    card = run(out, resume=True)
    assert card["resumed_at_epoch"] == 1 and not backup.exists()
    resumed, uninterrupted = (
        keras.models.load_model(out),
        keras.models.load_model(tmp_path / "reference.keras"),
    )
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert card["test_accuracy"] == pytest.approx(reference["test_accuracy"])


def test_resume_without_a_backup_trains_afresh(tmp_path):
    card = run(tmp_path / "fresh.keras", resume=True, epochs=1)
    assert "resumed_at_epoch" not in card and (tmp_path / "fresh.keras").is_file()


def test_out_is_checked_before_training(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"must end in \.keras"):
        run(tmp_path / "model.h5")
    assert not list(tmp_path.iterdir())
