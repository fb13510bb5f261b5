"""The lock that keeps a second `kprune prune` out of a run directory a live run holds.

``RUN_DIR/.kprune.lock`` names its holder: process id, host, when it started.
The holder also keeps an exclusive ``flock`` on the file, which the kernel
drops when the process ends, however it ends. A lock file whose process is
gone (killed with SIGKILL, a crashed machine) is stale: the next run says so
in a note and takes it over. A live holder is found by the ``flock`` or, where
the file system has none, by its process id on this host (with the process's
start time, so that a recycled id is not mistaken for it). A lock from another
host whose ``flock`` is free cannot be checked and is refused with the fix.

`claimed` is how a pruning run holds it (`kprune prune`, and `kprune.prune`
given a ``run_dir``): a run that fails before its first checkpoint also takes
back what it wrote there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from kprune.errors import RunDirInUseError
from kprune.files import missing_folders, named_write_errors, remove_empty_folders
from kprune.pruning import checkpoint

try:
    import fcntl
except ImportError:  # Windows: process ids only
    fcntl = None

LOCK_NAME = ".kprune.lock"
notes = logging.getLogger("kprune")
_HELD: dict[Path, int] = {}  # the lock files this process holds → the thread that took each


class RunLock:
    """A held run-dir lock; `release` removes the file and drops the ``flock``."""

    def __init__(self, path: Path, handle: int):
        self.path, self._handle = path, handle
        _HELD[path.resolve()] = threading.get_ident()

    def release(self) -> None:
        """Removes the lock file (while still holding it) and closes it; idempotent."""
        if self._handle is None:
            return
        _HELD.pop(self.path.resolve(), None)
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # a folder made read-only meanwhile: the file stays, stale once we exit
            pass
        finally:
            os.close(self._handle)
            self._handle = None


@contextlib.contextmanager
def held(run_dir: str | os.PathLike) -> Iterator[RunLock]:
    """Holds ``run_dir``'s lock for the block; released however the block ends.

    Raises:
        RunDirInUseError: If a live run holds it; the message names its process and host.
        FileWriteError: If the lock file cannot be written (disk full, no permission).

    Example:
        >>> with held("runs/l1"):
        ...     ...  # the run
    """
    lock = acquire(run_dir)
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def claimed(run_dir: str | os.PathLike) -> Iterator[RunLock]:
    """Holds ``run_dir``'s lock for a pruning run. On a failure before the run's
    first checkpoint, nothing is left to resume: what the run created there is
    removed, then the lock, then the folders it created (never the user's)."""
    run_dir = Path(run_dir)
    created = missing_folders(run_dir)
    before = set() if created else {entry.name for entry in run_dir.iterdir()}
    try:
        lock = acquire(run_dir)
    except BaseException:  # in use, or the disk refused the lock file
        remove_empty_folders(created)
        raise
    try:
        yield lock
    except BaseException:
        if checkpoint.saved_state(run_dir) is None:
            for entry in run_dir.iterdir():
                if entry.name not in before and entry.name != LOCK_NAME:
                    _remove(entry)
            lock.release()
            remove_empty_folders(created)
        raise
    finally:
        lock.release()


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            entry.unlink()


def held_by_this_thread(run_dir: str | os.PathLike) -> bool:
    """Whether this thread already holds ``run_dir``'s lock (as `kprune prune` does
    around the `kprune.prune` it calls)."""
    return _HELD.get((Path(run_dir) / LOCK_NAME).resolve()) == threading.get_ident()


def acquire(run_dir: str | os.PathLike) -> RunLock:
    """Takes ``run_dir``'s lock (creating the folder); see `held`."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    for _ in range(100):  # another run may remove the file between our open and our flock
        with named_write_errors(path):
            run_dir.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        ours = False
        try:
            locked = _flock(handle)
            if locked and not _is_the_file(handle, path):
                os.close(handle)  # drops the flock of a file its holder has just removed
                continue
            holder = _read(handle)
            if not locked or _alive(holder):
                raise RunDirInUseError(_in_use_message(run_dir, path, holder))
            ours = True
            if holder:
                notes.warning(
                    f"Took over the lock of {run_dir}: the run that held it ({_describe(holder)}) "
                    "is no longer running."
                )
            content = json.dumps(_me()).encode()
            with named_write_errors(path, len(content)):
                os.ftruncate(handle, 0)
                os.pwrite(handle, content, 0)
            return RunLock(path, handle)
        except BaseException:
            if ours:  # leave no half-written lock behind
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(OSError):
                os.close(handle)
            raise
    raise RunDirInUseError(
        f"{run_dir} is locked and unlocked too often to take its lock: is a "
        "script starting runs in a loop? Fix: give another --out."
    )


def _flock(handle: int) -> bool:
    """True when this process now holds the ``flock``, or the file system has none."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:  # ENOLCK, EOPNOTSUPP: no flock on this file system, process ids only
        return error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    return True


def _is_the_file(handle: int, path: Path) -> bool:
    """False when the file we locked was removed (released) after we opened it."""
    try:
        return os.path.samestat(os.fstat(handle), os.stat(path))
    except FileNotFoundError:
        return False


def _read(handle: int) -> dict | None:
    try:
        holder = json.loads(os.pread(handle, 65536, 0) or b"null")
    except (OSError, ValueError):
        return None  # empty (its holder is writing it) or garbled
    return holder if isinstance(holder, dict) else None


def _alive(holder: dict | None) -> bool:
    """Whether the lock's process still runs; unknowable (True) for another host."""
    if not holder or not isinstance(holder.get("pid"), int):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    state, started = _process_stat(pid)
    if state == "Z":  # exited, not yet reaped by its parent
        return False
    recorded = holder.get("pid_started")
    return recorded is None or started is None or recorded == started  # else: the id was recycled


def _process_stat(pid: int) -> tuple[str | None, int | None]:
    """(state, start time in clock ticks) from /proc on Linux; (None, None) elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = text.rsplit(")", 1)[-1].split()  # after "pid (command name)": field 3 onwards
    return fields[0], int(fields[19])


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pid_started": _process_stat(os.getpid())[1],
        "since": f"{datetime.now():%Y-%m-%d %H:%M:%S}",
        "command": " ".join(sys.argv),
    }


def _describe(holder: dict) -> str:
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', 'an unknown host')}{since}"


def _in_use_message(run_dir: Path, path: Path, holder: dict | None) -> str:
    who = _describe(holder) if holder else "a process that has not written its id yet"
    return (
        f"{run_dir} is in use by another kprune run ({who}). Fix: wait for that run to end, "
        f"or give another --out; if no such run is alive, delete {path}."
    )
