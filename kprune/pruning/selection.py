"""Which channels to remove in one pruning step.

`select` takes the globally lowest scores. Scores are compared across groups
after layer-wise normalization (Molchanov et al. 2017). Channels are taken in
*units*: one channel, or with ``round_to=r`` chunks of r channels (the first
chunk of a group trimmed so that every group keeps a multiple of r). A unit's
score is the mean of its channels' scores. A group never drops below
``min_per_group`` channels, and neither does a layer that makes only part of
a group's channels (two convolutions concatenated, then added to a third):
its best ``min_per_group`` channels are kept (`keep_every_producer`).

`select_for_latency` weighs importance against measured time, in the spirit
of HALP (Shen et al., NeurIPS 2022): a group may only shrink to the next
channel count that fills whole kernel tiles, and the move with the least
importance lost per millisecond saved goes first, until the step's time
budget or channel count is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kprune.errors import InvalidArgumentError


@dataclass(frozen=True)
class Unit:
    group: int
    channels: tuple[int, ...]  # group channel indices
    score: float


def kept_at_least(min_keep: int, round_to: int | None) -> int:
    """Channels a group always keeps: ``min_keep`` rounded up to a multiple of ``round_to``."""
    step = round_to or 1
    return -(-max(min_keep, step) // step) * step


def group_units(scores: np.ndarray, group: int, min_keep: int, round_to: int | None) -> list[Unit]:
    """The removable units of one group, lowest score first."""
    step = round_to or 1
    size = len(scores)
    removable = size - kept_at_least(min_keep, round_to)
    if removable <= 0:
        return []
    order = np.argsort(scores, kind="stable")
    units, start = [], 0
    first = size % step or step
    while start < removable:
        width = first if start == 0 else step
        if start + width > removable:
            break
        chosen = order[start : start + width]
        units.append(Unit(group, tuple(int(c) for c in chosen), float(np.mean(scores[chosen]))))
        start += width
    return units


def _partial_producers(group) -> list[np.ndarray]:
    """The group channels of each producer that makes only part of ``group``'s channels."""
    owns = [np.unique(mapping) for mapping in group.producers.values()]
    return [own for own in owns if len(own) < group.channels]


def keep_every_producer(graph, index: int, scores: np.ndarray, min_keep: int) -> tuple[np.ndarray, int]:
    """Scores of group ``index`` with the channels that must stay set to infinity, and how
    many they are: a producer that makes only part of the group's channels keeps its
    ``min_keep`` best, so that no layer is left without channels."""
    scores = np.asarray(scores, dtype=float)
    kept = np.zeros(len(scores), dtype=bool)
    for own in _partial_producers(graph.groups[index]):
        kept[own[np.argsort(scores[own], kind="stable")[::-1][:min_keep]]] = True
    if not kept.any():
        return scores, 0
    return np.where(kept, np.inf, scores), int(kept.sum())


def removable_channels(
    graph, *, min_per_group: int = 1, round_to: int | None = None, ignore: tuple[str, ...] = ()
) -> dict[int, int]:
    """{group index: how many of its channels can still be removed}, for the prunable groups
    not in ``ignore``, each keeping ``min_per_group`` (a multiple of ``round_to``)."""
    ignored = {graph.group_of(name).index for name in ignore}

    def floor(group) -> int:  # the group's minimum, and each partial producer's (`keep_every_producer`)
        protected = sum(min(min_per_group, len(own)) for own in _partial_producers(group))
        return kept_at_least(max(min_per_group, protected), round_to)

    return {
        group.index: max(0, group.channels - floor(group))
        for group in graph.groups
        if group.prunable and group.index not in ignored
    }


def select(
    graph,
    scores: dict[int, np.ndarray],
    count: int,
    *,
    min_per_group: int = 1,
    round_to: int | None = None,
    ignore: tuple[str, ...] = (),
    costs: dict[int, float] | None = None,
    budget: float | None = None,
) -> dict[str, list[int]]:
    """Picks up to ``count`` channels with the lowest scores across groups.

    Args:
        graph: The model's `DependencyGraph`.
        scores: {group index: score of each group channel} (see
            `kprune.pruning.ranking.rank_groups`).
        count: Channels to remove at most.
        min_per_group: Channels every group keeps at least.
        round_to: Keep every group's channel count a multiple of this.
        ignore: Producer names whose groups are not touched.
        costs: {group index: cost of one channel}, with ``budget``: stop once
            the chosen channels' cost reaches the budget.
        budget: See ``costs``.

    Returns:
        A filter spec for `remove_filters`: {producer: indices}, every member
        of a chosen group listed.

    Raises:
        InvalidArgumentError: If ``ignore`` names a layer that is not a producer.
    """
    _check_ignore(graph, ignore)
    ignored_groups = {graph.group_of(name).index for name in ignore}
    units = []
    for index, values in scores.items():
        if index in ignored_groups:
            continue
        values, kept = keep_every_producer(graph, index, values, min_per_group)
        units.extend(group_units(values, index, max(min_per_group, kept), round_to))
    units.sort(key=lambda unit: unit.score)

    chosen: dict[int, list[int]] = {}
    taken, spent = 0, 0.0
    for unit in units:
        if taken >= count or (budget is not None and spent >= budget):
            break
        chosen.setdefault(unit.group, []).extend(unit.channels)
        taken += len(unit.channels)
        if costs is not None:
            spent += costs[unit.group] * len(unit.channels)
    return _spec(graph, chosen)


def select_for_latency(
    graph,
    scores: dict[int, np.ndarray],
    count: int,
    *,
    predict: Callable[[dict[int, int]], float],
    step: int,
    budget: float,
    min_per_group: int = 1,
    ignore: tuple[str, ...] = (),
) -> dict[str, list[int]]:
    """Picks channels by importance lost per millisecond saved, at tile-sized channel counts.

    Args:
        graph: The model's `DependencyGraph`.
        scores: {group index: normalized score of each group channel}.
        count: Channels to remove at most.
        predict: Predicted model time (ms) when group g keeps ``kept[g]``
            channels (others all of theirs), e.g. `GroupLatency.predict`.
        step: Channel counts a group may shrink to are multiples of this.
        budget: Milliseconds to save at most; the step stops once saved.
        min_per_group: Channels every group keeps at least.
        ignore: Producer names whose groups are not touched.

    Returns:
        A filter spec for `remove_filters`.
    """
    _check_ignore(graph, ignore)
    ignored = {graph.group_of(name).index for name in ignore}
    groups, floors = {}, {}
    for index, values in scores.items():
        if index in ignored or not len(values):
            continue
        groups[index], must_keep = keep_every_producer(graph, index, values, min_per_group)
        floors[index] = kept_at_least(max(min_per_group, must_keep), step)
    order = {i: np.argsort(v, kind="stable") for i, v in groups.items()}
    kept = {i: len(v) for i, v in groups.items()}
    now = predict({})
    goal = now - budget
    taken = 0
    while taken < count and now > goal:
        best = None  # (importance per ms, group, new size, time after)
        for index, values in groups.items():
            for size in _smaller_sizes(kept[index], step, floors[index])[:3]:
                if kept[index] - size + taken > count:
                    break
                after = predict({**kept, index: size})
                saved = now - after
                if saved <= 0:
                    continue  # within a tile's noise: look at the next smaller size
                lost = float(values[order[index][len(values) - kept[index] : len(values) - size]].sum())
                ratio = lost / saved
                if best is None or ratio < best[0]:
                    best = (ratio, index, size, after)
                break
        if best is None:
            break
        _, index, size, now = best
        taken += kept[index] - size
        kept[index] = size
    chosen = {
        index: order[index][: len(groups[index]) - size].tolist()
        for index, size in kept.items()
        if size < len(groups[index])
    }
    return _spec(graph, chosen)


def _smaller_sizes(current: int, step: int, floor: int) -> list[int]:
    """Multiples of ``step`` below ``current`` and at least ``floor``, largest first."""
    top = (current - 1) // step * step
    return [size for size in range(top, 0, -step) if size >= floor]


def _check_ignore(graph, ignore) -> None:
    producers = {name for group in graph.groups for name in group.producers}
    unknown = [name for name in ignore if name not in producers]
    if unknown:
        raise InvalidArgumentError(
            f"`ignore` names unknown producer layer(s) {unknown}. Producers: {', '.join(sorted(producers))}."
        )


def _spec(graph, chosen: dict[int, list[int]]) -> dict[str, list[int]]:
    spec = {}
    for index, channels in chosen.items():
        wanted = set(channels)
        # Every member is named, so the spec is complete even when a member
        # holds only part of the group's channels.
        for name, mapping in graph.groups[index].producers.items():
            indices = [i for i, c in enumerate(mapping.tolist()) if c in wanted]
            if indices:
                spec[name] = indices
    return spec
