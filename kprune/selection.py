"""Which channels to remove in one pruning step: the globally lowest scores.

Scores are compared across groups after layer-wise normalization (Molchanov
et al. 2017). Channels are taken in *units*: one channel, or with
``round_to=r`` chunks of r channels (the first chunk of a group trimmed so
that every group keeps a multiple of r). A unit's score is the mean of its
channels' scores. A group never drops below ``min_per_group`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kprune.errors import InvalidArgumentError


@dataclass(frozen=True)
class Unit:
    group: int
    channels: tuple[int, ...]  # group channel indices
    score: float


def group_units(scores: np.ndarray, group: int, min_keep: int, round_to: int | None) -> list[Unit]:
    """The removable units of one group, lowest score first."""
    step = round_to or 1
    size = len(scores)
    floor = max(min_keep, step)
    floor = -(-floor // step) * step  # keep a multiple of round_to
    removable = size - floor
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
            `kprune.ranking.rank_groups`).
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
    producers = {name for group in graph.groups for name in group.producers}
    unknown = [name for name in ignore if name not in producers]
    if unknown:
        raise InvalidArgumentError(
            f"`ignore` names unknown producer layer(s) {unknown}. Producers: {', '.join(sorted(producers))}."
        )
    ignored_groups = {graph.group_of(name).index for name in ignore}
    units = []
    for index, values in scores.items():
        if index in ignored_groups:
            continue
        units.extend(group_units(np.asarray(values), index, min_per_group, round_to))
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
