"""scripts/results_seeds.py's seed statistics against NumPy, read from evidence folders; the
latency section of RESULTS.md against its committed evidence."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import results_seeds  # noqa: E402

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


def test_section_is_replaced_between_markers(tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\nbefore\n")
    results_seeds.write_section("first", doc)
    results_seeds.write_section("second", doc)
    text = doc.read_text()
    assert text.count(results_seeds.START) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Results\n\nbefore\n")


def test_the_latency_section_of_results_is_what_the_committed_evidence_gives():
    import results_latency

    root = Path(__file__).parents[1]
    evidence = Path("docs/results/latency")  # relative, as the section's command line names it
    text = results_latency.section(root / evidence, "models/squeezenet1_1_fmnist_sgd.keras")
    text = text.replace(str(root / evidence), evidence.as_posix())
    assert text in (root / "docs/RESULTS.md").read_text()
