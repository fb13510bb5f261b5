"""Pruning targets: how far a model is from its goal, and what removing a channel saves.

A target watches one quantity of the model — parameters, FLOPs, prunable
filters, predicted latency, or one a user registers — that pruning lowers. It
knows the quantity's value at the start, the value to reach, the value now, and
how one pruning step chooses channels (`Target.choose`): by default
`kprune.pruning.selection.select` weighs scores against each group's
per-channel saving (`Target.channel_costs`); the latency target asks
`kprune.pruning.selection.select_for_latency`, which also keeps channel counts
at the latency table's tile step.

Targets are found by name in one table. The built-in ones come from the
config's ``target_params``, ``target_flops``, ``target_filters``,
``target_latency`` and ``latency_ms`` fields; any registered one from
``target={name: value}``. Adding a target is a `Target` subclass and a factory
registered with `register_target`; the loop knows no target by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph, analyze
from kprune.graph.dependency import split_part
from kprune.latency.predict import GroupLatency, predict_latency
from kprune.latency.profile import profile
from kprune.latency.table import LatencyTable
from kprune.metrics import channel_flops, channel_params, count_flops, count_params
from kprune.pruning.selection import select, select_for_latency
from kprune.training.recovery import estimated_steps

LATENCY_TABLE = "latency_table.json"  # in the run dir: the table a latency target used

# config field → registered target name, for the built-in targets' own fields
CONFIG_FIELDS = {
    "target_params": "params",
    "target_flops": "flops",
    "target_filters": "filters",
    "target_latency": "latency",
    "latency_ms": "latency_ms",
}


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
        name: What the quantity is called in step records (``params``, ``flops``,
            ``filters``, ``latency``, or a registered target's name).
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

    def step_size(self) -> str | None:
        """How a step is sized, in words, when this target sizes it itself rather than by
        channels (``filters_per_step`` / ``step_fraction``); None when it is by channels."""
        return None

    def record(self, model: keras.Model) -> dict[str, float]:
        """What a step's record says of this target: the quantity now, by its ``name``
        (the records already hold params, FLOPs and filters)."""
        return {self.name: self.measure(model)}

    def note(self, record: Mapping[str, Any]) -> str:
        """How far it got, for a step's progress line ("" when the line shows it already)."""
        if self.name not in record or self.initial <= 0:
            return ""
        return f"{self.name} -{100 * (1 - record[self.name] / self.initial):.1f}%"

    def summary(self, first: Mapping[str, Any], last: Mapping[str, Any]) -> list[str] | None:
        """The row [label, before, after, change] that the end-of-run table shows for this
        target, from the first and last step records (None when the table has it already)."""
        if self.name not in first or self.name not in last:
            return None
        before, after = first[self.name], last[self.name]
        change = f"{100 * (after / before - 1):+.1f}%" if before else ""
        return [self.name, f"{before:.4g}", f"{after:.4g}", change]


class _CountTarget(Target):
    """A quantity counted on the model, with a per-channel cost from `kprune.metrics`."""

    count = staticmethod(count_params)
    costs = staticmethod(channel_params)

    def measure(self, model, graph=None):
        return float(self.count(model))

    def channel_costs(self, graph):
        return self.costs(graph)

    def note(self, record):
        return ""  # the progress line shows params and FLOPs

    def summary(self, first, last):
        return None  # the end-of-run table shows params and FLOPs


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

    def note(self, record):
        return ""  # the progress bar shows filters

    def record(self, model):
        # "filters" in a record is every layer's filters; this target counts group channels
        return {"prunable_channels": self.measure(model)}

    def summary(self, first, last):
        if "prunable_channels" not in first or "prunable_channels" not in last:
            return None
        before, after = first["prunable_channels"], last["prunable_channels"]
        change = f"{100 * (after / before - 1):+.1f}%" if before else ""
        return ["prunable channels", f"{before:,.0f}", f"{after:,.0f}", change]


class LatencyTarget(Target):
    """Bring the predicted latency (in the table's unit, on its runtime and machine) down to a goal.

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

    @property
    def key(self) -> str:
        """The step records' key of the predicted latency: ``latency_ms``, or
        ``latency_instructions`` for a table that counts aarch64 instructions."""
        return f"latency_{self.table.unit}"

    def channel_costs(self, graph):
        """Latency (the table's unit) saved per channel when a group loses one tile of channels."""
        latency = GroupLatency(graph, self.table)
        now = latency.predict()
        costs = {}
        for group in graph.groups:
            smaller = max(group.channels - self.table.step, 1)
            costs[group.index] = (now - latency.predict({group.index: smaller})) / max(
                group.channels - smaller, 1
            )
        return costs

    def record(self, model):
        latency = self.measure(model)  # predicted, on the latency table's runtime
        return {self.key: latency, "latency_removed": 1 - latency / self.initial}

    def note(self, record):
        return f"latency -{100 * record['latency_removed']:.1f}%" if "latency_removed" in record else ""

    def summary(self, first, last):
        if self.key not in first or self.key not in last:
            return None
        before, after = first[self.key], last[self.key]
        change = f"{100 * (after / before - 1):+.1f}%"
        if self.table.unit == "ms":
            return ["latency (predicted)", f"{before:.3f} ms", f"{after:.3f} ms", change]
        return [f"latency (predicted {self.table.unit})", f"{before:,.0f}", f"{after:,.0f}", change]

    def step_size(self):
        return f"up to {100 * self.per_step:g}% of the start latency (latency_per_step)"

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


@dataclass(frozen=True)
class TargetContext:
    """What a target factory reads to set the start and the goal of its quantity.

    Attributes:
        model: The model at the start of the run (not to be modified).
        graph: Its channel groups (`kprune.analyze`).
        config: The run's `PruneConfig`.
        run_dir: Where the run keeps its files (None without one): a target that
            measures something at the start (the latency table) keeps it there, so
            that a resumed run reads the same numbers back.
        progress: Whether the run shows progress (a long measurement may say so).
    """

    model: keras.Model
    graph: DependencyGraph
    config: Any
    run_dir: Path | None = None
    progress: bool = False

    @cached_property
    def initial(self) -> dict[str, int]:
        """Parameters, FLOPs and prunable filters of the start model (`initial_size`)."""
        return initial_size(self.model, self.graph)


TargetFactory = Callable[[float, TargetContext], Target]
_TARGETS: dict[str, TargetFactory] = {}


def register_target(name: str) -> Callable[[TargetFactory], TargetFactory]:
    """Registers a target factory under ``name`` (decorator); ``prune(target={name: value})``
    then prunes to it.

    The factory gets the value given and a `TargetContext`, and returns a `Target`
    whose ``initial`` and ``goal`` say where the quantity starts and where it must
    get to. A `Target` subclass implements ``measure`` (the quantity of a model)
    and ``channel_costs`` (what one channel of each group is worth in it).

    Raises:
        InvalidArgumentError: If ``name`` is not an identifier or is registered already.

    Example:
        >>> @kprune.register_target("conv_params")
        ... def conv_params(fraction, context):
        ...     start = ConvParams.count(context.model)
        ...     return ConvParams(start, (1 - fraction) * start)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgumentError(
            f"A target's name must be an identifier such as 'conv_params', not {name!r}."
        )
    if name in _TARGETS:
        raise InvalidArgumentError(
            f"A target called {name!r} is registered already. Fix: give yours another name."
        )

    def decorator(factory: TargetFactory) -> TargetFactory:
        _TARGETS[name] = factory
        return factory

    return decorator


def target_names() -> list[str]:
    """The registered targets' names, built-in ones first."""
    return list(_TARGETS)


def requested(config) -> tuple[str, float] | None:
    """The (target name, value) a `PruneConfig` asks for, or None when it names none."""
    for field, name in CONFIG_FIELDS.items():
        if getattr(config, field) is not None:
            return name, getattr(config, field)
    if config.target:
        ((name, value),) = config.target.items()
        return name, value
    return None


def check_requested(config) -> None:
    """Refuses a ``target={name: …}`` whose name is not registered, before any work.

    Raises:
        InvalidArgumentError: The name is unknown (the registered ones are listed).
    """
    wanted = requested(config)
    if wanted is not None and wanted[0] not in _TARGETS:
        raise InvalidArgumentError(
            f"Unknown target {wanted[0]!r}. Use one of: {', '.join(target_names())}, "
            "or register yours first with kprune.register_target."
        )


def make_target(config, context: TargetContext) -> Target | None:
    """The target a `PruneConfig` asks for, or None when it names none.

    Raises:
        InvalidArgumentError: An unknown target name.
    """
    check_requested(config)
    wanted = requested(config)
    if wanted is None:
        return None
    name, value = wanted
    target = _TARGETS[name](value, context)
    if not isinstance(target, Target):
        raise InvalidArgumentError(
            f"The factory of target {name!r} returned {type(target).__name__}, not a kprune Target."
        )
    return target


# --- the built-in targets ---------------------------------------------------------
@register_target("params")
def _params(fraction: float, context: TargetContext) -> Target:
    """Remove ``fraction`` of the parameters."""
    start = context.initial["params"]
    return ParamsTarget(start, (1 - fraction) * start)


@register_target("flops")
def _flops(fraction: float, context: TargetContext) -> Target:
    """Remove ``fraction`` of the FLOPs."""
    start = context.initial["flops"]
    return FlopsTarget(start, (1 - fraction) * start)


@register_target("filters")
def _filters(wanted: float, context: TargetContext) -> Target:
    """Remove ``wanted`` filters (≥ 1), or that fraction of the prunable ones (< 1)."""
    start = context.initial["filters"]
    count = round(wanted * start if wanted < 1 else wanted)
    return FiltersTarget(start, start - count, context.config.unsupported)


@register_target("latency")
def _latency_share(fraction: float, context: TargetContext) -> Target:
    """Remove ``fraction`` of the predicted latency."""
    table = latency_table(context)
    start = predict_latency(context.model, table)
    return LatencyTarget(start, (1 - fraction) * start, table, context.config.latency_per_step)


@register_target("latency_ms")
def _latency_ms(milliseconds: float, context: TargetContext) -> Target:
    """Prune until the predicted latency is ``milliseconds``."""
    table = latency_table(context)
    if table.unit != "ms":
        raise InvalidArgumentError(
            f"latency_ms={milliseconds} asks for milliseconds, but the latency table counts "
            f"{table.unit}. Fix: prune to a share of it with target_latency (--target-latency), "
            "or pass a table timed in ms."
        )
    start = predict_latency(context.model, table)
    return LatencyTarget(start, milliseconds, table, context.config.latency_per_step)


def latency_table(context: TargetContext) -> LatencyTable:
    """The table a latency target predicts from: the config's file, the run's own copy
    (on resume), or one measured now; kept in the run dir beside the results.

    Raises:
        InvalidArgumentError: If the model has channels inside layers (attention
            heads): the tables key a layer's time by the channels of its tensors.
    """
    config = context.config
    inside = [name for name in context.graph.prunable_layers() if split_part(name)[1]]
    if inside:
        raise InvalidArgumentError(
            f"Latency tables do not see channels inside layers ({', '.join(inside[:3])}): "
            "a layer's time is keyed by its tensors' channels. Fix: prune this model for "
            "target_params or target_flops (--target-params / --target-flops)."
        )
    kept = context.run_dir / LATENCY_TABLE if context.run_dir is not None else None
    if config.latency_table:
        table = LatencyTable.load(config.latency_table)
    elif kept is not None and kept.is_file():
        table = LatencyTable.load(kept)
    else:
        table = profile(
            context.model,
            runtime=config.latency_runtime,
            threads=config.latency_threads,
            quantize=config.latency_quantize,
            progress=context.progress,
        )
    if kept is not None:
        table.save(kept)
    return table
