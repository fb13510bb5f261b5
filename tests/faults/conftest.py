"""Fixtures the fault tests share."""

from pathlib import Path

import keras
import pytest


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A saved 16×16×3 → 10-class CNN (one 12-filter convolution), for `kprune prune` runs
    on the synthetic dataset."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path
