"""The shipped models' cost on the board's cores and on this host, side by side, in one run.

For every shipped model (the SqueezeNet baseline, its first training stage and the
SqueezeNets pruned from it, MobileNetV2, the detector) and each TFLite precision (fp32, and int8 calibrated on
real data: Fashion-MNIST for the classifiers, training canvases for the detector):
executed aarch64 instructions per inference on an emulated Cortex-A53 and
Cortex-A72 (`kprune.count_benchmark`, deterministic) and the median milliseconds of
TFLite XNNPACK on this x86 host (`kprune.benchmark`, 1 thread, batch 1, noisy on a
shared host). Ratios are against the first fp32 file of the same network: the
SqueezeNet baseline's for the SqueezeNets, the model's own for the others.

    python -m scripts.benchmarks.board_cost_table            # measures, writes docs/results/board/board_cost.json
    python -m scripts.benchmarks.board_cost_table --report   # writes docs/RESULTS.md from that file

Instructions are a proxy for the board's cycles, not its milliseconds
(docs/LATENCY.md, "Instructions on the board's cores").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts.common import load_json, replace_section, write_json

ROOT = Path(__file__).resolve().parents[2]
# Each network's files are measured in one call (one input shape), the first is its baseline.
GROUPS = {
    "SqueezeNet 1.1": (
        "kprune/baselines/squeezenet1_1_fmnist_sgd.keras",  # kprune prune's default model, the shipped ones' start
        "models/squeezenet1_1_fmnist.keras",  # its first training stage (AdamW), the same network
        "models/squeezenet1_1_fmnist_pruned.keras",
        "models/squeezenet1_1_fmnist_latency.keras",
        "models/squeezenet1_1_fmnist_int8.keras",
    ),
    "MobileNetV2": ("models/mobilenet_v2_fmnist.keras",),
    "detector": ("models/detector_fmnist.keras",),
}
DETECTOR_CALIBRATION = 500  # training canvases, as the detector's bundle is calibrated
CORES = ("cortex-a53", "cortex-a72")
PRECISIONS = ("fp32", "int8")
COMMAND = "python -m scripts.benchmarks.board_cost_table"
EVIDENCE = ROOT / "docs" / "results" / "board" / "board_cost.json"


def host_cpu() -> str:
    """The x86 host's CPU model, from /proc/cpuinfo (the machine type elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def calibration(group: str) -> dict:
    """The int8 calibration of a group: Fashion-MNIST for the classifiers (each model's own
    preprocessing), the detector's training canvases for the detector."""
    if group != "detector":
        return {"calibration_dataset": "fashion_mnist"}
    from scripts.experiments.detector import canvases

    images = canvases({"train": DETECTOR_CALIBRATION, "val": 0, "test": 0})["train"][0]
    return {"calibration_data": images.astype("float32"), "calibration_samples": DETECTOR_CALIBRATION}


def measure(group: str, models, inferences: int, repeats: int) -> dict:
    import kprune

    common = dict(precisions=PRECISIONS, **calibration(group))
    counts = {
        core: kprune.count_benchmark(
            models, device=f"qemu:{core}", inferences=inferences, repeats=1, **common
        ).to_dict()
        for core in CORES
    }
    timed = kprune.benchmark(
        models, runtimes=["tflite"], batch_sizes=[1], threads=[1], repeats=repeats, **common
    ).to_dict()
    return {"group": group, "counts": counts, "x86": timed}


def rows(measured: dict) -> list[dict]:
    """One row per model and precision of one group: A53 and A72 instructions, x86 ms."""
    table = {}
    for core, report in measured["counts"].items():
        for count in report["counts"]:
            table.setdefault((count["model"], count["precision"]), {})[core] = count["instructions"]
    for measurement in measured["x86"]["measurements"]:
        key = (measurement["model"], measurement["precision"])
        table.setdefault(key, {})["x86_ms"] = measurement["median_ms"]
    return [
        {"model": model, "precision": precision, **values} for (model, precision), values in table.items()
    ]


def report(result: dict) -> str:
    lines = [
        "| model | file | A53 instructions / inference | A72 instructions / inference | x86 ms (1 thread) |",
        "| --- | --- | --: | --: | --: |",
    ]
    for measured in result["groups"]:
        found = rows(measured)
        base = next(row for row in found if row["precision"] == "fp32")
        for row in found:
            cells = []
            for key, form, word in (
                ("cortex-a53", "{:,.0f}", "fewer"),
                ("cortex-a72", "{:,.0f}", "fewer"),
                ("x86_ms", "{:.3f}", "faster"),
            ):
                cell = form.format(row[key])
                if row is not base:
                    cell += f" ({base[key] / row[key]:.2f}× {word})"
                cells.append(cell)
            lines.append(f"| {row['model']} | {row['precision']} | " + " | ".join(cells) + " |")
    environment = result["groups"][0]["counts"]["cortex-a53"]["environment"]
    return "\n".join(
        [
            f"Generated by `{COMMAND} --report` from docs/results/board/board_cost.json, which "
            f"`{COMMAND}` measures. Instructions: executed "
            "aarch64 instructions per inference of each TFLite file on an emulated core "
            "(QEMU user mode with kprune's counting plugin, ai_edge_litert with XNNPACK, 1 thread, "
            "one fixed input; deterministic to a few instructions). int8 files: calibrated on "
            "300 Fashion-MNIST training images (the classifiers) or "
            f"{DETECTOR_CALIBRATION} training canvases (the detector). x86: median of "
            f"`kprune bench` on {result['host']} ({environment.get('cpu_count', '?')} cores, shared, "
            "so its ratios move by some percent between runs). Ratios against the first fp32 file "
            "of the same network: the SqueezeNet baseline (`squeezenet1_1_fmnist_sgd`) for the "
            "SqueezeNets; MobileNetV2 and the detector against their own fp32 file (no unpruned "
            "detector ships).",
            "",
            *lines,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(EVIDENCE))
    parser.add_argument("--report", action="store_true", help="write docs/RESULTS.md from --out's JSON")
    parser.add_argument("--inferences", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    if args.report:
        text = report(load_json(args.out))
        replace_section(
            ROOT / "docs" / "RESULTS.md", "board-cost", "The shipped models on the board's cores", text
        )
        print(text)
        return
    result = {
        "groups": [
            measure(group, [str(ROOT / model) for model in models], args.inferences, args.repeats)
            for group, models in GROUPS.items()
        ],
        "host": host_cpu(),
    }
    write_json(args.out, result)
    print(report(result))


if __name__ == "__main__":
    main()
