"""`analyze()`: which channels of a model are coupled, who makes and who uses them.

Every output channel of a producer layer (Conv, Dense, …) gets an integer id;
handlers move the ids through the graph (see `kprune.graph.handlers`), and
elementwise merges join ids in a union-find. A *group* is a set of producers
whose channels are joined: removing group channel k removes the matching
output channel of every member producer, and slices every layer that passes
or consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.graph.flatten import Call, FlatGraph, flatten
from kprune.graph.handlers import Boundary, Ids, LayerHandler
from kprune.graph.registry import handler_for, overridden_base

UNSUPPORTED_MODES = ("error", "freeze")
PART_SEPARATOR = "/"  # Keras layer names cannot hold it, so part names never clash


def part_name(layer: str, part: str) -> str:
    """The producer name of channels inside ``layer`` that live on no tensor
    (`LayerHandler.parts`): ``"attention/heads"`` for the heads of layer ``attention``."""
    return f"{layer}{PART_SEPARATOR}{part}"


def split_part(producer: str) -> tuple[str, str | None]:
    """``(layer name, part)`` of a producer name; part is None for a layer's output channels."""
    layer, _, part = producer.partition(PART_SEPARATOR)
    return layer, part or None


@dataclass
class Member:
    """A layer's part in a group.

    Attributes:
        layer: Layer name.
        role: ``producer``, ``passthrough``, ``merge``, ``concat``,
            ``flatten`` or ``consumer``.
        positions: Indices along the layer's channel axis (its output axis,
            or its input axis for a consumer) that hold this group's channels.
        size: Length of that axis.
    """

    layer: str
    role: str
    positions: np.ndarray
    size: int

    def span(self) -> str:
        """The positions as compact text, e.g. ``64..127 of 128``."""
        if len(self.positions) == 0:
            return f"none of {self.size}"
        first, last = int(self.positions[0]), int(self.positions[-1])
        contiguous = last - first + 1 == len(self.positions)
        if contiguous:
            text = f"{first}..{last}" if last > first else f"{first}"
        else:
            text = f"{len(self.positions)} positions in {first}..{last}"
        return f"{text} of {self.size}"


@dataclass
class Group:
    """Channels that must be removed together.

    Attributes:
        index: Position in `DependencyGraph.groups`.
        channels: Number of group channels: coupled channels count once, and so
            does a block of channels tied together (see ``tied_by``).
        producers: Producer name → group channel of each of its output channels.
        members: Every layer the group's channels touch, with its role.
        frozen_by: Why the group may not be pruned (empty when it may).
        tied_by: The layers that tie blocks of a producer's channels into one
            group channel (GroupNormalization, grouped convolutions): a group
            channel is then a block, removed whole.
    """

    index: int
    channels: int
    producers: dict[str, np.ndarray]
    members: list[Member] = field(default_factory=list)
    frozen_by: list[str] = field(default_factory=list)
    tied_by: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        return not self.frozen_by

    def layers(self, role: str) -> list[str]:
        """Names of the member layers with ``role``, in graph order, once each."""
        return list(dict.fromkeys(m.layer for m in self.members if m.role == role))


class _Context:
    """The `handlers.Context` given to handlers during analysis."""

    def __init__(self):
        self.channels = DisjointSet()  # channel ids; coupled ones share a subset
        self._count = 0
        self.producer_ids: dict[str, Ids] = {}
        self.freezes: list[tuple[Ids, str]] = []
        self.ties: list[tuple[Ids, str]] = []

    def new_channels(self, call: Call, count: int, part: str | None = None) -> Ids:
        # A layer called several times makes the same channels at every call.
        name = call.name if part is None else part_name(call.name, part)
        if name not in self.producer_ids:
            self.producer_ids[name] = self._add(count)
        return self.producer_ids[name]

    def couple(self, first: Ids, second: Ids, call: Call) -> None:
        for a, b in zip(first.tolist(), second.tolist()):
            self.channels.merge(a, b)

    def tie(self, ids: Ids, size: int, reason: str) -> None:
        """Makes each block of ``size`` consecutive ``ids`` one channel (removed whole)."""
        if size <= 1:
            return
        for start in range(0, len(ids) - size + 1, size):
            block = ids[start : start + size].tolist()
            for other in block[1:]:
                self.channels.merge(block[0], other)
        self.ties.append((ids, reason))

    def freeze(self, ids: Ids, reason: str) -> None:
        self.freezes.append((ids, reason))

    def frozen_channels(self, count: int, reason: str) -> Ids:
        ids = self._add(count)
        self.freeze(ids, reason)
        return ids

    def _add(self, count: int) -> Ids:
        ids = np.arange(self._count, self._count + count, dtype=np.int64)
        for channel in ids.tolist():
            self.channels.add(channel)
        self._count += count
        return ids

    def roots(self) -> np.ndarray:
        """Root of every channel id: the smallest id of its coupled set."""
        roots = np.arange(self._count, dtype=np.int64)
        for subset in self.channels.subsets():
            if len(subset) > 1:
                roots[list(subset)] = min(subset)
        return roots


class DependencyGraph:
    """The channel groups of a model; build it with `analyze()`.

    Attributes:
        model: The analysed model (never modified).
        flat: Its calls in topological order, nested models inlined.
        groups: Every group that has at least one producer.
        tensor_ids: Canonical tensor id → channel ids of its last axis.
        roots: Channel id → id of its group channel (union-find root).
        handlers: Call name → the handler used for it.
    """

    def __init__(self, model, flat, groups, tensor_ids, roots, handlers, channel_index, producer_ids):
        self.model = model
        self.flat: FlatGraph = flat
        self.groups: list[Group] = groups
        self.tensor_ids: dict[int, Ids | None] = tensor_ids
        self.roots: np.ndarray = roots
        self.handlers: dict[str, LayerHandler] = handlers
        self._channel_index = channel_index  # root id → (group index, group channel)
        self._group_of = {name: g for g in groups for name in g.producers}
        self._producer_ids: dict[str, Ids] = producer_ids

    def prunable_layers(self) -> list[str]:
        """Names of the producers whose output channels may be removed."""
        return [name for g in self.groups if g.prunable for name in g.producers]

    def group_of(self, layer: str) -> Group:
        """The group of producer ``layer``.

        Raises:
            InvalidArgumentError: If ``layer`` is not a producer of this model.
        """
        if layer not in self._group_of:
            raise InvalidArgumentError(
                f"{layer!r} is not a producer layer of model {self.model.name!r}. "
                f"Prunable layers: {', '.join(self.prunable_layers()) or 'none'}."
            )
        return self._group_of[layer]

    def group_channels_of(self, ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        """For channel ids: (group index, group channel) of each; -1 where none."""
        groups = np.full(len(ids), -1, dtype=np.int64)
        channels = np.full(len(ids), -1, dtype=np.int64)
        for position, root in enumerate(self.roots[ids].tolist()):
            if root in self._channel_index:
                groups[position], channels[position] = self._channel_index[root]
        return groups, channels

    def group_roots(self, group: Group) -> np.ndarray:
        """Root channel id of each group channel, in group-channel order."""
        roots = np.empty(group.channels, dtype=np.int64)
        for name, channels in group.producers.items():
            roots[channels] = self.roots[self.producer_ids(name)]
        return roots

    def producer_ids(self, layer: str) -> Ids:
        """Channel ids of the output channels of producer ``layer`` (or of a part of it)."""
        return self._producer_ids[layer]

    def parts(self) -> dict[str, Ids]:
        """Producer name → channel ids, for the channels inside layers (`part_name`)."""
        return {name: ids for name, ids in self._producer_ids.items() if split_part(name)[1]}

    def describe(self) -> str:
        """A readable account of every group: members, roles, index mapping."""
        lines = [
            f"Model {self.model.name!r}: {len(self.groups)} channel groups, "
            f"{sum(g.prunable for g in self.groups)} prunable."
        ]
        for group in self.groups:
            state = "prunable" if group.prunable else "frozen by " + "; ".join(group.frozen_by[:3])
            lines.append(f"group {group.index}: {group.channels} channels, {state}")
            lines.append(f"  producers: {', '.join(group.producers)}")
            if group.tied_by:
                lines.append(f"  blocks of channels tied by: {', '.join(group.tied_by)}")
            for role, label in (
                ("merge", "coupled by"),
                ("passthrough", "passes through"),
                ("concat", "concatenated in"),
                ("flatten", "flattened by"),
                ("consumer", "consumed by"),
            ):
                members = [m for m in group.members if m.role == role]
                if not members:
                    continue
                if role in ("concat", "flatten", "consumer"):
                    text = ", ".join(f"{m.layer} [{m.span()}]" for m in members)
                else:
                    text = ", ".join(dict.fromkeys(m.layer for m in members))
                lines.append(f"  {label}: {text}")
        return "\n".join(lines)


def analyze(model: keras.Model, unsupported: str = "error") -> DependencyGraph:
    """Finds the groups of coupled channels of a functional or Sequential model.

    Args:
        model: The model; it is only read.
        unsupported: ``"error"`` to refuse layers that have no handler (all
            are listed at once), or ``"freeze"`` to treat them as boundaries:
            channels that reach them are frozen, the rest stays prunable.

    Returns:
        A `DependencyGraph`.

    Raises:
        UnsupportedModelError: For subclassed models, or unsupported layers
            when ``unsupported="error"``.

    Example:
        >>> graph = analyze(model)
        >>> print(graph.describe())
    """
    if unsupported not in UNSUPPORTED_MODES:
        raise InvalidArgumentError(
            f"`unsupported` must be one of {UNSUPPORTED_MODES}. Received unsupported={unsupported!r}."
        )
    flat = flatten(model)
    handlers = _choose_handlers(flat, unsupported)
    context = _Context()
    tensor_ids: dict[int, Ids | None] = {}
    for tensor in flat.inputs:
        tensor_ids[id(tensor)] = context.frozen_channels(tensor.shape[-1] or 0, "model input")
    first_inputs: dict[str, Ids | None] = {}  # layer name → input ids of its first call
    for call in flat.calls:
        inputs = [tensor_ids.get(t) for t in call.inputs]
        _couple_shared_inputs(call, inputs, first_inputs, context)
        outputs = handlers[call.name].propagate(call, inputs, context)
        for tensor_id, ids in zip(call.outputs, outputs):
            tensor_ids[tensor_id] = ids
    producer_of = flat.producer_call()
    for output in flat.outputs:
        if tensor_ids.get(output) is not None:
            context.freeze(tensor_ids[output], f"model output {producer_of[output].name!r}")
    return _build_graph(model, flat, handlers, context, tensor_ids)


def _couple_shared_inputs(call: Call, inputs, first_inputs: dict, context: _Context) -> None:
    """A layer with weights called on several tensors slices its weights once,
    so every call must keep the same input channels: couple them."""
    if not getattr(call.layer, "weights", None) or not inputs:
        return
    if call.name not in first_inputs:
        first_inputs[call.name] = inputs[0]
        return
    first = first_inputs[call.name]
    if first is not None and inputs[0] is not None and len(first) == len(inputs[0]):
        context.couple(first, inputs[0], call)


def _choose_handlers(flat: FlatGraph, unsupported: str) -> dict[str, LayerHandler]:
    handlers, missing, any_channels_first = {}, [], False
    for call in flat.calls:
        handler = handler_for(call.layer)
        # Handlers read channels on the last axis; channels_first layers would be mis-sliced.
        channels_first = getattr(call.layer, "data_format", None) == "channels_first"
        if handler is None or channels_first:
            missing.append(f"{call.name} ({type(call.layer).__name__}{_why_unserved(call.layer)})")
            any_channels_first |= channels_first
            handler = Boundary()
        handlers[call.name] = handler
    if missing and unsupported == "error":
        raise UnsupportedModelError(
            f"kprune has no handler for {len(missing)} layer(s): {', '.join(missing)}. "
            f"Fix: {'build the model channels_last, ' if any_channels_first else ''}"
            "register one with kprune.register_handler, or pass "
            "unsupported='freeze' (CLI: --unsupported freeze) to keep their channels."
        )
    return handlers


def _why_unserved(layer) -> str:
    if getattr(layer, "data_format", None) == "channels_first":
        return ", channels_first"
    base = overridden_base(layer)
    if base is not None:
        return f", a subclass of {base.__name__} that overrides call"
    return ""


def _build_graph(model, flat, handlers, context, tensor_ids) -> DependencyGraph:
    roots = context.roots()
    # Producers whose channels share a root are one group.
    producers = DisjointSet(context.producer_ids)
    owner: dict[int, str] = {}
    for name, ids in context.producer_ids.items():
        for root in np.unique(roots[ids]).tolist():
            producers.merge(owner.setdefault(root, name), name)
    order = {name: position for position, name in enumerate(context.producer_ids)}
    components = sorted(
        (sorted(subset, key=order.get) for subset in producers.subsets()),
        key=lambda members: order[members[0]],
    )

    groups, channel_index = [], {}
    for members in components:
        group_roots = np.unique(np.concatenate([roots[context.producer_ids[n]] for n in members]))
        position = {root: k for k, root in enumerate(group_roots.tolist())}
        group = Group(
            index=len(groups),
            channels=len(group_roots),
            producers={
                n: np.array([position[r] for r in roots[context.producer_ids[n]].tolist()]) for n in members
            },
        )
        for root, k in position.items():
            channel_index[root] = (group.index, k)
        groups.append(group)

    for notes, attribute in ((context.freezes, "frozen_by"), (context.ties, "tied_by")):
        for ids, reason in notes:
            touched = {channel_index[r][0] for r in roots[ids].tolist() if r in channel_index}
            for g in touched:
                if reason not in getattr(groups[g], attribute):
                    getattr(groups[g], attribute).append(reason)

    graph = DependencyGraph(
        model, flat, groups, tensor_ids, roots, handlers, channel_index, context.producer_ids
    )
    _add_members(graph)
    return graph


def _add_members(graph: DependencyGraph) -> None:
    """Records, for every group, each layer its channels touch and where."""
    for call in graph.flat.calls:
        role = graph.handlers[call.name].call_role(call)
        if role == "producer":
            in_ids = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
            if in_ids is not None:
                _note(graph, call.name, "consumer", in_ids)
        out_ids = graph.tensor_ids.get(call.outputs[0]) if call.outputs else None
        if out_ids is not None and role in ("producer", "passthrough", "merge", "concat", "flatten"):
            _note(graph, call.name, role, out_ids)
        for part in graph.handlers[call.name].parts:
            name = part_name(call.name, part)
            if name in graph.parts():
                _note(graph, name, "producer", graph.producer_ids(name))


def _note(graph: DependencyGraph, layer: str, role: str, ids: Ids) -> None:
    groups, _ = graph.group_channels_of(ids)
    for g in np.unique(groups[groups >= 0]).tolist():
        positions = np.flatnonzero(groups == g)
        graph.groups[g].members.append(Member(layer, role, positions, len(ids)))
