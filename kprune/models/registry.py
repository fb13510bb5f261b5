"""Name → model builder registry, so that the CLI can say ``--model squeezenet1_1``.

Besides SqueezeNet, every ``keras.applications`` architecture is registered
under its snake-case name (``ResNet50V2`` → ``resnet50_v2``, ``MobileNetV2`` →
``mobilenet_v2``), built with ``weights=None``: pretrained weights need the
internet, and kprune ships its own trained baselines in ``models/``.
"""

from __future__ import annotations

import inspect
import re
from typing import Callable, Protocol

import keras

from kprune.errors import InvalidArgumentError
from kprune.models.squeezenet import squeezenet


class Builder(Protocol):
    def __call__(
        self, input_shape: tuple[int, int, int], num_classes: int, **kwargs
    ) -> keras.Model: ...


_BUILDERS: dict[str, Builder] = {}

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
            f"Unknown model {name!r}. Use one of: {', '.join(available())}, "
            "or the path of a .keras file."
        )
    return _BUILDERS[name](tuple(input_shape), num_classes, **kwargs)


def _squeezenet_builder(version: str) -> Builder:
    def builder(input_shape, num_classes, **kwargs):
        if "stem" not in kwargs:
            small = min(input_shape[:2]) < _SMALL_INPUT
            kwargs["stem"] = "cifar" if small else "imagenet"
        return squeezenet(version, input_shape, num_classes, **kwargs)

    builder.__doc__ = (
        f"SqueezeNet {version}; the cifar stem when a side is under {_SMALL_INPUT} px."
    )
    return builder


register("squeezenet1_0")(_squeezenet_builder("1.0"))
register("squeezenet1_1")(_squeezenet_builder("1.1"))


def _snake_case(camel: str) -> str:
    # ResNet50V2 → resnet50_v2, MobileNetV3Small → mobilenet_v3_small,
    # EfficientNetB0 → efficientnet_b0, DenseNet121 → densenet121.
    name = re.sub(r"(?<=[0-9a-z])(V[0-9]|B[0-9]|Small|Large|Tiny|Base|Mobile|XLarge)", r"_\1", camel)
    return name.lower().replace("mobilenet_v", "mobilenet_v")


def _application_builder(function: Callable) -> Builder:
    def builder(input_shape, num_classes, **kwargs):
        return function(
            weights=None, input_shape=tuple(input_shape), classes=num_classes, **kwargs
        )

    builder.__doc__ = f"keras.applications.{function.__name__} with weights=None."
    return builder


def _register_keras_applications() -> None:
    if any(name not in ("squeezenet1_0", "squeezenet1_1") for name in _BUILDERS):
        return
    for module_name in dir(keras.applications):
        module = getattr(keras.applications, module_name)
        if not inspect.ismodule(module):
            continue
        for attribute in dir(module):
            function = getattr(module, attribute)
            if not attribute[0].isupper() or not callable(function):
                continue
            parameters = inspect.signature(function).parameters
            if {"weights", "input_shape", "classes"} <= set(parameters):
                _BUILDERS.setdefault(_snake_case(attribute), _application_builder(function))
