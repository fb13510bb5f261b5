"""Pruning targets: how far a model is from its goal, and what removing a channel saves.

A target watches one quantity of the model — parameters, FLOPs, prunable
filters or predicted latency — that pruning lowers. It knows the quantity's
value at the start, the value to reach, the value now, and how one pruning
step chooses channels (`Target.choose`): the count targets let
`kprune.pruning.selection.select` weigh scores against each group's per-channel
saving; the latency target asks `kprune.pruning.selection.select_for_latency`,
which also keeps channel counts at the latency table's tile step. Adding a
target means one more subclass and one more line in `make_target`.
"""

from __future__ import annotations

import math
from typing import Mapping

import keras

from kprune.graph import DependencyGraph, analyze
from kprune.latency.predict import GroupLatency, predict_latency
from kprune.latency.table import LatencyTable
from kprune.metrics import channel_flops, channel_params, count_flops, count_params
from kprune.pruning.selection import select, select_for_latency
from kprune.training.recovery import estimated_steps


def prunable_channels(graph: DependencyGraph) -> int:
    """Channels of all prunable groups: how many filters could still go."""
    return int(sum(group.channels for group in graph.groups if group.prunable))


def initial_size(model: keras.Model, graph: DependencyGraph) -> dict[str, int]:
    """The quantities every target measures, at the start of a run."""
    return {"params": count_params(model), "flops": count_flops(model), "filters": prunable_channels(graph)}


class Target:
    """Lower the quantity `name` from ``initial`` to ``goal``.

    Subclasses say how to measure the quantity and what one channel of each
    group is worth in it.

    Attributes:
        name: ``params``, ``flops`` or ``filters``.
        initial: The quantity at the start of the run.
        goal: The value at which the target is reached.
    """

    name = ""

    def __init__(self, initial: float, goal: float):
        self.initial = float(initial)
        self.goal = float(goal)

    def measure(self, model: keras.Model, graph: DependencyGraph | None = None) -> float:
        """The quantity now."""
        raise NotImplementedError

    def channel_costs(self, graph: DependencyGraph) -> dict[int, float]:
        """{group index: how much removing one of its channels lowers the quantity}."""
        raise NotImplementedError

    def choose(
        self,
        model,
        graph: DependencyGraph,
        scores,
        count: int,
        *,
        min_per_group: int = 1,
        round_to: int | None = None,
        ignore: tuple[str, ...] = (),
    ) -> dict[str, list[int]]:
        """The channels one pruning step removes: at most ``count``, within what is left."""
        return select(
            graph,
            scores,
            count,
            min_per_group=min_per_group,
            round_to=round_to,
            ignore=ignore,
            costs=self.channel_costs(graph),
            budget=self.remaining(model, graph),
        )

    def estimated_steps(
        self, model: keras.Model, graph: DependencyGraph, per_step: Mapping[int, int], shrinking: bool = True
    ) -> int:
        """About how many steps reach the goal when a step removes ``per_step``
        ({group index: channels}): later steps save the same share of what is left
        (``shrinking``: a step size relative to the model), or the same amount."""
        now = self.measure(model, graph)
        remaining = self.remaining(model, graph)
        if now <= 0 or remaining <= 0:
            return 0
        costs = self.channel_costs(graph)
        saved = sum(costs[index] * count for index, count in per_step.items())
        if saved <= 0:
            return 0
        if not shrinking:
            return math.ceil(remaining / saved)
        return estimated_steps(remaining / now, min(1.0, saved / now))

    def remaining(self, model: keras.Model, graph: DependencyGraph | None = None) -> float:
        """How much more of the quantity to remove (≤ 0 once reached)."""
        return self.measure(model, graph) - self.goal

    def reached(self, model: keras.Model, graph: DependencyGraph | None = None) -> bool:
        return self.remaining(model, graph) <= 0

    def progress(self, model: keras.Model, graph: DependencyGraph | None = None) -> float:
        """The share of the way from ``initial`` to ``goal`` done, in [0, 1]."""
        span = self.initial - self.goal
        if span <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.initial - self.measure(model, graph)) / span))


class _CountTarget(Target):
    """A quantity counted on the model, with a per-channel cost from `kprune.metrics`."""

    count = staticmethod(count_params)
    costs = staticmethod(channel_params)

    def measure(self, model, graph=None):
        return float(self.count(model))

    def channel_costs(self, graph):
        return self.costs(graph)


class ParamsTarget(_CountTarget):
    """Remove a fraction of the parameters."""

    name = "params"


class FlopsTarget(_CountTarget):
    """Remove a fraction of the FLOPs."""

    name = "flops"
    count = staticmethod(count_flops)
    costs = staticmethod(channel_flops)


class FiltersTarget(Target):
    """Remove a number of filters (channels of prunable groups; coupled producers count once)."""

    name = "filters"

    def __init__(self, initial: float, goal: float, unsupported: str = "error"):
        super().__init__(initial, goal)
        self.unsupported = unsupported

    def measure(self, model, graph=None):
        return float(prunable_channels(graph or analyze(model, unsupported=self.unsupported)))

    def channel_costs(self, graph):
        return {group.index: 1.0 for group in graph.groups}


class LatencyTarget(Target):
    """Bring the predicted latency (ms, on the table's runtime and machine) down to a goal.

    Attributes:
        table: The `LatencyTable` the predictions come from.
    """

    name = "latency"

    def __init__(self, initial: float, goal: float, table: LatencyTable, per_step: float = 0.03):
        super().__init__(initial, goal)
        self.table = table
        self.per_step = per_step

    def measure(self, model, graph=None):
        return predict_latency(model, self.table)

    def channel_costs(self, graph):
        """Milliseconds saved per channel when a group loses one tile of channels."""
        latency = GroupLatency(graph, self.table)
        now = latency.predict()
        costs = {}
        for group in graph.groups:
            smaller = max(group.channels - self.table.step, 1)
            costs[group.index] = (now - latency.predict({group.index: smaller})) / max(
                group.channels - smaller, 1
            )
        return costs

    def estimated_steps(self, model, graph, per_step, shrinking=True):
        """Steps of ``per_step`` of the start latency each (``per_step`` channels do not apply)."""
        remaining = self.remaining(model, graph)
        return math.ceil(remaining / (self.per_step * self.initial)) if remaining > 0 else 0

    def choose(self, model, graph, scores, count, *, min_per_group=1, round_to=None, ignore=()):
        """Up to ``per_step`` of the start latency per step; ``count`` does not apply."""
        latency = GroupLatency(graph, self.table)
        budget = min(self.remaining(model, graph), self.per_step * self.initial)
        channels = sum(len(values) for values in scores.values())
        return select_for_latency(
            graph,
            scores,
            channels,
            predict=latency.predict,
            step=round_to or self.table.step,
            budget=budget,
            min_per_group=min_per_group,
            ignore=ignore,
        )


def make_target(config, initial: Mapping[str, float], table: LatencyTable | None = None) -> Target | None:
    """The target a `PruneConfig` asks for, or None when it names none.

    Fractions remove that share of the initial quantity; ``target_filters``
    of 1 or more is a number of filters. A latency target needs the
    ``table`` and ``initial["latency"]`` (ms predicted for the start model).
    """
    if config.target_latency is not None:
        goal = (1 - config.target_latency) * initial["latency"]
        return LatencyTarget(initial["latency"], goal, table, config.latency_per_step)
    if config.latency_ms is not None:
        return LatencyTarget(initial["latency"], config.latency_ms, table, config.latency_per_step)
    if config.target_params is not None:
        return ParamsTarget(initial["params"], (1 - config.target_params) * initial["params"])
    if config.target_flops is not None:
        return FlopsTarget(initial["flops"], (1 - config.target_flops) * initial["flops"])
    if config.target_filters is not None:
        wanted = config.target_filters
        wanted = round(wanted * initial["filters"] if wanted < 1 else wanted)
        return FiltersTarget(initial["filters"], initial["filters"] - wanted, config.unsupported)
    return None
