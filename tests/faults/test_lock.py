"""The run-dir lock: a second `kprune prune` into a run dir that a live run holds is refused in one
line naming the holder; a lock whose process is gone is taken over with a note; the lock goes away
when a run ends, fails or is interrupted."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from typer.testing import CliRunner

import kprune
from kprune.cli import app
from kprune.data import load
from kprune.errors import RunDirInUseError
from kprune.pruning import checkpoint
from kprune.pruning.runlock import LOCK_NAME, acquire, held
from tests.test_schedule import SHAPE, train_stream

runner = CliRunner()
QUICK = [
    "--criterion",
    "l1",
    "--dataset",
    "synthetic",
    "--target-filters",
    "2",
    "--filters-per-step",
    "1",
    "--finetune-steps",
    "2",
    "--final-finetune-epochs",
    "0.1",
    "--rank-batches",
    "1",
    "--no-chance-check",
]
HOLD = "import sys, time\nfrom kprune.pruning.runlock import held\nwith held(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"


@pytest.fixture
def sleeper():
    """A live process that is not kprune."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: its id names no process now
    return process.pid


def write_lock(run_dir: Path, **holder) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"host": socket.gethostname(), "since": "2030-01-01 12:00:00", **holder}))
    return path


def prune(model_file: Path, out: Path, *more: str):
    return runner.invoke(app, ["prune", "--model", str(model_file), "--out", str(out), *QUICK, *more])


def test_a_run_dir_held_by_a_live_run_is_refused_until_it_dies_then_taken_over(model_file, tmp_path):
    """A real second process holds the lock (as a running `kprune prune` does); killed with SIGKILL,
    it leaves its lock file behind, and the next run takes it over."""
    out, original = tmp_path / "run", model_file.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock_before = (out / LOCK_NAME).read_bytes()

        result = prune(model_file, out)

        assert result.exit_code == 1 and not isinstance(result.exception, Exception), result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines[-1] == (
            f"Error: {out} is in use by another kprune run (process {holder.pid} on {socket.gethostname()}, "
            f"since {json.loads(lock_before)['since']}). Fix: wait for that run to end, or give another --out; "
            f"if no such run is alive, delete {out / LOCK_NAME}."
        ), result.output
        assert [p.name for p in out.iterdir()] == [LOCK_NAME] and (
            out / LOCK_NAME
        ).read_bytes() == lock_before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / LOCK_NAME).is_file()  # a killed run cannot remove its lock

    result = prune(model_file, out)

    assert result.exit_code == 0, result.output
    assert (
        f"Note: Took over the lock of {out}: the run that held it (process {holder.pid} on "
        f"{socket.gethostname()}"
    ) in result.output and "is no longer running." in result.output
    assert json.loads((out / "report.json").read_text())["finished"] is True
    assert not (out / LOCK_NAME).exists()  # released at the end
    assert model_file.read_bytes() == original


def test_a_lock_naming_a_live_process_is_refused(tmp_path, sleeper):
    path = write_lock(tmp_path / "run", pid=sleeper.pid)
    with pytest.raises(
        RunDirInUseError,
        match=rf"^{tmp_path / 'run'} is in use by another kprune run "
        rf"\(process {sleeper.pid} on .+Fix: wait",
    ):
        acquire(tmp_path / "run")
    assert json.loads(path.read_text())["pid"] == sleeper.pid  # left to its holder


def test_a_lock_of_a_dead_process_or_a_recycled_id_is_taken_over_with_a_note(tmp_path, caplog):
    for holder in ({"pid": dead_pid()}, {"pid": os.getpid(), "pid_started": -1}):
        write_lock(tmp_path / "run", **holder)
        with caplog.at_level(logging.WARNING, logger="kprune"), held(tmp_path / "run"):
            mine = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
            assert mine["pid"] == os.getpid() and mine["host"] == socket.gethostname()
        assert (
            f"(process {holder['pid']} on {socket.gethostname()}, since 2030-01-01 12:00:00) is no "
            "longer running" in caplog.text
        )
        assert not (tmp_path / "run" / LOCK_NAME).exists()
        caplog.clear()


def test_a_lock_from_another_host_cannot_be_checked_and_is_refused(tmp_path):
    write_lock(tmp_path / "run", pid=dead_pid(), host="other-host")
    with pytest.raises(
        RunDirInUseError, match=r"\(process \d+ on other-host, since .*if no such run is alive, delete"
    ):
        acquire(tmp_path / "run")


def test_one_process_cannot_hold_one_run_dir_twice(tmp_path):
    with held(tmp_path / "run"), pytest.raises(RunDirInUseError, match=rf"process {os.getpid()} on "):
        acquire(tmp_path / "run")
    with held(tmp_path / "run"):  # released: free again
        pass


def test_the_lock_is_released_on_ctrl_c_and_the_run_resumes(model_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save = checkpoint.save

    def interrupted_after_step_0(run_dir, model, state):
        if state["step"] == 1:
            raise KeyboardInterrupt
        return real_save(run_dir, model, state)

    monkeypatch.setattr(checkpoint, "save", interrupted_after_step_0)
    result = prune(model_file, out, "--target-filters", "1")
    assert result.exit_code == 130, result.output
    assert "Interrupted: the run in" in result.output and "saved at step 0" in result.output
    assert not (out / LOCK_NAME).exists()

    monkeypatch.undo()
    result = prune(model_file, out, "--target-filters", "1", "--resume")
    assert result.exit_code == 0, result.output
    assert "Took over" not in result.output and not (out / LOCK_NAME).exists()


def test_the_python_api_holds_the_lock_for_its_run(model_file, tmp_path, sleeper):
    """`kprune.prune(run_dir=…)` is refused in a run dir a live run holds, and holds the lock while it runs."""
    out = tmp_path / "run"
    model = keras.models.load_model(model_file)
    val = load("synthetic", "val", input_shape=SHAPE, batch_size=64)
    options = {
        "criterion": "l1",
        "target_filters": 1,
        "finetune_steps": 2,
        "final_finetune_epochs": 0,
        "rank_batches": 1,
        "distill": False,
        "check_chance": False,
        "progress": False,
    }
    write_lock(out, pid=sleeper.pid)
    with pytest.raises(RunDirInUseError, match=rf"process {sleeper.pid} on "):
        kprune.prune(model, train_stream, val, run_dir=out, **options)
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    (out / LOCK_NAME).unlink()

    refusals = []

    class TryToTakeTheLock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            with pytest.raises(RunDirInUseError, match=rf"process {os.getpid()} on ") as refused:
                acquire(out)
            refusals.append(refused.value)

    kprune.prune(model, train_stream, val, run_dir=out, callbacks=[TryToTakeTheLock()], **options)
    assert refusals and not (out / LOCK_NAME).exists()
