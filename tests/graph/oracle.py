"""The exactness oracle: the original model with channels zeroed instead of removed.

Producers are zeroed by their own indices (kernel slice and bias), so a wrong
index mapping in the surgery (Concatenate offsets, Flatten expansion, consumer
rows) shows up as a difference between the pruned and the zeroed model.
Channel-wise followers that add a per-channel constant (BatchNorm β and γ,
DepthwiseConv bias) are zeroed at the removed channels' positions.

Between a producer and its consumers, a channel-wise function with f(0) ≠ 0
(sigmoid, exp, Normalization's −mean/σ) turns a zeroed channel into a constant
that the consumers still see; `zeroed_through_consumers` also zeroes the
consumers' input rows of the removed channels, the reference for those.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np


def outputs(model, images) -> np.ndarray:
    """The model's outputs on ``images`` in inference mode as one (batch, values) array: each
    output flattened per example, joined in ``model.outputs`` order (several outputs compare
    like one)."""
    values = keras.tree.flatten(model(images, training=False))
    return np.concatenate([np.asarray(value).reshape(len(images), -1) for value in values], axis=1)


def zeroed_copy(model, graph, removed: dict[str, list[int]]) -> keras.Model:
    """A copy of ``model`` (same graph) with the channels of ``removed`` zeroed."""
    copy = keras.models.clone_model(model)
    _set_weights(copy, model.get_weights())
    _zero(copy, graph, removed)
    return copy


@contextlib.contextmanager
def zeroed(model, graph, removed: dict[str, list[int]]):
    """``model`` itself with the channels of ``removed`` zeroed, inside the block; its
    weights are restored on exit (no copy to build: big architectures build slowly)."""
    saved = model.get_weights()
    try:
        _zero(model, graph, removed)
        yield model
    finally:
        _set_weights(model, saved)


def _set_weights(model, weights) -> None:
    model.set_weights(weights)
    for layer in _all_layers(model):
        if hasattr(layer, "finalize_state"):  # Normalization reads its statistics here
            layer.finalize_state()


def _zero(copy, graph, removed: dict[str, list[int]]) -> None:
    removed_roots = set()
    for name, indices in removed.items():
        group = graph.group_of(name)
        group_channels = set(group.producers[name][indices].tolist())
        for member, channels in group.producers.items():
            positions = [i for i, c in enumerate(channels.tolist()) if c in group_channels]
            layer_name, _, part = member.partition("/")
            if part == "heads":  # attention heads: their rows of the output projection
                _zero_heads(_layer(copy, layer_name), positions)
            else:
                _zero_output_channels(_layer(copy, member), positions)
        removed_roots.update(graph.roots[graph.producer_ids(name)[indices]].tolist())
    for call in graph.flat.calls:
        layer = call.layer
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        is_depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) and layer.use_bias
        if not (is_bn or is_depthwise):
            continue
        ids = graph.tensor_ids.get(call.outputs[0])
        positions = [i for i, r in enumerate(graph.roots[ids].tolist()) if r in removed_roots]
        if not positions:
            continue
        target = _layer(copy, call.name)
        weights = target.get_weights()
        if is_bn:
            weights[0][positions] = 0.0  # gamma
            weights[1][positions] = 0.0  # beta
        else:
            weights[1][positions] = 0.0  # depthwise bias
        target.set_weights(weights)


def zeroed_through_consumers(model, graph, removed: dict[str, list[int]]) -> keras.Model:
    """`zeroed_copy`, with the input rows of the removed channels zeroed in every consumer."""
    copy = zeroed_copy(model, graph, removed)
    removed_roots = set()
    for name, indices in removed.items():
        removed_roots.update(graph.roots[graph.producer_ids(name)[indices]].tolist())
    for call in graph.flat.calls:
        ids = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        if ids is None or graph.handlers[call.name].call_role(call) != "producer":
            continue
        positions = [i for i, r in enumerate(graph.roots[ids].tolist()) if r in removed_roots]
        layer = _layer(copy, call.name)
        weights = layer.get_weights()
        transposed = isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose))
        index = [slice(None)] * weights[0].ndim  # kernel, or a separable's depthwise kernel
        index[-1 if transposed else -2] = positions
        weights[0][tuple(index)] = 0.0
        layer.set_weights(weights)
    return copy


def _all_layers(model):
    for layer in model.layers:
        yield from _all_layers(layer) if isinstance(layer, keras.Model) else (layer,)


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:  # flattened nested layer: search sub-models
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                for inner in layer.layers:
                    if name in (inner.name, f"{layer.name}_{inner.name}"):
                        return inner
        raise


def _zero_output_channels(layer, positions: list[int]) -> None:
    weights = layer.get_weights()
    names = [w.name for w in layer.weights]
    for k, name in enumerate(names):
        if name in ("kernel", "pointwise_kernel"):
            axis = (
                -2 if isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose)) else -1
            )
            index = [slice(None)] * weights[k].ndim
            index[axis] = positions
            weights[k][tuple(index)] = 0.0
        elif name == "bias":
            weights[k][positions] = 0.0
    layer.set_weights(weights)


def _zero_heads(attention, heads: list[int]) -> None:
    kernel = attention.output_dense.kernel
    values = kernel.numpy()
    values[heads] = 0.0
    kernel.assign(values)


def random_removal(graph, rng, fraction: float = 0.25, max_per_layer: int | None = None):
    """Random group channels of every prunable group (a tied block whole), named by
    the group's first producer."""
    removal = {}
    for group in graph.groups:
        if not group.prunable or group.channels < 2:
            continue
        name = next(iter(group.producers))
        count = max(1, min(group.channels - 1, int(round(group.channels * fraction))))
        if max_per_layer:
            count = min(count, max_per_layer)
        chosen = rng.choice(group.channels, count, replace=False)
        removal[name] = np.flatnonzero(np.isin(group.producers[name], chosen)).tolist()
    return removal


def assert_exact(model, removal, *, reference=zeroed_copy, saved_to=None, atol: float = 1e-5):
    """Prunes ``removal`` from ``model`` and checks the result against ``reference``
    (and, with ``saved_to``, after a round trip through plain `keras.models.load_model`).

    Returns:
        The pruned model.
    """
    from kprune.graph import analyze
    from kprune.surgery import remove_filters

    graph = analyze(model)
    pruned = remove_filters(model, removal, graph=graph)
    images = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    # Inference: augmentation layers are the identity (called plainly, they augment).
    expected = outputs(reference(model, graph, removal), images)
    assert np.abs(expected).max() > 1e-2  # not vacuous
    actual = outputs(pruned, images)
    np.testing.assert_allclose(actual, expected, atol=atol)
    if saved_to is not None:
        pruned.save(saved_to)
        reloaded = keras.models.load_model(saved_to)
        np.testing.assert_allclose(outputs(reloaded, images), actual, atol=1e-6)
    return pruned
