"""The ViT-tiny section of docs/RESULTS.md, from the evidence of scripts/experiments/reproduce_vit.sh.

    python -m scripts.experiments.vit_report     # reads docs/results/vit/, writes the "vit" section

The evidence: the unpruned model's card and the control's (the unpruned model fine-tuned as long
as the pruning run fine-tuned), the pruning report (full test split before and after), the pruned
model's export check (TFLite fp32 and int8, ONNX, each against Keras on test images), both models'
TFLite files' test top-1 on the full split (accuracy.json), their TFLite timings (`kprune bench`)
and what is left of each block (widths.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scripts.common import load_json, replace_section, signed

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "docs" / "results" / "vit"
COMMAND = "bash scripts/experiments/reproduce_vit.sh"


def _change(after: float, before: float) -> str:
    return signed(100 * (after - before))


def _removed(after: float, before: float) -> str:
    return f"−{100 * (1 - after / before):.1f}%"


def widths(found: dict) -> str:
    """What is left of each block (widths.json: the unpruned and the pruned model's heads per
    attention and hidden units per MLP)."""
    before, after = found["unpruned"], found["pruned"]
    parts = []
    for block in range(1, 1 + sum(name.endswith("_attention") for name in before)):
        attention, mlp = f"block{block}_attention", f"block{block}_mlp1"
        parts.append(
            f"block {block}: {after[attention]}/{before[attention]} heads, {after[mlp]}/{before[mlp]} MLP units"
        )
    return "; ".join(parts)


def report_text(evidence: Path = EVIDENCE) -> str:
    card = load_json(evidence / "vit_tiny_fmnist.card.json")
    control = load_json(evidence / "control.card.json")
    run = load_json(evidence / "prune_report.json")
    export = load_json(evidence / "pruned.export.json")
    bench = load_json(evidence / "bench.json")
    before, after = run["test_before"], run["test_after"]
    last = run["steps"][-1]
    steps = max(step["step"] for step in run["steps"])
    drop = 100 * (before["accuracy"] - after["accuracy"])
    control_drop = 100 * (control["test_accuracy"] - after["accuracy"])
    target = run["config"]["target_flops"]
    lines = [
        "| model | params | FLOPs | val top-1 | test top-1 (change to unpruned) |",
        "| --- | --: | --: | --: | --: |",
        f"| unpruned | {before['params']:,} | {before['flops'] / 1e6:.2f} M | {100 * card['val_accuracy']:.2f}% "
        f"| {100 * before['accuracy']:.2f}% |",
        f"| control: unpruned, fine-tuned {control['epochs']:g} epochs | {control['params']:,} "
        f"| {control['flops'] / 1e6:.2f} M | {100 * control['val_accuracy']:.2f}% "
        f"| {100 * control['test_accuracy']:.2f}% ({_change(control['test_accuracy'], before['accuracy'])}) |",
        f"| pruned, {steps} steps | {after['params']:,} ({_removed(after['params'], before['params'])}) "
        f"| {after['flops'] / 1e6:.2f} M ({_removed(after['flops'], before['flops'])}) "
        f"| {100 * last['val_accuracy']:.2f}% "
        f"| {100 * after['accuracy']:.2f}% ({_change(after['accuracy'], before['accuracy'])}) |",
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
    top1 = load_json(evidence / "accuracy.json")  # the unpruned model's files, then the pruned one's
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
    minutes = run["wall_time_s"] / 60
    reference = "the control" if control["test_accuracy"] > before["accuracy"] else "the unpruned model"
    budget_drop = max(drop, control_drop)
    within = "within" if budget_drop <= 1.0 else "**past**"
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
            f"{card['train_examples']:,} training images of Fashion-MNIST), then pruned by `kprune prune --criterion taylor --target-flops {target:g}` with the "
            "defaults for the rest (whole heads and MLP units; the width, under every LayerNorm, stays). "
            f"Test: the full 10,000-image split. Generated by `python -m scripts.experiments.vit_report` "
            f"from docs/results/vit/ (the run: `{COMMAND}`; pruning took {minutes:.0f} min on a shared "
            "2-core machine).",
            "",
            *lines,
            "",
            f"Against the unpruned model the pruned one changes test top-1 by {signed(-drop)} points; "
            "against the control, which had as many batches of the same fine-tuning (SGD at 0.01, "
            f"cosine) as the pruning run gave, by {signed(-control_drop)}. The budget counts from the "
            f"better of the two ({reference}): the change is {signed(-budget_drop)} points, "
            f"{within} the 1-point budget. "
            + f"What is left: {widths(load_json(evidence / 'widths.json'))}.",
            "",
            f"Export of the pruned model, verified against Keras on {verification['samples']} test "
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
    args = parser.parse_args()
    text = report_text(Path(args.evidence))
    replace_section(ROOT / "docs" / "RESULTS.md", "vit", "A ViT-tiny, pruned by heads and MLP units", text)
    print(text)


if __name__ == "__main__":
    main()
