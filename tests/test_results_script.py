"""scripts/results.py's seed statistics against NumPy."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import results  # noqa: E402


def _row(criterion, target, accuracy):
    return {"criterion": criterion, "target": target, "accuracy": accuracy}


def test_seed_summary_means_stds_and_paired_differences():
    by_seed = {
        0: [_row("taylor", 70, 0.921), _row("l2", 70, 0.925), _row("random", 70, 0.912)],
        1: [_row("taylor", 70, 0.918), _row("l2", 70, 0.920), _row("random", 70, 0.915)],
        2: [_row("taylor", 70, 0.924), _row("l2", 70, 0.921)],
    }
    summary = results.seed_summary(by_seed)
    taylor = np.array([92.1, 91.8, 92.4])
    l2 = np.array([92.5, 92.0, 92.1])
    mean, std, n = summary["accuracy"][("taylor", 70)]
    assert n == 3 and np.isclose(mean, taylor.mean()) and np.isclose(std, taylor.std(ddof=1))
    mean, std, n = summary["paired"][("l2", 70)]
    assert n == 3 and np.isclose(mean, (l2 - taylor).mean()) and np.isclose(std, (l2 - taylor).std(ddof=1))
    mean, _, n = summary["paired"][("random", 70)]  # only the seeds both have
    assert n == 2 and np.isclose(mean, np.mean([91.2 - 92.1, 91.5 - 91.8]))
    table = results.seed_tables(summary)
    diff = l2 - taylor
    assert f"| l2 | {diff.mean():+.2f} ± {diff.std(ddof=1):.2f} (3) |" in table
    assert f"| taylor | {taylor.mean():.2f}% ± {taylor.std(ddof=1):.2f} (3) |" in table
