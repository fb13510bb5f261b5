"""Name → model builder registry, so that the CLI can say ``--model squeezenet1_1``.

Besides SqueezeNet, every ``keras.applications`` architecture is registered
under the snake-case name given in `APPLICATIONS` (``ResNet50V2`` →
``resnet50_v2``, ``MobileNetV3Small`` → ``mobilenet_v3_small``), built with
``weights=None``: pretrained weights need the internet, and kprune ships its
own trained baselines in ``models/``. Their BatchNormalization layers get Keras'
default momentum, 0.99, in place of the 0.999 some applications set for
ImageNet: 0.999 averages the moving statistics over about 1,000 steps, four
epochs of Fashion-MNIST at batch 256, and a network evaluated with statistics
that trail its weights predicts at chance (MobileNetV2 did for its first
epochs even with 0.99, while its weights moved fast).
"""

from __future__ import annotations

from typing import Callable, Protocol

import keras

from kprune.errors import InvalidArgumentError
from kprune.models.squeezenet import squeezenet
from kprune.models.vit import vit_tiny


class Builder(Protocol):
    def __call__(self, input_shape: tuple[int, int, int], num_classes: int, **kwargs) -> keras.Model: ...


_BUILDERS: dict[str, Builder] = {}
_applications_registered = False

# Keras' default; see the module docstring.
_BATCH_NORM_MOMENTUM = 0.99

# Inputs smaller than this on either side get SqueezeNet's cifar stem.
_SMALL_INPUT = 96


def register(name: str) -> Callable[[Builder], Builder]:
    """Registers a builder ``(input_shape, num_classes, **kwargs) -> keras.Model``.

    Example:
        >>> @register("tiny_cnn")
        ... def tiny_cnn(input_shape, num_classes, **kwargs): ...
    """

    def decorator(builder: Builder) -> Builder:
        _BUILDERS[name] = builder
        return builder

    return decorator


def available() -> list[str]:
    """Returns the registered model names, sorted."""
    _register_keras_applications()
    return sorted(_BUILDERS)


def build(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    **kwargs,
) -> keras.Model:
    """Builds the registered model ``name`` with random weights.

    Args:
        name: A name from `available()`, e.g. ``"squeezenet1_1"``.
        input_shape: ``(height, width, channels)``.
        num_classes: Number of output classes.
        **kwargs: Passed to the builder (e.g. ``batch_norm=True`` for SqueezeNet).

    Raises:
        InvalidArgumentError: If the name is not registered.
    """
    _register_keras_applications()
    if name not in _BUILDERS:
        raise InvalidArgumentError(
            f"Unknown model {name!r}. Use one of: {', '.join(available())}, or the path of a .keras file."
        )
    return _BUILDERS[name](tuple(input_shape), num_classes, **kwargs)


def _squeezenet_builder(version: str) -> Builder:
    def builder(input_shape, num_classes, **kwargs):
        if "stem" not in kwargs:
            small = min(input_shape[:2]) < _SMALL_INPUT
            kwargs["stem"] = "cifar" if small else "imagenet"
        return squeezenet(version, input_shape, num_classes, **kwargs)

    builder.__doc__ = f"SqueezeNet {version}; the cifar stem when a side is under {_SMALL_INPUT} px."
    return builder


register("squeezenet1_0")(_squeezenet_builder("1.0"))
register("squeezenet1_1")(_squeezenet_builder("1.1"))
register("vit_tiny")(vit_tiny)


# keras.applications function → kprune name. Explicit, so that names are stable
# and readable; functions missing from the installed Keras are skipped.
APPLICATIONS = {
    "ConvNeXtTiny": "convnext_tiny",
    "ConvNeXtSmall": "convnext_small",
    "ConvNeXtBase": "convnext_base",
    "ConvNeXtLarge": "convnext_large",
    "ConvNeXtXLarge": "convnext_xlarge",
    "DenseNet121": "densenet121",
    "DenseNet169": "densenet169",
    "DenseNet201": "densenet201",
    "EfficientNetB0": "efficientnet_b0",
    "EfficientNetB1": "efficientnet_b1",
    "EfficientNetB2": "efficientnet_b2",
    "EfficientNetB3": "efficientnet_b3",
    "EfficientNetB4": "efficientnet_b4",
    "EfficientNetB5": "efficientnet_b5",
    "EfficientNetB6": "efficientnet_b6",
    "EfficientNetB7": "efficientnet_b7",
    "EfficientNetV2B0": "efficientnet_v2_b0",
    "EfficientNetV2B1": "efficientnet_v2_b1",
    "EfficientNetV2B2": "efficientnet_v2_b2",
    "EfficientNetV2B3": "efficientnet_v2_b3",
    "EfficientNetV2S": "efficientnet_v2_s",
    "EfficientNetV2M": "efficientnet_v2_m",
    "EfficientNetV2L": "efficientnet_v2_l",
    "InceptionResNetV2": "inception_resnet_v2",
    "InceptionV3": "inception_v3",
    "MobileNet": "mobilenet",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3Small": "mobilenet_v3_small",
    "MobileNetV3Large": "mobilenet_v3_large",
    "NASNetMobile": "nasnet_mobile",
    "NASNetLarge": "nasnet_large",
    "ResNet50": "resnet50",
    "ResNet101": "resnet101",
    "ResNet152": "resnet152",
    "ResNet50V2": "resnet50_v2",
    "ResNet101V2": "resnet101_v2",
    "ResNet152V2": "resnet152_v2",
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "Xception": "xception",
}


def _application_builder(function: Callable) -> Builder:
    def builder(input_shape, num_classes, **kwargs):
        try:
            model = function(weights=None, input_shape=tuple(input_shape), classes=num_classes, **kwargs)
        except (TypeError, ValueError) as error:  # Keras checks shapes and options
            raise InvalidArgumentError(
                f"keras.applications.{function.__name__} cannot be built with "
                f"input_shape={tuple(input_shape)}, num_classes={num_classes}"
                f"{''.join(f', {k}={v!r}' for k, v in kwargs.items())}: {error}"
            ) from error
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = _BATCH_NORM_MOMENTUM
        return model

    builder.__doc__ = f"keras.applications.{function.__name__} with weights=None."
    return builder


def _register_keras_applications() -> None:
    global _applications_registered
    if _applications_registered:
        return
    _applications_registered = True
    for function_name, name in APPLICATIONS.items():
        function = getattr(keras.applications, function_name, None)
        if function is not None:
            _BUILDERS.setdefault(name, _application_builder(function))
