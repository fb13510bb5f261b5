"""`train_and_save()`: what ``kprune train`` does — train a model on a dataset,
evaluate it once on the test split, save it with its model card."""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from kprune.card import command_line, environment, read_card, write_card
from kprune.data import dataset_info, load
from kprune.errors import InvalidArgumentError, TrainingDivergedError
from kprune.files import named_write_errors, write_atomically
from kprune.metrics import count_flops, count_params
from kprune.modelio import load_model, resolve_model_path, save_model
from kprune.models import build
from kprune.training.determinism import deterministic, seed_everything
from kprune.training.setup import TrainingSetup, TrainSettings


@deterministic()  # TF op determinism while it trains, the previous state after
def train_and_save(
    model: str | keras.Model,
    dataset: str,
    out: str,
    *,
    epochs: float = 30,
    batch_size: int = 128,
    settings: TrainSettings | None = None,
    augment: bool = True,
    seed: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
    model_options: dict | None = None,
    input_shape: tuple[int, int, int] | None = None,
    progress: bool = True,
    command: str | None = None,
    resume: bool = False,
    strict_data: bool = False,
) -> dict:
    """Trains a model on a dataset, saves it and its model card; returns the card.

    The model is a ``.keras`` path, a registered name (built for the
    dataset's image shape — or for ``input_shape`` (height, width, channels),
    the images resized and their channels converted — and classes) or a
    ``keras.Model``. Validation data
    is the held-out part of train; the test split is evaluated once, at the end.

    While it trains, the model and optimizer are backed up after every epoch
    in `training_backup_dir` (``out`` without ``.keras``, plus
    ``.training/``); the folder is removed once ``out`` is written. A killed
    training is continued from its last finished epoch with ``resume=True``
    (``kprune train --resume``), given the same arguments; the batches of the
    finished epochs are drawn again and dropped, so the resumed epochs see the
    data the uninterrupted training would. ``strict_data`` refuses a
    ``folder:PATH`` file that cannot be decoded instead of skipping it (see
    `kprune.data.load`).
    """
    started = time.time()
    if Path(out).suffix != ".keras":  # checked now, not after hours of training
        raise InvalidArgumentError(
            f"out (--out) must end in .keras (Keras 3 format). Received {str(out)!r}. Fix: name it MODEL.keras."
        )
    settings = settings or TrainSettings()
    arguments = {
        "model": model if isinstance(model, str) else model.name,
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": batch_size,
        "training": asdict(settings),
        "augment": augment,
        "seed": seed,
        "limit": limit,
        "model_options": model_options or {},
        "input_shape": list(input_shape) if input_shape else None,
    }
    seed_everything(seed)
    info = dataset_info(dataset, data_dir=data_dir)
    source_card = None
    by_name = isinstance(model, str) and not model.endswith(".keras")
    if input_shape is not None and not by_name:
        raise InvalidArgumentError(
            f"input_shape (--input-shape) applies to a model built by name; {_label(model)} has its own input "
            "shape, and the images are resized to it. Fix: leave input_shape out."
        )
    if by_name:
        shape = tuple(input_shape or info.image_shape)
        network = build(model, shape, info.num_classes, **(model_options or {}))
    else:
        network = load_model(model)
        if isinstance(model, str):  # a saved model continues its history: keep its card
            source_card = read_card(resolve_model_path(model))
    input_shape = tuple(network.input_shape[1:])
    common = dict(input_shape=input_shape, data_dir=data_dir, seed=seed, limit=limit, strict_data=strict_data)
    train_split = load(dataset, "train", batch_size=batch_size, augment=augment, **common)
    val_split = load(dataset, "val", batch_size=256, **common)
    test_split = load(dataset, "test", batch_size=256, **common)
    backup = training_backup_dir(out)
    resumed_at = _prepare_backup(backup, arguments, resume)
    setup = TrainingSetup(settings)
    backup_callback = EpochBackup(str(backup), expected_epoch=resumed_at)
    try:
        history = setup.fit(
            network,
            train_split,
            val_split,
            epochs=epochs,
            callbacks=[backup_callback],
            progress=progress,
            epochs_done=resumed_at,
        )
    except TrainingDivergedError:  # a diverged training is not worth resuming
        shutil.rmtree(backup, ignore_errors=True)
        raise
    if "val_accuracy" in history.history:
        val_accuracy = float(history.history["val_accuracy"][-1])
    else:  # resumed after its last epoch: nothing left to train
        val_accuracy = setup.evaluate(network, val_split)["accuracy"]
    test = setup.evaluate(network, test_split)
    save_model(network, out)
    card = {
        "model": network.name,
        "architecture": model if isinstance(model, str) else network.name,
        "dataset": dataset,
        "data_source": info.source,
        "train_examples": train_split.num_examples,
        "val_examples": val_split.num_examples,
        "test_examples": test_split.num_examples,
        "input_shape": list(input_shape),
        "preprocessing": train_split.preprocessing.to_dict(),
        "class_names": list(info.class_names),
        "epochs": epochs,
        "batch_size": batch_size,
        "augment": augment,
        "training": asdict(settings),
        "seed": seed,
        "val_accuracy": val_accuracy,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "params": count_params(network),
        "flops": count_flops(network),
        "wall_time_s": round(time.time() - started, 1),
        **({"resumed_at_epoch": resumed_at} if resumed_at else {}),
        "command": command or command_line(),
        **(
            {"trained_from": {k: v for k, v in source_card.items() if k != "environment"}}
            if source_card
            else {}
        ),
        "environment": environment(),
    }
    write_card(out, card)
    shutil.rmtree(backup, ignore_errors=True)
    return card


def training_backup_dir(out: str | Path) -> Path:
    """Where `train_and_save` keeps the epoch backups of a training of ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".training")


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` (weights, optimizer, epoch; the previous
    backup kept while the next is written) plus the states of the model's
    random layers — Dropout, the Random* augmentation layers — which
    ``save_weights`` leaves out: without them a resumed run would draw other
    dropout masks than the uninterrupted one. The folder is kept at the end;
    `train_and_save` removes it once the model is written. Extends the
    callback's ``_save_model``/``_load_model`` (Keras 3);
    tests/test_train_resume.py checks a resumed training against an
    uninterrupted one.
    """

    def __init__(self, backup_dir: str, expected_epoch: int = 0):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self.expected_epoch = expected_epoch  # the data pipeline skips this many epochs

    def _random_states(self) -> list:
        return [v for v in self.model.variables if v.name == "seed_generator_state"]

    def _states_file(self, epoch: int) -> Path:
        return Path(self.backup_dir) / f"random_states-{epoch}.npz"

    def _save_model(self):
        with named_write_errors(self.backup_dir):  # Keras' own writes: one line when the disk is full
            super()._save_model()
        buffer = io.BytesIO()
        np.savez(buffer, *[v.numpy() for v in self._random_states()])
        write_atomically(self._states_file(self._current_epoch), buffer.getvalue())
        for old in Path(self.backup_dir).glob("random_states-*.npz"):  # keep this and the previous
            if int(old.stem.rsplit("-", 1)[1]) < self._current_epoch - 1:
                old.unlink()

    def _load_model(self):
        super()._load_model()
        epoch = getattr(self.model, "_initial_epoch", 0) or 0
        if epoch != self.expected_epoch:  # Keras fell back to the previous backup
            raise InvalidArgumentError(
                f"The backup in {self.backup_dir} is at epoch {epoch}, its metadata says "
                f"{self.expected_epoch}. Fix: delete the folder and train again."
            )
        states = self._states_file(epoch)
        if states.exists():
            with np.load(states) as saved:
                for variable, name in zip(self._random_states(), saved.files):
                    variable.assign(saved[name])


def _prepare_backup(backup: Path, arguments: dict, resume: bool) -> int:
    """Checks the backup folder against this training; returns the epoch it resumes at.

    A backup is only continued by the same training (``resume``); without
    ``resume`` an existing one stops the run rather than being overwritten.
    """
    settings_file = backup / "arguments.json"
    saved_epoch = _saved_epoch(backup)
    if backup.exists() and not resume:
        raise InvalidArgumentError(
            f"{backup} holds an unfinished training of this --out ({saved_epoch} epoch(s) saved). "
            "Fix: pass --resume (resume=True) to continue it, or delete the folder to start over."
        )
    if backup.exists():
        saved = json.loads(settings_file.read_text()) if settings_file.exists() else {}
        changed = sorted(key for key in arguments if saved.get(key) != arguments[key])
        if changed:
            raise InvalidArgumentError(
                f"Cannot resume the training in {backup}: {', '.join(changed)} differ from the killed run's. "
                "Fix: rerun with that run's arguments, or delete the folder to start over."
            )
        return saved_epoch
    with named_write_errors(backup):
        backup.mkdir(parents=True)
    write_atomically(settings_file, json.dumps(arguments, indent=2).encode())
    return 0


def _saved_epoch(backup: Path) -> int:
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            return int(json.loads((backup / name).read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def _label(model) -> str:
    return model if isinstance(model, str) else f"the model {model.name!r}"
