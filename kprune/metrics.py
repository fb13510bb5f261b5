"""Model facts: parameters, FLOPs, size on disk, a per-layer table.

FLOPs convention: one multiply-accumulate (MAC) counts as 2 FLOPs, and only
the layers that multiply-accumulate are counted (Conv1D/2D/3D and their
transposes, DepthwiseConv, SeparableConv, Dense, and MultiHeadAttention: its
four projections and its two products, scores and weighted values, over all
positions), per example (batch 1).
Bias additions, BatchNormalization (folded into the convolution at
inference), activations, pooling and merges are not counted. This is the
convention of the pruning literature (Molchanov et al. 2017, Li et al. 2017).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import keras
import numpy as np

from kprune import keras_internals
from kprune.errors import InvalidArgumentError
from kprune.graph.dependency import part_name

_MAC_LAYERS = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.MultiHeadAttention,
)


@dataclass(frozen=True)
class LayerFacts:
    """One row of `layer_table`."""

    name: str
    class_name: str
    output_shape: tuple
    filters: int | None  # output channels of a producer layer, else None
    params: int
    flops: int


def count_params(model: keras.Model) -> int:
    """All parameters, trainable and not (BatchNorm moving statistics included)."""
    return int(sum(math.prod(w.shape) for w in model.weights))


def count_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass of one example (2 per multiply-accumulate).

    Example:
        >>> count_flops(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
        24
    """
    return sum(row.flops for row in layer_table(model))


def layer_table(model: keras.Model) -> list[LayerFacts]:
    """Per-layer filters, parameters, FLOPs and output shape, nested models expanded.

    Only the calls of a layer inside ``model``'s own graph count: a layer
    shared with another model is not counted twice, and a nested model
    called twice counts twice.

    Raises:
        InvalidArgumentError: If a layer that multiplies-accumulates has an
            unknown (None) spatial size, so its FLOPs are undefined.
    """
    return _table(model, calls=1)


def _table(model: keras.Model, calls: int) -> list[LayerFacts]:
    graph_nodes = keras_internals.graph_nodes(model)
    rows = []
    for layer in model.layers:
        if graph_nodes is None:
            nodes = keras_internals.inbound_nodes(layer)
        else:
            nodes = [node for node in graph_nodes if node.operation is layer]
        if isinstance(layer, keras.Model):
            rows.extend(_table(layer, calls * max(1, len(nodes))))
            continue
        rows.append(
            LayerFacts(
                name=layer.name,
                class_name=type(layer).__name__,
                output_shape=_output_shape(layer, nodes),
                filters=_filters(layer),
                params=int(sum(math.prod(w.shape) for w in layer.weights)),
                flops=calls * _layer_flops(layer, nodes),
            )
        )
    return rows


def file_size(path: str | os.PathLike) -> int:
    """Size of a file in bytes."""
    return os.path.getsize(path)


def _output_shape(layer, nodes: list) -> tuple:
    if len(nodes) == 1 and len(nodes[0].outputs) == 1:
        return tuple(nodes[0].outputs[0].shape)
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # layers called several times have no single output
        return ()


def _filters(layer) -> int | None:
    for attribute in ("filters", "units"):
        value = getattr(layer, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _layer_flops(layer, nodes: list) -> int:
    """2 × MACs of the calls (graph ``nodes``) of ``layer``."""
    if not isinstance(layer, _MAC_LAYERS):
        return 0
    macs = 0
    for node in nodes:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            macs += _attention_macs(layer, node)
            continue
        inputs = node.input_tensors
        outputs = node.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            continue
        input_shape, output_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
        if None in input_shape[1:] + output_shape[1:]:
            raise InvalidArgumentError(
                f"Cannot count the FLOPs of layer {layer.name!r}: its input shape "
                f"{input_shape} or output shape {output_shape} has an unknown size. "
                "Fix: build the model with a fixed input_shape such as (32, 32, 3)."
            )
        macs += _macs(layer, input_shape, output_shape)
    return 2 * macs


def _macs(layer, input_shape: tuple, output_shape: tuple) -> int:
    layers = keras.layers
    if isinstance(layer, layers.Dense):
        return math.prod(input_shape[1:]) * layer.units
    if isinstance(layer, layers.SeparableConv2D | layers.SeparableConv1D):
        spatial_out = math.prod(output_shape[1:-1])
        in_channels = input_shape[-1]
        depthwise = spatial_out * math.prod(layer.kernel_size) * in_channels * layer.depth_multiplier
        pointwise = spatial_out * in_channels * layer.depth_multiplier * layer.filters
        return depthwise + pointwise
    if isinstance(layer, layers.DepthwiseConv2D | layers.DepthwiseConv1D):
        spatial_out = math.prod(output_shape[1:-1])
        return spatial_out * math.prod(layer.kernel_size) * input_shape[-1] * layer.depth_multiplier
    if isinstance(layer, layers.Conv2DTranspose | layers.Conv1DTranspose | layers.Conv3DTranspose):
        # Every input position is scattered through the whole kernel.
        spatial_in = math.prod(input_shape[1:-1])
        return spatial_in * math.prod(layer.kernel_size) * input_shape[-1] * layer.filters
    if isinstance(layer, layers.Conv1D | layers.Conv2D | layers.Conv3D):
        spatial_out = math.prod(output_shape[1:-1])
        per_output = math.prod(layer.kernel_size) * input_shape[-1] // layer.groups
        return spatial_out * per_output * layer.filters
    return 0


def _attention_macs(layer, node) -> int:
    """MACs of one MultiHeadAttention call: the query, key, value (and gate) projections,
    the scores and the weighted sum over all positions, and the output projection."""
    arguments = keras_internals.attention_arguments(node)
    query, value = arguments["query"].shape, arguments["value"].shape
    key = arguments["key"].shape if arguments["key"] is not None else value
    if None in query[1:] + value[1:] + key[1:]:
        raise InvalidArgumentError(
            f"Cannot count the FLOPs of layer {layer.name!r}: its query {query} or value {value} "
            "has an unknown size. Fix: build the model with a fixed input shape."
        )
    targets, sources = math.prod(query[1:-1]), math.prod(value[1:-1])
    heads, key_dim, value_dim = layer.num_heads, layer.key_dim, layer.value_dim
    outputs = node.outputs[0].shape[-1]
    macs = targets * query[-1] * heads * key_dim  # query projection
    macs += sources * (key[-1] * heads * key_dim + value[-1] * heads * value_dim)  # key, value
    macs += targets * sources * heads * (key_dim + value_dim)  # scores, weighted values
    macs += targets * heads * value_dim * outputs  # output projection
    if getattr(layer, "_use_gate", False):
        macs += targets * query[-1] * heads * value_dim
    return macs


def channel_flops(graph) -> dict[int, float]:
    """FLOPs saved per channel removed from each group: {group index: FLOPs}.

    Each layer whose input or output holds a group's channels contributes its
    FLOPs × (the share of that axis the group holds) ÷ (the group's channels):
    exact for Conv and Dense, whose cost is linear in each channel count;
    an estimate for SeparableConv, whose depthwise part ignores its filters.
    A MultiHeadAttention's whole cost is shared by its heads (linear in their
    number); its output channels are counted with its heads.

    Args:
        graph: A `kprune.graph.DependencyGraph`.
    """

    def flops(call, input_tensor, output_tensor):
        if isinstance(call.layer, keras.layers.MultiHeadAttention):
            return 2 * _attention_macs(call.layer, call.node)
        return 2 * _macs(call.layer, tuple(input_tensor.shape), tuple(output_tensor.shape))

    return _channel_costs(graph, flops)


def channel_params(graph) -> dict[int, float]:
    """Parameters saved per channel removed from each group (same sharing rule
    as `channel_flops`; a bias counts on the output side as an estimate)."""

    def params(call, input_tensor, output_tensor):
        return sum(math.prod(w.shape) for w in getattr(call.layer, "weights", []))

    return _channel_costs(graph, params)


def _channel_costs(graph, layer_cost) -> dict[int, float]:
    costs = {group.index: 0.0 for group in graph.groups}
    parts = graph.parts()
    for call in graph.flat.calls:
        inside = [parts[name] for name in _part_names(graph, call) if name in parts]
        if inside:  # channels inside the layer (attention heads) carry its whole cost
            cost = layer_cost(call, None, None)
            for ids in inside:
                groups, _ = graph.group_channels_of(ids)
                for index in np.unique(groups[groups >= 0]).tolist():
                    costs[index] += cost / graph.groups[index].channels
            continue
        if len(call.inputs) != 1 or len(call.outputs) != 1:
            continue
        input_tensor = graph.flat.tensors[call.inputs[0]]
        output_tensor = graph.flat.tensors[call.outputs[0]]
        cost = layer_cost(call, input_tensor, output_tensor)
        if not cost:
            continue
        sides = [graph.tensor_ids.get(call.inputs[0])]
        if graph.handlers[call.name].call_role(call) == "producer":
            sides.append(graph.tensor_ids.get(call.outputs[0]))
        for ids in sides:
            if ids is None:
                continue
            groups, _ = graph.group_channels_of(ids)
            for index, count in zip(*np.unique(groups[groups >= 0], return_counts=True)):
                group = graph.groups[int(index)]
                costs[group.index] += cost * count / len(ids) / group.channels
    return costs


def _part_names(graph, call) -> list[str]:
    return [part_name(call.name, part) for part in graph.handlers[call.name].parts]
