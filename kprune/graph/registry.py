"""Which handler serves which layer class: the built-in table, and users' additions.

A layer is served by the handler of its class or of its nearest registered
base class. The built-in table covers Keras layers, the `keras.ops`
operations that functional graphs record (``x + y``, ``ops.abs(x)``…) and the
custom layers of `keras.applications`; `register_handler` adds to it.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras.src.ops import numpy as keras_numpy

from kprune.graph import handlers as h

_layers = keras.layers


def _builtin_handlers() -> dict[type, h.LayerHandler]:
    table: dict[type, type[h.LayerHandler]] = {}

    def serve(handler: type[h.LayerHandler], *classes: type) -> None:
        table.update(dict.fromkeys(classes, handler))

    serve(h.Convolution, _layers.Conv1D, _layers.Conv2D, _layers.Conv3D)
    serve(h.TransposedConvolution, _layers.Conv1DTranspose, _layers.Conv2DTranspose,
          _layers.Conv3DTranspose)  # fmt: skip
    serve(h.SeparableConvolution, _layers.SeparableConv1D, _layers.SeparableConv2D)
    serve(h.DenseHandler, _layers.Dense)
    serve(h.Depthwise, _layers.DepthwiseConv1D, _layers.DepthwiseConv2D)
    serve(h.BatchNormalizationHandler, _layers.BatchNormalization)
    serve(h.PReLUHandler, _layers.PReLU)
    serve(h.ScalarOrPassThrough, _layers.Rescaling)
    serve(h.ActivationHandler, _layers.Activation, _layers.Softmax)
    serve(
        h.PassThrough,
        _layers.ReLU, _layers.LeakyReLU, _layers.ELU, _layers.Identity,
        _layers.Dropout, _layers.SpatialDropout1D, _layers.SpatialDropout2D, _layers.SpatialDropout3D,
        _layers.GaussianNoise, _layers.GaussianDropout, _layers.AlphaDropout,
        _layers.ActivityRegularization,
        _layers.MaxPooling1D, _layers.MaxPooling2D, _layers.MaxPooling3D,
        _layers.AveragePooling1D, _layers.AveragePooling2D, _layers.AveragePooling3D,
        _layers.GlobalAveragePooling1D, _layers.GlobalAveragePooling2D, _layers.GlobalAveragePooling3D,
        _layers.GlobalMaxPooling1D, _layers.GlobalMaxPooling2D, _layers.GlobalMaxPooling3D,
        _layers.ZeroPadding1D, _layers.ZeroPadding2D, _layers.ZeroPadding3D,
        _layers.Cropping1D, _layers.Cropping2D, _layers.Cropping3D,
        _layers.UpSampling1D, _layers.UpSampling2D, _layers.UpSampling3D,
    )  # fmt: skip
    serve(h.Merge, _layers.Add, _layers.Subtract, _layers.Multiply, _layers.Average,
          _layers.Maximum, _layers.Minimum)  # fmt: skip
    serve(h.ConcatenateHandler, _layers.Concatenate)
    serve(h.FlattenHandler, _layers.Flatten)
    serve(h.ReshapeHandler, _layers.Reshape)
    serve(
        h.Boundary,
        _layers.LayerNormalization, _layers.GroupNormalization, _layers.UnitNormalization,
        _layers.Normalization, _layers.Permute, _layers.Dot,
    )  # fmt: skip
    # `x + 3.0`, `x * gate`, … on KerasTensors are keras.ops operations, not layers.
    serve(h.Merge, keras_numpy.Add, keras_numpy.Subtract, keras_numpy.Multiply,
          keras_numpy.Divide, keras_numpy.TrueDivide, keras_numpy.Maximum, keras_numpy.Minimum)  # fmt: skip
    serve(h.PassThrough, keras_numpy.Negative, keras_numpy.Absolute, keras_numpy.Square,
          keras_numpy.Sqrt)  # fmt: skip
    try:
        from keras.src.applications.convnext import LayerScale
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:  # a Keras without them: nothing to add
        pass
    else:
        serve(h.LayerScaleHandler, LayerScale)
        # Inception-ResNet's `x + scale · residual`: an elementwise merge of [x, residual].
        serve(h.Merge, CustomScaleLayer)
    return {layer_class: handler() for layer_class, handler in table.items()}


_HANDLERS: dict[type, h.LayerHandler] = _builtin_handlers()


def register_handler(*layer_classes: type) -> Callable[[type], type]:
    """Class decorator: use this handler for ``layer_classes`` and their subclasses.

    Example:
        >>> @kprune.register_handler(MyScale)
        ... class MyScaleHandler(kprune.graph.PassThrough):
        ...     per_channel_weights = ("scale",)
    """

    def decorator(handler_class: type) -> type:
        for layer_class in layer_classes:
            _HANDLERS[layer_class] = handler_class()
        return handler_class

    return decorator


def handler_for(layer) -> h.LayerHandler | None:
    """The handler of the layer's class or nearest registered base class, or None."""
    for klass in type(layer).__mro__:
        if klass in _HANDLERS:
            return _HANDLERS[klass]
        if klass in (keras.layers.Layer, keras.Operation):
            break
    return None


def supported_classes() -> dict[str, str]:
    """Registered class name → role, for docs/SUPPORTED.md."""
    return {
        f"{cls.__module__.replace('keras.src.', 'keras.')}.{cls.__name__}": handler.role
        for cls, handler in sorted(_HANDLERS.items(), key=lambda item: item[0].__name__)
    }
