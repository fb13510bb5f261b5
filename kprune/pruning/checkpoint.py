"""Atomic checkpoints of a pruning run: a killed run resumes from the last
complete step, and no kill leaves a half-written checkpoint behind.

Layout in the run dir: ``checkpoint/step-NNNN.keras`` (no optimizer state) and
``checkpoint/state.json``, which names the model file it belongs to. A new
checkpoint writes its model file first and then replaces state.json in one
rename, so state.json always points to a complete model.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from kprune.errors import ModelFileError
from kprune.files import missing_folders, remove_empty_folders, write_atomically
from kprune.modelio import save_model

FOLDER = "checkpoint"
STATE = "state.json"


def save(run_dir: str | Path, model: keras.Model, state: dict) -> Path:
    """Writes ``model`` and ``state`` as the run's latest checkpoint.

    The model never replaces the file that the current state.json names (a
    second checkpoint of the same step, after the final fine-tune, goes to
    ``step-NNNN-b.keras``), so a failure at any point leaves the previous
    checkpoint whole.

    Raises:
        FileWriteError: If the disk is full or the run dir is not writable; the
            previous checkpoint stays as it was.
    """
    folder = Path(run_dir) / FOLDER
    created = missing_folders(folder)
    current = (saved_state(run_dir) or {}).get("model_file")
    step = f"step-{int(state['step']):04d}"
    model_file = f"{step}.keras" if current != f"{step}.keras" else f"{step}-b.keras"
    save_model(model, folder / model_file)
    try:
        write_json_atomically(folder / STATE, {**state, "model_file": model_file})
    except BaseException:
        (folder / model_file).unlink(missing_ok=True)  # no state names it
        remove_empty_folders(created)
        raise
    for old in folder.glob("step-*.keras"):
        if old.name != model_file:
            old.unlink()
    return folder / model_file


def load(run_dir: str | Path) -> tuple[keras.Model, dict] | None:
    """The latest checkpoint's model and state, or None when there is none.

    Raises:
        ModelFileError: If the state names a model file that cannot be loaded.
    """
    folder = Path(run_dir) / FOLDER
    state_path = folder / STATE
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    model_path = folder / state["model_file"]
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # any failure means the checkpoint is unusable
        raise ModelFileError(
            f"Checkpoint {model_path} cannot be loaded ({type(error).__name__}). "
            f"Fix: delete {folder} to restart the run from the beginning."
        ) from error
    return model, state


def saved_state(run_dir: str | Path) -> dict | None:
    """The run dir's checkpoint state (its step, model file…), None without a readable one."""
    try:
        return json.loads((Path(run_dir) / FOLDER / STATE).read_text())
    except (OSError, ValueError):
        return None


def write_json_atomically(path: str | Path, payload: dict) -> None:
    """Writes JSON through a temporary file and one rename."""
    write_atomically(path, (json.dumps(payload, indent=1) + "\n").encode())
