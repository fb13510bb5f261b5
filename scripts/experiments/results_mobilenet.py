"""The second-architecture section of docs/RESULTS.md: MobileNetV2 pruned on Fashion-MNIST.

Reads what scripts/experiments/reproduce_mobilenet.sh leaves in its evidence folder —
``report.json`` (the Taylor run to a FLOPs target), ``finetuned-T.card.json``
(each snapshot after the final fine-tune), ``control.card.json`` (the
unpruned baseline after the same fine-tune), ``bench_mobilenet_v2.json`` and
``bench_squeezenet.json`` (``kprune bench``, TFLite fp32, 1 thread, batch 1)
— and the baselines' cards; picks the largest FLOPs reduction within
``--budget`` points of the test top-1 of the baseline or of the control,
whichever is higher, and rewrites the section
between <!-- mobilenet:start --> and <!-- mobilenet:end -->.

    bash scripts/experiments/reproduce_mobilenet.sh
    python -m scripts.experiments.results_mobilenet docs/results/mobilenet_v2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kprune.card import read_card
from kprune.modelio import resolve_model_path
from scripts.common import best_within_budget, load_json, replace_section

RESULTS = Path("docs/RESULTS.md")
BASELINE = "models/mobilenet_v2_fmnist.keras"
SQUEEZENET = "models/squeezenet1_1_fmnist_sgd.keras"
SQUEEZENET_PRUNED = "models/squeezenet1_1_fmnist_pruned.keras"


def card(model: str) -> dict:
    facts = read_card(resolve_model_path(model))
    if facts is None:
        raise SystemExit(
            f"{model} has no model card beside it: train it with kprune train (its card is written too)."
        )
    return facts


def snapshots(evidence: Path) -> list[dict]:
    """One row per fine-tuned snapshot, by FLOPs target: target, test accuracy (%), params, FLOPs."""
    rows = []
    for path in evidence.glob("finetuned-*.card.json"):
        facts = load_json(path)
        target = int(path.name.removeprefix("finetuned-").removesuffix(".card.json"))
        rows.append(
            {
                "target": target,
                "name": f"finetuned-{target}",
                "accuracy": 100 * facts["test_accuracy"],
                "params": facts["params"],
                "flops": facts["flops"],
            }
        )
    return sorted(rows, key=lambda row: row["target"])


def latency_row(evidence: Path) -> dict | None:
    """The latency-target run after its final fine-tune (``latency-finetuned.card.json``), if there is one."""
    path = evidence / "latency-finetuned.card.json"
    if not path.is_file():
        return None
    facts = load_json(path)
    goal = load_json(evidence / "latency-report.json")["config"]["target_latency"]
    return {
        "target": goal,
        "name": "latency-finetuned",
        "accuracy": 100 * facts["test_accuracy"],
        "params": facts["params"],
        "flops": facts["flops"],
    }


def latency_goal(evidence: Path, run: Path, table_path: Path, budget: float) -> float:
    """The fraction of the baseline's predicted latency that the picked FLOPs snapshot removes.

    A latency-target run to this fraction ends at the pick's predicted latency,
    so the two are compared at (nearly) equal latency.
    """
    import kprune
    from kprune.latency.table import LatencyTable

    accuracy, _ = budget_reference(card(BASELINE), load_json(evidence / "control.card.json"))
    chosen = best_within_budget(
        snapshots(evidence),
        budget,
        drop=lambda row: 100 * accuracy - row["accuracy"],
        prefer=lambda row: -row["flops"],
    )  # the most FLOPs removed
    if chosen is None:
        raise SystemExit(f"No snapshot in {evidence} is within {budget} point: no latency goal to match.")
    table = LatencyTable.load(table_path)
    picked = kprune.predict_latency(kprune.load_model(run / f"{chosen['name']}.keras"), table)
    return 1 - picked / kprune.predict_latency(kprune.load_model(BASELINE), table)


def latencies(bench: dict) -> dict[str, float]:
    """{model file stem: median ms} of the TFLite fp32, 1-thread, batch-1 measurements."""
    stems = {entry["label"]: Path(entry["path"]).stem for entry in bench["models"]}
    return {
        stems[m["model"]]: m["median_ms"]
        for m in bench["measurements"]
        if (m["runtime"], m["precision"], m["threads"], m["batch"]) == ("tflite", "fp32", 1, 1)
    }


def budget_reference(base: dict, control: dict | None) -> tuple[float, str]:
    """The test top-1 the budget counts from, and whose it is: the better of the baseline and the
    control, so that extra training of an under-trained baseline is not credited to pruning."""
    if control is not None and control["test_accuracy"] > base["test_accuracy"]:
        return control["test_accuracy"], "the control's"
    return base["test_accuracy"], "the baseline's"


def _percent(part: float, whole: float) -> str:
    return f"{100 * (1 - part / whole):.1f}%"


def _speed(ms: dict, name: str, reference: str, flops_ratio: float) -> tuple[str, str, str]:
    if name not in ms or reference not in ms:
        return "–", "–", "–"
    speedup = ms[reference] / ms[name]
    return f"{ms[name]:.3f}", f"{speedup:.2f}×", f"{speedup / flops_ratio:.2f}"


def mobilenet_table(
    rows, base: dict, control: dict | None, ms: dict, chosen: dict | None, latency: dict | None = None
) -> list[str]:
    stem = Path(BASELINE).stem
    accuracy = 100 * base["test_accuracy"]
    lines = [
        (
            "| model | FLOPs removed | params removed | FLOPs ratio | test top-1 | Δ to baseline | Δ to control "
            "| fp32 ms | speed-up | speed-up ÷ FLOPs ratio |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| (baseline) | 0% | 0% | 1.00× | {accuracy:.2f}% | – | – | {_speed(ms, stem, stem, 1.0)[0]} | 1.00× | – |",
    ]
    control_accuracy = None if control is None else 100 * control["test_accuracy"]
    if control_accuracy is not None:
        lines.append(
            f"| (control: baseline + the same fine-tune) | 0% | 0% | 1.00× | {control_accuracy:.2f}% "
            f"| {control_accuracy - accuracy:+.2f} | – | – | – | – |"
        )
    labelled = [
        (f"{row['target']}% FLOPs target" + (" **(picked)**" if row is chosen else ""), row) for row in rows
    ]
    if latency is not None:
        labelled.append(
            (f"{100 * latency['target']:.0f}% latency target (predicted latency of the pick)", latency)
        )
    for label, row in labelled:
        ratio = base["flops"] / row["flops"]
        versus_control = "–" if control_accuracy is None else f"{row['accuracy'] - control_accuracy:+.2f}"
        milliseconds, speedup, per_flops = _speed(ms, row["name"], stem, ratio)
        lines.append(
            f"| {label} | {_percent(row['flops'], base['flops'])} | {_percent(row['params'], base['params'])} "
            f"| {ratio:.2f}× | {row['accuracy']:.2f}% | {row['accuracy'] - accuracy:+.2f} | {versus_control} "
            f"| {milliseconds} | {speedup} | {per_flops} |"
        )
    return lines


def side_by_side(chosen: dict, base: dict, ms: dict, squeezenet: dict, squeezenet_ms: dict) -> list[str]:
    pruned = card(SQUEEZENET_PRUNED)
    rows = [
        (
            "SqueezeNet 1.1, 28×28×1",
            "shipped pruned model (Taylor, 90% of params target)",
            squeezenet,
            pruned,
            squeezenet_ms,
            Path(SQUEEZENET).stem,
            Path(SQUEEZENET_PRUNED).stem,
        ),
        (
            "MobileNetV2, 32×32×1",
            f"Taylor, {chosen['target']}% FLOPs target",
            base,
            {"test_accuracy": chosen["accuracy"] / 100, "params": chosen["params"], "flops": chosen["flops"]},
            ms,
            Path(BASELINE).stem,
            chosen["name"],
        ),
    ]
    lines = [
        (
            "| architecture | pruned | baseline params / MFLOPs / top-1 | FLOPs removed | params removed "
            "| test top-1 | Δ to baseline (points) | TFLite fp32 speed-up | speed-up ÷ FLOPs ratio |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, how, before, after, times, reference, model in rows:
        ratio = before["flops"] / after["flops"]
        _, speedup, per_flops = _speed(times, model, reference, ratio)
        lines.append(
            f"| {name} | {how} | {before['params']:,} / {before['flops'] / 1e6:.1f} / "
            f"{100 * before['test_accuracy']:.2f}% | {_percent(after['flops'], before['flops'])} "
            f"| {_percent(after['params'], before['params'])} | {100 * after['test_accuracy']:.2f}% "
            f"| {100 * (after['test_accuracy'] - before['test_accuracy']):+.2f} | {speedup} | {per_flops} |"
        )
    return lines


def section(evidence: Path, budget: float) -> str:
    base = card(BASELINE)
    rows = snapshots(evidence)
    if not rows:
        raise SystemExit(
            f"No finetuned-T.card.json in {evidence}: run bash scripts/experiments/reproduce_mobilenet.sh first."
        )
    control = (
        load_json(evidence / "control.card.json") if (evidence / "control.card.json").is_file() else None
    )
    bench_path, squeezenet_path = evidence / "bench_mobilenet_v2.json", evidence / "bench_squeezenet.json"
    bench = load_json(bench_path) if bench_path.is_file() else None
    ms = latencies(bench) if bench else {}
    reference_accuracy, reference_name = budget_reference(base, control)
    chosen = best_within_budget(
        rows,
        budget,
        drop=lambda row: 100 * reference_accuracy - row["accuracy"],
        prefer=lambda row: -row["flops"],
    )  # the most FLOPs removed
    latency = latency_row(evidence)
    report = load_json(evidence / "report.json")
    config = report["config"]
    lines = [
        (
            f"_Generated by `python -m scripts.experiments.results_mobilenet {evidence}` from the evidence of "
            "`bash scripts/experiments/reproduce_mobilenet.sh`._"
        ),
        "",
        (
            f"Baseline `{BASELINE}`: MobileNetV2 (Keras applications, α = 1.0), 32×32×1 input, "
            f"{base['params']:,} parameters, {base['flops'] / 1e6:.2f} MFLOPs, {100 * base['test_accuracy']:.2f}% "
            f"test top-1 (`{base['command']}`). Pruned by {report['criterion']} ranking to "
            f"{100 * config['target_flops']:.0f}% of the FLOPs removed ({config['filters_per_step']} filters per step, "
            f"{config['finetune_steps']} fine-tune batches after each; `{report['command']}`); every snapshot and "
            f"the control got the same final fine-tune as SqueezeNet's (3 epochs of SGD). Test split: 10,000 images."
        ),
        "",
        *mobilenet_table(rows, base, control, ms, chosen, latency),
        "",
    ]
    if bench:
        lines += [
            (
                f"Latency: `kprune bench` of the baseline and every fine-tuned snapshot alternating in one run "
                f"(TFLite XNNPACK fp32, 1 thread, batch 1, median of {bench['settings']['repeats']}); machine: "
                f"{bench['environment']['machine']}, {bench['environment']['cpu_count']} cores."
            ),
            "",
        ]
    if chosen is None:
        lines.append(
            f"No snapshot is within {budget} point of {reference_name} test top-1 ({100 * reference_accuracy:.2f}%)."
        )
    else:
        lines += [
            (
                f"Largest FLOPs reduction within {budget} point of {reference_name} test top-1 "
                f"({100 * reference_accuracy:.2f}%, the better of baseline and control): the {chosen['target']}% FLOPs "
                "target. Next to SqueezeNet's shipped pruned model:"
            ),
            "",
        ]
        if bench and squeezenet_path.is_file():
            lines += side_by_side(chosen, base, ms, card(SQUEEZENET), latencies(load_json(squeezenet_path)))
            lines += [
                "",
                (
                    "Each architecture's speed-up is measured against its own baseline in its own run "
                    "(`bench_squeezenet.json`, `bench_mobilenet_v2.json` in the evidence folder)."
                ),
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evidence", type=Path, nargs="?", default=Path("docs/results/mobilenet_v2"))
    parser.add_argument("--budget", type=float, default=0.5, help="points of test top-1 the pick may lose")
    parser.add_argument("--doc", type=Path, default=RESULTS)
    parser.add_argument(
        "--latency-goal",
        type=Path,
        metavar="TABLE",
        help="print the fraction of the predicted latency (on TABLE) the pick removes, and stop",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=Path("runs/mobilenet_v2/taylor"),
        help="where the fine-tuned snapshots are (for --latency-goal)",
    )
    args = parser.parse_args()
    if args.latency_goal:
        print(f"{latency_goal(args.evidence, args.run, args.latency_goal, args.budget):.3f}")
        return
    text = section(args.evidence, args.budget)
    print(text)
    replace_section(args.doc, "mobilenet", "A second architecture: MobileNetV2", text)


if __name__ == "__main__":
    main()
