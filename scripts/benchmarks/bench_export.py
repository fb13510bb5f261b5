"""Export, verify and benchmark the shipped baseline, and a pruned copy when given.

Runs only kprune commands, in this order, and prints what they print:

1. ``kprune export MODEL --quantize none,int8`` for each model (verified on
   real images: float32 within 1e-4 of Keras, int8 top-1 agreement ≥ 98%);
2. ``kprune bench BASELINE [PRUNED]``: Keras, TFLite (XNNPACK, 1 thread and
   all cores) and ONNX Runtime at batch 1 and 32, the models alternating in
   one run, each speed-up printed next to the FLOPs ratio. The JSON result is
   written to OUT/bench.json.

Usage:
    python -m scripts.benchmarks.bench_export [--baseline models/squeezenet1_1_fmnist_sgd.keras]
        [--pruned runs/pruned/model.keras] [--out runs/bench_export] [--repeats 50]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

KPRUNE = [sys.executable, "-c", "from kprune.cli import main; main()"]


def run(*arguments: str) -> None:
    command = [*KPRUNE, *arguments]
    print("$ kprune " + " ".join(arguments), flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        sys.exit(completed.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="models/squeezenet1_1_fmnist_sgd.keras")
    parser.add_argument("--pruned", help="A pruned copy of the baseline (.keras).")
    parser.add_argument("--out", default="runs/bench_export")
    parser.add_argument("--dataset", help="Default: the dataset named in each model card.")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    arguments = parser.parse_args()

    models = [arguments.baseline] + ([arguments.pruned] if arguments.pruned else [])
    from kprune.modelio import resolve_model_path  # finds the packaged baseline too

    missing = [path for path in models if not Path(resolve_model_path(path)).is_file()]
    if missing:
        sys.exit(
            f"Model file {missing[0]} does not exist. Train the baseline first "
            "(see models/ and its model card), or pass --baseline."
        )
    out = Path(arguments.out)
    dataset = ["--dataset", arguments.dataset] if arguments.dataset else []
    for model in models:
        run("export", model, "--quantize", "none,int8", "--out", str(out / Path(model).stem), *dataset)
    run(
        "bench",
        *models,
        "--repeats",
        str(arguments.repeats),
        "--warmup",
        str(arguments.warmup),
        "--output",
        str(out / "bench.json"),
    )


if __name__ == "__main__":
    main()
