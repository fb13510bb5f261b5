"""Layers and `keras.ops` operations whose role depends on the axes they act on:
channel-wise along the spatial axes, boundaries along (or moving) the channel axis."""

import keras
import numpy as np
import pytest
from keras import ops

from kprune.graph import analyze
from tests.graph.oracle import assert_exact, zeroed_through_consumers
from tests.graph.test_handlers import REMOVAL, between_convs

layers = keras.layers


def _squeezed_and_back(x):  # (N, H, W, C) → (N, C) → (N, 1, 1, C), as an SE block does
    pooled = ops.mean(x, axis=(1, 2))
    return ops.expand_dims(ops.expand_dims(pooled, 1), 1) * x


CHANNEL_WISE = {
    "spatial mean, keepdims": lambda x: ops.mean(x, axis=(1, 2), keepdims=True) + x,
    "spatial max, negative axes": lambda x: ops.max(x, axis=(-3, -2), keepdims=True) * x,
    "expand_dims": _squeezed_and_back,
    "squeeze": lambda x: ops.expand_dims(ops.squeeze(ops.sum(x, 1, keepdims=True), 1), 1) + x,
    "reshape": lambda x: ops.reshape(ops.mean(x, axis=(1, 2)), (-1, 1, 1, 6)) * x,
    "transpose of height and width": lambda x: ops.transpose(x, (0, 2, 1, 3)),
    "concatenate on height": lambda x: ops.concatenate([x, ops.relu(x)], axis=1),
    "spatial pad": lambda x: ops.pad(x, ((0, 0), (1, 1), (2, 0), (0, 0))),
    "spatial indexing": lambda x: x[:, 1:-1, ::2] + x[..., 1:-1, 1::2, :],
}


@pytest.mark.parametrize("case", CHANNEL_WISE)
def test_operations_along_spatial_axes_are_channel_wise(case, tmp_path):
    model = between_convs(CHANNEL_WISE[case])
    assert analyze(model).prunable_layers() == ["before", "after"]
    assert_exact(model, REMOVAL, saved_to=tmp_path / "pruned.keras")


def test_axes_given_as_tuples_are_not_taken_for_per_channel_constants():
    # (0, 2, 1, 3) has as many entries as there are channels.
    model = between_convs(lambda x: ops.transpose(x, (0, 2, 1, 3)), channels=4)
    assert analyze(model).prunable_layers() == ["before", "after"]


def test_softmax_over_spatial_axes_is_channel_wise(tmp_path):
    model = between_convs(lambda x: ops.softmax(layers.Softmax(axis=(1, 2))(x), axis=1))
    assert analyze(model).prunable_layers() == ["before", "after"]
    assert_exact(model, REMOVAL, reference=zeroed_through_consumers, saved_to=tmp_path / "p.keras")


def test_concatenate_operation_offsets_the_channels(tmp_path):
    def two_branches(x):
        other = layers.Conv2D(5, 1, name="other")(x)
        return ops.concatenate([ops.relu(x), other], axis=-1)

    model = between_convs(two_branches)
    graph = analyze(model)
    after = next(m for m in graph.group_of("other").members if m.layer == "after")
    np.testing.assert_array_equal(after.positions, [6, 7, 8, 9, 10])
    pruned = assert_exact(model, {"before": [1, 4], "other": [0]}, saved_to=tmp_path / "p.keras")
    assert pruned.get_layer("after").kernel.shape == (1, 1, 4 + 4, 4)


BOUNDARIES = {
    "mean over channels": (lambda x: ops.mean(x, axis=-1, keepdims=True) * x, "Mean", "reduces"),
    "max over all axes": (lambda x: ops.max(x) * x, "Max", "reduces"),
    "sum over channels": (lambda x: ops.sum(x, axis=3, keepdims=True) + x, "Sum", "reduces"),
    "softmax op": (lambda x: ops.softmax(x), "Softmax", "acts along the channel axis"),
    "softmax layer": (layers.Softmax(axis=-1), "Softmax", "acts along the channel axis"),
    "log_softmax op": (lambda x: ops.log_softmax(x, axis=3), "LogSoftmax", "acts along"),
    "sparsemax op": (lambda x: ops.sparsemax(x), "Sparsemax", "acts along the channel axis"),
    "l2 normalize": (lambda x: ops.normalize(x), "Normalize", "acts along the channel axis"),
    "transpose": (
        lambda x: ops.transpose(ops.transpose(x, (0, 3, 1, 2)), (0, 2, 3, 1)),
        "Transpose",
        "moves the channel axis",
    ),
    "permute": (
        lambda x: layers.Permute((2, 3, 1))(layers.Permute((3, 1, 2))(x)),
        "Permute",
        "moves the channel axis",
    ),
    "pad channels": (lambda x: ops.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1))), "Pad", "pads"),
    "pick channels": (lambda x: ops.relu(x[..., ::2]), "GetItem", "indexes the channel axis"),
    "expand_dims last": (
        lambda x: ops.squeeze(ops.expand_dims(x, -1), -1),
        "ExpandDims",
        "moves the channel axis",
    ),
}


@pytest.mark.parametrize("case", BOUNDARIES)
def test_operations_along_the_channel_axis_are_boundaries(case):
    middle, kind, why = BOUNDARIES[case]
    graph = analyze(between_convs(middle))
    frozen_by = graph.group_of("before").frozen_by
    assert frozen_by and frozen_by[0].startswith(kind) and why in frozen_by[0]
    assert graph.prunable_layers() == ["after"]
