"""Export fixtures: a tiny CNN trained on the synthetic dataset, its card, its exports.

The CNN learns the synthetic classes (a bright square per class position) in a
few seconds, so int8 agreement and accuracy mean something; session-scoped,
it is trained and exported once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import kprune
from kprune.card import write_card

INPUT_SHAPE = (16, 16, 3)
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")


def make_position_cnn(input_shape=INPUT_SHAPE, num_classes=10, name="position_cnn"):
    """Conv → BN → ReLU → pool → Conv → pool → Flatten → Dense(softmax).

    Flatten, not global pooling: the synthetic classes differ by position.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="conv_a_bn")(x)
    x = keras.layers.ReLU(name="conv_a_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_a")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_b")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def synthetic(split: str, input_shape=INPUT_SHAPE, limit=None):
    return kprune.data.load(
        "synthetic", split, input_shape=input_shape, batch_size=32, shuffle=False, limit=limit
    )


@pytest.fixture(scope="session")
def synthetic_test():
    return synthetic("test")


@pytest.fixture(scope="session")
def synthetic_train():
    return synthetic("train")


@pytest.fixture(scope="session")
def trained_cnn(synthetic_train) -> keras.Model:
    """The position CNN after 4 epochs on synthetic train (accuracy 1.0 on test)."""
    keras.utils.set_random_seed(0)
    model = make_position_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(synthetic("train").dataset.shuffle(640, seed=0), epochs=4, shuffle=False, verbose=0)
    return model


@pytest.fixture(scope="session")
def model_file(trained_cnn, synthetic_train, tmp_path_factory) -> Path:
    """``trained_cnn`` saved as a .keras file with a model card naming its dataset."""
    path = tmp_path_factory.mktemp("model") / "position_cnn.keras"
    kprune.save_model(trained_cnn, path)
    write_card(
        path,
        {
            "dataset": "synthetic",
            "preprocessing": synthetic_train.preprocessing.to_dict(),
            "class_names": list(synthetic_train.info.class_names),
            "test_accuracy": 1.0,
        },
    )
    return path


@pytest.fixture(scope="session")
def exported(trained_cnn, synthetic_train, tmp_path_factory) -> dict:
    """Quantize mode (and "onnx") → ExportedArtifact of ``trained_cnn``."""
    from kprune.export import export_onnx, export_tflite

    folder = tmp_path_factory.mktemp("exported")
    artifacts = {
        mode: export_tflite(trained_cnn, folder / f"model_{mode}.tflite", mode, synthetic_train)
        for mode in QUANTIZE_MODES
    }
    artifacts["onnx"] = export_onnx(trained_cnn, folder / "model.onnx")
    return artifacts


@pytest.fixture
def copy_of(tmp_path):
    """Copies a file into this test's tmp_path, so that it can be tampered with."""

    def copy(path: Path) -> Path:
        target = tmp_path / Path(path).name
        shutil.copy(path, target)
        return target

    return copy


def collect_examples(split, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` images and labels of a `kprune.data.Split`."""
    images, labels = [], []
    for batch_images, batch_labels in split.dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(map(len, images)) >= samples:
            break
    return np.concatenate(images)[:samples], np.concatenate(labels)[:samples].astype(np.int64)


def keras_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images, training=False))
