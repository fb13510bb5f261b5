"""Ranking cost: Taylor ranking over N batches vs N training steps, and memory.

Prints, measured in one run on this machine:
- end-to-end time of `kprune.rank(..., "taylor", num_batches=N)` ÷ time of
  `model.fit` for N steps (both include tracing; goal ≤ 1.5);
- steady-state ratio from the difference between 2N and N batches;
- peak resident memory of a fresh process ranking N and 4N batches (goal: flat).

Usage: python -m scripts.benchmarks.bench_ranking [--model models/squeezenet1_1_fmnist_sgd.keras] [--batches 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _setup(model_path: str | None, batches: int, batch_size: int):
    import kprune
    from kprune.data import load
    from kprune.modelio import resolve_model_path

    if model_path and os.path.exists(resolve_model_path(model_path)):
        model = kprune.load_model(model_path)
    else:
        model = kprune.models.squeezenet("1.1", (28, 28, 1), 10, stem="cifar")
    try:
        data = load(
            "fashion_mnist",
            "train",
            input_shape=model.input_shape[1:],
            batch_size=batch_size,
            shuffle=False,
            limit=batches * batch_size,
            download=False,
        )
    except kprune.DatasetNotFoundError:
        data = load("synthetic", "train", input_shape=model.input_shape[1:], batch_size=batch_size)
    return model, data.dataset.cache().repeat()


def _time_rank(model, data, batches: int) -> float:
    import kprune

    start = time.perf_counter()
    kprune.rank(model, data, "taylor", num_batches=batches)
    return time.perf_counter() - start


def _time_train(model, data, steps: int) -> float:
    import keras

    from kprune.training.setup import TrainingSetup

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    TrainingSetup().compile(clone, total_steps=steps)
    start = time.perf_counter()
    clone.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def _memory_child(model_path, batches, batch_size) -> None:
    model, data = _setup(model_path, batches, batch_size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _time_rank(model, data, batches)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": after / 1024, "growth_mib": (after - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/squeezenet1_1_fmnist_sgd.keras")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        _memory_child(args.model, args.memory_child, args.batch_size)
        return

    n = args.batches
    model, data = _setup(args.model, 4 * n, args.batch_size)
    rank_n, rank_2n = _time_rank(model, data, n), _time_rank(model, data, 2 * n)
    train_n, train_2n = _time_train(model, data, n), _time_train(model, data, 2 * n)
    print(f"model: {model.name}, batch size {args.batch_size}, {os.cpu_count()} CPU cores")
    print(f"taylor ranking, {n} batches: {rank_n:.2f} s; {n} training steps: {train_n:.2f} s")
    print(f"ratio end-to-end (tracing included): {rank_n / train_n:.2f}   (goal <= 1.5)")
    steady = (rank_2n - rank_n) / max(train_2n - train_n, 1e-9)
    print(f"ratio steady state ({n} extra batches): {steady:.2f}   (goal <= 1.5)")

    peaks = {}
    for count in (n, 4 * n):
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--batch-size",
                str(args.batch_size),
                "--memory-child",
                str(count),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[count] = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"peak memory ranking {n} batches: {peaks[n]['peak_mib']:.0f} MiB (growth during ranking "
        f"{peaks[n]['growth_mib']:.0f} MiB); {4 * n} batches: {peaks[4 * n]['peak_mib']:.0f} MiB "
        f"(growth {peaks[4 * n]['growth_mib']:.0f} MiB); ratio {peaks[4 * n]['peak_mib'] / peaks[n]['peak_mib']:.2f} (goal: ~1)"
    )


if __name__ == "__main__":
    main()
