"""The seeds section of docs/RESULTS.md: criteria compared over several seeds.

Reads the evidence that scripts/experiments/reproduce.sh leaves for every finished
(seed, criterion) — ``EVIDENCE/seed-N/CRITERION/report.json`` and
``finetuned-T.card.json`` — so seeds run in different sessions add up, and
rewrites the section between <!-- seeds:start --> and <!-- seeds:end -->:
test accuracy per seed, mean ± sample std, and the paired differences to
Taylor (same seed, same target) with a paired t-test.

    PART=seeds SEEDS="0 1 2" CRITERIA="taylor combined l2 random" TARGETS="70 90" bash scripts/experiments/reproduce.sh
    python -m scripts.experiments.results_seeds docs/results/seeds --baseline models/squeezenet1_1_fmnist_sgd.keras
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from scipy import stats

from kprune.modelio import resolve_model_path
from scripts.common import load_json, replace_section

RESULTS = Path("docs/RESULTS.md")
REFERENCE = "taylor"


def accuracies(evidence: Path) -> dict[int, dict[tuple[str, int], float]]:
    """{seed: {(criterion, target): test accuracy in %}} from ``evidence/seed-N/CRITERION/``."""
    by_seed: dict[int, dict[tuple[str, int], float]] = {}
    for report_path in sorted(evidence.glob("seed-*/*/report.json")):
        seed = int(report_path.parents[1].name.split("-")[1])
        criterion = load_json(report_path)["criterion"]
        for card_path in sorted(report_path.parent.glob("finetuned-*.card.json")):
            target = int(card_path.name.split("-")[1].split(".")[0])
            by_seed.setdefault(seed, {})[(criterion, target)] = 100 * load_json(card_path)["test_accuracy"]
    return by_seed


def seed_summary(by_seed: dict[int, dict[tuple[str, int], float]], reference: str = REFERENCE) -> dict:
    """Mean ± sample std of the accuracy per (criterion, target) over seeds, and the paired
    differences to ``reference`` (same seed, same target): mean, std, n and the paired
    t-test's two-sided p-value (NaN below two pairs)."""
    per_key: dict[tuple[str, int], dict[int, float]] = {}
    for seed, values in by_seed.items():
        for key, accuracy in values.items():
            per_key.setdefault(key, {})[seed] = accuracy
    summary: dict = {"accuracy": {}, "paired": {}}
    for key, values in per_key.items():
        numbers = list(values.values())
        summary["accuracy"][key] = (statistics.mean(numbers), _std(numbers), len(numbers))
        criterion, target = key
        base = per_key.get((reference, target))
        if criterion == reference or base is None:
            continue
        seeds = [s for s in values if s in base]
        if not seeds:
            continue
        diffs = [values[s] - base[s] for s in seeds]
        p = float("nan")
        if len(seeds) > 1 and _std(diffs) > 0:
            p = float(stats.ttest_rel([values[s] for s in seeds], [base[s] for s in seeds]).pvalue)
        summary["paired"][key] = (statistics.mean(diffs), _std(diffs), len(diffs), p)
    return summary


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _cell(value: tuple | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    mean, std, n = value[:3]
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}%"
    text += f" ± {std:.2f} ({n})" if not math.isnan(std) else f" ({n})"
    if len(value) > 3 and not math.isnan(value[3]):
        text += f", p = {value[3]:.2f}"
    return text


def tables(by_seed: dict, summary: dict, baseline_accuracy: float, reference: str = REFERENCE) -> str:
    targets = sorted({t for _, t in summary["accuracy"]})
    criteria = sorted({c for c, _ in summary["accuracy"]}, key=lambda c: (c != reference, c))
    seeds = sorted(by_seed)
    head = " | ".join(f"{t}% params removed" for t in targets)
    rule = "|" + " --- |" * (len(targets) + 1)
    lines = [
        f"Test top-1 per seed (baseline {baseline_accuracy:.2f}%):",
        "",
        "| criterion | seed | " + head + " |",
        "|" + " --- |" * (len(targets) + 2),
    ]
    for criterion in criteria:
        for seed in seeds:
            cells = [by_seed[seed].get((criterion, t)) for t in targets]
            if any(c is not None for c in cells):
                lines.append(
                    f"| {criterion} | {seed} | "
                    + " | ".join("–" if c is None else f"{c:.2f}%" for c in cells)
                    + " |"
                )
    lines += ["", "Mean ± sample std over seeds (n):", "", f"| criterion | {head} |", rule]
    for criterion in criteria:
        cells = [_cell(summary["accuracy"].get((criterion, t))) for t in targets]
        lines.append(f"| {criterion} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired difference to {reference} (same seed and target), points: mean ± std (n), "
        "two-sided paired t-test p:",
        "",
        f"| criterion | {head} |",
        rule,
    ]
    for criterion in criteria:
        if criterion != reference:
            cells = [_cell(summary["paired"].get((criterion, t)), signed=True) for t in targets]
            lines.append(f"| {criterion} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evidence", type=Path, nargs="?", default=Path("docs/results/seeds"))
    parser.add_argument("--baseline", default="models/squeezenet1_1_fmnist_sgd.keras")
    parser.add_argument("--doc", type=Path, default=RESULTS)
    args = parser.parse_args()
    by_seed = accuracies(args.evidence)
    if not by_seed:
        raise SystemExit(
            f"No seed-N/CRITERION/report.json under {args.evidence}: run "
            "PART=seeds SEEDS=… bash scripts/experiments/reproduce.sh first."
        )
    baseline = load_json(Path(resolve_model_path(args.baseline)).with_suffix(".card.json"))
    command = f"python -m scripts.experiments.results_seeds {args.evidence} --baseline {args.baseline}"
    text = (
        f"_Generated by `{command}` from the evidence of `PART=seeds bash scripts/experiments/reproduce.sh` "
        f"(seeds {', '.join(map(str, sorted(by_seed)))})._\n\n"
        + tables(by_seed, seed_summary(by_seed), 100 * baseline["test_accuracy"])
    )
    print(text)
    replace_section(args.doc, "seeds", "Criteria over several seeds", text)


if __name__ == "__main__":
    main()
