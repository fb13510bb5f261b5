"""The name → criterion registry."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from kprune.errors import InvalidArgumentError


class Criterion(Protocol):
    def __call__(self, model, data: Any, graph, **options) -> dict[str, np.ndarray]: ...


_CRITERIA: dict[str, Criterion] = {}
_NEEDS_DATA: dict[str, bool] = {}


def register_criterion(name: str, needs_data: bool = True) -> Callable[[Criterion], Criterion]:
    """Registers ``criterion`` under ``name`` (decorator).

    Args:
        name: The name used by `kprune.rank` and ``--criterion``.
        needs_data: Whether the criterion reads the data (weight-only ones don't).
    """

    def decorator(criterion: Criterion) -> Criterion:
        _CRITERIA[name] = criterion
        _NEEDS_DATA[name] = needs_data
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
        raise InvalidArgumentError(
            f"Unknown criterion {name!r}. Use one of: {', '.join(available())}."
        )
    return _CRITERIA[name]


def needs_data(name: str) -> bool:
    get(name)
    return _NEEDS_DATA[name]
