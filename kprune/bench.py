"""Latency of models in Keras, TFLite (XNNPACK) and ONNX Runtime; original vs pruned,
float32 vs float16 and int8.

Every model is measured in the same process, in the same configuration, in
alternation (one timed inference of each model per round, the order rotating
every round), so that a pruned model and its original see the same machine
state. The speed-up of each model over the first is printed next to its FLOPs
ratio, the ideal a structured-pruning speed-up tends to.

TFLite and ONNX files are the float32 exports of each model, made in a
temporary folder; with ``precisions``, TFLite also runs each model's float16
and full-integer int8 exports, timed in the same alternation, so that pruning
plus quantization is compared with the float32 original in one run. Files run
through the deployment bundle's runtime code (files
with several inputs or outputs through `kprune.export.runners`). Any model
that exports can be timed: images, time series, volumes, several inputs; the
inputs are random values of the model's input shapes (latency does not depend
on them).

`count_benchmark` gives the same files' executed aarch64 instructions per
inference on an emulated Cortex-A53 or A72 instead (`kprune.latency.instructions`):
deterministic, a proxy for the board's cycles, not its milliseconds.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

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
from kprune.export.pipeline import named_examples
from kprune.export.runners import open_artifact
from kprune.export.templates.kprune_profile import time_alternating
from kprune.export.tflite import DEFAULT_REPRESENTATIVE_SAMPLES, export_tflite
from kprune.latency.instructions import INFERENCES, check_emulation, count_instructions, device_core
from kprune.metrics import count_flops, count_params
from kprune.progress import track

RUNTIMES = ("keras", "tflite", "onnx")
DEFAULT_BATCH_SIZES = (1, 32)
ALL_CORES = 0  # a ``threads`` value: as many threads as CPU cores
PRECISIONS = ("fp32", "fp16", "int8")  # fp16 and int8: TFLite files only
_QUANTIZE = {"fp32": "none", "fp16": "float16", "int8": "int8"}  # export_tflite's names
RANDOM_CALIBRATION = "random inputs (latency only; accuracy not meaningful)"


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
    ``precision`` is that of the file run: ``"fp32"`` always for Keras and ONNX.
    """

    model: str
    runtime: str
    precision: str
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
    files: list[dict] = field(default_factory=list)  # the exported files that were timed

    def speedups(self) -> list[dict]:
        """Median-latency speed-ups of every (model, precision) but the first model's fp32.

        Each row compares one measurement with the first model in the same
        runtime, thread count and batch size: ``speedup`` at the same precision
        (None for the first model itself), ``speedup_over_fp32`` over its
        float32 file, the baseline of pruning plus quantization (for Keras and
        ONNX, always float32, the two are equal). ``flops_ratio`` is the ideal
        of pruning alone.
        """
        base = self.models[0]
        flops = {model.label: model.flops for model in self.models}
        by_key = {(m.model, m.precision, m.runtime, m.threads, m.batch): m for m in self.measurements}
        rows = []
        for measurement in self.measurements:
            if measurement.model == base.label and measurement.precision == "fp32":
                continue
            where = (measurement.runtime, measurement.threads, measurement.batch)
            same_precision = by_key.get((base.label, measurement.precision, *where))
            fp32 = by_key.get((base.label, "fp32", *where))
            latency = measurement.median_ms
            if same_precision is None and fp32 is None:
                continue
            model_flops = flops[measurement.model]
            rows.append(
                {
                    "model": measurement.model,
                    "precision": measurement.precision,
                    "baseline": base.label,
                    "runtime": measurement.runtime,
                    "threads": measurement.threads,
                    "batch": measurement.batch,
                    "speedup": (
                        None
                        if measurement.model == base.label or same_precision is None
                        else same_precision.median_ms / latency
                    ),
                    "speedup_over_fp32": None if fp32 is None else fp32.median_ms / latency,
                    "flops_ratio": base.flops / model_flops if model_flops else None,
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "models": [asdict(model) for model in self.models],
            "measurements": [asdict(m) for m in self.measurements],
            "speedups": self.speedups(),
            "files": self.files,
            "settings": self.settings,
            "environment": self.environment,
        }


def benchmark(
    models: Sequence[str | os.PathLike | keras.Model],
    *,
    runtimes: Sequence[str] = RUNTIMES,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: Sequence[int] = (1, ALL_CORES),
    precisions: Sequence[str] = ("fp32",),
    calibration_data: Any = None,
    calibration_dataset: str | None = None,
    calibration_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES,
    files_dir: str | os.PathLike | None = None,
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
        precisions: TFLite files to time, any of `PRECISIONS`; must include
            ``"fp32"``, the baseline. ``"fp16"`` (float16 weights) and
            ``"int8"`` (full-integer, float32 inputs and outputs) apply to the
            TFLite runtime only; Keras and ONNX stay float32.
        calibration_data: Examples that calibrate int8, in any form
            `export_tflite`'s ``representative_data`` takes (arrays, a list or
            dict of arrays, ``(x, y)``, a ``tf.data.Dataset``, an ``.npz`` path).
        calibration_dataset: Or a named dataset (``fashion_mnist``, ``cifar10``,
            ``folder:PATH``) whose train images, preprocessed as each model's
            card says, calibrate int8. Without either, int8 is calibrated on
            random inputs: its latency is right, its accuracy meaningless.
        calibration_samples: Examples that calibrate int8.
        files_dir: Keep the exported files in this folder (``0.tflite``,
            ``0_int8.tflite``, …, numbered like ``models``) instead of a
            temporary one.
        warmup: Untimed inferences of each model before timing.
        repeats: Timed inferences of each model per configuration.
        seed: Seed of the random inputs (latency does not depend on them).
        progress: Show progress.

    Returns:
        A `BenchReport`; ``report.speedups()`` pairs each speed-up with the
        FLOPs ratio, and gives every quantized file's speed-up over the first
        model's float32 file.

    Raises:
        InvalidArgumentError: On an unknown runtime or precision, fp16/int8
            without the TFLite runtime, a non-positive count, or models with
            different input shapes.

    Example:
        >>> report = benchmark(["models/base.keras", "runs/pruned.keras"], runtimes=["tflite"],
        ...                    precisions=["fp32", "int8"], calibration_dataset="fashion_mnist")
    """
    precisions = list(dict.fromkeys(precisions))
    _check_settings(models, runtimes, batch_sizes, threads, warmup, repeats)
    _check_precisions(precisions, runtimes, calibration_data, calibration_dataset)
    loaded, tensors, input_shapes, labels, entries = _load_models(models)
    rng = np.random.default_rng(seed)
    configurations = _configurations(runtimes, batch_sizes, threads)
    quantizing = "int8" in precisions
    calibration, calibration_note = (
        _calibration(loaded, tensors[0], calibration_data, calibration_dataset, calibration_samples, seed)
        if quantizing
        else (None, None)
    )
    measurements = []
    with tempfile.TemporaryDirectory(prefix="kprune-bench-") as temporary:
        folder = Path(files_dir) if files_dir is not None else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        files = _export_files(
            [net for net, _ in loaded],
            runtimes,
            precisions,
            folder,
            calibration,
            calibration_samples,
        )
        steps = _track(configurations, progress)
        for runtime, thread_count, batch in steps:
            inputs = _random_inputs(rng, tensors[0], batch)
            timed = [
                (index, precision)
                for index in range(len(loaded))
                for precision in (precisions if runtime == "tflite" else ["fp32"])
            ]
            runners = [
                _runner(
                    runtime,
                    loaded[index][0],
                    tensors[index],
                    files.get((index, runtime, precision)),
                    thread_count,
                    inputs,
                )
                for index, precision in timed
            ]
            timings = time_alternating(runners, warmup, repeats)
            for (index, precision), seconds in zip(timed, timings):
                measurements.append(
                    _measurement(labels[index], runtime, precision, thread_count, batch, seconds)
                )
    settings = {
        "runtimes": list(runtimes),
        "precisions": precisions,
        "batch_sizes": list(batch_sizes),
        "threads": [_resolve_threads(t) for t in threads],
        "warmup": warmup,
        "repeats": repeats,
        **_shape_settings(input_shapes),
    }
    if quantizing:
        settings["calibration"] = calibration_note
    file_rows = [
        {
            "model": labels[index],
            "runtime": runtime,
            "precision": precision,
            "file": artifact.path.name,
            "quantize": artifact.quantize,
            "size_bytes": artifact.size_bytes,
        }
        for (index, runtime, precision), artifact in files.items()
    ]
    return BenchReport(entries, measurements, settings, environment(), files=file_rows)


@dataclass(frozen=True)
class InstructionCount:
    """Executed aarch64 instructions per inference of one model's TFLite file (batch 1)."""

    model: str
    precision: str
    instructions: float


@dataclass
class InstructionReport:
    """Instruction counts of every model and precision on one emulated core."""

    models: list[BenchModel]
    counts: list[InstructionCount]
    settings: dict
    environment: dict = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)

    def ratios(self) -> list[dict]:
        """Every count but the first model's fp32 one: how many times fewer instructions it
        executes than the first model's fp32 file (``fewer_than_fp32``) and than the first
        model at the same precision (``fewer``; None for the first model), beside the FLOPs
        ratio."""
        base = self.models[0]
        flops = {model.label: model.flops for model in self.models}
        by_key = {(count.model, count.precision): count.instructions for count in self.counts}
        rows = []
        for count in self.counts:
            if count.model == base.label and count.precision == "fp32":
                continue
            same = by_key.get((base.label, count.precision))
            rows.append(
                {
                    "model": count.model,
                    "precision": count.precision,
                    "baseline": base.label,
                    "fewer": None if count.model == base.label or same is None else same / count.instructions,
                    "fewer_than_fp32": by_key[(base.label, "fp32")] / count.instructions,
                    "flops_ratio": base.flops / flops[count.model] if flops[count.model] else None,
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "models": [asdict(model) for model in self.models],
            "counts": [asdict(count) for count in self.counts],
            "ratios": self.ratios(),
            "files": self.files,
            "settings": self.settings,
            "environment": self.environment,
        }


def count_benchmark(
    models: Sequence[str | os.PathLike | keras.Model],
    *,
    device: str = "qemu:cortex-a53",
    precisions: Sequence[str] = ("fp32",),
    calibration_data: Any = None,
    calibration_dataset: str | None = None,
    calibration_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES,
    files_dir: str | os.PathLike | None = None,
    inferences: int = INFERENCES,
    repeats: int = 3,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> InstructionReport:
    """Executed aarch64 instructions per inference of each model's TFLite files, emulated.

    The models are exported as `benchmark` exports them (fp32, and fp16 / int8
    with ``precisions``) and counted with `count_instructions` on the core of
    ``device`` (ai_edge_litert, 1 thread, batch 1, one fixed random input).

    Args:
        models: As for `benchmark`; the first is the baseline of the ratios.
        device: ``qemu:cortex-a53`` or ``qemu:cortex-a72``.
        precisions, calibration_data, calibration_dataset, calibration_samples,
            files_dir, seed: As for `benchmark`.
        inferences, repeats, root: As for `count_instructions`.

    Returns:
        An `InstructionReport`; ``report.ratios()`` says how many times fewer
        instructions each file executes than the first model's fp32 file.

    Raises:
        InvalidArgumentError: On an unknown device or precision, or models with
            different input shapes.
        EmulatorError: If QEMU, the arm64 root or a C compiler is missing.

    Example:
        >>> report = count_benchmark(["models/base.keras", "runs/pruned.keras"],
        ...                          device="qemu:cortex-a53", precisions=["fp32", "int8"])
    """
    core = device_core(device)
    precisions = list(dict.fromkeys(precisions))
    _check_settings(models, ["tflite"], [1], [1], 0, 1)
    _check_precisions(precisions, ["tflite"], calibration_data, calibration_dataset)
    check_emulation(root)
    loaded, tensors, input_shapes, labels, entries = _load_models(models)
    calibration, calibration_note = (
        _calibration(loaded, tensors[0], calibration_data, calibration_dataset, calibration_samples, seed)
        if "int8" in precisions
        else (None, None)
    )
    with tempfile.TemporaryDirectory(prefix="kprune-bench-") as temporary:
        folder = Path(files_dir) if files_dir is not None else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        files = _export_files(
            [net for net, _ in loaded], ["tflite"], precisions, folder, calibration, calibration_samples
        )
        counted = count_instructions(
            [str(artifact.path) for artifact in files.values()],
            core,
            inferences=inferences,
            repeats=repeats,
            seed=seed,
            root=root,
        )
    counts = [
        InstructionCount(labels[index], precision, counted[str(artifact.path)])
        for (index, _, precision), artifact in files.items()
    ]
    settings = {
        "device": device,
        "precisions": precisions,
        "inferences": inferences,
        "repeats": repeats,
        **_shape_settings(input_shapes),
    }
    if calibration_note is not None:
        settings["calibration"] = calibration_note
    file_rows = [
        {
            "model": labels[index],
            "precision": precision,
            "file": artifact.path.name,
            "size_bytes": artifact.size_bytes,
        }
        for (index, _, precision), artifact in files.items()
    ]
    return InstructionReport(entries, counts, settings, environment(), files=file_rows)


def _load_models(models) -> tuple[list, list[ModelTensors], tuple, list[str], list[BenchModel]]:
    """The models resolved, their tensors, the input shapes they all share, their labels
    and their table entries.

    Raises:
        InvalidArgumentError: If the models take different input shapes.
    """
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
    return loaded, tensors, shapes.pop(), labels, entries


def _measurement(label, runtime, precision, threads, batch, seconds) -> Measurement:
    values = np.asarray(seconds) * 1000.0
    median = float(np.median(values))
    return Measurement(
        model=label,
        runtime=runtime,
        precision=precision,
        threads=threads,
        batch=batch,
        median_ms=median,
        p90_ms=float(np.percentile(values, 90)),
        throughput=batch * 1000.0 / median,
        runs=len(values),
    )


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


def _export_files(networks, runtimes, precisions, folder: Path, calibration, samples) -> dict:
    """(model index, runtime, precision) → the exported file; ``calibration`` is
    one int8 calibration set per model."""
    files = {}
    for index, network in enumerate(networks):
        if "tflite" in runtimes:
            for precision in precisions:
                suffix = "" if precision == "fp32" else f"_{precision}"
                files[(index, "tflite", precision)] = export_tflite(
                    network,
                    folder / f"{index}{suffix}.tflite",
                    _QUANTIZE[precision],
                    calibration[index] if precision == "int8" else None,
                    num_samples=samples,
                )
        if "onnx" in runtimes:
            files[(index, "onnx", "fp32")] = export_onnx(network, folder / f"{index}.onnx")
    return files


def _calibration(loaded, tensors, data, dataset, samples, seed) -> tuple[list, str]:
    """One int8 calibration set per model, and how the report names it."""
    if data is not None:
        note = str(data) if isinstance(data, (str, os.PathLike)) else "calibration_data"
        return [data] * len(loaded), note
    if dataset is not None:
        fix = "--calibration FILE.npz"
        splits = [
            named_examples(network, path, dataset, None, None, "train", samples, fix)
            for network, path in loaded
        ]
        return splits, f"{dataset} (train split, {samples} examples, each model's preprocessing)"
    # Its own generator: the timed inputs stay those of a run without int8.
    random_inputs = _random_inputs(np.random.default_rng(seed + 1), tensors, samples)
    return [random_inputs] * len(loaded), RANDOM_CALIBRATION


def _configurations(runtimes, batch_sizes, threads) -> list[tuple[str, int | None, int]]:
    configurations = []
    for runtime in runtimes:
        counts = [None] if runtime == "keras" else list(dict.fromkeys(map(_resolve_threads, threads)))
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


def _check_precisions(precisions, runtimes, calibration_data, calibration_dataset) -> None:
    unknown = [precision for precision in precisions if precision not in PRECISIONS]
    if unknown or "fp32" not in precisions:
        raise InvalidArgumentError(
            f"`precisions` must be a choice of {PRECISIONS} that includes fp32, the baseline. "
            f"Received precisions={precisions}."
        )
    quantized = [precision for precision in precisions if precision != "fp32"]
    if quantized and "tflite" not in runtimes:
        raise InvalidArgumentError(
            f"Precisions {quantized} are TFLite files, but runtimes={list(runtimes)} has no "
            "tflite. Fix: add tflite to the runtimes (--runtimes tflite), or measure fp32 only."
        )
    if calibration_data is not None and calibration_dataset is not None:
        raise InvalidArgumentError(
            "Give `calibration_data` or `calibration_dataset`, not both. "
            f"Received calibration_dataset={calibration_dataset!r} and calibration_data too."
        )


def _check_settings(models, runtimes, batch_sizes, threads, warmup, repeats) -> None:
    if not models:
        raise InvalidArgumentError("`models` is empty: nothing to benchmark.")
    unknown = [runtime for runtime in runtimes if runtime not in RUNTIMES]
    if unknown or not runtimes:
        raise InvalidArgumentError(
            f"`runtimes` must be a non-empty choice of {RUNTIMES}. Received runtimes={list(runtimes)}."
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
            f"`warmup` must be ≥ 0 and `repeats` ≥ 1. Received warmup={warmup}, repeats={repeats}."
        )
