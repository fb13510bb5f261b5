"""Builds the measured part of docs/RESULTS.md from the files of scripts/experiments/reproduce.sh.

Reads the run dirs (report.json, finetuned-NN.card.json), the baseline's model
card and oracle.json; exports and benchmarks the baseline against the best
pruned model (≤ 1 point drop) through scripts/benchmarks/bench_export.py; writes the
tables between the ``<!-- generated -->`` markers of docs/RESULTS.md and the
figures into docs/img/. With --ship, copies the best model to models/ and
writes its deployment bundle with `kprune bundle`.

Usage: python -m scripts.experiments.results runs/reproduce --baseline models/squeezenet1_1_fmnist_sgd.keras [--ship]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from kprune.card import write_card
from kprune.modelio import resolve_model_path
from scripts.checks.shipped_bundles import write_bundle
from scripts.common import best_within_budget, load_json, replace_section
from scripts.experiments.criterion_oracle import summary_table

KPRUNE = [sys.executable, "-c", "from kprune.cli import main; main()"]
MAX_DROP = 1.0  # points


def collect(out: Path, baseline: dict) -> list[dict]:
    rows = []
    for report_path in sorted(out.glob("*/report.json")):
        run = report_path.parent
        report = load_json(report_path)
        for card_path in sorted(run.glob("finetuned-*.card.json")):
            card = load_json(card_path)
            target = int(card_path.name.split("-")[1].split(".")[0])
            model_path = card_path.with_name(card_path.name.replace(".card.json", ".keras"))
            rows.append(
                {
                    "criterion": report["criterion"],
                    "target": target,
                    "run": str(run),
                    "model": str(model_path),
                    "accuracy": card["test_accuracy"],
                    "drop": 100 * (baseline["test_accuracy"] - card["test_accuracy"]),
                    "params": card["params"],
                    "flops": card["flops"],
                    "params_removed": 1 - card["params"] / baseline["params"],
                    "flops_removed": 1 - card["flops"] / baseline["flops"],
                    "bytes": model_path.stat().st_size,
                    "seconds": card["wall_time_s"],
                    "prune_seconds": report.get("wall_time_s"),
                }
            )
    return rows


def control_row(out: Path, baseline: dict) -> dict | None:
    """The unpruned baseline after the same final fine-tune (written by reproduce.sh), if present."""
    card_path = out / "baseline-finetuned.card.json"
    if not card_path.is_file():
        return None
    card = load_json(card_path)
    return {
        "accuracy": card["test_accuracy"],
        "drop": 100 * (baseline["test_accuracy"] - card["test_accuracy"]),
        "bytes": card_path.with_name("baseline-finetuned.keras").stat().st_size,
    }


def accuracy_table(rows, baseline, control) -> str:
    lines = [
        "| criterion | target | params removed | FLOPs removed | FLOPs ratio | test top-1 | Δ (points) | .keras size |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| (baseline) | – | 0% | 0% | 1.00× | {100 * baseline['test_accuracy']:.2f}% | – | "
        f"{baseline['bytes'] / 1e6:.2f} MB |",
    ]
    if control is not None:
        lines.append(
            f"| (baseline + same fine-tune, control) | – | 0% | 0% | 1.00× | {100 * control['accuracy']:.2f}% | "
            f"{-control['drop']:+.2f} | {control['bytes'] / 1e6:.2f} MB |"
        )
    for r in sorted(rows, key=lambda r: (r["criterion"], r["target"])):
        lines.append(
            f"| {r['criterion']} | {r['target']}% | {100 * r['params_removed']:.1f}% | "
            f"{100 * r['flops_removed']:.1f}% | {baseline['flops'] / r['flops']:.2f}× | "
            f"{100 * r['accuracy']:.2f}% | {-r['drop']:+.2f} | {r['bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


def pivot_table(rows) -> str:
    criteria = sorted({r["criterion"] for r in rows})
    targets = sorted({r["target"] for r in rows})
    cell = {(r["criterion"], r["target"]): r for r in rows}
    lines = [
        "| criterion | " + " | ".join(f"{t}% params removed" for t in targets) + " |",
        "| --- |" + " --- |" * len(targets),
    ]
    for c in criteria:
        values = []
        for t in targets:
            r = cell.get((c, t))
            values.append("–" if r is None else f"{100 * r['accuracy']:.2f}% ({-r['drop']:+.2f})")
        lines.append(f"| {c} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def layer_table(best: dict) -> str:
    report = load_json(Path(best["run"]) / "report.json")
    start = report["steps"][0]["filters"]
    reached = next(s for s in report["steps"] if s["params_removed"] >= best["target"] / 100 - 1e-9)
    lines = ["| layer | filters before | after | removed |", "| --- | --- | --- | --- |"]
    for name, before in start.items():
        after = reached["filters"].get(name, before)
        share = 100 * (before - after) / before
        lines.append(f"| {name} | {before} | {after} | {share:.0f}% |")
    return "\n".join(lines)


def threads_cell(row: dict) -> str:
    return "–" if row["threads"] is None else str(row["threads"])


def bench_tables(bench_dir: Path, baseline_path: str, best_path: str) -> str:
    bench = load_json(bench_dir / "bench.json")
    lines = [
        "| runtime | threads | batch | baseline median ms | pruned median ms | speed-up | FLOPs ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_key = {(m["model"], m["runtime"], m["threads"], m["batch"]): m for m in bench["measurements"]}
    base_label = bench["models"][0]["label"]
    for row in bench["speedups"]:
        base = by_key[(base_label, row["runtime"], row["threads"], row["batch"])]
        pruned = by_key[(row["model"], row["runtime"], row["threads"], row["batch"])]
        lines.append(
            f"| {row['runtime']} | {threads_cell(row)} | {row['batch']} | {base['median_ms']:.2f} | "
            f"{pruned['median_ms']:.2f} | {row['speedup']:.2f}× | {row['flops_ratio']:.2f}× |"
        )
    sizes = ["", "| file | baseline | pruned | ratio |", "| --- | --- | --- | --- |"]
    for suffix in (".keras", ".tflite", "_int8.tflite", ".onnx"):
        files = []
        for path in (baseline_path, best_path):
            stem = Path(path).stem
            files.append(Path(path) if suffix == ".keras" else bench_dir / stem / f"{stem}{suffix}")
        if all(f.is_file() for f in files):
            a, b = (f.stat().st_size for f in files)
            sizes.append(
                f"| {suffix.lstrip('_')} | {a / 1e6:.3f} MB | {b / 1e6:.3f} MB | {a / b:.2f}× smaller |"
            )
    return "\n".join(lines + sizes)


def rounded_section(out: Path, baseline: dict, baseline_path: str, best: dict) -> list[str]:
    """Latency of the best model next to a Taylor run whose channel counts are multiples of 8."""
    cards = sorted((out / "round_to_8" / "taylor").glob("finetuned-*-round8.card.json"))
    if not cards:
        return []
    card = load_json(cards[-1])
    rounded_path = str(cards[-1]).replace(".card.json", ".keras")
    bench_path = out / "round_to_8" / "bench.json"
    if not bench_path.is_file():
        kprune("bench", baseline_path, best["model"], rounded_path, "--output", str(bench_path))
    bench = load_json(bench_path)
    _, best_label, rounded_label = (m["label"] for m in bench["models"])
    speedups = {(r["model"], r["runtime"], r["threads"], r["batch"]): r for r in bench["speedups"]}
    flops_ratio = {m["label"]: baseline["flops"] / m["flops"] for m in bench["models"]}
    lines = [
        f"| runtime | threads | batch | {best['criterion']} {best['target']}% (FLOPs ratio "
        f"{flops_ratio[best_label]:.2f}×) | taylor {best['target']}%, round_to 8 (FLOPs ratio "
        f"{flops_ratio[rounded_label]:.2f}×) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in bench["speedups"]:
        if row["model"] != best_label:
            continue
        key = (row["runtime"], row["threads"], row["batch"])
        other = speedups[(rounded_label, *key)]
        lines.append(
            f"| {row['runtime']} | {threads_cell(row)} | {row['batch']} | {row['speedup']:.2f}× | {other['speedup']:.2f}× |"
        )
    accuracy = (
        f"The rounded model: {100 * (1 - card['params'] / baseline['params']):.1f}% of the parameters "
        f"removed, test accuracy {100 * card['test_accuracy']:.2f}% "
        f"({100 * (card['test_accuracy'] - baseline['test_accuracy']):+.2f} points)."
    )
    return [
        "#### Channel counts rounded to 8",
        "`scripts/experiments/reproduce.sh` also prunes with Taylor to the same target with `--round-to 8` "
        "(every layer keeps a multiple of 8 filters) and gives it the same fine-tune. Speed-up over "
        f"the baseline, measured in one run (`kprune bench {baseline_path} {best['model']} {rounded_path}`):",
        "\n".join(lines),
        accuracy,
    ]


def overlay_section(out: Path, images: Path, criteria: list[str]) -> list[str]:
    """The validation accuracy of every trajectory, drawn by `kprune report` (reproduce.sh)."""
    overlay = out / "accuracy_vs_params.png"
    if not overlay.is_file():
        return []
    shutil.copy(overlay, images / "val_accuracy_while_pruning.png")
    command = f"kprune report {' '.join(f'{out}/{c}' for c in criteria)} --out {overlay}"
    return [
        f"Validation accuracy along each trajectory, before the final fine-tunes (`{command}`):",
        "![validation accuracy while pruning](img/val_accuracy_while_pruning.png)",
    ]


def time_table(rows) -> str:
    lines = ["| criterion | pruning trajectory (s) | final fine-tunes (s) |", "| --- | --- | --- |"]
    for criterion in sorted({r["criterion"] for r in rows}):
        mine = [r for r in rows if r["criterion"] == criterion]
        lines.append(
            f"| {criterion} | {mine[0]['prune_seconds']:.0f} | {sum(r['seconds'] for r in mine):.0f} |"
        )
    return "\n".join(lines)


def environment_text(card: dict) -> str:
    env = card.get("environment", {})
    libraries = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items() if v)
    return (
        f"Machine: {env.get('platform')}, {env.get('cpu_count')} CPU cores, Python "
        f"{env.get('python')}; {libraries}."
    )


def plot(rows, baseline, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for criterion in sorted({r["criterion"] for r in rows}):
        mine = sorted((r for r in rows if r["criterion"] == criterion), key=lambda r: r["params_removed"])
        axes.plot(
            [100 * r["params_removed"] for r in mine],
            [100 * r["accuracy"] for r in mine],
            marker="o",
            label=criterion,
        )
    axes.axhline(100 * baseline["test_accuracy"], color="gray", linestyle="--", label="baseline")
    axes.axhline(
        100 * baseline["test_accuracy"] - MAX_DROP, color="gray", linestyle=":", label="baseline − 1 pt"
    )
    axes.set_xlabel("parameters removed (%)")
    axes.set_ylabel("test top-1 accuracy (%)")
    axes.set_title("SqueezeNet 1.1 on Fashion-MNIST: pruned and fine-tuned")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def shipped_card(best: dict, baseline_card: dict) -> dict:
    """The fine-tuned model's card, its chain of sources completed: baseline → pruning run → fine-tune.

    The fine-tune started from a snapshot of a pruning run, which has no card of
    its own; the run's card (its ``kprune prune`` command) stands for it, and
    the baseline's card for what that run started from, so the card lists every
    command that reproduces the model.
    """
    card = load_json(Path(best["model"]).with_suffix(".card.json"))
    run_card = load_json(Path(best["run"]) / "pruned.card.json")
    strip = ("environment", "trained_from")
    prune = {k: v for k, v in run_card.items() if k not in strip}
    prune["snapshot"] = (
        f"snapshots/params-{best['target']}.keras (the model when {best['target']}% of the parameters were gone)"
    )
    prune["trained_from"] = {k: v for k, v in baseline_card.items() if k != "environment"}
    card["trained_from"] = prune
    return card


def kprune(*arguments: str) -> None:
    print("$ kprune " + " ".join(arguments), flush=True)
    subprocess.run([*KPRUNE, *arguments], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--baseline", default="models/squeezenet1_1_fmnist_sgd.keras")
    parser.add_argument("--epochs", default="3", help="Final fine-tune epochs (for the text).")
    parser.add_argument("--doc", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--ship", action="store_true", help="Copy the best model to models/ and bundle it.")
    args = parser.parse_args()

    baseline_file = Path(resolve_model_path(args.baseline))  # the packaged baseline, for models/…
    card_path = baseline_file.with_suffix(".card.json")
    baseline = {**load_json(card_path), "bytes": baseline_file.stat().st_size}
    rows = collect(args.out, baseline)
    control = control_row(args.out, baseline)
    if not rows:
        sys.exit(f"No finetuned-*.card.json under {args.out}: run scripts/experiments/reproduce.sh first.")
    # the most pruned model within the budget; between criteria at the same target, the most accurate
    best = best_within_budget(
        rows, MAX_DROP, drop=lambda r: r["drop"], prefer=lambda r: (r["target"], r["accuracy"])
    )
    images = args.doc.parent / "img"
    plot(rows, baseline, images / "test_accuracy_vs_params.png")
    sections = [
        f"_Generated by `python -m scripts.experiments.results {args.out} --baseline {args.baseline}` from the "
        f"files of `scripts/experiments/reproduce.sh` (final fine-tune: {args.epochs} epochs per snapshot)._",
        "### Test accuracy by criterion and target (Δ to the baseline in points)",
        pivot_table(rows),
        *(
            []
            if control is None
            else [
                f"Control: the unpruned baseline given the same {args.epochs}-epoch fine-tune reaches "
                f"{100 * control['accuracy']:.2f}% ({-control['drop']:+.2f} points): the reference that separates "
                "the effect of pruning from that of the extra training."
            ]
        ),
        "### Every pruned model",
        accuracy_table(rows, baseline, control),
        "![test accuracy vs parameters removed](img/test_accuracy_vs_params.png)",
        *overlay_section(args.out, images, sorted({r["criterion"] for r in rows})),
        "### Wall time (2 CPU cores)",
        time_table(rows),
        environment_text(load_json(Path(rows[0]["model"]).with_suffix(".card.json"))),
    ]
    if best is not None:
        sections += [
            f"### Best model within {MAX_DROP:.0f} point: {best['criterion']}, {best['target']}% target",
            f"`{best['model']}`: {100 * best['params_removed']:.1f}% of the parameters and "
            f"{100 * best['flops_removed']:.1f}% of the FLOPs removed ({baseline['flops'] / best['flops']:.2f}× fewer), "
            f"test accuracy {100 * best['accuracy']:.2f}% ({-best['drop']:+.2f} points).",
            "#### Filters per layer (before → at that target)",
            layer_table(best),
            "Plot: filters per layer before pruning and at the end of the same trajectory (90% target):",
            "![filters per layer](img/filters_per_layer.png)",
        ]
        shutil.copy(Path(best["run"]) / "filters_per_layer.png", images / "filters_per_layer.png")
        bench_dir = args.out / "bench"
        if not (bench_dir / "bench.json").is_file():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "scripts.benchmarks.bench_export",
                    "--baseline",
                    args.baseline,
                    "--pruned",
                    best["model"],
                    "--out",
                    str(bench_dir),
                ],
                check=True,
            )
        sections += [
            "#### Deployment: file sizes and latency, baseline vs this model (one run)",
            bench_tables(bench_dir, args.baseline, best["model"]),
        ]
        sections += rounded_section(args.out, baseline, args.baseline, best)
        if args.ship:
            shipped = Path("models/squeezenet1_1_fmnist_pruned.keras")
            shutil.copy(best["model"], shipped)
            write_card(shipped, shipped_card(best, baseline_card=load_json(card_path)))
            write_bundle("models/squeezenet1_1_fmnist_pruned_bundle")
    oracle_path = args.out / "oracle.json"
    if oracle_path.is_file():
        oracle = load_json(oracle_path)
        sections += [
            "### Criterion quality: Spearman ρ with the oracle",
            f"`{oracle['command']}`",
            summary_table(oracle["spearman"]),
        ]
    generated = "\n\n".join(sections)
    replace_section(args.doc, "generated", "Measured results", generated)
    print(generated)


if __name__ == "__main__":
    main()
