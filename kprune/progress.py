"""Rich progress bars for long work: training, ranking, evaluation, pruning.

Bars go to stderr so that results printed on stdout stay clean for scripts.
They disappear on a non-interactive stream (CI logs) unless KPRUNE_PROGRESS=1.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Iterator, TypeVar

import keras
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, log_path=False)  # no "progress.py:152" after every line


def enabled() -> bool:
    forced = os.environ.get("KPRUNE_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false")
    return console.is_terminal


def make_progress(transient: bool = True) -> Progress:
    """A rich Progress with step counts, elapsed and remaining time."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not enabled(),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterates ``items`` under a progress bar."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            progress.advance(task)


class KerasProgress(keras.callbacks.Callback):
    """Shows epochs and steps of ``model.fit`` with loss and accuracy."""

    def __init__(self, description: str = "train"):
        super().__init__()
        self.description = description
        self._progress: Progress | None = None
        self._task = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._progress = make_progress(transient=False)
        self._progress.start()
        steps = self.params.get("steps") or 0
        epochs = self.params.get("epochs") or 1
        self._task = self._progress.add_task(self.description, total=steps * epochs, status="")

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch == 0 and epoch > 0:  # resumed (BackupAndRestore): earlier epochs are done
            self._progress.update(self._task, completed=epoch * (self.params.get("steps") or 0))
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        status = f"epoch {self._epoch}/{self.params.get('epochs')}  " + _format(logs)
        self._progress.update(self._task, advance=1, status=status)

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_accuracy" in logs:
            self._progress.console.log(f"{self.description} epoch {epoch + 1}: {_format(logs)}")

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()


class EvaluateProgress(keras.callbacks.Callback):
    """Shows the batches of ``model.evaluate``."""

    def __init__(self, total: int | None):
        super().__init__()
        self.total = total
        self._progress: Progress | None = None
        self._task = None

    def on_test_begin(self, logs=None):
        self._progress = make_progress()
        self._progress.start()
        self._task = self._progress.add_task("evaluate", total=self.total, status="")

    def on_test_batch_end(self, batch, logs=None):
        self._progress.advance(self._task)

    def on_test_end(self, logs=None):
        if self._progress is not None:
            self._progress.stop()


def _format(logs: dict) -> str:
    parts = []
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key} {float(logs[key]):.4f}")
    return "  ".join(parts)


class PruneProgress:
    """The pruning loop's display: one bar towards the target, plus one bar
    per fine-tune (rich allows a single live display, so they share it)."""

    def __init__(self, show: bool = True):
        self._progress = make_progress(transient=False) if show else None
        self._overall = None

    def __enter__(self) -> PruneProgress:
        if self._progress is not None:
            self._progress.start()
            self._overall = self._progress.add_task("prune", total=100, status="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, fraction: float, status: str) -> None:
        """Moves the target bar to ``fraction`` (0..1) with a status text."""
        if self._progress is not None:
            self._progress.update(self._overall, completed=100 * fraction, status=status)

    def log(self, text: str) -> None:
        """A line above the bars (also printed when bars are off: then whole, unwrapped,
        so that a log file keeps one line per event)."""
        if self._progress is not None and not self._progress.disable:
            self._progress.console.log(text)
        else:
            console.print(
                f"[{time.strftime('%H:%M:%S')}] {text}", highlight=False, soft_wrap=True, markup=False
            )

    def finetune_callback(self, description: str, steps: int) -> keras.callbacks.Callback | None:
        """A Keras callback that shows one fine-tune as its own bar."""
        return None if self._progress is None else _TaskCallback(self._progress, description, steps)


class _TaskCallback(keras.callbacks.Callback):
    def __init__(self, progress: Progress, description: str, steps: int):
        super().__init__()
        self.progress, self.description, self.steps = progress, description, steps
        self.task = None

    def on_train_begin(self, logs=None):
        self.task = self.progress.add_task(self.description, total=self.steps, status="")

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        self.progress.update(self.task, advance=1, status="" if loss is None else f"loss {float(loss):.4f}")

    def on_train_end(self, logs=None):
        self.progress.remove_task(self.task)
