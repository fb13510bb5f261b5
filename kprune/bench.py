"""Latency of models in Keras, TFLite (XNNPACK) and ONNX Runtime; original vs pruned.

Every model is measured in the same process, in the same configuration, in
alternation (one timed inference of each model per round, the order rotating
every round), so that a pruned model and its original see the same machine
state. The speed-up of each model over the first is printed next to its FLOPs
ratio, the ideal a structured-pruning speed-up tends to.

TFLite and ONNX files are the float32 exports of each model, made in a
temporary folder and run through the deployment bundle's runtime code (files
with several inputs or outputs through `kprune.export.runners`). Any model
that exports can be timed: images, time series, volumes, several inputs; the
inputs are random values of the model's input shapes (latency does not depend
on them).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np

from kprune.card import environment
from kprune.errors import InvalidArgumentError
from kprune.export.artifact import (
    ExportedArtifact,
    ModelTensors,
    model_tensors,
    resolve_model,
    structured_inputs,
)
from kprune.export.onnx import export_onnx
from kprune.export.runners import open_artifact
from kprune.export.tflite import export_tflite
from kprune.metrics import count_flops, count_params
from kprune.progress import track

RUNTIMES = ("keras", "tflite", "onnx")
DEFAULT_BATCH_SIZES = (1, 32)
ALL_CORES = 0  # a ``threads`` value: as many threads as CPU cores


@dataclass(frozen=True)
class BenchModel:
    """One benchmarked model: its label, file, parameters and FLOPs (2 per MAC)."""

    label: str
    path: str | None
    params: int
    flops: int


@dataclass(frozen=True)
class Measurement:
    """Latency of one model in one configuration.

    ``threads`` is None for Keras, whose thread pools TensorFlow fixes at start-up.
    """

    model: str
    runtime: str
    threads: int | None
    batch: int
    median_ms: float
    p90_ms: float
    throughput: float  # examples per second at the median latency
    runs: int


@dataclass
class BenchReport:
    """All measurements of one run, and the settings and machine they were taken on."""

    models: list[BenchModel]
    measurements: list[Measurement]
    settings: dict
    environment: dict = field(default_factory=dict)

    def speedups(self) -> list[dict]:
        """Median-latency speed-up of every model over the first, per configuration."""
        base = self.models[0]
        by_key = {(m.model, m.runtime, m.threads, m.batch): m for m in self.measurements}
        rows = []
        for measurement in self.measurements:
            if measurement.model == base.label:
                continue
            reference = by_key.get(
                (base.label, measurement.runtime, measurement.threads, measurement.batch)
            )
            if reference is None:
                continue
            model = next(m for m in self.models if m.label == measurement.model)
            rows.append({
                "model": measurement.model,
                "baseline": base.label,
                "runtime": measurement.runtime,
                "threads": measurement.threads,
                "batch": measurement.batch,
                "speedup": reference.median_ms / measurement.median_ms,
                "flops_ratio": base.flops / model.flops if model.flops else None,
            })  # fmt: skip
        return rows

    def to_dict(self) -> dict:
        return {
            "models": [asdict(model) for model in self.models],
            "measurements": [asdict(m) for m in self.measurements],
            "speedups": self.speedups(),
            "settings": self.settings,
            "environment": self.environment,
        }


def benchmark(
    models: Sequence[str | os.PathLike | keras.Model],
    *,
    runtimes: Sequence[str] = RUNTIMES,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: Sequence[int] = (1, ALL_CORES),
    warmup: int = 10,
    repeats: int = 50,
    seed: int = 0,
    progress: bool = False,
) -> BenchReport:
    """Measures inference latency of models, alternating between them.

    Args:
        models: ``.keras`` paths or ``keras.Model`` objects with the same input
            shapes (any number of inputs of any rank); the first is the
            baseline of the speed-ups.
        runtimes: Any of ``"keras"``, ``"tflite"`` (XNNPACK), ``"onnx"``.
        batch_sizes: Examples per inference.
        threads: Thread counts for TFLite and ONNX Runtime; 0 = all cores.
        warmup: Untimed inferences of each model before timing.
        repeats: Timed inferences of each model per configuration.
        seed: Seed of the random inputs (latency does not depend on them).
        progress: Show progress.

    Returns:
        A `BenchReport`; ``report.speedups()`` pairs each speed-up with the FLOPs ratio.

    Raises:
        InvalidArgumentError: On an unknown runtime, a non-positive count, or
            models with different input shapes.

    Example:
        >>> report = benchmark(["models/base.keras", "runs/pruned.keras"], runtimes=["tflite"])
    """
    _check_settings(models, runtimes, batch_sizes, threads, warmup, repeats)
    loaded = [resolve_model(model) for model in models]
    tensors = [model_tensors(network) for network, _ in loaded]
    shapes = {tuple(t.shape[1:] for t in model.inputs) for model in tensors}
    if len(shapes) != 1:
        raise InvalidArgumentError(
            f"All models must take the same input shapes to be compared. Received {sorted(shapes)}."
        )
    labels = _labels(loaded)
    entries = [
        BenchModel(label, str(path) if path else None, count_params(net), count_flops(net))
        for label, (net, path) in zip(labels, loaded)
    ]
    rng = np.random.default_rng(seed)
    input_shapes = shapes.pop()
    configurations = _configurations(runtimes, batch_sizes, threads)
    measurements = []
    with tempfile.TemporaryDirectory(prefix="kprune-bench-") as folder:
        files = _export_files([net for net, _ in loaded], runtimes, Path(folder))
        steps = _track(configurations, progress)
        for runtime, thread_count, batch in steps:
            inputs = _random_inputs(rng, tensors[0], batch)
            runners = [
                _runner(runtime, net, tensors[index], files.get((index, runtime)), thread_count,
                        inputs)
                for index, (net, _) in enumerate(loaded)
            ]  # fmt: skip
            timings = _time_alternating(runners, warmup, repeats)
            for label, seconds in zip(labels, timings):
                measurements.append(_measurement(label, runtime, thread_count, batch, seconds))
    settings = {
        "runtimes": list(runtimes), "batch_sizes": list(batch_sizes),
        "threads": [_resolve_threads(t) for t in threads], "warmup": warmup,
        "repeats": repeats, **_shape_settings(input_shapes),
    }  # fmt: skip
    return BenchReport(entries, measurements, settings, environment())


def _time_alternating(
    runners: list[Callable[[], object]], warmup: int, repeats: int
) -> list[list[float]]:
    for runner in runners:
        for _ in range(warmup):
            runner()
    timings: list[list[float]] = [[] for _ in runners]
    for round_index in range(repeats):
        # Rotate who goes first, so no model always follows the same neighbour.
        order = [(round_index + k) % len(runners) for k in range(len(runners))]
        for index in order:
            started = time.perf_counter()
            runners[index]()
            timings[index].append(time.perf_counter() - started)
    return timings


def _measurement(label, runtime, threads, batch, seconds) -> Measurement:
    values = np.asarray(seconds) * 1000.0
    median = float(np.median(values))
    return Measurement(
        model=label, runtime=runtime, threads=threads, batch=batch, median_ms=median,
        p90_ms=float(np.percentile(values, 90)), throughput=batch * 1000.0 / median,
        runs=len(values),
    )  # fmt: skip


def _shape_settings(input_shapes: tuple[tuple[int, ...], ...]) -> dict:
    # One input keeps the report's "input_shape"; several are listed as "input_shapes".
    if len(input_shapes) == 1:
        return {"input_shape": list(input_shapes[0])}
    return {"input_shapes": [list(shape) for shape in input_shapes]}


def _random_inputs(rng, tensors: ModelTensors, batch: int) -> list[np.ndarray]:
    inputs = []
    for tensor in tensors.inputs:
        shape = (batch, *tensor.shape[1:])
        if np.issubdtype(np.dtype(tensor.dtype), np.integer):  # ids: small, valid indices
            inputs.append(rng.integers(0, 2, shape).astype(tensor.dtype))
        else:
            inputs.append(rng.random(shape, dtype=np.float32).astype(tensor.dtype))
    return inputs


def _runner(
    runtime, network, tensors, artifact: ExportedArtifact | None, threads, inputs
) -> Callable[[], object]:
    if runtime == "keras":
        import tensorflow as tf

        forward = tf.function(lambda x: network(x, training=False))
        structured = structured_inputs(network, [tf.constant(values) for values in inputs])
        return lambda: keras.tree.map_structure(lambda t: t.numpy(), forward(structured))
    run = open_artifact(artifact, tensors, threads)
    return lambda: run(inputs)


def _export_files(networks, runtimes, folder: Path) -> dict:
    files = {}
    for index, network in enumerate(networks):
        if "tflite" in runtimes:
            files[(index, "tflite")] = export_tflite(network, folder / f"{index}.tflite")
        if "onnx" in runtimes:
            files[(index, "onnx")] = export_onnx(network, folder / f"{index}.onnx")
    return files


def _configurations(runtimes, batch_sizes, threads) -> list[tuple[str, int | None, int]]:
    configurations = []
    for runtime in runtimes:
        counts = (
            [None] if runtime == "keras" else list(dict.fromkeys(map(_resolve_threads, threads)))
        )
        for count in counts:
            for batch in batch_sizes:
                configurations.append((runtime, count, batch))
    return configurations


def _resolve_threads(count: int) -> int:
    return (os.cpu_count() or 1) if count == ALL_CORES else count


def _labels(loaded) -> list[str]:
    labels = []
    for network, path in loaded:
        label = path.stem if path is not None else network.name
        while label in labels:
            label += "'"
        labels.append(label)
    return labels


def _track(configurations, progress: bool):
    if not progress:
        return configurations
    return track(configurations, description="bench", total=len(configurations))


def _check_settings(models, runtimes, batch_sizes, threads, warmup, repeats) -> None:
    if not models:
        raise InvalidArgumentError("`models` is empty: nothing to benchmark.")
    unknown = [runtime for runtime in runtimes if runtime not in RUNTIMES]
    if unknown or not runtimes:
        raise InvalidArgumentError(
            f"`runtimes` must be a non-empty choice of {RUNTIMES}. "
            f"Received runtimes={list(runtimes)}."
        )
    if not batch_sizes or min(batch_sizes) < 1:
        raise InvalidArgumentError(
            f"`batch_sizes` must be positive. Received batch_sizes={list(batch_sizes)}."
        )
    if not threads or min(threads) < 0:
        raise InvalidArgumentError(
            f"`threads` must be positive, or 0 for all cores. Received threads={list(threads)}."
        )
    if warmup < 0 or repeats < 1:
        raise InvalidArgumentError(
            f"`warmup` must be ≥ 0 and `repeats` ≥ 1. "
            f"Received warmup={warmup}, repeats={repeats}."
        )
