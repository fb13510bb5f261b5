"""Handlers whose role depends on the axes a layer or `keras.ops` operation acts on.

Softmax over the spatial axes, a mean over height and width, a transpose that
swaps height and width, `expand_dims` in front: channel k stays channel k, so
they pass channels through. The same operations on the channel axis make each
output depend on several channels (or move the channels), so there they are
boundaries. Axes are read from the operation (``axis``, ``axes``, ``dims``,
``pad_width``, the index of ``x[...]``) and may be negative.
"""

from __future__ import annotations

import numpy as np

from kprune.graph.handlers import PassThrough, freeze


def _normalized(axis, rank: int) -> set[int] | None:
    """``axis`` (an int, a sequence, or None for all) as non-negative axes."""
    if axis is None:
        return None
    return {int(a) % rank for a in np.atleast_1d(axis).tolist()}


def _rank(tensor) -> int:
    return len(tensor.shape)


class AlongAxisHandler(PassThrough):
    """Softmax, log-softmax, sparsemax, glu, L2-normalize (layer or op) along ``axis``:
    a boundary along the channel axis, channel-wise along others."""

    def propagate(self, call, input_ids, context):
        rank = _rank(call.node.input_tensors[0])
        axes = _normalized(getattr(call.layer, "axis", -1), rank)
        if axes is None or rank - 1 in axes:
            return freeze(call, input_ids, context, "acts along the channel axis")
        return super().propagate(call, input_ids, context)


class ReductionHandler(PassThrough):
    """Mean, max, sum, … over ``axis`` (`keras.ops`): channel-wise when the channel axis
    is not reduced (e.g. a spatial mean, with or without ``keepdims``); over the
    channels or over every axis, a boundary."""

    def propagate(self, call, input_ids, context):
        rank = _rank(call.node.input_tensors[0])
        axes = _normalized(call.layer.axis, rank)
        if axes is None or rank - 1 in axes:
            return freeze(call, input_ids, context, "reduces the channel axis")
        return super().propagate(call, input_ids, context)


class ExpandDimsHandler(PassThrough):
    """`ops.expand_dims`: channel-wise unless the new axis is the last one."""

    def propagate(self, call, input_ids, context):
        rank = _rank(call.node.outputs[0])
        if rank - 1 in _normalized(call.layer.axis, rank):
            return freeze(call, input_ids, context, "moves the channel axis")
        return super().propagate(call, input_ids, context)


class SqueezeHandler(PassThrough):
    """`ops.squeeze`: channel-wise unless it removes the channel axis."""

    def propagate(self, call, input_ids, context):
        shape = call.node.input_tensors[0].shape
        axes = _normalized(call.layer.axis, len(shape))
        if axes is None:
            axes = {axis for axis, size in enumerate(shape) if size == 1}
        if len(shape) - 1 in axes:
            return freeze(call, input_ids, context, "removes the channel axis")
        return super().propagate(call, input_ids, context)


class TransposeHandler(PassThrough):
    """`ops.transpose`: channel-wise when the channel axis stays last (e.g. swapping
    height and width); a boundary when it moves the channels."""

    def permutation(self, layer, rank: int) -> tuple[int, ...]:
        return tuple(range(rank))[::-1] if layer.axes is None else tuple(layer.axes)

    def propagate(self, call, input_ids, context):
        rank = _rank(call.node.input_tensors[0])
        if self.permutation(call.layer, rank)[-1] % rank != rank - 1:
            return freeze(call, input_ids, context, "moves the channel axis")
        return super().propagate(call, input_ids, context)


class PermuteHandler(TransposeHandler):
    """Permute: as `ops.transpose`; its ``dims`` leave out the batch axis."""

    def permutation(self, layer, rank):
        return (0, *layer.dims)


class PadHandler(PassThrough):
    """`ops.pad`: channel-wise when the channel axis is not padded."""

    def propagate(self, call, input_ids, context):
        pad_width = call.layer.pad_width  # one pair for every axis, or one pair for all
        if tuple(pad_width[-1]) != (0, 0):
            return freeze(call, input_ids, context, "pads the channel axis")
        return super().propagate(call, input_ids, context)


class GetItemHandler(PassThrough):
    """``x[...]`` indexing: channel-wise when it takes the channel axis whole and keeps
    it last (``x[:, 1:-1, 1:-1]``, ``x[..., ::2, :]``); a boundary when it picks channels
    or indexes with tensors or arrays."""

    def propagate(self, call, input_ids, context):
        keys = call.constant_arguments()
        rank = _rank(call.node.input_tensors[0])
        if len(keys) != 1 or not _keeps_last_axis(keys[0], rank):
            return freeze(call, input_ids, context, "indexes the channel axis")
        return [input_ids[0]]


def _keeps_last_axis(key, rank: int) -> bool:
    key = tuple(key) if isinstance(key, (tuple, list)) else (key,)
    if not all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in key):
        return False  # tensors or arrays: advanced indexing may move axes
    if Ellipsis in key:
        trailing = key[key.index(Ellipsis) + 1 :]
    elif sum(k is not None for k in key) < rank:
        return True  # the last axes, channels included, are untouched
    else:
        trailing = key
    return not trailing or trailing[-1] == slice(None)
