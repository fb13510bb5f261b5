"""Filter-importance criteria, looked up by name.

A criterion is a callable ``(model, data, graph, **options) -> {producer
name: per-channel scores}`` where a higher score means a more important
channel. `kprune.rank()` then sums coupled producers per group channel,
normalizes layer-wise and applies the FLOPs penalty.

Modules: ``statistics`` (activation statistics streamed over batches),
``activation`` and ``weight`` (the built-in criteria), ``scores`` (group sums,
normalization), ``registry`` (the name → criterion table). Register your own::

    @kprune.register_criterion("my_score")
    def my_score(model, data, graph, **options):
        return {name: ... for name in graph.prunable_layers()}
"""

from kprune.criteria.registry import Criterion, available, get, needs_data, register_criterion

__all__ = ["Criterion", "available", "get", "needs_data", "register_criterion"]
