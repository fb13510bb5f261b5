"""Disk faults during `kprune prune`: a full disk (a real small tmpfs where this host lets us
mount one, and a failing ``os.replace`` everywhere), a read-only run dir, a refused permission;
and during `kprune export`, a full temporary folder under TFLite conversion.

Each asserts: one line naming the file, exit code 1, nothing half-written (no temporaries, no
empty folders the run made, the last checkpoint loads), the input model untouched, and the run
finishing with ``--resume`` once the fault is gone.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from typer.testing import CliRunner

import kprune
from kprune.cli import app
from kprune.pruning import checkpoint

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
    "--no-distill",
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(4, name="pool")(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KB tmpfs, or a skip where this host does not let us mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fills ``disk`` with a ballast file, then gives ``leave`` bytes back."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as stream:  # unbuffered: nothing left to flush at close
        try:
            while stream.write(b"\0" * 4096):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC
    if leave:
        os.truncate(ballast, ballast.stat().st_size - leave)
    return ballast


def refuse_writes(monkeypatch, code: int, refused) -> None:
    """``os.replace`` (the atomic writer's last step) fails with ``code`` for the paths
    ``refused(destination)`` picks, as the system does on a full or read-only disk."""
    real = os.replace

    def replace(source, destination, *args, **kwargs):
        if refused(Path(destination)):
            raise OSError(code, os.strerror(code), str(destination))
        return real(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def prune(model_file: Path, out: Path, *more: str):
    return runner.invoke(app, ["prune", "--model", str(model_file), "--out", str(out), *QUICK, *more])


def error_line(result) -> str:
    """The run's one error line; fails on a traceback or an error over several lines."""
    assert result.exit_code == 1 and not isinstance(result.exception, Exception), (
        result.output,
        result.exception,
    )
    assert "Traceback" not in result.output and "Errno" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    following = result.output.split(lines[0], 1)[1].strip()
    assert following == "", f"more after the error line: {following!r}"
    return lines[0]


def assert_nothing_half_written(folder: Path) -> None:
    assert not [p for p in folder.rglob(".tmp-*")], "a temporary was left"
    assert not [p for p in folder.rglob("*") if p.is_dir() and not any(p.iterdir())], (
        "an empty folder was left"
    )
    assert not (folder / ".kprune.lock").exists(), "the lock was left"


def assert_checkpoint_at(out: Path, step: int) -> None:
    """state.json says ``step`` and its model loads, with one filter fewer per step (independent of kprune)."""
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == step and not state["finished"]
    model = keras.models.load_model(out / "checkpoint" / state["model_file"], compile=False)
    assert model.get_layer("conv_a").filters == 16 - step
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["state.json", state["model_file"]]


def assert_finishes_with_resume(model_file: Path, out: Path) -> None:
    result = prune(model_file, out, "--resume")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["finished"] is True
    assert keras.models.load_model(out / "pruned.keras").get_layer("conv_a").filters == 14
    assert_nothing_half_written(out)


def test_a_full_tmpfs_keeps_the_last_checkpoint_and_the_run_resumes(model_file, small_disk, monkeypatch):
    out, original = small_disk / "run", model_file.read_bytes()
    real_save = checkpoint.save

    def save_on_a_disk_that_fills(run_dir, model, state):  # the disk fills just before step 2 is saved
        if state["step"] == 2:
            fill(small_disk)
        return real_save(run_dir, model, state)

    monkeypatch.setattr(checkpoint, "save", save_on_a_disk_that_fills)
    line = error_line(prune(model_file, out))

    assert line.startswith(
        f"Error: No space left on the disk to write {out / 'checkpoint' / 'step-0002.keras'}: "
        "it needs at least "
    )
    assert "The run is saved at step 1; once that is fixed, continue it with: kprune prune " in line
    assert f" --out {out} " in line and line.endswith(" --resume")
    assert_checkpoint_at(out, 1)
    assert_nothing_half_written(small_disk)
    assert model_file.read_bytes() == original

    monkeypatch.setattr(checkpoint, "save", real_save)
    (small_disk / "ballast").unlink()  # space freed
    assert_finishes_with_resume(model_file, out)
    assert model_file.read_bytes() == original


def test_a_tmpfs_too_full_for_the_first_checkpoint_leaves_no_run_dir(model_file, small_disk):
    original = model_file.read_bytes()
    fill(small_disk, leave=16 * 1024)  # the lock and config.yaml fit (a page each), the model does not
    out = small_disk / "runs" / "l1"

    line = error_line(prune(model_file, out))

    assert line.startswith(
        f"Error: No space left on the disk to write {out / 'checkpoint' / 'step-0000.keras'}: "
    )
    assert line.endswith("Nothing of the run was kept (no step was saved); once that is fixed, run it again.")
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]  # runs/ and runs/l1 are gone
    assert model_file.read_bytes() == original


@pytest.mark.parametrize(
    "code, says",
    [
        (errno.ENOSPC, "No space left on the disk to write {path}: it needs at least "),
        (errno.EROFS, "Cannot write {path}: its file system is read-only. Fix: write somewhere else."),
    ],
)
def test_a_refused_checkpoint_keeps_the_previous_one(model_file, tmp_path, monkeypatch, code, says):
    """Where no tmpfs can be mounted (CI): the same fault, from a failing ``os.replace``."""
    out, original = tmp_path / "run", model_file.read_bytes()
    refuse_writes(monkeypatch, code, lambda path: path.name == "step-0002.keras")

    line = error_line(prune(model_file, out))

    assert line.startswith("Error: " + says.format(path=out / "checkpoint" / "step-0002.keras"))
    assert "The run is saved at step 1; once that is fixed, continue it with: " in line
    assert_checkpoint_at(out, 1)
    assert_nothing_half_written(tmp_path)
    assert model_file.read_bytes() == original

    if code == errno.ENOSPC:  # the resume after a refusal is one path; walked once
        monkeypatch.undo()
        assert_finishes_with_resume(model_file, out)


def test_a_read_only_run_dir_names_the_permission_and_resumes_once_writable(
    model_file, tmp_path, monkeypatch
):
    out, original = tmp_path / "run", model_file.read_bytes()
    refuse_writes(monkeypatch, errno.ENOSPC, lambda path: path.name == "step-0002.keras")
    error_line(prune(model_file, out))  # a run saved at step 1
    monkeypatch.undo()
    saved = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # Running as root, chmod does not stop writes: the writer fails as in a read-only folder.
    refuse_writes(monkeypatch, errno.EACCES, lambda path: out in path.parents)
    line = error_line(prune(model_file, out, "--resume"))

    assert line.startswith(f"Error: No permission to write {out / 'config.yaml'} (as user ")
    assert (
        f"Fix: make {out} writable for this user, or write somewhere else. The run is saved at step 1" in line
    )
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == saved
    assert_checkpoint_at(out, 1)
    assert_nothing_half_written(tmp_path)
    assert model_file.read_bytes() == original

    monkeypatch.undo()
    assert_finishes_with_resume(model_file, out)


@pytest.mark.parametrize("existing", [False, True], ids=["new-run-dir", "user-folder"])
def test_a_run_refused_before_its_first_checkpoint_takes_back_only_what_it_made(
    model_file, tmp_path, monkeypatch, existing
):
    out = tmp_path / "user" / "run"
    if existing:  # the user's folder, with the user's file: both stay
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    refuse_writes(monkeypatch, errno.ENOSPC, lambda path: path.name == "step-0000.keras")

    line = error_line(prune(model_file, out))

    assert line.startswith(
        f"Error: No space left on the disk to write {out / 'checkpoint' / 'step-0000.keras'}"
    )
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "mine"
    else:
        assert list(tmp_path.iterdir()) == []


def export(model_file: Path, out: Path):
    return runner.invoke(
        app, ["export", str(model_file), "--out", str(out), "--format", "tflite", "--dataset", "synthetic"]
    )


def assert_the_temporary_folder_is_named(line: str, temporary: Path) -> None:
    assert line.startswith(f"Error: No space left on the disk to write {temporary / 'kprune-savedmodel-'}"), (
        line
    )
    assert line.endswith("under the system's temporary folder; TMPDIR=FOLDER moves it.)"), line


def test_a_full_temporary_folder_during_tflite_conversion_is_one_line(
    model_file, small_disk, tmp_path, monkeypatch
):
    """TFLite conversion writes a SavedModel under the system's temporary folder first (a real full tmpfs)."""
    original, out = model_file.read_bytes(), tmp_path / "export"
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    fill(small_disk)

    line = error_line(export(model_file, out))

    assert_the_temporary_folder_is_named(line, small_disk)
    assert not list(small_disk.glob("kprune-*"))  # (TensorFlow leaves its autograph modules there)
    assert not out.exists() or not any(out.rglob("*"))
    assert model_file.read_bytes() == original


def test_tensorflow_refusing_the_savedmodel_write_is_one_line(model_file, tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: TensorFlow's own error for a full disk (an OpError, no errno)."""
    original, out = model_file.read_bytes(), tmp_path / "export"

    def full_disk(self, path, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables_temp/part-00000; No space left on device [Op:SaveV2]"
        )

    monkeypatch.setattr(keras.Model, "export", full_disk)
    line = error_line(export(model_file, out))

    assert_the_temporary_folder_is_named(line, Path(tempfile.gettempdir()))
    assert not out.exists() or not any(out.rglob("*"))
    assert model_file.read_bytes() == original


def test_a_failed_state_write_keeps_the_previous_checkpoint_whole(tiny_cnn, tmp_path, monkeypatch):
    """A model file written but its state.json refused: the new model is removed, the old pair stays."""
    checkpoint.save(tmp_path, tiny_cnn, {"step": 0})
    refuse_writes(monkeypatch, errno.ENOSPC, lambda path: path.name == "state.json")
    with pytest.raises(
        OSError, match=r"No space left on the disk to write .*state\.json: it needs at least \d+ B"
    ):
        checkpoint.save(tmp_path, tiny_cnn, {"step": 1})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["state.json", "step-0000.keras"]
    assert checkpoint.load(tmp_path)[1]["step"] == 0


def test_a_second_checkpoint_of_one_step_never_replaces_the_file_its_state_names(
    tiny_cnn, tmp_path, monkeypatch
):
    """The final fine-tune saves the last step again: a kill between its two renames must not
    pair the old state with the new model."""
    checkpoint.save(tmp_path, tiny_cnn, {"step": 3, "finished": False})
    refuse_writes(monkeypatch, errno.ENOSPC, lambda path: path.name == "state.json")
    with pytest.raises(OSError):
        checkpoint.save(tmp_path, keras.models.clone_model(tiny_cnn), {"step": 3, "finished": True})
    monkeypatch.undo()
    model, state = checkpoint.load(tmp_path)
    assert state == {"step": 3, "finished": False, "model_file": "step-0003.keras"}
    for saved, original in zip(model.get_weights(), tiny_cnn.get_weights()):
        assert (saved == original).all()

    checkpoint.save(tmp_path, tiny_cnn, {"step": 3, "finished": True})
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["state.json", "step-0003-b.keras"]


def test_no_kprune_module_writes_around_the_atomic_writer():
    """Every file write in the package goes through kprune.files (board-side templates excepted)."""
    package = Path(kprune.__file__).parent
    direct = ("write_text(", "write_bytes(", ".savefig(", "json.dump(", "shutil.copy", 'open(path, "w')
    found = {
        (str(path.relative_to(package)), line.strip())
        for path in package.rglob("*.py")
        if "templates" not in path.parts and path.name != "files.py"
        for line in path.read_text().splitlines()
        if any(call in line for call in direct) and "temporary" not in line
    }
    # The one exception: dump_config writes the path it is given, and runs.py gives it a temporary.
    assert found == {
        ("config.py", "Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))")
    }
