"""Data-free criteria: filter weight norms (Li et al. 2017), BatchNorm scale
(Liu et al. 2017), and a seeded random baseline."""

from __future__ import annotations

import keras
import numpy as np

from kprune.criteria.statistics import observation_chain
from kprune.errors import InvalidArgumentError


def _filters_by_output(layer) -> np.ndarray:
    """The layer's output-side kernel as (output channels, everything else)."""
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


def _layers(model, graph):
    calls = graph.flat.calls_by_name
    return {name: calls[name].layer for name in graph.prunable_layers()}


def l1(model, data, graph, **options):
    """Sum of absolute kernel weights of each filter (Li et al. 2017)."""
    return {name: np.abs(_filters_by_output(layer)).sum(1) for name, layer in _layers(model, graph).items()}


def l2_weight(model, data, graph, **options):
    """L2 norm of each filter's kernel weights."""
    return {
        name: np.sqrt(np.square(_filters_by_output(layer)).sum(1))
        for name, layer in _layers(model, graph).items()
    }


def bn_gamma(model, data, graph, **options):
    """|γ| of the BatchNormalization right after each producer (Liu et al. 2017)."""
    scores, missing = {}, []
    calls = graph.flat.calls_by_name
    for name in graph.prunable_layers():
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
