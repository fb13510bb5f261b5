"""Real architectures for graph and surgery tests, with non-vacuous weights.

`CASES` build fast (seconds on 2 cores), `SLOW_CASES` take a minute each. They
use the smallest input each architecture accepts and ``classifier_activation=None``
where the builder allows, so softmax saturation does not hide differences.

Random-init weights hide mistakes: biases are 0, BatchNorm is the identity at
its default statistics (outputs of deep nets shrink to ~1e-12) and ConvNeXt's
layer scale is 1e-6. `prepared()` gives every constant-initialised weight
random values and calibrates BatchNorm statistics on a batch. Also used by
scripts/checks/gen_supported.py.
"""

from __future__ import annotations

import keras
import numpy as np

import kprune

layers = keras.layers
applications = keras.applications


# ---------------------------------------------------------------- model builders


def _application(name: str, side: int = 32):
    def build():
        function = getattr(applications, name)
        options = {"weights": None, "input_shape": (side, side, 3), "classes": 10}
        if "classifier_activation" in function.__code__.co_varnames:
            options["classifier_activation"] = None  # softmax saturation hides differences
        return function(**options)

    return build


def _squeezenet(version: str, stem: str, batch_norm: bool):
    def build():
        side = 64 if stem == "imagenet" else 32
        return kprune.models.squeezenet(
            version,
            input_shape=(side, side, 3),
            num_classes=10,
            stem=stem,
            batch_norm=batch_norm,
            classifier_activation=None,
        )

    return build


def _sequential_cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(12, 3, padding="same", use_bias=False, name="c1"),
            layers.BatchNormalization(name="c1_bn"),
            layers.ReLU(name="c1_relu"),
            layers.MaxPooling2D(name="p1"),
            layers.Conv2D(10, 3, activation="relu", name="c2"),
            layers.Dropout(0.2, name="drop"),
            layers.Conv2D(8, 3, activation="relu", name="c3"),
            layers.Flatten(name="flat"),
            layers.Dense(16, activation="relu", name="fc1"),
            layers.Dense(5, name="fc2"),
        ],
        name="sequential_cnn",
    )


def _groupnorm_cnn():
    """Conv → GroupNorm → grouped conv → GroupNorm, twice: pruned in whole groups."""
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for index, (width, groups) in enumerate(((16, 4), (32, 8))):
        x = layers.Conv2D(width, 3, padding="same", name=f"conv{index}")(x)
        x = layers.GroupNormalization(groups=groups, name=f"gn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        x = layers.Conv2D(width, 3, groups=groups, padding="same", name=f"grouped{index}")(x)
        x = layers.GroupNormalization(groups=groups, name=f"gn{index}b")(x)
        x = layers.ReLU(name=f"relu{index}b")(x)
        x = layers.MaxPooling2D(name=f"pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(5, name="logits")(x), name="groupnorm_cnn")


def _nested():
    """Functional model → (residual functional block, Sequential head)."""
    block_in = keras.Input((8, 8, 12), name="block_in")
    x = layers.Conv2D(12, 3, padding="same", use_bias=False, name="conv")(block_in)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Add(name="add")([block_in, x])
    branch = layers.Conv2D(6, 1, activation="relu", name="side")(x)
    x = layers.Concatenate(name="concat")([x, branch])
    block = keras.Model(block_in, x, name="block")
    head = keras.Sequential(
        [
            keras.Input((4, 4, 18)),
            layers.Conv2D(9, 1, activation="relu", name="conv"),
            layers.Flatten(name="flat"),
            layers.Dense(4, name="logits"),
        ],
        name="head",
    )

    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(12, 3, padding="same", name="conv")(inputs)
    x = layers.MaxPooling2D(name="pool")(x)
    x = block(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    return keras.Model(inputs, head(x), name="nested")


def _detector():
    """scripts/experiments/detection.py's detector: four strides, UpSampling2D + Concatenate,
    outputs box, objectness and their concatenation."""
    from scripts.experiments.detection import build_detector

    return build_detector()


def _vit_tiny():
    """kprune's ViT-tiny, small: MultiHeadAttention heads and MLP units on tokens."""
    from kprune.models import build

    return build("vit_tiny", (16, 16, 3), 5, width=32, depth=2, heads=4)


CASES = {
    **{
        f"squeezenet{version}-{stem}{'-bn' if bn else ''}": _squeezenet(version, stem, bn)
        for version in ("1.0", "1.1")
        for stem in ("imagenet", "cifar")
        for bn in (False, True)
    },
    "sequential_cnn": _sequential_cnn,
    "nested": _nested,
    "VGG16": _application("VGG16"),
    "ResNet50": _application("ResNet50"),
    "ResNet50V2": _application("ResNet50V2"),
    "MobileNetV2": _application("MobileNetV2"),
    "DenseNet121": _application("DenseNet121"),
    "EfficientNetB0": _application("EfficientNetB0"),
    "MobileNetV3Small": _application("MobileNetV3Small"),
    "Xception": _application("Xception", 71),  # the smallest side Keras accepts
    "ConvNeXtTiny": _application("ConvNeXtTiny"),
    "groupnorm_cnn": _groupnorm_cnn,
    "detector": _detector,
    "vit_tiny": _vit_tiny,
}
# Cases whose normalization turns a zeroed block into β (GroupNorm): the oracle also zeroes
# the consumers' input rows (`zeroed_through_consumers`); the others zero the producers only.
THROUGH_CONSUMERS = {"groupnorm_cnn"}
SLOW_CASES = {
    "InceptionV3": _application("InceptionV3", 75),
    "NASNetMobile": _application("NASNetMobile"),
    "InceptionResNetV2": _application("InceptionResNetV2", 75),
}


# ---------------------------------------------------------------- making outputs non-vacuous


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _randomize_constant_weights(model, rng) -> None:
    """Random values for the weights that start constant (biases, β, γ, layer scales)."""
    for layer in _all_layers(model):
        if isinstance(layer, layers.Normalization):
            continue  # fixed input statistics, not a learned weight
        for variable in layer.weights:
            value = np.asarray(variable)
            if value.size < 2 or value.min() != value.max():
                continue
            if variable.name in ("moving_mean", "moving_variance"):
                continue  # calibrated below
            if variable.name in ("bias", "beta"):
                value = rng.normal(0.0, 0.2, value.shape)
            else:  # gamma, layer scale, PReLU alpha, …
                value = rng.uniform(0.5, 1.5, value.shape)
            variable.assign(value.astype(variable.dtype))


def _calibrate_batchnorm(model, images) -> None:
    """Sets every BatchNorm's moving statistics to those of one batch (momentum 0)."""
    batch_norms = [layer for layer in _all_layers(model) if isinstance(layer, layers.BatchNormalization)]
    if not batch_norms:
        return
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum
        # A channel that barely varies on one small batch would amplify float32
        # rounding by up to 1/sqrt(epsilon); a floor keeps every BN gain near 1.
        variance = np.asarray(layer.moving_variance)
        layer.moving_variance.assign(variance + 0.5 * np.median(variance))


def prepared(case: str) -> tuple[keras.Model, np.ndarray]:
    """The model of ``case`` with non-vacuous weights, and 4 input images."""
    keras.utils.set_random_seed(0)
    model = {**CASES, **SLOW_CASES}[case]()
    rng = np.random.default_rng(0)
    _randomize_constant_weights(model, rng)
    shape = model.input_shape[1:]
    _calibrate_batchnorm(model, rng.normal(size=(8, *shape)).astype("float32"))
    images = rng.normal(size=(4, *shape)).astype("float32")
    return model, images
