"""Activation-based criteria: Taylor (Molchanov et al. 2017), L2 of activation
maps, their combination (the thesis' method 3), and APoZ (Hu et al. 2016).

The statistics are defined and accumulated in `kprune.criteria.statistics`;
every criterion here is one pass over the data.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from kprune.criteria.scores import normalize_layerwise
from kprune.criteria.statistics import collect_statistics
from kprune.errors import InvalidArgumentError

COMBINATIONS = ("sum", "product", "rank")


def _statistic(name: str, model, data, graph, options) -> dict[str, np.ndarray]:
    return collect_statistics(model, data, graph, (name,), **_pass_options(options))[name]


def _pass_options(options: dict) -> dict:
    keys = ("num_batches", "setup", "strategy", "progress")
    return {key: options[key] for key in keys if key in options}


def taylor(model, data, graph, **options):
    """Mean over examples of |mean over positions of z · ∂C/∂z| (Molchanov 2017, Eq. 8)."""
    return _statistic("taylor", model, data, graph, options)


def l2(model, data, graph, **options):
    """Mean over examples of the L2 norm of each activation map (thesis method 2)."""
    return _statistic("l2", model, data, graph, options)


def apoz(model, data, graph, **options):
    """1 − average percentage of zeros (Hu et al. 2016): fewer zeros, more important."""
    zeros = _statistic("apoz", model, data, graph, options)
    return {name: 1.0 - values for name, values in zeros.items()}


def combined(model, data, graph, *, alpha: float = 0.5, combine: str = "sum", **options):
    """Taylor and L2 together (thesis method 3), each first normalized per layer.

    With t and a the layer-normalized Taylor and L2 scores of a channel:
    ``sum`` (default): α·t + (1−α)·a; ``product``: t^α · a^(1−α);
    ``rank``: α·rank(t) + (1−α)·rank(a), ranks within the layer scaled to (0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgumentError(f"`alpha` must be in [0, 1]. Received alpha={alpha}.")
    if combine not in COMBINATIONS:
        raise InvalidArgumentError(f"`combine` must be one of {COMBINATIONS}. Received combine={combine!r}.")
    stats = collect_statistics(model, data, graph, ("taylor", "l2"), **_pass_options(options))
    scores = {}
    for name in stats["taylor"]:
        t = normalize_layerwise(stats["taylor"][name])
        a = normalize_layerwise(stats["l2"][name])
        if combine == "sum":
            scores[name] = alpha * t + (1.0 - alpha) * a
        elif combine == "product":
            scores[name] = np.power(t, alpha) * np.power(a, 1.0 - alpha)
        else:
            scores[name] = alpha * rankdata(t) / len(t) + (1.0 - alpha) * rankdata(a) / len(a)
    return scores
