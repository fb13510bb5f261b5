"""scripts/experiments/bench_defaults.py's summary of its evidence: mean and sample std of the change in
test accuracy over seeds, against NumPy, and the settings that reproduce the old defaults."""

import json

import numpy as np

from scripts.experiments import bench_defaults


def _report(before: float, after: float) -> dict:
    steps = [{"step": 0}, {"step": 1}, {"step": 2}, {"step": 2, "phase": "final"}]
    return {
        "test_before": {"accuracy": before, "params": 100, "flops": 1000},
        "test_after": {"accuracy": after, "params": 40, "flops": 500},
        "steps": steps,
        "wall_time_s": 120.0,
    }


def test_the_summary_is_the_mean_and_sample_std_over_seeds(tmp_path):
    afters = {0: 0.95, 1: 0.97, 2: 0.962}
    (tmp_path / "cnn").mkdir()
    for seed, after in afters.items():
        (tmp_path / "cnn" / f"new-seed{seed}.json").write_text(json.dumps(_report(0.972, after)))
    found = bench_defaults.summarize(tmp_path)
    runs = found["cnn"]["new"]
    assert sorted(runs) == [0, 1, 2] and runs[0]["steps"] == 2 and runs[0]["flops_removed"] == 0.5
    changes = 100 * (np.array(list(afters.values())) - 0.972)
    cell = bench_defaults._cell(runs)
    assert f"{100 * np.mean(list(afters.values())):.2f}%" in cell
    assert f"{np.mean(changes):+.2f}".replace("-", "−") in cell and f"± {np.std(changes, ddof=1):.2f}" in cell
    assert "n=3" in cell and "2 steps" in cell


def test_old_settings_are_the_flags_of_the_former_defaults():
    flags = dict(zip(bench_defaults.OLD_FLAGS[:-1:2], bench_defaults.OLD_FLAGS[1::2]))
    assert flags == {
        "--filters-per-step": "128",
        "--finetune-steps": "60",
        "--final-finetune-epochs": "1",
        "--optimizer": "sgd",
        "--lr": "0.01",
    }
    assert bench_defaults.OLD_FLAGS[-1] == "--no-distill"
