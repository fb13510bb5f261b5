"""The ViT-tiny section of docs/RESULTS.md, from the evidence of scripts/experiments/reproduce_vit.sh.

    python -m scripts.experiments.vit_report     # reads docs/results/vit/, writes the "vit" section
    python -m scripts.experiments.vit_report --control-epochs runs/vit/prune/report.json
                                                  # the control's epochs, for reproduce_vit.sh

The evidence: the unpruned model's card and the control's (the unpruned model fine-tuned at least
as long as the pruning run fine-tuned), the pruning report (full test split before and after), the pruned
model's export check (TFLite fp32 and int8, ONNX, each against Keras on test images), both models'
TFLite files' test top-1 on the full split (accuracy.json), their TFLite timings (`kprune bench`)
and what is left of each block (widths.json).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from scripts.common import change, load_json, replace_section, signed

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "docs" / "results" / "vit"
COMMAND = "bash scripts/experiments/reproduce_vit.sh"
CONTROL_BATCH = 64  # the control's batch size in reproduce_vit.sh


def fine_tune_batches(run: dict) -> int:
    """The batches a pruning run fine-tuned on in all: each step's (rolled-back steps included),
    then the final fine-tune's, as its report.json's ``fine_tuning`` entry records them."""
    used = run["fine_tuning"]
    steps = sum(1 for step in run["steps"] if step["step"] and not step.get("phase"))
    return steps * used["batches_per_step"] + used["final_batches"]


def control_epochs(run: dict, train_examples: int) -> float:
    """Epochs of CONTROL_BATCH images that give the control at least the run's batches."""
    per_epoch = math.ceil(train_examples / CONTROL_BATCH)
    return math.ceil(1000 * fine_tune_batches(run) / per_epoch) / 1000


def control_batches(card: dict) -> int:
    """The batches a `kprune train` run took, from its card (epochs may be fractional)."""
    return round(card["epochs"] * math.ceil(card["train_examples"] / card["batch_size"]))


def _removed(after: float, before: float) -> str:
    return f"−{100 * (1 - after / before):.1f}%"


def widths(found: dict, label: str = "pruned") -> str:
    """What is left of each block (widths.json: the unpruned and the pruned models' heads per
    attention and hidden units per MLP)."""
    before, after = found["unpruned"], found[label]
    parts = []
    for block in range(1, 1 + sum(name.endswith("_attention") for name in before)):
        attention, mlp = f"block{block}_attention", f"block{block}_mlp1"
        parts.append(
            f"block {block}: {after[attention]}/{before[attention]} heads, {after[mlp]}/{before[mlp]} MLP units"
        )
    return "; ".join(parts)


def _target(run: dict) -> str:
    return f"{100 * run['config']['target_flops']:g}% of FLOPs removed"


def _distills(run: dict) -> bool:
    return bool(run["config"]["distill"])


def _distillation(run: dict) -> str:
    return "with distillation" if _distills(run) else "without distillation"


def _pruned_row(run: dict, before: dict) -> str:
    after, last = run["test_after"], run["steps"][-1]
    steps = max(step["step"] for step in run["steps"])
    how = "distillation (the default)" if _distills(run) else "`--no-distill`"
    return (
        f"| pruned, target {_target(run)}, {how}, {steps} steps | {after['params']:,} ({_removed(after['params'], before['params'])}) "
        f"| {after['flops'] / 1e6:.2f} M ({_removed(after['flops'], before['flops'])}) "
        f"| {100 * last['val_accuracy']:.2f}% "
        f"| {100 * after['accuracy']:.2f}% ({change(after['accuracy'], before['accuracy'])}) |"
    )


def _budget(run: dict, control: dict, before: dict) -> str:
    """Where a pruned model stands against the better of the unpruned model and the control."""
    after = run["test_after"]["accuracy"]
    best = max(before["accuracy"], control["test_accuracy"])
    reference = "the control" if control["test_accuracy"] > before["accuracy"] else "the unpruned model"
    drop = 100 * (best - after)
    within = "within" if drop <= 1.0 else "**past**"
    return (
        f"Target {_target(run)}, {_distillation(run)}: the pruned model changes test top-1 by "
        f"{change(after, before['accuracy'])} points against the unpruned model and by "
        f"{change(after, control['test_accuracy'])} "
        f"against the control: counted from the better of the two ({reference}), {signed(-drop)} "
        f"points, {within} the 1-point budget."
    )


def pruning_runs(evidence: Path) -> list[dict]:
    """The pruning runs' reports (``prune*_report.json``): with distillation first, then the
    most pruned first."""
    runs = [load_json(path) for path in sorted(evidence.glob("prune*_report.json"))]
    return sorted(runs, key=lambda run: (not _distills(run), -run["config"]["target_flops"]))


def report_text(evidence: Path = EVIDENCE) -> str:
    card = load_json(evidence / "vit_tiny_fmnist.card.json")
    control = load_json(evidence / "control.card.json")
    top1 = load_json(evidence / "accuracy.json")  # the unpruned model's files, then the pruned one's
    run = load_json(evidence / f"{Path(top1[1]['path']).parent.name}_report.json")  # the exported run
    runs = pruning_runs(evidence)
    export = load_json(evidence / "pruned.export.json")
    bench = load_json(evidence / "bench.json")
    before = run["test_before"]
    batches, given = max(fine_tune_batches(each) for each in runs), control_batches(control)
    than = "as many as" if given == batches else ("more than" if given > batches else "**fewer** than")
    lines = [
        "| model | params | FLOPs | val top-1 | test top-1 (change to unpruned) |",
        "| --- | --: | --: | --: | --: |",
        f"| unpruned | {before['params']:,} | {before['flops'] / 1e6:.2f} M | {100 * card['val_accuracy']:.2f}% "
        f"| {100 * before['accuracy']:.2f}% |",
        f"| control: unpruned, fine-tuned {control['epochs']:g} epochs | {control['params']:,} "
        f"| {control['flops'] / 1e6:.2f} M | {100 * control['val_accuracy']:.2f}% "
        f"| {100 * control['test_accuracy']:.2f}% ({change(control['test_accuracy'], before['accuracy'])}) |",
        *(_pruned_row(each, before) for each in runs),
    ]
    verification = export["verification"]
    names = {"none": "TFLite fp32", "int8": "TFLite int8", None: "ONNX"}
    parity = "; ".join(
        f"{names[check['quantize'] if check['format'] == 'tflite' else None]} (`{check['file']}`): "
        f"max abs diff {check['max_abs_diff']:.1e}, top-1 agreement {100 * check['top1_agreement']:.1f}%"
        + (f", accuracy {100 * check['accuracy']:.1f}%" if check.get("accuracy") is not None else "")
        for check in verification["artifacts"]
    )
    latency = {(m["model"], m["precision"]): m["median_ms"] for m in bench["measurements"]}
    labels = [model["label"] for model in bench["models"]]
    base_ms = latency[(labels[0], "fp32")]
    timing = [
        "| model | TFLite fp32 ms | int8 ms | speed-up fp32 | speed-up int8 (over unpruned fp32) "
        "| test top-1 fp32 file | int8 file |",
        "| --- | --: | --: | --: | --: | --: | --: |",
    ]
    for label, name, files in zip(labels, ("unpruned", "pruned"), top1):
        fp32, int8 = latency[(label, "fp32")], latency[(label, "int8")]
        timing.append(
            f"| {name} | {fp32:.3f} | {int8:.3f} | {base_ms / fp32:.2f}× | {base_ms / int8:.2f}× "
            f"| {100 * files['fp32']:.2f}% | {100 * files['int8']:.2f}% |"
        )
    optimizer = card["training"]["optimizer"]
    minutes = sum(each["wall_time_s"] for each in runs) / 60
    picked = f"target {_target(run)}, {_distillation(run)}"
    slower = [
        name
        for label, name in zip(labels, ("unpruned", "pruned"))
        if latency[(label, "int8")] > latency[(label, "fp32")]
    ]
    return "\n".join(
        [
            "kprune's `vit_tiny` (kprune/models/vit.py: 4×4 patches embedded in 64 channels, 4 pre-norm "
            "blocks of 4-head attention and a 128-unit GELU MLP) trained here with "
            f"`{card['command']}` ({optimizer}, {card['epochs']:g} epochs, "
            f"{card['train_examples']:,} training images of Fashion-MNIST), then pruned by "
            + ", ".join(f"`{each['command']}`" for each in runs)
            + ", kprune's defaults for the rest (whole heads and MLP units; the width, under every "
            "LayerNorm, stays). "
            "The control: the unpruned model given "
            f"{given:,} batches of the same fine-tuning (SGD at 0.01, cosine; {than} the longer pruning "
            f"run's {batches:,}). Test: the full 10,000-image split. Generated by "
            f"`python -m scripts.experiments.vit_report` from docs/results/vit/ (the runs: `{COMMAND}`; "
            f"pruning took {minutes:.0f} min in all on a shared 2-core machine).",
            "",
            *lines,
            "",
            *(f"- {_budget(each, control, before)}" for each in runs),
            "",
            f"What is left of the exported model ({picked}): {widths(load_json(evidence / 'widths.json'))}; "
            f"of the one with distillation: {widths(load_json(evidence / 'widths.json'), 'pruned_distill')}.",
            "",
            f"Export of the pruned model ({picked}), verified against Keras on {verification['samples']} test "
            f"images: {parity}.",
            "",
            f"TFLite (XNNPACK) latency, 1 thread, batch 1, median of {bench['settings']['repeats']} "
            f"alternated runs on {bench.get('environment', {}).get('machine', 'this host')} (a 2-core "
            "sandbox shared with other work: ratios are more trustworthy than milliseconds); test top-1 of "
            f"the same files on all {top1[0]['examples']:,} test images, one at a time through the "
            "bundle's runtime (`python -m scripts.experiments.accuracy_tflite`):",
            "",
            *timing,
            *(
                [
                    "",
                    f"The int8 file is slower than the fp32 one ({' and '.join(slower)} model) on this host: "
                    "for this transformer, ship the fp32 file (what the numbers say, below).",
                ]
                if slower
                else []
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evidence", default=str(EVIDENCE))
    parser.add_argument(
        "--control-epochs", metavar="REPORT", help="print the control's epochs for this pruning report.json"
    )
    args = parser.parse_args()
    if args.control_epochs:
        epochs = max(control_epochs(load_json(path), train_examples=54_000) for path in args.control_epochs)
        print(f"{epochs:.3f}")
        return
    text = report_text(Path(args.evidence))
    replace_section(ROOT / "docs" / "RESULTS.md", "vit", "A ViT-tiny, pruned by heads and MLP units", text)
    print(text)


if __name__ == "__main__":
    main()
