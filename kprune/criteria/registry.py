"""The name → criterion table: the built-in criteria, and users' additions."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from kprune.criteria import activation, weight
from kprune.errors import InvalidArgumentError


class Criterion(Protocol):
    def __call__(self, model, data: Any, graph, **options) -> dict[str, np.ndarray]: ...


# name → (criterion, whether it reads data)
_CRITERIA: dict[str, tuple[Criterion, bool]] = {
    "taylor": (activation.taylor, True),
    "l2": (activation.l2, True),
    "combined": (activation.combined, True),
    "apoz": (activation.apoz, True),
    "l1": (weight.l1, False),
    "l2_weight": (weight.l2_weight, False),
    "bn_gamma": (weight.bn_gamma, False),
    "random": (weight.random, False),
}


def register_criterion(name: str, needs_data: bool = True) -> Callable[[Criterion], Criterion]:
    """Registers ``criterion`` under ``name`` (decorator).

    Args:
        name: The name used by `kprune.rank` and ``--criterion``.
        needs_data: Whether the criterion reads the data (weight-only ones don't).

    Example:
        >>> @kprune.register_criterion("my_score")
        ... def my_score(model, data, graph, **options):
        ...     return {name: ... for name in graph.prunable_layers()}
    """

    def decorator(criterion: Criterion) -> Criterion:
        _CRITERIA[name] = (criterion, needs_data)
        return criterion

    return decorator


def available() -> list[str]:
    """Registered criterion names."""
    return list(_CRITERIA)


def get(name: str) -> Criterion:
    """The criterion called ``name``.

    Raises:
        InvalidArgumentError: If no criterion has that name (the valid ones are listed).
    """
    if name not in _CRITERIA:
        raise InvalidArgumentError(f"Unknown criterion {name!r}. Use one of: {', '.join(available())}.")
    return _CRITERIA[name][0]


def needs_data(name: str) -> bool:
    """Whether criterion ``name`` reads data (see `get` for unknown names)."""
    get(name)
    return _CRITERIA[name][1]
