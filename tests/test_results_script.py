"""scripts/experiments/results_seeds.py's seed statistics against NumPy, read from evidence folders; the
generated sections of RESULTS.md (latency, MobileNetV2, board cost, ViT-tiny) against their committed
evidence."""

import json
from pathlib import Path

import numpy as np

from scripts.experiments import results_latency, results_mobilenet, results_seeds

ACCURACY = {  # seed -> criterion -> test accuracy at the 70% target
    0: {"taylor": 0.921, "l2": 0.925, "random": 0.912},
    1: {"taylor": 0.918, "l2": 0.920, "random": 0.915},
    2: {"taylor": 0.924, "l2": 0.921},
}


def _evidence(root: Path) -> Path:
    for seed, by_criterion in ACCURACY.items():
        for criterion, accuracy in by_criterion.items():
            folder = root / f"seed-{seed}" / criterion
            folder.mkdir(parents=True)
            (folder / "report.json").write_text(json.dumps({"criterion": criterion}))
            (folder / "finetuned-70.card.json").write_text(json.dumps({"test_accuracy": accuracy}))
    return root


def test_seed_summary_means_stds_and_paired_differences(tmp_path):
    by_seed = results_seeds.accuracies(_evidence(tmp_path))
    assert by_seed[2].keys() == {("taylor", 70), ("l2", 70)} and np.isclose(by_seed[2][("l2", 70)], 92.1)
    summary = results_seeds.seed_summary(by_seed)
    taylor = np.array([92.1, 91.8, 92.4])
    l2 = np.array([92.5, 92.0, 92.1])
    mean, std, n = summary["accuracy"][("taylor", 70)]
    assert n == 3 and np.isclose(mean, taylor.mean()) and np.isclose(std, taylor.std(ddof=1))
    diff = l2 - taylor
    mean, std, n, p = summary["paired"][("l2", 70)]
    assert n == 3 and np.isclose(mean, diff.mean()) and np.isclose(std, diff.std(ddof=1))
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(3))  # paired t statistic, 2 degrees of freedom
    assert np.isclose(p, 1 - abs(t) / np.sqrt(2 + t**2))  # two-sided p of Student's t with 2 dof, closed form
    mean, _, n, _ = summary["paired"][("random", 70)]  # only the seeds both have
    assert n == 2 and np.isclose(mean, np.mean([91.2 - 92.1, 91.5 - 91.8]))

    table = results_seeds.tables(by_seed, summary, 92.23)
    assert f"| l2 | {diff.mean():+.2f} ± {diff.std(ddof=1):.2f} (3), p = {p:.2f} |" in table
    assert f"| taylor | {taylor.mean():.2f}% ± {taylor.std(ddof=1):.2f} (3) |" in table
    assert "| random | 2 | – |" not in table and "| random | 1 | 91.50% |" in table


def test_the_latency_section_of_results_is_what_the_committed_evidence_gives():
    root = Path(__file__).parents[1]
    evidence = Path("docs/results/latency")  # relative, as the section's command line names it
    text = results_latency.section(root / evidence, "models/squeezenet1_1_fmnist_sgd.keras")
    text = text.replace(str(root / evidence), evidence.as_posix())
    assert text in (root / "docs/RESULTS.md").read_text()


def test_mobilenet_budget_counts_from_the_better_of_baseline_and_control():
    base, better, worse = {"test_accuracy": 0.87}, {"test_accuracy": 0.91}, {"test_accuracy": 0.86}
    assert results_mobilenet.budget_reference(base, better) == (0.91, "the control's")
    assert results_mobilenet.budget_reference(base, worse) == (0.87, "the baseline's")
    assert results_mobilenet.budget_reference(base, None) == (0.87, "the baseline's")


def test_mobilenet_latencies_are_the_tflite_fp32_single_thread_batch_one_medians():
    bench = {
        "models": [
            {"label": "base", "path": "models/base.keras"},
            {"label": "pruned", "path": "runs/x/finetuned-60.keras"},
        ],
        "measurements": [
            {
                "model": "base",
                "runtime": "tflite",
                "precision": "fp32",
                "threads": 1,
                "batch": 1,
                "median_ms": 2.0,
            },
            {
                "model": "base",
                "runtime": "tflite",
                "precision": "int8",
                "threads": 1,
                "batch": 1,
                "median_ms": 1.0,
            },
            {
                "model": "base",
                "runtime": "onnx",
                "precision": "fp32",
                "threads": 1,
                "batch": 1,
                "median_ms": 3.0,
            },
            {
                "model": "pruned",
                "runtime": "tflite",
                "precision": "fp32",
                "threads": 2,
                "batch": 1,
                "median_ms": 0.4,
            },
            {
                "model": "pruned",
                "runtime": "tflite",
                "precision": "fp32",
                "threads": 1,
                "batch": 1,
                "median_ms": 0.5,
            },
        ],
    }
    assert results_mobilenet.latencies(bench) == {"base": 2.0, "finetuned-60": 0.5}


def test_the_mobilenet_section_of_results_is_what_the_committed_evidence_gives():
    root = Path(__file__).parents[1]
    evidence = Path("docs/results/mobilenet_v2")  # relative, as the section's command line names it
    text = results_mobilenet.section(root / evidence, budget=0.5)
    text = text.replace(str(root / evidence), evidence.as_posix())
    assert text in (root / "docs/RESULTS.md").read_text()


def test_the_board_cost_section_of_results_is_what_the_committed_evidence_gives():
    from scripts.benchmarks import board_cost_table
    from scripts.common import load_json

    root = Path(__file__).parents[1]
    result = load_json(root / "docs/results/board/board_cost.json")
    text = board_cost_table.report(result)
    assert text in (root / "docs/RESULTS.md").read_text()
    # every shipped model has its rows: the SqueezeNets, MobileNetV2 and the detector, fp32 and int8
    models = {row["model"] for measured in result["groups"] for row in board_cost_table.rows(measured)}
    shipped = {path.stem for path in (root / "models").glob("*.keras")}
    assert shipped | {"squeezenet1_1_fmnist_sgd"} <= models


def test_the_vit_section_of_results_is_what_the_committed_evidence_gives():
    from scripts.experiments import vit_report

    root = Path(__file__).parents[1]
    assert vit_report.report_text(root / "docs/results/vit") in (root / "docs/RESULTS.md").read_text()


def test_the_vit_control_is_given_at_least_the_pruning_runs_batches():
    from scripts.experiments import vit_report

    # 3 steps that fine-tuned (one of them rolled back), the final, and the start (step 0)
    run = {
        "fine_tuning": {"batches_per_step": 84, "final_batches": 8440},
        "steps": [
            {"step": 0},
            {"step": 1},
            {"step": 2},
            {"step": 3, "rolled_back": True},
            {"step": 2, "phase": "final"},
        ],
    }
    assert vit_report.fine_tune_batches(run) == 3 * 84 + 8440
    epochs = vit_report.control_epochs(run, train_examples=54_000)  # 844 batches of 64 per epoch
    card = {"epochs": epochs, "train_examples": 54_000, "batch_size": 64}
    assert 8692 <= vit_report.control_batches(card) <= 8692 + 1
