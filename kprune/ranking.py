"""Streaming per-channel activation statistics, and `rank()`.

Activation criteria look at z, the feature map that a producer's consumers
see: its output after the elementwise layers that follow it alone (bias,
BatchNorm, activation, dropout), before any pooling or channel-mixing layer.
One compiled step per batch computes the model's loss, the gradient with
respect to every z, and adds per-channel sums into fixed-size accumulators,
so memory does not grow with the number of batches.

Statistics, for example n, channel k, and the M positions m of a map:
- ``taylor``: |(1/M) Σ_m z[n,m,k] · ∂C/∂z[n,m,k]| (Molchanov et al. 2017, Eq. 8).
  C is the loss of example n alone (losses are summed over the batch, so the
  gradient at example n is that of its own loss), and the absolute value is
  taken per example before averaging — not of the batch mean.
- ``l2``: √(Σ_m z[n,m,k]²), the L2 norm of the activation map.
- ``apoz``: (1/M) Σ_m [z[n,m,k] = 0], the fraction of zeros (Hu et al. 2016).
Each is averaged over all examples seen.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from kprune.data import as_dataset
from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph, analyze

STATISTICS = ("taylor", "l2", "apoz")
NORMALIZATIONS = ("l2", "none")

# Layers whose output is still "the same feature map" as their input.
_ELEMENTWISE = (
    keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.LeakyReLU,
    keras.layers.ELU, keras.layers.PReLU, keras.layers.Activation, keras.layers.Dropout,
    keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D, keras.layers.GaussianNoise,
    keras.layers.GaussianDropout, keras.layers.AlphaDropout, keras.layers.Identity,
)  # fmt: skip


def observation_chain(graph: DependencyGraph, producer: str) -> list[str]:
    """The producer and the elementwise layers after it, up to the map z its
    consumers see: each link is the only consumer of the one before."""
    consumers: dict[int, list] = {}
    first_call = {}
    for call in graph.flat.calls:
        first_call.setdefault(call.name, call)
        for tensor_id in call.inputs:
            consumers.setdefault(tensor_id, []).append(call)
    chain = [first_call[producer]]
    while len(consumers.get(chain[-1].outputs[0], [])) == 1:
        follower = consumers[chain[-1].outputs[0]][0]
        if not isinstance(follower.layer, _ELEMENTWISE) or len(follower.outputs) != 1:
            break
        chain.append(follower)
    return [call.name for call in chain]


def observation_points(graph: DependencyGraph) -> dict[str, int]:
    """Prunable producer name → canonical id of the tensor z its criterion looks at."""
    calls = {}
    for call in graph.flat.calls:
        calls.setdefault(call.name, call)
    return {
        name: calls[observation_chain(graph, name)[-1]].outputs[0]
        for name in graph.prunable_layers()
    }


def per_example_loss(model: keras.Model, loss: Callable | None = None) -> Callable:
    """``(labels, outputs) -> loss of each example``.

    The given ``loss``, else the model's compiled loss, else sparse categorical
    cross-entropy on probabilities or logits as the model's last layer says.
    """
    from kprune.train import outputs_probabilities

    chosen = loss if loss is not None else getattr(model, "loss", None)
    if chosen is None:
        from_logits = not outputs_probabilities(model)
        return lambda y, p: keras.losses.sparse_categorical_crossentropy(y, p, from_logits=from_logits)
    chosen = keras.losses.get(chosen) if isinstance(chosen, str) else chosen
    if isinstance(chosen, keras.losses.Loss):
        return chosen.call  # unreduced
    return chosen


def collect_statistics(
    model: keras.Model,
    data: Any,
    graph: DependencyGraph | None = None,
    statistics: Iterable[str] = ("taylor",),
    *,
    num_batches: int | None = None,
    loss: Callable | None = None,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Averages activation statistics over the examples of ``data``.

    Args:
        model: The model (inference mode: BatchNorm uses moving statistics,
            dropout is off).
        data: Batches of ``(images, labels)`` (see `kprune.data.as_dataset`).
        graph: ``analyze(model)``, if already computed.
        statistics: Names from `STATISTICS`.
        num_batches: Stop after this many batches (default: one pass).
        loss: Per-example loss ``(labels, outputs) -> (batch,)``; see
            `per_example_loss` for the default.
        strategy: A ``tf.distribute`` strategy to spread batches over.
        progress: Show a progress bar.

    Returns:
        ``{statistic: {producer name: per-channel mean over examples}}``.
    """
    statistics = tuple(statistics)
    unknown = set(statistics) - set(STATISTICS)
    if unknown:
        raise InvalidArgumentError(f"Unknown statistic(s) {sorted(unknown)}; use {STATISTICS}.")
    graph = graph or analyze(model)
    points = observation_points(graph)
    names = list(points)
    tensors = [graph.flat.tensors[points[name]] for name in names]
    # Same layers, extra outputs: the maps come out of the very computation
    # that produces the loss, so the tape gives ∂C/∂z for each.
    probe = keras.Model(model.inputs, [*model.outputs, *tensors])
    num_outputs = len(model.outputs)
    example_loss = per_example_loss(model, loss)
    strategy = strategy or tf.distribute.get_strategy()
    needs_gradient = "taylor" in statistics

    with strategy.scope():
        sums = {
            stat: [_accumulator(t.shape[-1], f"{stat}_{i}") for i, t in enumerate(tensors)]
            for stat in statistics
        }
        count = _accumulator(None, "count")

    def replica_step(images, labels):
        # The tape records the forward pass because it watches the weights; the
        # gradient is then asked of the intermediate maps only.
        with tf.GradientTape() as tape:
            outputs = probe(images, training=False)
            maps = outputs[num_outputs:]
            if needs_gradient:
                total_loss = tf.reduce_sum(example_loss(labels, outputs[0]))
        gradients = tape.gradient(total_loss, maps) if needs_gradient else [None] * len(maps)
        for index, (z, gradient) in enumerate(zip(maps, gradients)):
            axes = list(range(1, len(z.shape) - 1))  # spatial axes; none for (N, C)
            for stat in statistics:
                sums[stat][index].assign_add(tf.reduce_sum(_statistic(stat, z, gradient, axes), 0))
        count.assign_add(tf.cast(tf.shape(images)[0], tf.float32))

    @tf.function
    def step(images, labels):
        strategy.run(replica_step, args=(images, labels))

    dataset = as_dataset(data)
    if num_batches is not None:
        dataset = dataset.take(num_batches)
    if strategy is not tf.distribute.get_strategy() or strategy.num_replicas_in_sync > 1:
        dataset = strategy.experimental_distribute_dataset(dataset)
    iterator = dataset
    if progress:
        from kprune.progress import track

        total = num_batches if num_batches is not None else getattr(data, "num_batches", None)
        iterator = track(dataset, "rank", total=total)
    for images, labels in iterator:
        step(images, labels)
    examples = float(count.read_value())
    if examples == 0:
        raise InvalidArgumentError("Cannot rank filters on an empty dataset.")
    return {
        stat: {name: sums[stat][i].read_value().numpy() / examples for i, name in enumerate(names)}
        for stat in statistics
    }


def _accumulator(size: int | None, name: str) -> tf.Variable:
    shape = () if size is None else (size,)
    return tf.Variable(
        tf.zeros(shape), trainable=False, name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.SUM,
    )  # fmt: skip


def _statistic(stat: str, z: tf.Tensor, gradient: tf.Tensor | None, axes: list[int]) -> tf.Tensor:
    """Per-example, per-channel value of one statistic: shape (batch, channels)."""
    if stat == "taylor":
        product = z * gradient
        return tf.abs(tf.reduce_mean(product, axes) if axes else product)
    if stat == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(z), axes)) if axes else tf.abs(z)
    zeros = tf.cast(tf.equal(z, 0.0), z.dtype)
    return tf.reduce_mean(zeros, axes) if axes else zeros


def group_scores(graph: DependencyGraph, scores: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Sums the scores of coupled producers per group channel: {group index: scores}."""
    totals: dict[int, np.ndarray] = {}
    for name, values in scores.items():
        group = graph.group_of(name)
        if not group.prunable:
            continue
        total = totals.setdefault(group.index, np.zeros(group.channels))
        np.add.at(total, group.producers[name], np.asarray(values, dtype=np.float64))
    return totals


def normalize_layerwise(values: np.ndarray, method: str = "l2") -> np.ndarray:
    """Divides by the L2 norm of the layer's scores (Molchanov et al. 2017, §2.3)."""
    if method not in NORMALIZATIONS:
        raise InvalidArgumentError(
            f"`normalize` must be one of {NORMALIZATIONS}. Received normalize={method!r}."
        )
    if method == "none":
        return values
    norm = float(np.sqrt(np.sum(np.square(values))))
    return values / norm if norm > 0 else values


def rank(
    model: keras.Model,
    data: Any = None,
    criterion: str = "taylor",
    *,
    num_batches: int | None = None,
    loss: Callable | None = None,
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
        data: Batches of ``(images, labels)``; data-free criteria ignore it.
        criterion: A name from ``kprune.criteria.available()``: ``taylor``,
            ``l2``, ``combined``, ``apoz``, ``l1``, ``l2_weight``,
            ``bn_gamma``, ``random``, or one you registered.
        num_batches: Batches to average over (default: all).
        loss: Per-example loss ``(labels, outputs) -> (batch,)``.
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
            data, or bad option values.

    Example:
        >>> scores = kprune.rank(model, val_data, "taylor", num_batches=20)
    """
    graph = graph or analyze(model)
    per_group = rank_groups(
        model, data, criterion, num_batches=num_batches, loss=loss, normalize=normalize,
        flops_weight=flops_weight, seed=seed, graph=graph, strategy=strategy,
        progress=progress, **criterion_options,
    )  # fmt: skip
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
    """Like `rank`, but {group index: score of each group channel}: what the
    pruning schedule compares across layers."""
    from kprune.criteria import get
    from kprune.criteria.registry import needs_data
    from kprune.metrics import channel_flops

    scorer = get(criterion)
    if needs_data(criterion) and data is None:
        raise InvalidArgumentError(f"Criterion {criterion!r} needs data: pass `data`.")
    normalize_layerwise(np.zeros(1), normalize)  # validates the name
    if flops_weight < 0:
        raise InvalidArgumentError(f"`flops_weight` must be >= 0. Received flops_weight={flops_weight}.")
    graph = graph or analyze(model)
    per_group = group_scores(graph, scorer(model, data, graph, **options))
    costs = channel_flops(graph) if flops_weight else {}
    largest = max(costs.values(), default=0.0) or 1.0
    for index, values in per_group.items():
        values = normalize_layerwise(values, normalize)
        if flops_weight:
            values = values - flops_weight * costs[index] / largest
        per_group[index] = values
    return per_group


def save_scores(path, scores: dict[str, np.ndarray], **facts) -> None:
    """Writes scores as JSON: ``{**facts, "scores": {layer: [floats]}}``."""
    import json
    from pathlib import Path

    payload = {**facts, "scores": {name: [float(v) for v in values] for name, values in scores.items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def weakest(scores: dict[str, np.ndarray], count: int) -> dict[str, list[tuple[int, float]]]:
    """The ``count`` lowest-scored channels of each layer as (index, score), lowest first."""
    return {
        name: [(int(i), float(values[i])) for i in np.argsort(values, kind="stable")[:count]]
        for name, values in scores.items()
    }
