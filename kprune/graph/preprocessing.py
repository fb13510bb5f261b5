"""Handlers of preprocessing layers whose config or weights hold per-channel values.

Rescaling and Normalization are element-wise with fixed values, so they pass
channels through; their per-channel scale, offset, mean and variance are
sliced with the channels. The other preprocessing and augmentation layers need
no handler of their own: `kprune.graph.registry` lists them as pass-through
(they treat every channel alike) or as boundaries (colour changes that mix the
channels).
"""

from __future__ import annotations

import keras
import numpy as np

from kprune.graph.handlers import PassThrough, freeze


class RescalingHandler(PassThrough):
    """Rescaling: channel-wise; a per-channel scale or offset (last axis) is sliced in its config."""

    def propagate(self, call, input_ids, context):
        channels = call.node.input_tensors[0].shape[-1]
        for value in (call.layer.scale, call.layer.offset):
            if np.ndim(value) > 0 and np.shape(value)[-1] not in (1, channels):
                return freeze(call, input_ids, context, f"scale or offset of shape {np.shape(value)}")
        return super().propagate(call, input_ids, context)

    def slice_config(self, layer, config, out_keep):
        config = dict(config)
        for key in ("scale", "offset"):
            value = getattr(layer, key)
            if np.ndim(value) > 0 and np.shape(value)[-1] == len(out_keep) > 1:
                kept = np.compress(out_keep, np.asarray(value), axis=-1)
                config[key] = keras.saving.serialize_keras_object(kept)
        return config


class NormalizationHandler(PassThrough):
    """Normalization: element-wise with fixed statistics, so channel-wise; statistics kept
    per channel (the weights of an adapted layer, or the mean and variance in its config)
    are sliced."""

    def weight_axes(self, layer):
        rank = len(layer.get_build_config()["input_shape"])
        if any(axis % rank == rank - 1 for axis in layer.axis):  # weights: (..., channels)
            return {"mean": {-1: "in"}, "variance": {-1: "in"}}
        return {}

    def slice_config(self, layer, config, out_keep):
        config = dict(config)
        for key in ("mean", "variance"):
            value = config.get(key)
            if value is not None and np.ndim(value) > 0 and np.shape(value)[-1] == len(out_keep) > 1:
                config[key] = np.compress(out_keep, np.asarray(value), axis=-1).tolist()
        return config
