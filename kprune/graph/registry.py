"""Which handler serves which layer class: the built-in table, and users' additions.

A layer is served by the handler of its class or of its nearest registered
base class, unless a class in between defines its own ``call``: a subclass
that computes something else is not its parent, and has no handler until one
is registered for it. The built-in table covers Keras layers (preprocessing
and augmentation included), the `keras.ops` operations that functional graphs
record (``x + y``, ``ops.relu(x)``, ``ops.mean(x, axis=(1, 2))``…) and the
custom layers of `keras.applications`; `register_handler` adds to it.
"""

from __future__ import annotations

from typing import Callable

import keras

from kprune import keras_internals
from kprune.graph import axes, preprocessing
from kprune.graph import handlers as h

_layers = keras.layers


def _serve_layers(serve) -> None:
    serve(h.ConvolutionHandler, _layers.Conv1D, _layers.Conv2D, _layers.Conv3D)
    serve(
        h.TransposedConvolutionHandler,
        _layers.Conv1DTranspose,
        _layers.Conv2DTranspose,
        _layers.Conv3DTranspose,
    )
    serve(h.SeparableConvolutionHandler, _layers.SeparableConv1D, _layers.SeparableConv2D)
    serve(h.DenseHandler, _layers.Dense)
    serve(h.DepthwiseHandler, _layers.DepthwiseConv1D, _layers.DepthwiseConv2D)
    serve(h.BatchNormalizationHandler, _layers.BatchNormalization)
    serve(h.PReLUHandler, _layers.PReLU)
    serve(preprocessing.RescalingHandler, _layers.Rescaling)
    serve(preprocessing.NormalizationHandler, _layers.Normalization)
    serve(h.ActivationHandler, _layers.Activation)
    serve(axes.AlongAxisHandler, _layers.Softmax)
    serve(
        h.PassThrough,
        _layers.ReLU,
        _layers.LeakyReLU,
        _layers.ELU,
        _layers.Identity,
        _layers.Dropout,
        _layers.SpatialDropout1D,
        _layers.SpatialDropout2D,
        _layers.SpatialDropout3D,
        _layers.GaussianNoise,
        _layers.GaussianDropout,
        _layers.AlphaDropout,
        _layers.ActivityRegularization,
        _layers.MaxPooling1D,
        _layers.MaxPooling2D,
        _layers.MaxPooling3D,
        _layers.AveragePooling1D,
        _layers.AveragePooling2D,
        _layers.AveragePooling3D,
        _layers.GlobalAveragePooling1D,
        _layers.GlobalAveragePooling2D,
        _layers.GlobalAveragePooling3D,
        _layers.GlobalMaxPooling1D,
        _layers.GlobalMaxPooling2D,
        _layers.GlobalMaxPooling3D,
        _layers.ZeroPadding1D,
        _layers.ZeroPadding2D,
        _layers.ZeroPadding3D,
        _layers.Cropping1D,
        _layers.Cropping2D,
        _layers.Cropping3D,
        _layers.UpSampling1D,
        _layers.UpSampling2D,
        _layers.UpSampling3D,
    )
    # Preprocessing and augmentation that treat every channel alike: identity at inference,
    # a spatial resampling, a per-channel contrast, a mix of batch elements… Checked by
    # perturbing one input channel: only that output channel changes, in training too,
    # with 3 and with 5 channels.
    serve(
        h.PassThrough,
        _layers.Resizing,
        _layers.CenterCrop,
        _layers.RandomFlip,
        _layers.RandomTranslation,
        _layers.RandomRotation,
        _layers.RandomZoom,
        _layers.RandomCrop,
        _layers.RandomShear,
        _layers.RandomPerspective,
        _layers.RandomElasticTransform,
        _layers.RandomErasing,
        _layers.RandomGaussianBlur,
        _layers.RandomContrast,
        _layers.RandomBrightness,
        _layers.RandomInvert,
        _layers.RandomPosterization,
        _layers.RandomSharpness,
        _layers.Solarization,
        _layers.AutoContrast,
        _layers.Equalization,
        _layers.ContrastLimitedAdaptiveHistogramEqualization,
        _layers.MixUp,
        _layers.CutMix,
    )
    serve(
        h.Merge,
        _layers.Add,
        _layers.Subtract,
        _layers.Multiply,
        _layers.Average,
        _layers.Maximum,
        _layers.Minimum,
    )
    serve(h.GroupNormalizationHandler, _layers.GroupNormalization)
    serve(h.MultiHeadAttentionHandler, _layers.MultiHeadAttention)
    serve(h.ConcatenateHandler, _layers.Concatenate)
    serve(h.FlattenHandler, _layers.Flatten)
    serve(h.ReshapeHandler, _layers.Reshape)
    serve(axes.PermuteHandler, _layers.Permute)
    serve(
        h.Boundary,
        _layers.LayerNormalization,
        _layers.UnitNormalization,
        _layers.Dot,
        # Colour augmentation mixes the channels (and needs exactly 3 of them).
        _layers.RandomGrayscale,
        _layers.RandomHue,
        _layers.RandomSaturation,
        _layers.RandomColorJitter,
        _layers.RandomColorDegeneration,
        _layers.AugMix,
        _layers.RandAugment,
        # Lookups, hashing, encodings, audio front ends, box padding: not channel-wise maps.
        _layers.CategoryEncoding,
        _layers.Discretization,
        _layers.Hashing,
        _layers.HashedCrossing,
        _layers.IntegerLookup,
        _layers.StringLookup,
        _layers.TextVectorization,
        _layers.MelSpectrogram,
        _layers.STFTSpectrogram,
        _layers.Pipeline,
        _layers.MaxNumBoundingBoxes,
    )


def _serve_operations(serve) -> None:
    """`keras.ops` and `keras.activations` called on symbolic tensors record these."""
    modules = keras_internals.OPS_MODULES
    nn, np_, math, core = modules["nn"], modules["numpy"], modules["math"], modules["core"]
    serve(
        h.PassThrough,  # element-wise functions of one tensor
        modules["activations"].activations.ReLU,  # keras.activations.relu(x, max_value=…)
        nn.Relu,
        nn.Relu6,
        nn.Silu,
        nn.Gelu,
        nn.HardSilu,
        nn.Sigmoid,
        nn.HardSigmoid,
        nn.Elu,
        nn.Selu,
        nn.Celu,
        nn.LeakyRelu,
        nn.Softplus,
        nn.Softsign,
        nn.LogSigmoid,
        nn.HardTanh,
        nn.HardShrink,
        nn.SoftShrink,
        nn.TanhShrink,
        nn.SparsePlus,
        nn.SparseSigmoid,
        nn.Squareplus,
        nn.Threshold,
        np_.Tanh,
        np_.Clip,
        np_.Abs,
        np_.Absolute,
        np_.Fabs,
        np_.Negative,
        np_.Square,
        np_.Sqrt,
        np_.Cbrt,
        np_.Reciprocal,
        np_.Exp,
        np_.Exp2,
        np_.Expm1,
        np_.Log,
        np_.Log1p,
        np_.Log2,
        np_.Log10,
        np_.Sin,
        np_.Cos,
        np_.Tan,
        np_.Sinh,
        np_.Cosh,
        np_.Arcsin,
        np_.Arccos,
        np_.Arctan,
        np_.Arcsinh,
        np_.Arccosh,
        np_.Arctanh,
        np_.Sign,
        np_.Floor,
        np_.Ceil,
        np_.Round,
        np_.Trunc,
        np_.NanToNum,
        np_.Copy,
        np_.LogicalNot,
        np_.Isnan,
        np_.Isinf,
        np_.Isfinite,
        math.Erf,
        math.Erfc,
        math.Erfinv,
        math.Rsqrt,
        core.Cast,
        core.StopGradient,
    )
    # `x + 3.0`, `x * gate`, `ops.where(x > 0, x, 0.1 * x)`…: element-wise, broadcast.
    serve(
        h.Merge,
        np_.Add,
        np_.Subtract,
        np_.Multiply,
        np_.Divide,
        np_.TrueDivide,
        np_.DivideNoNan,
        np_.FloorDivide,
        np_.Mod,
        np_.Power,
        np_.Maximum,
        np_.Minimum,
        np_.Arctan2,
        np_.Hypot,
        np_.Logaddexp,
        np_.Greater,
        np_.GreaterEqual,
        np_.Less,
        np_.LessEqual,
        np_.Equal,
        np_.NotEqual,
        np_.LogicalAnd,
        np_.LogicalOr,
        np_.LogicalXor,
        np_.Where,
    )
    serve(h.ConcatenateHandler, np_.Concatenate)
    serve(h.ReshapeOpHandler, np_.Reshape)
    serve(axes.ExpandDimsHandler, np_.ExpandDims)
    serve(axes.SqueezeHandler, np_.Squeeze)
    serve(axes.TransposeHandler, np_.Transpose)
    serve(axes.PadHandler, np_.Pad)
    serve(axes.GetItemHandler, np_.GetItem)
    serve(axes.AlongAxisHandler, nn.Softmax, nn.LogSoftmax, nn.Sparsemax, nn.Glu, nn.Normalize)
    serve(
        axes.ReductionHandler,
        np_.Mean,
        np_.Max,
        np_.Min,
        np_.Amax,
        np_.Amin,
        np_.Sum,
        np_.Prod,
        np_.Std,
        np_.Var,
        np_.Median,
        math.Logsumexp,
    )


def _builtin_handlers() -> dict[type, h.LayerHandler]:
    table: dict[type, type[h.LayerHandler]] = {}

    def serve(handler: type[h.LayerHandler], *classes: type) -> None:
        table.update(dict.fromkeys(classes, handler))

    _serve_layers(serve)
    _serve_operations(serve)
    try:
        applications = keras_internals.application_layers()
    except ImportError:  # a Keras without them: nothing to add
        pass
    else:
        serve(h.LayerScaleHandler, applications["LayerScale"])
        # Inception-ResNet's `x + scale · residual`: an elementwise merge of [x, residual].
        serve(h.Merge, applications["CustomScaleLayer"])
    return {layer_class: handler() for layer_class, handler in table.items()}


_HANDLERS: dict[type, h.LayerHandler] = _builtin_handlers()


def register_handler(*layer_classes: type) -> Callable[[type], type]:
    """Class decorator: use this handler for ``layer_classes`` and their subclasses
    (those that do not override ``call``).

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
    """The handler of the layer's class or nearest registered base class, or None.

    None too for a subclass of a registered class that defines its own ``call``
    (`overridden_base` names that class).
    """
    for klass in type(layer).__mro__:
        if klass in _HANDLERS:
            return _HANDLERS[klass]
        if "call" in vars(klass) or klass in (keras.layers.Layer, keras.Operation):
            break
    return None


def overridden_base(layer) -> type | None:
    """The registered class that ``layer``'s class inherits from but whose ``call`` it
    overrides; None when the layer has a handler or no registered base class."""
    if handler_for(layer) is not None:
        return None
    return next((klass for klass in type(layer).__mro__ if klass in _HANDLERS), None)


def supported_classes() -> dict[str, str]:
    """Registered class name → role, for docs/SUPPORTED.md."""
    return {
        keras_internals.public_class_path(cls): handler.role
        for cls, handler in sorted(_HANDLERS.items(), key=lambda item: item[0].__name__)
    }
