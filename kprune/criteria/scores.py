"""Pure functions on channel scores: sums over coupled producers, layer-wise normalization."""

from __future__ import annotations

import numpy as np

from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph

NORMALIZATIONS = ("l2", "none")


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
