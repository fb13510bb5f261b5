"""Predicted latency of a model, and of its channel groups at other channel counts.

`predict_latency` reads a model's layers (configuration and channel counts)
and sums their table times, calibrated. `GroupLatency` answers the question
pruning asks before any surgery: how fast would the model be if group g kept
k channels — each layer's input and output channel counts are linear in the
groups' kept counts, so no model has to be built.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from kprune.errors import InvalidArgumentError
from kprune.graph import DependencyGraph
from kprune.latency.layers import TimedLayer, timed_layers
from kprune.latency.table import LatencyTable


def predict_latency(model: keras.Model, table: LatencyTable) -> float:
    """Predicted inference cost of ``model`` in the table's unit (``table.unit``: ms, or
    aarch64 instructions for a table counted under QEMU), on its runtime, threads and machine.

    Args:
        model: The model, e.g. a pruned copy of the one the table was measured on.
        table: A `LatencyTable` (`kprune.profile` or ``LatencyTable.load``).

    Raises:
        InvalidArgumentError: If the model has layer configurations the table
            has never timed (another architecture or input size).

    Example:
        >>> table = kprune.profile(model)
        >>> kprune.predict_latency(pruned, table)  # ms (table.unit)
    """
    layers = [layer for layer in timed_layers(model)[0] if layer.key not in table.skipped]
    _check_covered(table, layers, model.name)
    return table.predict([(layer.key, layer.cin, layer.cout) for layer in layers])


def _check_covered(table: LatencyTable, layers: list[TimedLayer], name: str) -> None:
    missing = [layer.name for layer in layers if layer.key not in table.entries]
    if missing:
        raise InvalidArgumentError(
            f"The latency table (measured on {table.model.get('name')!r}) has no entry for "
            f"layer(s) {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''} of model "
            f"{name!r}. Fix: profile this model (`kprune profile MODEL`)."
        )


class GroupLatency:
    """Predicted latency as a function of the channels each group keeps.

    Args:
        graph: The `DependencyGraph` of the model being pruned.
        table: Its `LatencyTable`.
    """

    def __init__(self, graph: DependencyGraph, table: LatencyTable):
        self.table = table
        self.graph = graph
        layers = [layer for layer in timed_layers(graph.flat)[0] if layer.key not in table.skipped]
        _check_covered(table, layers, graph.model.name)
        self.layers = layers
        self.channels = np.array([group.channels for group in graph.groups], dtype=float)
        # Per layer: a constant plus, per group, channels of that group (cin side, cout side).
        groups = len(graph.groups)
        self._cin = np.zeros((len(layers), groups + 1))
        self._cout = np.zeros((len(layers), groups + 1))
        for row, layer in enumerate(layers):
            for tensor_id in layer.input_ids:
                self._add_counts(self._cin[row], tensor_id)
            if layer.kind == "matrix":
                self._add_counts(self._cout[row], layer.output_id)
            else:
                self._cout[row] = self._cin[row]

    def _add_counts(self, row: np.ndarray, tensor_id: int) -> None:
        ids = self.graph.tensor_ids.get(tensor_id)
        if ids is None:
            return
        groups, _ = self.graph.group_channels_of(ids)
        row[-1] += int(np.sum(groups < 0))
        for index, count in zip(*np.unique(groups[groups >= 0], return_counts=True)):
            row[int(index)] += count / self.channels[int(index)]  # per kept channel

    def counts(self, kept: Mapping[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(cin, cout) of every timed layer when group g keeps ``kept[g]`` channels."""
        keep = self.channels.copy()
        for index, count in (kept or {}).items():
            keep[index] = count
        vector = np.append(keep, 1.0)
        return np.rint(self._cin @ vector), np.rint(self._cout @ vector)

    def layer_times(self, kept: Mapping[int, int] | None = None) -> np.ndarray:
        """Uncalibrated predicted time of every timed layer (the table's unit)."""
        cin, cout = self.counts(kept)
        return np.array(
            [float(self.table.layer_ms(layer.key, i, o)) for layer, i, o in zip(self.layers, cin, cout)]
        )

    def weights(self, kept: Mapping[int, int] | None = None) -> float:
        """Weight count of the timed layers (0 with a table without weight counts, format 2)."""
        cin, cout = self.counts(kept)
        return self.table.weight_sum(zip((layer.key for layer in self.layers), cin, cout))

    def predict(self, kept: Mapping[int, int] | None = None) -> float:
        """Predicted whole-model time (the table's unit), calibrated."""
        return self.table.calibrated(float(self.layer_times(kept).sum()), self.weights(kept))
