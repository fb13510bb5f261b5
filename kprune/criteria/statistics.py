"""Streaming per-channel activation statistics: what the activation criteria are made of.

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

from typing import Any, Iterable

import keras
import numpy as np
import tensorflow as tf

from kprune import interrupts
from kprune.data import as_dataset
from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph, analyze
from kprune.progress import track
from kprune.training.distribute import distribute_dataset
from kprune.training.setup import TrainingSetup

STATISTICS = ("taylor", "l2", "apoz")

# Layers whose output is still "the same feature map" as their input.
_ELEMENTWISE = (
    keras.layers.BatchNormalization,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
)


def observation_chain(graph: DependencyGraph, producer: str) -> list[str]:
    """The producer and the elementwise layers after it, up to the map z its
    consumers see: each link is the only consumer of the one before."""
    flat = graph.flat
    chain = [flat.calls_by_name[producer]]
    while len(flat.consumers.get(chain[-1].outputs[0], [])) == 1:
        follower = flat.consumers[chain[-1].outputs[0]][0]
        if not isinstance(follower.layer, _ELEMENTWISE) or len(follower.outputs) != 1:
            break
        chain.append(follower)
    return [call.name for call in chain]


def observation_points(graph: DependencyGraph) -> dict[str, int]:
    """Prunable producer name → canonical id of the tensor z its criterion looks at."""
    calls = graph.flat.calls_by_name
    return {name: calls[observation_chain(graph, name)[-1]].outputs[0] for name in graph.prunable_layers()}


def collect_statistics(
    model: keras.Model,
    data: Any,
    graph: DependencyGraph | None = None,
    statistics: Iterable[str] = ("taylor",),
    *,
    num_batches: int | None = None,
    setup: TrainingSetup | None = None,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Averages activation statistics over the examples of ``data``.

    Args:
        model: The model (inference mode: BatchNorm uses moving statistics,
            dropout is off).
        data: Batches of ``(x, y)`` or ``(x, y, sample_weight)`` (anything
            `kprune.data.as_dataset` takes).
        graph: ``analyze(model)``, if already computed.
        statistics: Names from `STATISTICS`.
        num_batches: Stop after this many batches (default: one pass).
        setup: The `TrainingSetup` whose per-example loss Taylor
            differentiates (default: ``TrainingSetup()``, the model's loss).
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
    # The model's own input structure (one, a list or a dict), so batches fit as they do in fit().
    inputs = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
    probe = keras.Model(inputs, [*model.outputs, *tensors])
    num_outputs = len(model.outputs)
    example_loss = (setup or TrainingSetup()).example_loss(model)
    strategy = strategy or tf.distribute.get_strategy()
    needs_gradient = "taylor" in statistics

    with strategy.scope():
        sums = {
            stat: [_accumulator(t.shape[-1], f"{stat}_{i}") for i, t in enumerate(tensors)]
            for stat in statistics
        }
        count = _accumulator(None, "count")

    def replica_step(batch):
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        # The tape records the forward pass because it watches the weights; the
        # gradient is then asked of the intermediate maps only.
        with tf.GradientTape() as tape:
            outputs = probe(x, training=False)
            maps = outputs[num_outputs:]
            if needs_gradient:
                total_loss = tf.reduce_sum(example_loss(labels, outputs[:num_outputs], sample_weight))
        gradients = tape.gradient(total_loss, maps) if needs_gradient else [None] * len(maps)
        for index, (z, gradient) in enumerate(zip(maps, gradients)):
            axes = list(range(1, len(z.shape) - 1))  # spatial axes; none for (N, C)
            for stat in statistics:
                sums[stat][index].assign_add(tf.reduce_sum(_statistic(stat, z, gradient, axes), 0))
        count.assign_add(tf.cast(tf.shape(keras.tree.flatten(x)[0])[0], tf.float32))

    @tf.function
    def step(batch):
        strategy.run(replica_step, args=(batch,))

    dataset = as_dataset(data)
    if num_batches is not None:
        dataset = dataset.take(num_batches)
    if strategy is not tf.distribute.get_strategy() or strategy.num_replicas_in_sync > 1:
        dataset = distribute_dataset(dataset, strategy)
    iterator = dataset
    if progress:
        total = num_batches if num_batches is not None else getattr(data, "num_batches", None)
        iterator = track(dataset, "rank", total=total)
    for batch in iterator:
        interrupts.check()
        step(batch)
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
        tf.zeros(shape),
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.SUM,
    )


def _statistic(stat: str, z: tf.Tensor, gradient: tf.Tensor | None, axes: list[int]) -> tf.Tensor:
    """Per-example, per-channel value of one statistic: shape (batch, channels)."""
    if stat == "taylor":
        product = z * gradient
        return tf.abs(tf.reduce_mean(product, axes) if axes else product)
    if stat == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(z), axes)) if axes else tf.abs(z)
    zeros = tf.cast(tf.equal(z, 0.0), z.dtype)
    return tf.reduce_mean(zeros, axes) if axes else zeros
