"""`rank()`: one importance score per output channel, from a named criterion.

Three levels, from the user's view down:
- `rank` — {producer layer: scores}: what users and ``kprune rank`` see.
- `rank_groups` — {group index: scores}: the criterion's scores summed over
  coupled producers, normalized layer-wise, minus the FLOPs penalty; what the
  pruning loop hands to `kprune.pruning.selection.select`.
- the criterion itself (`kprune.criteria`), e.g. Taylor, made of the
  activation statistics of `kprune.criteria.statistics`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from kprune.criteria import get, needs_data
from kprune.criteria.scores import group_scores, normalize_layerwise
from kprune.data import as_dataset
from kprune.errors import InvalidArgumentError
from kprune.files import write_atomically
from kprune.graph import DependencyGraph, analyze
from kprune.graph.rebuild import flatten_model
from kprune.metrics import channel_flops
from kprune.training.checks import CLEAN_DATA, first_non_finite
from kprune.training.setup import TrainingSetup


def rank(
    model: keras.Model,
    data: Any = None,
    criterion: str = "taylor",
    *,
    num_batches: int | None = None,
    loss: Callable | None = None,
    setup: TrainingSetup | None = None,
    normalize: str = "l2",
    flops_weight: float = 0.0,
    seed: int = 0,
    graph: DependencyGraph | None = None,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = False,
    **criterion_options,
) -> dict[str, np.ndarray]:
    """Scores every output channel of every prunable layer; higher = more important.

    Args:
        model: The model to score (not modified).
        data: Batches of ``(x, y)`` or ``(x, y, sample_weight)`` — anything
            ``model.fit`` takes (see `kprune.data.as_dataset`); data-free
            criteria ignore it.
        criterion: A name from ``kprune.criteria.available()``: ``taylor``,
            ``l2``, ``combined``, ``apoz``, ``l1``, ``l2_weight``,
            ``bn_gamma``, ``random``, or one you registered.
        num_batches: Batches to average over (default: all).
        loss: A Keras loss (or a list/dict of them for several outputs) or
            a function ``(labels, outputs) -> (batch,)``; default: the
            model's compiled loss, else sparse categorical cross-entropy.
        setup: A whole `TrainingSetup` instead of ``loss``.
        normalize: ``"l2"`` divides each group's scores by their L2 norm
            (Molchanov et al. 2017, §2.3) so layers compare; ``"none"``.
        flops_weight: λ of Molchanov's Eq. 9: score − λ · (FLOPs a channel
            costs ÷ the largest such cost in the model).
        seed: Seed of the ``random`` criterion.
        graph: ``analyze(model)``, if already computed.
        strategy: A ``tf.distribute`` strategy for the activation pass.
        progress: Show a progress bar.
        **criterion_options: Extra options of the criterion (e.g. ``alpha``,
            ``combine`` for ``combined``).

    Returns:
        ``{producer name: scores}``, one score per output channel. Coupled
        producers (one group) get the same scores: the sum of their members'.

    Raises:
        InvalidArgumentError: Unknown criterion (valid ones listed), missing
            data, bad option values, or a loss that cannot be computed on the
            model's outputs and the data's labels — before any work.

    Example:
        >>> scores = kprune.rank(model, val_data, "taylor", num_batches=20)
    """
    graph = graph or analyze(model)
    setup = setup or TrainingSetup.for_model(model, loss=loss)
    if needs_data(criterion) and data is not None:
        setup.check(flatten_model(model, graph), data)
    per_group = rank_groups(
        model,
        data,
        criterion,
        num_batches=num_batches,
        setup=setup,
        normalize=normalize,
        flops_weight=flops_weight,
        seed=seed,
        graph=graph,
        strategy=strategy,
        progress=progress,
        **criterion_options,
    )
    result = {}
    for index, values in per_group.items():
        for name, channels in graph.groups[index].producers.items():
            result[name] = values[channels]
    return {name: result[name] for name in graph.prunable_layers() if name in result}


def rank_groups(
    model: keras.Model,
    data: Any,
    criterion: str,
    *,
    graph: DependencyGraph | None = None,
    normalize: str = "l2",
    flops_weight: float = 0.0,
    **options,
) -> dict[int, np.ndarray]:
    """Like `rank`, but {group index: score of each group channel}: what
    `kprune.select` compares across layers in every pruning step."""
    scorer = get(criterion)
    if needs_data(criterion) and data is None:
        raise InvalidArgumentError(f"Criterion {criterion!r} needs data: pass `data`.")
    normalize_layerwise(np.zeros(1), normalize)  # validates the name
    if flops_weight < 0:
        raise InvalidArgumentError(f"`flops_weight` must be >= 0. Received flops_weight={flops_weight}.")
    graph = graph or analyze(model)
    scored_model, scored_graph = model, graph
    if graph.flat.nested:  # score a flat copy: its layers have the flattened graph's names
        scored_model = flatten_model(model, graph)
        scored_graph = analyze(scored_model, unsupported="freeze")
    per_group = group_scores(graph, scorer(scored_model, data, scored_graph, **options))
    _check_finite(per_group, graph, criterion, data, options.get("num_batches"))
    costs = channel_flops(graph) if flops_weight else {}
    largest = max(costs.values(), default=0.0) or 1.0
    for index, values in per_group.items():
        values = normalize_layerwise(values, normalize)
        if flops_weight:
            values = values - flops_weight * costs[index] / largest
        per_group[index] = values
    return per_group


def _check_finite(
    per_group: dict[int, np.ndarray],
    graph: DependencyGraph,
    criterion: str,
    data: Any,
    num_batches: int | None,
) -> None:
    """Refuses NaN or infinite scores, naming their layers and where they came from."""
    broken = [index for index, values in per_group.items() if not np.isfinite(values).all()]
    if not broken:
        return
    layers = ", ".join(name for index in broken[:3] for name in graph.groups[index].producers)
    found = None if data is None else first_non_finite(as_dataset(data), "ranking", num_batches or 100)
    if found:
        raise InvalidArgumentError(
            f"The {criterion} scores of {layers} are not finite: {found}. Fix: {CLEAN_DATA}."
        )
    raise InvalidArgumentError(
        f"The {criterion} scores of {layers} are not finite on finite data: the model's activations "
        "or the loss's gradients are NaN or infinite. Fix: check the loss, the input scale "
        "(--preprocess) and the model's weights."
    )


def save_scores(path, scores: dict[str, np.ndarray], **facts) -> None:
    """Writes scores as JSON: ``{**facts, "scores": {layer: [floats]}}``."""
    payload = {**facts, "scores": {name: [float(v) for v in values] for name, values in scores.items()}}
    write_atomically(path, (json.dumps(payload, indent=1) + "\n").encode())


def weakest(scores: dict[str, np.ndarray], count: int) -> dict[str, list[tuple[int, float]]]:
    """The ``count`` lowest-scored channels of each layer as (index, score), lowest first."""
    return {
        name: [(int(i), float(values[i])) for i in np.argsort(values, kind="stable")[:count]]
        for name, values in scores.items()
    }
