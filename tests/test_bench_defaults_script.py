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


def test_the_earlier_final_is_1000_batches_within_1_to_10_epochs():
    """``new`` and ``distill`` keep the final fine-tune they were measured with."""
    for model, batches, final in (("squeezenet90", 844, 1000), ("mobilenet", 844, 1000), ("cnn", 27, 270)):
        flag, epochs = bench_defaults.earlier_final(model)
        assert flag == "--final-finetune-epochs" and round(float(epochs) * batches) == final
    runs = {(run["model"], run["setting"]): run["flags"] for run in bench_defaults.experiments([0])}
    assert "--final-finetune-epochs" in runs["squeezenet95", "distill"]
    assert runs["squeezenet95", "final10"].count("--final-finetune-epochs") == 1


def test_goals_say_met_missed_or_not_shown(tmp_path):
    (tmp_path / "cnn").mkdir()
    (tmp_path / "squeezenet90").mkdir()
    (tmp_path / "cnn" / "final10-seed0.json").write_text(json.dumps(_report(0.972, 0.9655)))  # −0.65
    for seed, after in enumerate((0.92, 0.918, 0.919)):  # −0.23, −0.43, −0.33: mean −0.33
        (tmp_path / "squeezenet90" / f"final10-seed{seed}.json").write_text(
            json.dumps(_report(0.9223, after))
        )
    lines = bench_defaults.goal_lines(bench_defaults.summarize(tmp_path))
    assert "**met (−0.65, n=1)**" in lines[0]
    assert lines[1].endswith(": not run")
    assert "**missed (−0.33, n=3)**" in lines[2]
    assert lines[3].endswith(": not run")
    (tmp_path / "squeezenet90" / "final10-seed1.json").unlink()
    (tmp_path / "squeezenet90" / "final10-seed2.json").unlink()
    assert (
        "not shown (−0.23 on 1 of 3 seeds)"
        in bench_defaults.goal_lines(bench_defaults.summarize(tmp_path))[2]
    )
