"""SIGINT or SIGTERM to a real `kprune prune` process mid-run: it says where it stopped and
how to resume (exit 130 or 143), and `--resume` ends with the model an uninterrupted run gives."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from kprune.cli import app

RUN = [
    "prune",
    "--criterion",
    "l1",
    "--dataset",
    "synthetic",
    "--target-filters",
    "2",
    "--filters-per-step",
    "1",
    "--finetune-steps",
    "10",
    "--final-finetune-epochs",
    "0.1",
    "--rank-batches",
    "1",
    "--no-chance-check",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def uninterrupted(model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    result = CliRunner().invoke(app, [*RUN, "--model", str(model_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return keras.models.load_model(out / "pruned.keras").get_weights()


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signalled_run_resumes_to_the_uninterrupted_result(
    model_file, uninterrupted, tmp_path, signal_name, code
):
    original = model_file.read_bytes()
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-c",
        "from kprune.cli import main; main()",
        *RUN,
        "--model",
        str(model_file),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KPRUNE_PROGRESS": "0"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while not state.is_file() or json.loads(state.read_text())["step"] < 1:  # mid-run: step 1 saved
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.1)
    process.send_signal(getattr(signal, signal_name))  # one signal: the run stops at its next batch
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    lines = stderr.strip().splitlines()  # the step reached, then the command alone on a line
    step = json.loads(state.read_text())["step"]
    assert lines[-2] == f"Interrupted: the run in {out} is saved at step {step}. Continue it with:", stderr[
        -2000:
    ]
    resume = lines[-1].strip()
    assert resume.startswith("kprune prune ") and resume.endswith(" --resume") and f"--out {out} " in resume
    assert "about 2 more steps of 1 channel " in stderr  # the plan, printed at the start
    assert "Traceback" not in stderr
    assert not (out / "pruned.keras").exists() and not list(out.rglob(".tmp-*"))  # nothing half-written
    assert not (out / ".kprune.lock").exists()  # the run dir's lock goes with the run

    resumed = CliRunner().invoke(app, [*RUN, "--model", str(model_file), "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    for expected, actual in zip(uninterrupted, keras.models.load_model(out / "pruned.keras").get_weights()):
        np.testing.assert_array_equal(expected, actual)
    assert model_file.read_bytes() == original
