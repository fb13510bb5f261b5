"""Handlers for keras.ops arithmetic in functional graphs and for the custom
layers of keras.applications (the registry is open the same way to users)."""

from __future__ import annotations

from keras.src.ops import numpy as keras_numpy

from kprune.graph.handlers import Merge, PassThrough, register_handler

# `x + 3.0`, `x * gate`, … on KerasTensors are keras.ops operations, not layers.
register_handler(
    keras_numpy.Add, keras_numpy.Subtract, keras_numpy.Multiply, keras_numpy.Divide,
    keras_numpy.TrueDivide, keras_numpy.Maximum, keras_numpy.Minimum,
)(Merge)  # fmt: skip
register_handler(keras_numpy.Negative, keras_numpy.Absolute, keras_numpy.Square,
                 keras_numpy.Sqrt)(PassThrough)  # fmt: skip


def _register_applications() -> None:
    try:
        from keras.src.applications.convnext import LayerScale
        from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    except ImportError:  # a Keras without them: nothing to register
        return

    @register_handler(LayerScale)
    class LayerScaleHandler(PassThrough):
        """ConvNeXt's per-channel residual scale γ (config: projection_dim)."""

        per_channel_weights = ("gamma",)

        def resized_config(self, layer, config, kept_outputs):
            return {**config, "projection_dim": int(kept_outputs)}

    # Inception-ResNet's `x + scale · residual`: an elementwise merge of [x, residual].
    register_handler(CustomScaleLayer)(Merge)


_register_applications()
