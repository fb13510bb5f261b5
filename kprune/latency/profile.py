"""``kprune profile``: measure a model's per-layer latency table on a real runtime.

A *plan* is a folder: ``plan.json`` and the files to time —

- for every layer configuration (see `kprune.latency.layers`), single-layer
  models over a grid of channel counts below each shape its layers have:
  4 × 4 (cin, cout) points for Conv and Dense, 4 channel counts for the rest;
- a fine sweep of one output channel at a time (1…64) of the most expensive
  Conv, which shows the runtime's tile step;
- the whole model, seven copies of it with every prunable group uniformly
  thinned (to 85% … 12% of its channels) and eight with each group keeping a
  random 10–100%, which calibrate the sum of layer times to whole-model time
  (each timed on its own, with warm caches) — from a model whose weights
  stream from memory on every inference down to one that fits the caches
  (see `kprune.latency.table`).

`profile` writes the plan, times it with the bundle's standalone
``kprune_profile.py`` (so the host and the board measure the same way) and
returns the fitted `LatencyTable`; tables are cached by model, runtime,
precision, threads and machine. With a ``device`` (``qemu:cortex-a53``,
``qemu:cortex-a72``) it counts the plan's executed aarch64 instructions under
QEMU instead (`kprune.latency.instructions`): a table whose unit is instructions.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from kprune import interrupts
from kprune.errors import FileWriteError, InvalidArgumentError
from kprune.export.onnx import export_onnx
from kprune.export.templates import kprune_profile
from kprune.export.tflite import convert_small_model
from kprune.files import write_atomically
from kprune.graph import analyze
from kprune.graph.flatten import flatten
from kprune.graph.rebuild import for_inference
from kprune.latency.instructions import INFERENCES, check_emulation, count_plan, device_core
from kprune.latency.layers import MATRIX, single_layer_model, timed_layers
from kprune.latency.table import TABLE_FORMAT, TABLE_VERSION, LatencyTable
from kprune.progress import make_progress
from kprune.surgery import remove_filters

RUNTIMES = ("tflite", "onnx")
PRECISIONS = ("none", "float16", "int8")
GRID_FRACTIONS = (0.1, 0.4, 0.7, 1.0)
SWEEP_CHANNELS = 64
CALIBRATION_FRACTIONS = (1.0, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2, 0.12)
# Uniform thinning alone cannot place the caches' edge in the traffic term: ResNet50's copies
# at 40% and 55% hold 3.8 M and 7.1 M weights, and pruned models in between ran up to 20%
# faster than predicted. Unevenly thinned copies fill the gaps.
CALIBRATION_RANDOM, CALIBRATION_SEED = 8, 1
CALIBRATION_SAMPLES = 16
COUNT_REPEATS = 3  # instruction counts: each file counted this many times, the smallest kept


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kprune" / "latency"


def profile(
    model: keras.Model,
    *,
    runtime: str = "tflite",
    threads: int = 1,
    quantize: str = "none",
    repeats: int = 50,
    warmup: int = 5,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
    sweep_channels: int = SWEEP_CHANNELS,
    seconds: float = kprune_profile.MIN_SECONDS,
    device: str | None = None,
    inferences: int = INFERENCES,
) -> LatencyTable:
    """Measures the latency table of ``model`` on a runtime of this machine, or counts it.

    Args:
        model: The model (nested models are flattened; it is only read).
        runtime: ``"tflite"`` (XNNPACK) or ``"onnx"`` (ONNX Runtime, CPU).
        threads: Inference threads.
        quantize: TFLite precision: ``"none"``, ``"float16"`` or ``"int8"``
            (calibrated on random inputs: only time is measured).
        repeats: Timed runs per file (back to back, in 3 passes over its group).
        warmup: Untimed runs of every file first.
        cache_dir: Where tables are cached (default ``~/.cache/kprune/latency``).
        use_cache: Reuse a cached table of the same model, runtime, precision,
            threads and machine.
        progress: Show progress bars.
        sweep_channels: The output-channel sweep goes 1, 2, … up to this.
        seconds: Time the whole plan again and again for at least this long (at
            least twice, at most 20 times); every file keeps its fastest time, so
            that a slow spell of a shared machine does not end up in the table.
        device: ``None`` (time here), or ``qemu:cortex-a53`` / ``qemu:cortex-a72``:
            count executed aarch64 instructions per inference of every file on that
            emulated core (TFLite, 1 thread; `kprune.latency.instructions`); the
            table's unit is then ``instructions``.
        inferences: With a device: inferences counted per file (3 repeats, the
            smallest kept).

    Returns:
        The fitted `LatencyTable`.

    Raises:
        InvalidArgumentError: On an unknown runtime, precision or device, threads < 1,
            or a device with another runtime than tflite or more than 1 thread.
        EmulatorError: With a device, if QEMU, the arm64 root or a C compiler is missing.

    Example:
        >>> table = kprune.profile(model, runtime="tflite", threads=1)
        >>> kprune.predict_latency(pruned, table)
    """
    _check(runtime, threads, quantize, repeats)
    if device is not None:
        _check_device(device, runtime, threads)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(model, runtime, threads, quantize, sweep_channels, device, inferences)
    cached = cache / f"{key}.json"
    if use_cache and cached.is_file():
        return LatencyTable.load(cached)
    if device is not None:
        check_emulation()
    with tempfile.TemporaryDirectory(prefix="kprune-profile-") as folder:
        write_plan(
            model,
            folder,
            runtime=runtime,
            quantize=quantize,
            progress=progress,
            sweep_channels=sweep_channels,
        )
        if device is not None:
            data = count_plan(folder, device_core(device), inferences=inferences, repeats=COUNT_REPEATS)
        else:
            bar = _GroupProgress(progress)
            data = kprune_profile.measure(
                folder, threads, warmup, repeats, progress=bar.update, seconds=seconds
            )
            bar.close()
    table = LatencyTable(data)
    if use_cache:
        table.save(cached)
    return table


def write_plan(
    model: keras.Model,
    folder: str | os.PathLike,
    *,
    runtime: str = "tflite",
    quantize: str = "none",
    progress: bool = False,
    sweep_channels: int = SWEEP_CHANNELS,
) -> dict:
    """Writes the files to time and ``plan.json`` into ``folder``; returns the plan."""
    _check(runtime, 1, quantize, 1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    network = for_inference(model)
    flat = flatten(network)
    timed, untimed = timed_layers(flat)
    export = _Exporter(runtime, quantize, folder)
    entries, jobs = {}, []
    for layer in timed:
        entry = entries.setdefault(
            layer.key,
            {
                "kind": layer.kind,
                "configuration": layer.configuration,
                "layers": [],
                "full": [0, 0],
                "points": [],
                "files": [],
                "weights": [],
            },
        )
        entry["layers"].append(layer.name)
        entry["full"] = [max(entry["full"][0], layer.cin), max(entry["full"][1], layer.cout)]
        entry.setdefault("_builder", layer.name)
        entry.setdefault("_shapes", set()).add((layer.cin, layer.cout))
    for key, entry in entries.items():
        builder = entry.pop("_builder")
        for cin, cout in grid(entry["kind"], *entry.pop("_shapes")):
            jobs.append((key, builder, cin, cout))
    sweep_layer = _sweep_layer(timed)
    sweep_jobs = []
    if sweep_layer is not None:
        sweep_jobs = [(sweep_layer.name, sweep_layer.cin, c) for c in range(1, sweep_channels + 1)]
    calibration = _calibration_models(network)
    total = len(jobs) + len(sweep_jobs) + len(calibration)
    with make_progress() as bar:
        task = bar.add_task("profile: build", total=total, status="", visible=progress)

        def tick() -> None:  # one model built: progress, and a safe point for Ctrl-C
            bar.advance(task)
            interrupts.check()

        plan = _write_files(
            model,
            flat,
            export,
            entries,
            untimed,
            jobs,
            sweep_layer,
            sweep_jobs,
            calibration,
            tick,
            runtime,
            quantize,
        )
    write_atomically(folder / kprune_profile.PLAN_NAME, (json.dumps(plan, indent=1) + "\n").encode())
    return plan


def _write_files(
    model, flat, export, entries, untimed, jobs, sweep_layer, sweep_jobs, calibration, tick, runtime, quantize
) -> dict:
    unbuildable = []
    for index, (key, builder, cin, cout) in enumerate(jobs):
        tick()
        try:
            with warnings.catch_warnings():  # e.g. "softmax over an axis of size 1" at 1 channel
                warnings.simplefilter("ignore")
                single = single_layer_model(flat, builder, cin, cout)
                name = export(single, f"e{index}")
        except FileWriteError:
            raise  # the disk, not the layer
        except Exception:  # noqa: BLE001 — any layer that cannot stand alone is timed in the constant
            unbuildable.append(key)
            continue
        entries[key]["points"].append([cin, cout])
        entries[key]["files"].append(name)
        entries[key]["weights"].append(int(single.count_params()))
    skipped = sorted(set(unbuildable))
    for key in skipped:  # such a layer's time goes to the calibration's constant
        untimed.extend(entries.pop(key)["layers"])
    sweep = None
    if sweep_jobs:
        files = []
        for index, (builder, cin, cout) in enumerate(sweep_jobs):
            tick()
            files.append(export(single_layer_model(flat, builder, cin, cout), f"s{index}"))
        sweep = {
            "layer": sweep_layer.name,
            "cin": sweep_layer.cin,
            "couts": [c for _, _, c in sweep_jobs],
            "files": files,
        }
    calibration_items = []
    for index, (fraction, variant) in enumerate(calibration):
        tick()
        layers, _ = timed_layers(variant)
        calibration_items.append(
            {
                "fraction": fraction,
                "file": export(variant, f"model{index}"),
                "layers": [[layer.key, layer.cin, layer.cout] for layer in layers if layer.key in entries],
            }
        )
    groups = [entry["files"] for entry in entries.values() if entry["files"]]
    if sweep:
        groups.append(sweep["files"])
    # Whole models are timed each on its own, warm, as a deployed model runs: taking turns
    # would evict one model's weights from the caches for the next.
    groups.extend([item["file"]] for item in calibration_items)
    return {
        "format": TABLE_FORMAT,
        "version": TABLE_VERSION,
        "runtime": runtime,
        "quantize": quantize,
        "model": {"name": model.name, "fingerprint": model_fingerprint(model)},
        "entries": entries,
        "sweep": sweep,
        "calibration": calibration_items,
        "untimed": sorted(set(untimed)),
        "skipped_keys": skipped,
        "groups": groups,
    }


def grid(kind: str, *shapes: tuple[int, int]) -> list[tuple[int, int]]:
    """The channel counts a layer configuration is timed at: a grid below each of the
    ``(cin, cout)`` shapes of its layers (one configuration often serves layers of several
    shapes, e.g. a block's expand 160 → 960 and project 960 → 160; a grid up to 960 × 960
    would time sizes no layer has, whose weights spill from caches the real layers fit)."""
    if kind == MATRIX:
        points = {(i, o) for cin, cout in shapes for i in _levels(cin) for o in _levels(cout)}
    else:
        points = {(c, c) for cin, _ in shapes for c in _levels(cin)}
    return sorted(points)


def _levels(full: int) -> list[int]:
    return sorted({max(1, round(fraction * full)) for fraction in GRID_FRACTIONS})


def _sweep_layer(timed):
    """The Conv/Dense layer with the most multiply-adds per output channel (its output
    channels are swept beyond its own count: only the tile pattern matters)."""
    candidates = [layer for layer in timed if layer.kind == MATRIX]
    if not candidates:
        return None
    spatial = lambda layer: int(np.prod(layer.configuration["input_spatial"][0] or [1]))  # noqa: E731
    return max(candidates, key=lambda layer: spatial(layer) * layer.cin)


def _calibration_models(network: keras.Model) -> list[tuple[float | None, keras.Model]]:
    """(fraction, model): the model, its uniformly thinned copies, then copies whose groups
    each keep a random 10–100% of their channels (fraction None; fixed seed, so a plan is
    the same every time)."""
    graph = analyze(network, unsupported="freeze")
    prunable = [group for group in graph.groups if group.prunable]
    models = [(1.0, network)]
    for fraction in CALIBRATION_FRACTIONS[1:]:
        removal = _thinning(prunable, [fraction] * len(prunable))
        if removal:
            models.append((fraction, remove_filters(network, removal)))
    rng = np.random.default_rng(CALIBRATION_SEED)
    for _ in range(CALIBRATION_RANDOM):
        removal = _thinning(prunable, rng.uniform(0.1, 1.0, len(prunable)).tolist())
        if removal:
            models.append((None, remove_filters(network, removal)))
    return models


def _thinning(groups, fractions: list[float]) -> dict[str, list[int]]:
    """The removal that leaves each group ``fraction`` of its channels, spread evenly so
    that every coupled member keeps its share."""
    removal = {}
    for group, fraction in zip(groups, fractions):
        keep = set(
            np.linspace(0, group.channels - 1, max(1, round(fraction * group.channels)))
            .round()
            .astype(int)
            .tolist()
        )
        drop = set(range(group.channels)) - keep
        for name, channels in group.producers.items():
            indices = [i for i, c in enumerate(channels.tolist()) if c in drop]
            if indices:
                removal[name] = indices
    return removal


class _Exporter:
    """Writes a model as the plan's runtime file; returns its file name."""

    def __init__(self, runtime: str, quantize: str, folder: Path):
        self.runtime, self.quantize, self.folder = runtime, quantize, folder
        self.rng = np.random.default_rng(0)

    def __call__(self, network: keras.Model, stem: str) -> str:
        if self.runtime == "onnx":
            name = f"{stem}.onnx"
            export_onnx(network, self.folder / name)
            return name
        calibration = None
        if self.quantize == "int8":
            calibration = [
                self.rng.random((CALIBRATION_SAMPLES, *t.shape[1:]), dtype=np.float32) for t in network.inputs
            ]
        name = f"{stem}.tflite"
        write_atomically(self.folder / name, convert_small_model(network, self.quantize, calibration))
        return name


class _GroupProgress:
    """A bar advanced by kprune_profile.measure's (done, total) callback."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = make_progress()
            self.bar.start()
            self.task = self.bar.add_task("profile: time", total=total, status="")
        self.bar.update(self.task, completed=done, total=total)  # the sweeps are counted after the first

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def model_fingerprint(model: keras.Model) -> str:
    """A hash of the model's architecture (configuration and input shapes), not its weights."""
    text = json.dumps(
        {"config": model.get_config(), "inputs": [list(t.shape) for t in model.inputs]},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(
    model: keras.Model,
    runtime: str,
    threads: int,
    quantize: str,
    sweep: int = SWEEP_CHANNELS,
    device: str | None = None,
    inferences: int = INFERENCES,
) -> str:
    """The name of a cached table: model architecture, runtime settings, machine (or the
    emulated device and the inferences counted)."""
    machine = kprune_profile.environment()["machine"] if device is None else f"{device} {inferences}"
    parts = [
        model_fingerprint(model),
        runtime,
        str(threads),
        quantize,
        str(sweep),
        machine,
        str(TABLE_VERSION),
    ]
    text = "|".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _check_device(device: str, runtime: str, threads: int) -> None:
    device_core(device)  # an unknown device fails here
    if runtime != "tflite" or threads != 1:
        raise InvalidArgumentError(
            f"`device={device!r}` counts TFLite files at 1 thread. Received runtime={runtime!r}, "
            f"threads={threads}. Fix: use runtime='tflite' and threads=1 (the defaults)."
        )


def _check(runtime: str, threads: int, quantize: str, repeats: int) -> None:
    if runtime not in RUNTIMES:
        raise InvalidArgumentError(f"`runtime` must be one of {RUNTIMES}. Received runtime={runtime!r}.")
    if quantize not in PRECISIONS:
        raise InvalidArgumentError(f"`quantize` must be one of {PRECISIONS}. Received quantize={quantize!r}.")
    if quantize != "none" and runtime != "tflite":
        raise InvalidArgumentError(
            f"`quantize={quantize!r}` is a TFLite precision. Fix: use runtime='tflite' or quantize='none'."
        )
    if threads < 1 or repeats < 1:
        raise InvalidArgumentError(
            f"`threads` and `repeats` must be ≥ 1. Received threads={threads}, repeats={repeats}."
        )
