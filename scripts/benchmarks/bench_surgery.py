"""Cost of dependency analysis and filter surgery, and how it grows with depth.

Prints, measured in one run on this machine:
- `kprune.graph.analyze` and `kprune.surgery.remove_filters` time for
  SqueezeNet 1.1 (goal < 1 s together) and ResNet50 (goal < 10 s), each with
  25% of every prunable group removed;
- the same for ResNet50/101/152 and for synthetic chains of N residual conv
  blocks (N = 50, 100, 200, 400; 7 layers each), as CPU time per layer, with
  the ratio of each per-layer time to the smallest model's and the slope of
  log(time) against log(layers): 1 is linear growth. CPU time (this process)
  is what the growth check uses, since wall time on a shared machine also
  counts other jobs' turns.

Exits with status 1 if a goal is missed or the chains' CPU-time slope exceeds
1.25.

Usage: python -m scripts.benchmarks.bench_surgery [--chains 50,100,200,400] [--repeat 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GOALS_S = {"SqueezeNet 1.1": 1.0, "ResNet50": 10.0}
MAX_SLOPE = 1.25


def _chain(blocks: int, width: int = 16):
    """N blocks of conv→BN→ReLU→conv→BN→Add(skip)→ReLU on 8×8 inputs."""
    import keras

    layers = keras.layers
    inputs = keras.Input((8, 8, width), name="input")
    x = layers.Conv2D(width, 1, name="stem")(inputs)
    for b in range(blocks):
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{b}_conv1")(x)
        y = layers.BatchNormalization(name=f"b{b}_bn1")(y)
        y = layers.ReLU(name=f"b{b}_relu1")(y)
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{b}_conv2")(y)
        y = layers.BatchNormalization(name=f"b{b}_bn2")(y)
        x = layers.Add(name=f"b{b}_add")([x, y])
        x = layers.ReLU(name=f"b{b}_relu2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name=f"chain{blocks}")


def _models(chains: list[int]):
    import keras

    import kprune

    yield (
        "SqueezeNet 1.1",
        lambda: kprune.models.squeezenet("1.1", input_shape=(32, 32, 3), num_classes=10, stem="cifar"),
    )
    for depth in (50, 101, 152):
        function = getattr(keras.applications, f"ResNet{depth}")
        yield f"ResNet{depth}", lambda f=function: f(weights=None, input_shape=(32, 32, 3), classes=10)
    for blocks in chains:
        yield f"chain N={blocks}", lambda b=blocks: _chain(b)


def _measure(build, repeat: int) -> dict:
    import numpy as np

    from kprune.graph import analyze
    from kprune.surgery import remove_filters

    model = build()
    keys = ("analyze_s", "surgery_s", "analyze_cpu_s", "surgery_cpu_s")
    best = {key: float("inf") for key in keys}
    for _ in range(repeat):
        with _timer(best, "analyze"):
            graph = analyze(model)
        removal = _quarter_of_every_group(graph, np.random.default_rng(0))
        with _timer(best, "surgery"):
            pruned = remove_filters(model, removal, graph=graph)
    return {
        "layers": len(graph.flat.calls),
        "groups": len(graph.groups),
        "params_before": model.count_params(),
        "params_after": pruned.count_params(),
        **best,
    }


@contextlib.contextmanager
def _timer(best: dict, name: str):
    """Keeps the lowest wall-clock and CPU (this process, all threads) seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    best[f"{name}_s"] = min(best[f"{name}_s"], time.perf_counter() - wall)
    best[f"{name}_cpu_s"] = min(best[f"{name}_cpu_s"], time.process_time() - cpu)


def _quarter_of_every_group(graph, rng) -> dict[str, list[int]]:
    removal = {}
    for group in graph.groups:
        if group.prunable and group.channels > 1:
            name = next(iter(group.producers))
            size = len(group.producers[name])
            removal[name] = rng.choice(size, max(1, size // 4), replace=False).tolist()
    return removal


def _slope(points: list[tuple[int, float]]) -> float:
    import numpy as np

    sizes, times = zip(*points)
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def _print_row(name: str, row: dict) -> None:
    wall = row["analyze_s"] + row["surgery_s"]
    cpu = row["analyze_cpu_s"] + row["surgery_cpu_s"]
    print(
        f"{name:<16}{row['layers']:>7}{row['groups']:>7}{row['analyze_s']:>11.3f}"
        f"{row['surgery_s']:>11.3f}{wall:>9.2f}{cpu:>9.2f}{1000 * cpu / row['layers']:>13.2f}",
        flush=True,
    )


def _check_goals(results: dict) -> list[str]:
    missed = []
    for name, goal in GOALS_S.items():
        wall = results[name]["analyze_s"] + results[name]["surgery_s"]
        print(
            f"goal {name}: analyze + surgery {wall:.2f} s wall < {goal:g} s: "
            f"{'ok' if wall < goal else 'MISSED'}"
        )
        if wall >= goal:
            missed.append(f"{name} goal")
    return missed


def _growth(family: str, names: list[str], results: dict) -> dict[str, float]:
    """Per-layer CPU time relative to the first model, and log-log slopes."""
    rows = [results[name] for name in names]
    base = rows[0]
    print(f"growth over {family} (CPU time per layer ÷ that of {names[0]}):")
    for name, row in zip(names, rows):
        ratios = [
            (row[key] / row["layers"]) / (base[key] / base["layers"])
            for key in ("analyze_cpu_s", "surgery_cpu_s")
        ]
        print(
            f"  {name:<14} layers ×{row['layers'] / base['layers']:<4.1f} "
            f"analyze ×{ratios[0]:.2f}, surgery ×{ratios[1]:.2f} per layer"
        )
    slopes = {
        key: _slope([(row["layers"], row[key]) for row in rows])
        for key in ("analyze_cpu_s", "surgery_cpu_s", "analyze_s", "surgery_s")
    }
    print(
        f"  log-log slope of time against layers (1 = linear): CPU analyze "
        f"{slopes['analyze_cpu_s']:.2f}, surgery {slopes['surgery_cpu_s']:.2f}; wall analyze "
        f"{slopes['analyze_s']:.2f}, surgery {slopes['surgery_s']:.2f}"
    )
    return slopes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", default="50,100,200,400", help="block counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs per model")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args(argv)
    chains = [int(n) for n in args.chains.split(",")]

    import keras
    import tensorflow as tf

    print(
        f"kprune bench_surgery: {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
    print(
        f"{'model':<16}{'layers':>7}{'groups':>7}{'analyze s':>11}{'surgery s':>11}"
        f"{'wall s':>9}{'CPU s':>9}{'CPU ms/layer':>13}"
    )
    results = {}
    for name, build in _models(chains):
        results[name] = _measure(build, args.repeat)
        _print_row(name, results[name])
        keras.backend.clear_session()

    failures = _check_goals(results)
    _growth("ResNet50/101/152", [f"ResNet{d}" for d in (50, 101, 152)], results)
    slopes = _growth("chains", [f"chain N={n}" for n in chains], results)
    results["chain slopes"] = slopes
    if max(slopes["analyze_cpu_s"], slopes["surgery_cpu_s"]) > MAX_SLOPE:
        failures.append(f"chain CPU-time slope above {MAX_SLOPE}")

    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
