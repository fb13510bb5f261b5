"""One handler per layer type: how channels flow through it and how to slice it.

Channels are tracked as integer ids. A producer (Conv, Dense, …) gives each
of its output channels a fresh id; a channel-wise layer passes its input ids
on; a layer that works on blocks of consecutive channels (GroupNormalization's
groups, a grouped convolution's groups) ties each block into one channel of
the group, so that pruning removes whole blocks; an elementwise merge (Add, Multiply, …) declares the ids at each position
of its inputs the same channel (they are coupled); Concatenate joins id lists;
Flatten repeats them once per spatial position. A boundary layer (Reshape that
moves channels, LayerNormalization, softmax over channels, …) freezes the
channels that reach it: they may not be removed.

Handlers whose role depends on the axes an operation acts on (``ops.mean``,
softmax, transposes, …) are in `kprune.graph.axes`; those of Rescaling and
Normalization, which slice per-channel values, in `kprune.graph.preprocessing`.
Which handler serves which class is `kprune.graph.registry`'s table; users
register handlers for their own layers.

Names follow one rule. The roles are nouns for what a layer does to channels:
`Producer`, `PassThrough`, `Merge`, `Boundary` (public: users subclass them,
and the registry serves the last two as they are). A handler for one family of
Keras layers or ops is that family's name plus ``Handler``:
`ConvolutionHandler`, `DenseHandler`, `ConcatenateHandler`, `TransposeHandler`.
An example of a user's own::

    @kprune.register_handler(MyScale)
    class MyScaleHandler(kprune.graph.PassThrough):
        per_channel_weights = ("scale",)
"""

from __future__ import annotations

import math
from typing import Protocol

import keras
import numpy as np

Ids = np.ndarray  # int64 channel ids of a tensor's last axis

# `keras.activations` by function name (``Activation("swish").activation.__name__ == "silu"``).
ELEMENTWISE_ACTIVATIONS = frozenset(
    {
        "celu",
        "elu",
        "exponential",
        "gelu",
        "hard_shrink",
        "hard_sigmoid",
        "hard_silu",
        "hard_tanh",
        "leaky_relu",
        "linear",
        "log_sigmoid",
        "mish",
        "relu",
        "relu6",
        "selu",
        "sigmoid",
        "silu",
        "soft_shrink",
        "softplus",
        "softsign",
        "sparse_plus",
        "sparse_sigmoid",
        "squareplus",
        "tanh",
        "tanh_shrink",
        "threshold",
    }
)
# Each output depends on every channel (softmax family) or on pairs of them (glu).
CHANNEL_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax", "sparsemax", "glu"})


class Context(Protocol):
    """What a handler may do to the graph being analysed."""

    def new_channels(self, call, count: int, part: str | None = None) -> Ids: ...
    def couple(self, first: Ids, second: Ids, call) -> None: ...
    def freeze(self, ids: Ids, reason: str) -> None: ...
    def frozen_channels(self, count: int, reason: str) -> Ids: ...
    def tie(self, ids: Ids, size: int, reason: str) -> None: ...


class LayerHandler:
    """Base handler. Subclasses set ``role`` and override what they need.

    Attributes:
        role: ``producer``, ``passthrough``, ``merge``, ``concat``, ``flatten``
            or ``boundary`` — how the layer appears in a channel group.
        parts: Names of channel sets inside the layer that live on no tensor
            (MultiHeadAttention's ``heads``). Each is a producer of its own,
            named ``"<layer>/<part>"``, made by ``context.new_channels(call,
            count, part=...)`` and sliced by `slice_part_config` and
            `slice_part_weights`.
    """

    role = "boundary"
    parts: tuple[str, ...] = ()

    def call_role(self, call) -> str:
        """The role of one call; most layers have one role whatever the call."""
        return self.role

    def propagate(self, call, input_ids: list[Ids | None], context: Context) -> list[Ids | None]:
        """Channel ids of the call's outputs, given those of its inputs."""
        raise NotImplementedError

    def weight_axes(self, layer) -> dict[str, dict[int, str]]:
        """Weight name → {axis: "in" | "out" | "in_repeated"} for slicing.

        ``in`` axes follow the first input's kept channels, ``out`` axes the
        output's, ``in_repeated`` the input's repeated ``depth_multiplier`` times.
        """
        return {}

    def resized_config(self, layer, config: dict, kept_outputs: int) -> dict:
        """The layer's config after its output channels shrink to ``kept_outputs``."""
        return config

    def slice_config(self, layer, config: dict, out_keep: np.ndarray) -> dict:
        """The layer's config keeping the output channels where ``out_keep`` is true.

        By default `resized_config` with the kept count; handlers of layers whose
        config holds per-channel values (Normalization's mean) override this.
        """
        return self.resized_config(layer, config, int(out_keep.sum()))

    def slice_weights(
        self,
        layer,
        weights: dict[str, np.ndarray],
        in_keep: np.ndarray | None,
        out_keep: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Weights with removed channels dropped, by `weight_axes`."""
        masks = {"in": in_keep, "out": out_keep}
        if in_keep is not None:
            masks["in_repeated"] = np.repeat(in_keep, getattr(layer, "depth_multiplier", 1))
        sliced = {}
        for name, array in weights.items():
            for axis, kind in self.weight_axes(layer).get(name, {}).items():
                if masks[kind] is not None:
                    array = np.compress(masks[kind], array, axis=axis)
            sliced[name] = array
        return sliced

    def slice_part_config(self, layer, config: dict, part_keep: dict[str, np.ndarray]) -> dict:
        """The layer's config keeping, of each part, the channels where its mask is true."""
        return config

    def slice_part_weights(
        self, layer, weights: dict[str, np.ndarray], part_keep: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Weights with the removed channels of each part dropped."""
        return weights

    def part_filters(self, layer, part: str) -> np.ndarray:
        """The weights of each channel of ``part`` as rows: what weight criteria score."""
        raise NotImplementedError(f"{type(self).__name__} has no part {part!r}.")


def _last_dim(tensor) -> int | None:
    shape = tensor.shape
    return shape[-1] if len(shape) else None


def _activation_name(layer) -> str | None:
    """The name of the layer's ``activation`` function, or None without one."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", type(activation).__name__)


def activation_mixes_channels(layer) -> str | None:
    """Why the layer's activation is not channel-wise, or None when it is (or there is none)."""
    name = _activation_name(layer)
    if name is None or name in ELEMENTWISE_ACTIVATIONS:
        return None
    if name in CHANNEL_MIXING_ACTIVATIONS:
        return f"{name} activation"
    return f"activation {name} (not known to be element-wise)"


def _constant_over_channels(call, channels: int) -> bool:
    """Whether a `keras.ops` call takes a constant with one value per channel (e.g.
    ``x * np.ones(c)``, ``ops.clip(x, 0.0, np.full(c, 6.0))``): kprune would not slice
    it, so the call is a boundary."""
    values = call.constant_arguments()
    if not isinstance(call.layer, keras.layers.Layer):  # ops keep some arguments (clip's bounds)
        attributes = vars(call.layer).values()  # arrays; axes and shapes are tuples
        values += [v for v in attributes if isinstance(v, np.ndarray) or keras.ops.is_tensor(v)]
    return channels > 1 and any(np.ndim(value) > 0 and np.shape(value)[-1] == channels for value in values)


def _freeze_if_activation_mixes(call, ids: Ids | None, context: Context) -> None:
    reason = activation_mixes_channels(call.layer)
    if reason is not None and ids is not None:
        context.freeze(ids, f"{reason} of {call.name!r}")


class Producer(LayerHandler):
    """A layer whose output channels are new: Conv, Dense, SeparableConv, …"""

    role = "producer"
    size_key = "filters"

    def propagate(self, call, input_ids, context):
        ids = context.new_channels(call, _last_dim(call.node.outputs[0]))
        _freeze_if_activation_mixes(call, ids, context)
        return [ids]

    def weight_axes(self, layer):
        return {"kernel": {-2: "in", -1: "out"}, "bias": {0: "out"}}

    def resized_config(self, layer, config, kept_outputs):
        return {**config, self.size_key: int(kept_outputs)}


class ConvolutionHandler(Producer):
    """Conv1D/2D/3D. With ``groups == in_channels == filters`` (a depthwise
    convolution written as a grouped one, as in ConvNeXt) channels pass through.
    Other grouped convolutions work on whole groups: group g's outputs read only
    group g's inputs, so each group of input channels is tied into one channel
    of its producers' group, and the group's outputs follow it — pruning removes
    whole groups of inputs and outputs together, and ``groups`` shrinks to match."""

    def call_role(self, call) -> str:
        if self._is_depthwise(call) or call.layer.groups != 1:
            return "passthrough"
        return "producer"

    def propagate(self, call, input_ids, context):
        if self._is_depthwise(call):
            _freeze_if_activation_mixes(call, input_ids[0], context)
            return [input_ids[0]]
        if call.layer.groups != 1:
            return self._propagate_grouped(call, input_ids[0], context)
        return super().propagate(call, input_ids, context)

    @staticmethod
    def _propagate_grouped(call, ids, context):
        layer = call.layer
        if ids is None:
            return [None]
        per_group_in = len(ids) // layer.groups
        per_group_out = layer.filters // layer.groups
        context.tie(ids, per_group_in, f"{type(layer).__name__} {call.name!r} ({layer.groups} groups)")
        _freeze_if_activation_mixes(call, ids, context)
        # Every output of group g carries group g's (tied) channel.
        return [np.repeat(ids[::per_group_in], per_group_out)]

    def weight_axes(self, layer):
        if layer.groups == 1:
            return super().weight_axes(layer)
        if self._is_depthwise_layer(layer):  # kernel (..., 1, channels)
            return {"kernel": {-1: "in"}, "bias": {0: "out"}}
        # kernel (..., in/groups, filters): whole groups go, each keeps its inputs
        return {"kernel": {-1: "out"}, "bias": {0: "out"}}

    def slice_config(self, layer, config, out_keep):
        if layer.groups == 1:
            return super().slice_config(layer, config, out_keep)
        kept = int(out_keep.sum())
        if self._is_depthwise_layer(layer):
            return {**config, "filters": kept, "groups": kept}
        return {**config, "filters": kept, "groups": kept // (layer.filters // layer.groups)}

    @staticmethod
    def _is_depthwise_layer(layer) -> bool:
        # groups == filters alone is not enough: with more inputs than groups
        # (kernel (..., in/groups > 1, filters)) channels are tied to groups.
        return layer.groups == layer.filters and layer.kernel.shape[-2] == 1

    @staticmethod
    def _is_depthwise(call) -> bool:
        layer = call.layer
        in_channels = call.node.input_tensors[0].shape[-1]
        return layer.groups != 1 and layer.groups == layer.filters == in_channels


class TransposedConvolutionHandler(Producer):
    """Conv1D/2D/3DTranspose: a producer whose kernel is (..., filters, in_channels)."""

    def weight_axes(self, layer):  # kernel (..., filters, in_channels)
        return {"kernel": {-1: "in", -2: "out"}, "bias": {0: "out"}}


class DenseHandler(Producer):
    """Dense: a producer of ``units`` channels (the last axis of its output)."""

    size_key = "units"


class SeparableConvolutionHandler(Producer):
    """SeparableConv: a producer; its depthwise part is sliced with the input channels."""

    def weight_axes(self, layer):
        return {
            "depthwise_kernel": {-2: "in"},
            "pointwise_kernel": {-2: "in_repeated", -1: "out"},
            "bias": {0: "out"},
        }


class PassThrough(LayerHandler):
    """Channel-wise layers: output channel k is input channel k.

    ``per_channel_weights`` names weights whose last axis is the channel axis.
    """

    role = "passthrough"
    per_channel_weights: tuple[str, ...] = ()

    def propagate(self, call, input_ids, context):
        if input_ids[0] is not None and _constant_over_channels(call, len(input_ids[0])):
            return freeze(call, input_ids, context, "a constant argument has one value per channel")
        return [input_ids[0] for _ in call.node.outputs]

    def weight_axes(self, layer):
        return {name: {-1: "in"} for name in self.per_channel_weights}


class BatchNormalizationHandler(PassThrough):
    """BatchNorm over the last axis: channel-wise (γ, β and statistics are sliced);
    over another axis, a boundary."""

    per_channel_weights = ("gamma", "beta", "moving_mean", "moving_variance")

    def propagate(self, call, input_ids, context):
        axis = call.layer.axis
        rank = len(call.node.outputs[0].shape)
        if (axis if isinstance(axis, int) else -1) % rank != rank - 1:
            return freeze(call, input_ids, context, f"its feature axis is {axis}")
        return super().propagate(call, input_ids, context)


class GroupNormalizationHandler(PassThrough):
    """GroupNormalization over the last axis: each group of ``channels / groups``
    consecutive channels is normalized on its own, so the groups are tied (pruning
    removes whole groups; γ and β are sliced, ``groups`` shrinks to match). With
    one group it normalizes all channels together, like LayerNormalization: a
    boundary; with one channel per group it is channel-wise."""

    per_channel_weights = ("gamma", "beta")

    def propagate(self, call, input_ids, context):
        layer, ids = call.layer, input_ids[0]
        rank = len(call.node.outputs[0].shape)
        if layer.axis % rank != rank - 1:
            return freeze(call, input_ids, context, f"its feature axis is {layer.axis}")
        if ids is None:
            return [None]
        if layer.groups == 1 and len(ids) > 1:
            return freeze(
                call, input_ids, context, "one group: every channel is normalized with all the others"
            )
        context.tie(
            ids, len(ids) // layer.groups, f"GroupNormalization {call.name!r} ({layer.groups} groups)"
        )
        return super().propagate(call, input_ids, context)

    def slice_config(self, layer, config, out_keep):
        per_group = len(out_keep) // layer.groups
        return {**config, "groups": int(out_keep.sum()) // per_group}


class PReLUHandler(PassThrough):
    """PReLU: channel-wise, its α is sliced."""

    per_channel_weights = ("alpha",)


class DepthwiseHandler(PassThrough):
    """DepthwiseConv: channel c becomes channels c·m … c·m+m−1 (m = depth_multiplier)."""

    def propagate(self, call, input_ids, context):
        ids = input_ids[0]
        _freeze_if_activation_mixes(call, ids, context)
        return [None if ids is None else np.repeat(ids, call.layer.depth_multiplier)]

    def weight_axes(self, layer):
        return {"kernel": {-2: "in"}, "bias": {0: "out"}}


class Merge(LayerHandler):
    """Elementwise merges of tensors: the channels at each position are coupled.

    An input whose channel axis has size 1 is broadcast and couples nothing.
    """

    role = "merge"

    def propagate(self, call, input_ids, context):
        tracked = [ids for ids in input_ids if ids is not None and len(ids) > 1]
        if not tracked:
            return [next((ids for ids in input_ids if ids is not None), None)]
        first = tracked[0]
        if len(first) != _last_dim(call.node.outputs[0]):
            return freeze(call, input_ids, context, "its output is not channel-wise")
        if _constant_over_channels(call, len(first)):
            return freeze(call, input_ids, context, "a constant argument has one value per channel")
        for other in tracked[1:]:
            if len(other) != len(first):
                return freeze(call, input_ids, context, "inputs with different channel counts")
            context.couple(first, other, call)
        return [first]


class ConcatenateHandler(LayerHandler):
    """Concatenate on the channel axis joins the inputs' channels, each at its offset;
    on another axis it couples them like a merge."""

    role = "concat"

    def propagate(self, call, input_ids, context):
        rank = len(call.node.outputs[0].shape)
        if call.layer.axis % rank != rank - 1:
            return Merge().propagate(call, input_ids, context)  # joins positions, not channels
        if any(ids is None for ids in input_ids):
            return [None]
        return [np.concatenate(input_ids)]


class FlattenHandler(LayerHandler):
    """Flatten of NHWC: flat index = position · C + c, so ids repeat per position."""

    role = "flatten"

    def propagate(self, call, input_ids, context):
        ids = input_ids[0]
        spatial = call.node.input_tensors[0].shape[1:-1]
        if ids is None or any(size is None for size in spatial):
            return freeze(call, input_ids, context, "unknown spatial size")
        return [np.tile(ids, math.prod(spatial))]


class ReshapeHandler(LayerHandler):
    """Reshape is channel-wise when it keeps the last axis (e.g. (N, C) → (N, 1, 1, C))."""

    role = "passthrough"
    shape_key = "target_shape"  # `ops.reshape`'s operation keeps it as "newshape"

    def propagate(self, call, input_ids, context):
        before = call.node.input_tensors[0].shape
        after = call.node.outputs[0].shape
        if input_ids[0] is not None and before[-1] == after[-1]:
            return [input_ids[0]]
        if len(after) == 2 and len(before) > 2 and None not in before[1:]:
            return FlattenHandler().propagate(call, input_ids, context)
        return freeze(call, input_ids, context, "moves the channel axis")

    def resized_config(self, layer, config, kept_outputs):
        target = list(config[self.shape_key])
        if target[-1] != -1:
            target[-1] = int(kept_outputs)
        return {**config, self.shape_key: tuple(target)}


class ReshapeOpHandler(ReshapeHandler):
    """`ops.reshape`: as the Reshape layer; its new shape includes the batch axis."""

    shape_key = "newshape"


class ActivationHandler(PassThrough):
    """Activation: channel-wise for element-wise functions (relu, silu, gelu, …); softmax,
    log_softmax, sparsemax, glu and functions kprune does not know are boundaries."""

    def propagate(self, call, input_ids, context):
        reason = activation_mixes_channels(call.layer)
        if reason is not None:
            return freeze(call, input_ids, context, reason)
        return super().propagate(call, input_ids, context)


class Boundary(LayerHandler):
    """Channels that reach this layer are frozen; its outputs are new, frozen channels."""

    role = "boundary"

    def propagate(self, call, input_ids, context):
        return freeze(call, input_ids, context)


def freeze(call, input_ids: list[Ids | None], context: Context, detail: str = "") -> list[Ids]:
    """Treats one call as a boundary: freezes its inputs' channels, returns frozen outputs."""
    reason = f"{type(call.layer).__name__} {call.name!r}" + (f" ({detail})" if detail else "")
    for ids in input_ids:
        if ids is not None:
            context.freeze(ids, reason)
    return [context.frozen_channels(_last_dim(tensor) or 0, reason) for tensor in call.node.outputs]


class LayerScaleHandler(PassThrough):
    """ConvNeXt's per-channel residual scale γ (config: projection_dim)."""

    per_channel_weights = ("gamma",)

    def resized_config(self, layer, config, kept_outputs):
        return {**config, "projection_dim": int(kept_outputs)}


class MultiHeadAttentionHandler(Producer):
    """MultiHeadAttention loses whole heads: its ``heads`` part (`LayerHandler.parts`)
    slices the query, key, value (and gate) projections per head and the output
    projection per input row; ``num_heads`` shrinks. Its output channels are a
    producer's, like a Dense's (``output_shape`` is then set). Its inputs' channels
    are frozen: kprune does not slice the projections' input rows."""

    parts = ("heads",)
    # EinsumDense kernels: (input, heads, per head); biases (heads, per head).
    _PER_HEAD = ("query", "key", "value", "gate")

    def propagate(self, call, input_ids, context):
        for ids in input_ids:
            if ids is not None:
                context.freeze(ids, f"MultiHeadAttention {call.name!r} (its inputs are not sliced)")
        context.new_channels(call, call.layer.num_heads, part="heads")
        return [context.new_channels(call, _last_dim(call.node.outputs[0]))]

    def weight_axes(self, layer):
        return {"attention_output/kernel": {-1: "out"}, "attention_output/bias": {0: "out"}}

    def resized_config(self, layer, config, kept_outputs):
        return {**config, "output_shape": (int(kept_outputs),)}

    def slice_part_config(self, layer, config, part_keep):
        return {**config, "num_heads": int(part_keep["heads"].sum())}

    def slice_part_weights(self, layer, weights, part_keep):
        keep = part_keep["heads"]
        sliced = dict(weights)
        for name, array in weights.items():
            projection, _, kind = name.partition("/")
            if projection in self._PER_HEAD:
                sliced[name] = np.compress(keep, array, axis=1 if kind == "kernel" else 0)
            elif name == "attention_output/kernel":
                sliced[name] = np.compress(keep, array, axis=0)
        return sliced

    def part_filters(self, layer, part: str) -> np.ndarray:
        """Every weight of each head as one row: (heads, weights per head)."""
        projections = [layer.query_dense, layer.key_dense, layer.value_dense]
        projections += [layer._gate_dense] if getattr(layer, "_use_gate", False) else []
        rows = []
        for projection in projections:
            rows.append(np.moveaxis(np.asarray(projection.kernel), 1, 0).reshape(layer.num_heads, -1))
            if projection.bias is not None:
                rows.append(np.asarray(projection.bias).reshape(layer.num_heads, -1))
        rows.append(np.asarray(layer.output_dense.kernel).reshape(layer.num_heads, -1))
        return np.concatenate(rows, axis=1)
