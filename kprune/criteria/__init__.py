"""Filter-importance criteria, looked up by name.

A criterion is a callable ``(model, data, graph, **options) -> {producer
name: per-channel scores}`` where a higher score means a more important
channel. `kprune.rank()` then sums coupled producers per group channel,
normalizes layer-wise and applies the FLOPs penalty. Register your own::

    @kprune.register_criterion("my_score")
    def my_score(model, data, graph, **options):
        return {name: ... for name in graph.prunable_layers()}
"""

from kprune.criteria.registry import Criterion, available, get, register_criterion
from kprune.criteria import activation, weight  # noqa: F401,E402  (register the built-ins)

__all__ = ["Criterion", "available", "get", "register_criterion"]
