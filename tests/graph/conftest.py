import keras
import numpy as np
import pytest


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Gives every BatchNormalization random statistics, so outputs are not ~0."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_batchnorm(layer, seed + 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, size).astype("float32"),
                    rng.normal(0, 0.2, size).astype("float32"),
                    rng.normal(0, 0.2, size).astype("float32"),
                    rng.uniform(0.5, 1.5, size).astype("float32"),
                ]
            )


def mixed_graph() -> keras.Model:
    """Conv→BN→ReLU, Add coupling, Concatenate, Depthwise, Separable, Flatten→Dense."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    stem = layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    stem = layers.BatchNormalization(name="stem_bn")(stem)
    stem = layers.ReLU(name="stem_relu")(stem)
    branch = layers.Conv2D(6, 1, name="branch")(stem)
    added = layers.Add(name="add")([stem, branch])  # couples stem and branch
    depthwise = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(added)
    depthwise = layers.ReLU(name="dw_relu")(depthwise)
    left = layers.Conv2D(4, 1, activation="relu", name="left")(depthwise)
    right = layers.SeparableConv2D(5, 3, padding="same", activation="relu", name="right")(added)
    joined = layers.Concatenate(name="concat")([left, right])
    pooled = layers.MaxPooling2D(2, name="pool")(joined)
    flat = layers.Flatten(name="flatten")(pooled)
    hidden = layers.Dense(7, name="hidden")(flat)  # linear: its output never dies
    outputs = layers.Dense(3, name="logits")(hidden)
    model = keras.Model(inputs, outputs, name="mixed")
    randomize_batchnorm(model)
    return model


@pytest.fixture
def mixed_model():
    keras.utils.set_random_seed(0)
    return mixed_graph()
