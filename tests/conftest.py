"""Shared fixtures: tiny models and data that every test module may use.

Append new fixtures; keep each one small and fast (no training here).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest


def make_tiny_cnn(input_shape=(16, 16, 3), num_classes=10, softmax=True, name="tiny_cnn"):
    """Conv(8) → ReLU → max-pool → Conv(16) → ReLU → global pool → Dense."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool_a")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax" if softmax else None, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def tiny_cnn_factory():
    """`make_tiny_cnn` itself, for tests that need several or a variant."""
    return make_tiny_cnn


@pytest.fixture
def tiny_cnn() -> keras.Model:
    """A 16×16×3 → 10-class softmax CNN with 1,562 parameters."""
    keras.utils.set_random_seed(0)
    return make_tiny_cnn()


@pytest.fixture
def tiny_arrays() -> tuple[np.ndarray, np.ndarray]:
    """48 random 16×16×3 float32 images and int32 labels in 0..9."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(48, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 10, size=48).astype("int32")
    return images, labels


@pytest.fixture
def restore_determinism():
    """Undoes the process-wide TF op determinism that seed_everything() turns on."""
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    yield
    if not was_enabled:
        tf_config.disable_op_determinism()
