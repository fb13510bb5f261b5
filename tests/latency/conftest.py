"""Small models and one measured table shared by the latency tests (profiling is seconds)."""

from __future__ import annotations

import keras
import pytest


def make_block_model(name="block_model", classes=5):
    """Conv → BN → ReLU (fused), a fire-like concat, max-pool, a residual Add, Dense."""
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(24, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    left = keras.layers.Conv2D(16, 1, activation="relu", name="left")(x)
    right = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="right")(x)
    x = keras.layers.Concatenate(name="concat")([left, right])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    y = keras.layers.Conv2D(32, 1, name="proj")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="package")
def block_model():
    keras.utils.set_random_seed(0)
    return make_block_model()


@pytest.fixture(scope="package")
def block_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="package")
def block_table(block_model, block_cache):
    """The block model's table, measured for real on TFLite (few repeats: shapes, not speed)."""
    from kprune.latency.profile import profile

    return profile(block_model, repeats=5, warmup=1, cache_dir=block_cache, sweep_channels=SWEEP, seconds=0)


def make_small_model():
    """Conv → global pool → Dense: few files to time."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="small")


SWEEP = 20  # a short output-channel sweep keeps the tests quick
