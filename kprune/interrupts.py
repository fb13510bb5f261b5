"""Ctrl-C and SIGTERM that stop a long run between batches, never inside TensorFlow.

A ``KeyboardInterrupt`` raised by Python's default handler lands wherever the
interpreter happens to be; inside TensorFlow's tracing or a C++ callback it
comes back as an unrelated error ("Failed to convert elements … to Tensor")
with the interrupt lost. Inside `deferred`, a signal only records itself, and
the work raises it at its next safe point: `check`, called between batches (by
`CheckInterrupts` in every ``fit`` and ``evaluate``), ranking batches, latency
measurements and pruning steps. The third signal stops at once, for a run
stuck where no safe point comes.

Outside `deferred` (the Python API, unless the caller uses it) nothing changes:
`check` finds nothing to raise and Python's own handlers stay.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import keras

AT_ONCE = 3  # the signal count that stops without waiting for a safe point
_received: list[int] = []  # the signals `deferred` has recorded, in order


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (exit code 143 instead of 130)."""


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _record(signum, frame) -> None:
    _received.append(signum)
    if len(_received) >= AT_ONCE:
        raise _interrupt(signum)


@contextlib.contextmanager
def deferred(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, ``signals`` are raised at the next `check` (as
    ``KeyboardInterrupt``, or `Terminated` for SIGTERM); the handlers before it
    come back afterwards. Only the main thread can install handlers: elsewhere
    the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _record) for signum in signals}
    _received.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


def check() -> None:
    """Raises the first signal `deferred` recorded, if any; cheap enough for every batch."""
    if _received:
        raise _interrupt(_received[0])


class CheckInterrupts(keras.callbacks.Callback):
    """`check` after every training, evaluation and prediction batch."""

    def on_train_batch_end(self, batch, logs=None):
        check()

    def on_test_batch_end(self, batch, logs=None):
        check()

    def on_predict_batch_end(self, batch, logs=None):
        check()
