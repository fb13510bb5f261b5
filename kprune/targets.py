"""Pruning targets: how far a model is from its goal, and what removing a channel saves.

A target watches one quantity of the model — parameters, FLOPs or prunable
filters — that pruning lowers. It knows the quantity's value at the start,
the value to reach, the value now, and the saving of removing one channel of
each group; `kprune.selection.select` weighs channel scores against those
savings within what is left to remove. Adding a target (e.g. latency) means
one more subclass and one more line in `make_target`.
"""

from __future__ import annotations

from typing import Mapping

import keras

from kprune.graph import DependencyGraph, analyze
from kprune.metrics import channel_flops, channel_params, count_flops, count_params


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


def make_target(config, initial: Mapping[str, float]) -> Target | None:
    """The target a `PruneConfig` asks for, or None when it names none.

    Fractions remove that share of the initial quantity; ``target_filters``
    of 1 or more is a number of filters.
    """
    if config.target_params is not None:
        return ParamsTarget(initial["params"], (1 - config.target_params) * initial["params"])
    if config.target_flops is not None:
        return FlopsTarget(initial["flops"], (1 - config.target_flops) * initial["flops"])
    if config.target_filters is not None:
        wanted = config.target_filters
        wanted = round(wanted * initial["filters"] if wanted < 1 else wanted)
        return FiltersTarget(initial["filters"], initial["filters"] - wanted, config.unsupported)
    return None
