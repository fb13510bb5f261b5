"""`remove_filters()` and `replay()`: a new, smaller functional model (built by
`kprune.graph.rebuild`, the one engine that builds models).

Removing channel k of a producer removes group channel k of its whole group
(coupled producers, e.g. the branches of an Add, lose the same channel), the
matching positions of every channel-wise layer it passes (BatchNorm, PReLU,
DepthwiseConv, …), and the matching input rows of every consumer (Conv,
Dense — through Concatenate offsets and Flatten expansion). The original model
is never modified; the result has the same inputs, outputs and layer names
and loads with plain ``keras.models.load_model``.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import keras
import numpy as np

from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph, analyze
from kprune.graph.rebuild import keep_masks, rebuild
from kprune.history import PruningHistory


def remove_filters(
    model: keras.Model,
    filters: Mapping[str, Iterable[int]],
    *,
    graph: DependencyGraph | None = None,
    history: PruningHistory | None = None,
    unsupported: str = "error",
) -> keras.Model:
    """Returns a copy of ``model`` without the given output channels.

    Args:
        model: A functional or Sequential model (nested models are flattened
            into the result). It is not modified.
        filters: Producer layer name → indices of its output channels to
            remove. Coupled producers (one group) lose the same channels;
            naming any member of a group is enough.
        graph: ``analyze(model)``, if already computed.
        history: A `PruningHistory` to append this step to.
        unsupported: Passed to `analyze()` when ``graph`` is not given.

    Returns:
        A new functional ``keras.Model`` with sliced weights.

    Raises:
        InvalidArgumentError: Unknown or non-prunable layer (the prunable ones
            are listed), index out of range, duplicate index, or a removal that
            leaves a layer without channels.
        UnsupportedModelError: See `analyze()`.

    Example:
        >>> pruned = remove_filters(model, {"fire2_squeeze1x1": [0, 5]})
    """
    graph = graph or analyze(model, unsupported=unsupported)
    removed_roots = _removed_roots(graph, filters)
    pruned = rebuild(graph, keep_masks(graph, removed_roots))
    if history is not None:
        history.model_name = history.model_name or model.name
        history.append(filters)
    return pruned


def replay(model: keras.Model, history: PruningHistory | Mapping) -> keras.Model:
    """Re-applies every step of ``history`` to ``model``; ``model`` is not modified.

    Given the model that the history started from, the result equals the
    pruned model (architecture and weights) before any fine-tuning.
    """
    if not isinstance(history, PruningHistory):
        history = PruningHistory.from_dict(history)
    for step in history.steps:
        model = remove_filters(model, step)
    return model


def _removed_roots(graph: DependencyGraph, filters: Mapping[str, Iterable[int]]) -> np.ndarray:
    """Validates the request completely, then returns the root ids to remove."""
    if not isinstance(filters, Mapping):
        raise InvalidArgumentError(
            f"`filters` must map layer names to channel indices. Received {type(filters).__name__}."
        )
    removed = np.zeros(len(graph.roots), dtype=bool)
    for layer, indices in filters.items():
        group = graph.group_of(layer)
        if not group.prunable:
            raise InvalidArgumentError(
                f"Layer {layer!r} cannot be pruned: its channels reach "
                f"{'; '.join(group.frozen_by)}. Prunable layers: "
                f"{', '.join(graph.prunable_layers()) or 'none'}."
            )
        indices = _checked_indices(layer, indices, len(group.producers[layer]))
        _check_whole_blocks(layer, indices, group)
        removed[graph.roots[graph.producer_ids(layer)[indices]]] = True
    for group in graph.groups:
        for name in group.producers:
            kept = ~removed[graph.roots[graph.producer_ids(name)]]
            if not kept.any():
                raise InvalidArgumentError(
                    f"Removing these channels would leave layer {name!r} (group "
                    f"{group.index}, {group.channels} channels) with none. Keep at least one."
                )
    return removed


def _check_whole_blocks(layer: str, indices: np.ndarray, group) -> None:
    """Refuses part of a block of channels that a layer ties together (`Group.tied_by`)."""
    if not group.tied_by:
        return
    mapping = group.producers[layer]
    for channel in np.unique(mapping[indices]).tolist():
        block = np.flatnonzero(mapping == channel)
        missing = np.setdiff1d(block, indices)
        if missing.size:
            raise InvalidArgumentError(
                f"Channels {_span(block)} of {layer!r} go together ({'; '.join(group.tied_by)} "
                f"works on them as one block), but {_span(missing)} are not listed. Fix: remove "
                "the whole block or none of it."
            )


def _span(indices: np.ndarray) -> str:
    first, last = int(indices[0]), int(indices[-1])
    if last - first + 1 == len(indices):
        return f"{first}..{last}"
    return ", ".join(str(int(i)) for i in indices)


def _checked_indices(layer: str, indices: Iterable[int], size: int) -> np.ndarray:
    values = np.asarray(list(indices))
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise InvalidArgumentError(
            f"Channel indices of {layer!r} must be integers. Received {values.tolist()}."
        )
    values = values.astype(np.int64)
    bad = values[(values < 0) | (values >= size)]
    if bad.size:
        raise InvalidArgumentError(
            f"Channel index {int(bad[0])} of {layer!r} is out of range: the layer has "
            f"{size} output channels (0..{size - 1})."
        )
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise InvalidArgumentError(
            f"Channel index {int(unique[counts > 1][0])} of {layer!r} is listed twice."
        )
    return values
