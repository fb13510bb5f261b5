"""Data-free criteria: filter weight norms (Li et al. 2017), BatchNorm scale
(Liu et al. 2017), and a seeded random baseline."""

from __future__ import annotations

import keras
import numpy as np

from kprune.criteria.statistics import observation_chain
from kprune.errors import InvalidArgumentError
from kprune.graph.dependency import split_part


def _filters_by_output(layer) -> np.ndarray:
    """The layer's output-side kernel as (output channels, everything else)."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return _filters_by_output(layer.output_dense)  # kernel (heads, value_dim, outputs)
    weights = {w.name: w for w in layer.weights}
    kernel = weights.get("pointwise_kernel", weights.get("kernel"))
    if kernel is None:
        raise InvalidArgumentError(f"Layer {layer.name!r} has no kernel to score.")
    values = np.asarray(kernel.numpy())
    transposed = isinstance(
        layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
    )
    output_axis = values.ndim - 2 if transposed else values.ndim - 1
    return np.moveaxis(values, output_axis, 0).reshape(values.shape[output_axis], -1)


def _filters(graph) -> dict[str, np.ndarray]:
    """Prunable producer → its filters as rows; for channels inside a layer (attention
    heads), the rows its handler gives (`part_filters`: every weight of each head)."""
    calls = graph.flat.calls_by_name
    filters = {}
    for name in graph.prunable_layers():
        layer_name, part = split_part(name)
        layer = calls[layer_name].layer
        if part is None:
            filters[name] = _filters_by_output(layer)
        else:
            filters[name] = graph.handlers[layer_name].part_filters(layer, part)
    return filters


def l1(model, data, graph, **options):
    """Sum of absolute kernel weights of each filter (Li et al. 2017)."""
    return {name: np.abs(rows).sum(1) for name, rows in _filters(graph).items()}


def l2_weight(model, data, graph, **options):
    """L2 norm of each filter's kernel weights."""
    return {name: np.sqrt(np.square(rows).sum(1)) for name, rows in _filters(graph).items()}


def bn_gamma(model, data, graph, **options):
    """|γ| of the BatchNormalization right after each producer (Liu et al. 2017)."""
    scores, missing = {}, []
    calls = graph.flat.calls_by_name
    for name in graph.prunable_layers():
        if split_part(name)[1] is not None:
            missing.append(name)
            continue
        norms = [
            calls[n].layer
            for n in observation_chain(graph, name)
            if isinstance(calls[n].layer, keras.layers.BatchNormalization)
        ]
        if not norms:
            missing.append(name)
            continue
        scores[name] = np.abs(np.asarray(norms[0].gamma.numpy()))
    if missing:
        raise InvalidArgumentError(
            f"Criterion 'bn_gamma' needs a BatchNormalization after every prunable layer; "
            f"{len(missing)} have none ({', '.join(missing[:5])}). Fix: use a model with "
            "BatchNorm (e.g. --batch-norm for SqueezeNet) or another criterion."
        )
    return scores


def random(model, data, graph, *, seed: int = 0, **options):
    """Uniform random scores, reproducible with ``seed``: the baseline to beat."""
    rng = np.random.default_rng(seed)
    return {name: rng.random(len(graph.producer_ids(name))) for name in graph.prunable_layers()}
