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

from dataclasses import dataclass
from typing import Any, Iterable

import keras
import numpy as np
import tensorflow as tf

from kprune import interrupts, keras_internals
from kprune.data import as_dataset
from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph, analyze
from kprune.graph.dependency import split_part
from kprune.graph.flatten import Call
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
    # `keras.ops` activations recorded in a functional graph (`ops.gelu(x, approximate=True)`)
    *(
        getattr(keras_internals.OPS_MODULES["nn"], name)
        for name in ("Relu", "Relu6", "Gelu", "Silu", "Sigmoid", "LeakyRelu", "Elu")
    ),
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
    """Prunable producer name → canonical id of the tensor z its criterion looks at
    (producers of channels inside a layer, such as attention heads, have none)."""
    calls = graph.flat.calls_by_name
    return {
        name: calls[observation_chain(graph, name)[-1]].outputs[0]
        for name in graph.prunable_layers()
        if split_part(name)[1] is None
    }


@dataclass
class _Observation:
    """What one prunable producer's statistics are computed from.

    ``tensors`` are canonical ids of the graph tensors it reads (probe outputs);
    the first is the one whose gradient Taylor needs: z itself for a layer's
    output channels; for attention heads, the layer's output, followed by its
    inputs, from which `_head_maps` recomputes what each head gives.
    """

    name: str
    channels: int
    tensors: list[int]
    heads_of: Call | None = None  # the MultiHeadAttention call of a ``heads`` producer


def _observations(graph: DependencyGraph) -> list[_Observation]:
    flat = graph.flat
    observations = [
        _Observation(name, flat.tensors[point].shape[-1], [point])
        for name, point in observation_points(graph).items()
    ]
    for name in graph.prunable_layers():
        layer_name, part = split_part(name)
        if part is None:
            continue
        call = flat.calls_by_name[layer_name]
        if part != "heads" or not isinstance(call.layer, keras.layers.MultiHeadAttention):
            raise InvalidArgumentError(
                f"kprune's activation criteria cannot score {name!r}. Fix: use a weight "
                "criterion (l1) or exclude the layer with ignore=[...]."
            )
        arguments = keras_internals.attention_arguments(call.node)
        inputs = [arguments[key] for key in ("query", "value", "key", "attention_mask")]
        tensors = [call.outputs[0]] + [flat.canonical(id(t)) for t in inputs if t is not None]
        observations.append(_Observation(name, call.layer.num_heads, tensors, heads_of=call))
    return observations


def _head_maps(call: Call, values: list[tf.Tensor], gradient: tf.Tensor | None):
    """Per-head maps of a MultiHeadAttention call: each head's output o_h (what it gives
    the output projection, (batch, positions…, value_dim) per head) as z, and for Taylor
    z · ∂C/∂z summed over the projection: c_h · ∂C/∂y with c_h = o_h W_o[h], the head's
    share of the layer output y. That is ξ_h · ∂C/∂ξ_h at ξ = 1 for a gate ξ_h on head h."""
    layer = call.layer
    arguments = keras_internals.attention_arguments(call.node)
    given = iter(values[1:])
    inputs = {key: next(given) if arguments[key] is not None else None for key in ("query", "value", "key")}
    mask = next(given) if arguments["attention_mask"] is not None else None
    heads = keras_internals.attention_heads(
        layer, **inputs, attention_mask=mask, use_causal_mask=arguments["use_causal_mask"]
    )  # (batch, positions…, heads, value_dim)
    flat_heads = tf.reshape(heads, [tf.shape(heads)[0], -1, layer.num_heads, heads.shape[-1]])
    taylor = None
    if gradient is not None:
        output_kernel = tf.convert_to_tensor(layer.output_dense.kernel)  # (heads, value_dim, out)
        shares = tf.einsum("bphv,hvo->bpho", flat_heads, output_kernel)
        delta = tf.reshape(gradient, [tf.shape(gradient)[0], -1, 1, gradient.shape[-1]])
        taylor = tf.reduce_sum(shares * delta, axis=-1)  # (batch, positions, heads)
    return flat_heads, taylor


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

    The heads of a MultiHeadAttention layer are scored on what each head gives
    the output projection (see `_head_maps`): Taylor of a gate on the head, the
    L2 norm and the zeros of the head's output.

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
    observations = _observations(graph)
    read = list(dict.fromkeys(t for o in observations for t in o.tensors))  # probe outputs, once each
    position = {tensor_id: k for k, tensor_id in enumerate(read)}
    watched = list(dict.fromkeys(o.tensors[0] for o in observations))  # Taylor differentiates these
    # Same layers, extra outputs: the maps come out of the very computation
    # that produces the loss, so the tape gives ∂C/∂z for each.
    # The model's own input structure (one, a list or a dict), so batches fit as they do in fit().
    inputs = model.inputs[0] if isinstance(model, keras.Sequential) else model.input
    probe = keras.Model(inputs, [*model.outputs, *(graph.flat.tensors[t] for t in read)])
    num_outputs = len(model.outputs)
    example_loss = (setup or TrainingSetup()).example_loss(model)
    strategy = strategy or tf.distribute.get_strategy()
    needs_gradient = "taylor" in statistics

    with strategy.scope():
        sums = {
            stat: [_accumulator(o.channels, f"{stat}_{i}") for i, o in enumerate(observations)]
            for stat in statistics
        }
        count = _accumulator(None, "count")

    def replica_step(batch):
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        # The tape records the forward pass because it watches the weights; the
        # gradient is then asked of the intermediate maps only.
        with tf.GradientTape() as tape:
            outputs = probe(x, training=False)
            values = outputs[num_outputs:]
            if needs_gradient:
                total_loss = tf.reduce_sum(example_loss(labels, outputs[:num_outputs], sample_weight))
        gradients = [None] * len(watched)
        if needs_gradient:
            gradients = tape.gradient(total_loss, [values[position[t]] for t in watched])
        gradient_of = dict(zip(watched, gradients))
        for index, observation in enumerate(observations):
            own = [values[position[t]] for t in observation.tensors]
            gradient = gradient_of[observation.tensors[0]]
            if observation.heads_of is not None:
                z, product = _head_maps(observation.heads_of, own, gradient)
                axes = [1, 3]  # positions and value_dim
            else:
                z = own[0]
                product = None if gradient is None else z * gradient
                axes = list(range(1, len(z.shape) - 1))  # spatial axes; none for (N, C)
            for stat in statistics:
                value = _statistic(stat, z, product, axes, observation.heads_of is not None)
                sums[stat][index].assign_add(tf.reduce_sum(value, 0))
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
        stat: {o.name: sums[stat][i].read_value().numpy() / examples for i, o in enumerate(observations)}
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


def _statistic(
    stat: str, z: tf.Tensor, product: tf.Tensor | None, axes: list[int], heads: bool = False
) -> tf.Tensor:
    """Per-example, per-channel value of one statistic: shape (batch, channels).

    ``product`` is z · ∂C/∂z; for heads, already summed over each head's share
    of the output, so Taylor averages it over positions only."""
    if stat == "taylor":
        taylor_axes = [1] if heads else axes
        return tf.abs(tf.reduce_mean(product, taylor_axes) if taylor_axes else product)
    if stat == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(z), axes)) if axes else tf.abs(z)
    zeros = tf.cast(tf.equal(z, 0.0), z.dtype)
    return tf.reduce_mean(zeros, axes) if axes else zeros
