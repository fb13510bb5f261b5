"""SqueezeNet 1.0 and 1.1 (Iandola et al., 2016) as Keras functional models.

The layer structure and parameter counts follow the reference implementation
(torchvision): an ImageNet-stem model at 224×224×3 with 1000 classes has
1,248,424 (v1.0) or 1,235,496 (v1.1) parameters.

The ``"cifar"`` stem adapts the network to small inputs (32×32 CIFAR-10,
28×28 Fashion-MNIST). The reference stem shrinks a 32×32 image to 1×1 before
fire9 (stride-2 conv1, then three stride-2 max-pools), which costs about 20
points of CIFAR-10 accuracy. The cifar stem uses a 3×3 stride-1 conv1 and
keeps the three max-pools, so a 32×32 input reaches fire2 at 16×16, fire4 at
8×8 and fire6..9 at 4×4 — 16× the positions of the reference stem at every
stage, for about 24 M multiply-accumulates per image (v1.1). Every fire module
is unchanged, so filter counts and the pruning problem stay those of the paper.

Layer names are stable and are the keys used by every kprune API:
``conv1``, ``fire{2..9}_squeeze1x1``, ``fire{2..9}_expand1x1``,
``fire{2..9}_expand3x3``, ``fire{2..9}_concat``, ``conv10``.
"""

from __future__ import annotations

import keras

from kprune.errors import InvalidArgumentError

# (squeeze, expand1x1, expand3x3) filters of fire2 .. fire9; identical in 1.0 and 1.1.
FIRE_FILTERS = {
    2: (16, 64, 64),
    3: (16, 64, 64),
    4: (32, 128, 128),
    5: (32, 128, 128),
    6: (48, 192, 192),
    7: (48, 192, 192),
    8: (64, 256, 256),
    9: (64, 256, 256),
}

# Fire modules after which a 3×3 stride-2 max-pool follows (conv1 always has one).
_POOL_AFTER = {"1.0": (4, 8), "1.1": (3, 5)}
_STEMS = ("imagenet", "cifar")


def squeezenet(
    version: str = "1.1",
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
    stem: str = "imagenet",
    batch_norm: bool = False,
    dropout: float = 0.5,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """Builds SqueezeNet 1.0 or 1.1 with randomly initialised weights.

    Args:
        version: ``"1.0"`` or ``"1.1"``.
        input_shape: ``(height, width, channels)``, channels last.
        num_classes: Number of output classes (filters of ``conv10``).
        stem: ``"imagenet"`` for the reference stem, ``"cifar"`` for small
            inputs (see the module docstring).
        batch_norm: Insert a BatchNormalization after every convolution
            (named ``<conv>_bn``); convolutions then have no bias.
        dropout: Dropout rate before ``conv10``, as in the paper.
        classifier_activation: Activation after global pooling: ``"softmax"``
            or ``None`` for raw scores.
        name: Model name; defaults to ``squeezenet1_0`` / ``squeezenet1_1``.

    Returns:
        A functional ``keras.Model``.

    Raises:
        InvalidArgumentError: On an unknown version or stem, or a bad shape.

    Example:
        >>> m = squeezenet("1.1", input_shape=(32, 32, 3), num_classes=10, stem="cifar")
    """
    if version not in _POOL_AFTER:
        raise InvalidArgumentError(f"`version` must be '1.0' or '1.1'. Received version={version!r}.")
    if stem not in _STEMS:
        raise InvalidArgumentError(f"`stem` must be one of {_STEMS}. Received stem={stem!r}.")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InvalidArgumentError(
            f"`input_shape` must be (height, width, channels). Received input_shape={input_shape!r}."
        )
    if num_classes < 1:
        raise InvalidArgumentError(f"`num_classes` must be at least 1. Received num_classes={num_classes}.")

    def conv(x, filters, kernel_size, layer_name, strides=1, padding="same"):
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=not batch_norm,
            name=layer_name,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{layer_name}_bn")(x)
        return keras.layers.ReLU(name=f"{layer_name}_relu")(x)

    def max_pool(x, index):
        # The reference pools with ceil_mode; for a 3×3 stride-2 pool that equals
        # "same" on an even side and "valid" on an odd one (the height decides;
        # square inputs match exactly). Small inputs always pool with "same" so
        # that odd sizes (7×7 on Fashion-MNIST) keep their edge.
        padding = "same"
        if stem == "imagenet" and x.shape[1] is not None and x.shape[1] % 2 == 1:
            padding = "valid"
        return keras.layers.MaxPooling2D(3, strides=2, padding=padding, name=f"pool{index}")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    if stem == "imagenet":
        kernel, filters = (7, 96) if version == "1.0" else (3, 64)
        x = conv(inputs, filters, kernel, "conv1", strides=2, padding="valid")
    else:
        filters = 96 if version == "1.0" else 64
        x = conv(inputs, filters, 3, "conv1")
    x = max_pool(x, 1)

    for fire, (squeeze, expand1x1, expand3x3) in FIRE_FILTERS.items():
        prefix = f"fire{fire}"
        s = conv(x, squeeze, 1, f"{prefix}_squeeze1x1")
        e1 = conv(s, expand1x1, 1, f"{prefix}_expand1x1")
        e3 = conv(s, expand3x3, 3, f"{prefix}_expand3x3")
        x = keras.layers.Concatenate(name=f"{prefix}_concat")([e1, e3])
        if fire in _POOL_AFTER[version]:
            x = max_pool(x, fire)

    x = keras.layers.Dropout(dropout, name="drop9")(x)
    x = conv(x, num_classes, 1, "conv10")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool10")(x)
    if classifier_activation is not None:
        x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    version_tag = version.replace(".", "_")
    return keras.Model(inputs, x, name=name or f"squeezenet{version_tag}")
