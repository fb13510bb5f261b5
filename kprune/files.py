"""Writing files so that no reader ever sees half of one.

Every file kprune writes (models, checkpoints, exports, reports) goes through
`replaced_atomically`: it is written to a temporary beside its destination,
given the permissions a plain ``open()`` would have (``tempfile`` creates
private 0600 files), and renamed into place in one step. A failure leaves
the destination as it was, removes the temporary and the folders the write
created. When the system refuses the write (disk full, read-only, no
permission) the error is a `FileWriteError` that names the file and what it
needs, so that the command line can say it in one line.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from kprune.errors import FileWriteError

_lock = threading.Lock()
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_PERMISSION = (errno.EACCES, errno.EPERM)
READ_ONLY = (errno.EROFS,)


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike, expected_bytes: int = 0) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix (Keras needs ``.keras``), lives in
    the same folder (so the rename is atomic) and is removed on failure, as are
    the folders this call created for it.

    Args:
        path: The file to write.
        expected_bytes: How large the file will be at least, for the message
            when the disk is full (the temporary's size when that is larger).

    Raises:
        FileWriteError: If the system refuses the write (ENOSPC, EDQUOT, EACCES,
            EPERM, EROFS): names ``path`` and the space or permission it needs.

    Example:
        >>> with replaced_atomically("model.keras") as temporary:
        ...     model.save(temporary)
    """
    path = Path(path)
    created = missing_folders(path.parent)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        os.close(handle)
        yield Path(temporary)
        usual_permissions(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        written = _size(temporary)
        _discard(temporary)
        remove_empty_folders(created)
        refusal = refused_write(error, path, max(written, expected_bytes))
        if refusal is not None:
            raise refusal from error
        raise
    finally:
        _discard(temporary)


def write_atomically(path: str | os.PathLike, content: bytes) -> None:
    """Writes ``content`` to ``path`` through `replaced_atomically`.

    Raises:
        FileWriteError: If the system refuses the write.
    """
    with replaced_atomically(path, expected_bytes=len(content)) as temporary:
        temporary.write_bytes(content)


@contextlib.contextmanager
def named_write_errors(path: str | os.PathLike, expected_bytes: int = 0) -> Iterator[None]:
    """Turns the system refusing a write inside the block into a `FileWriteError`
    naming ``path``: for writes that cannot go through `replaced_atomically`
    (a folder moved into place, a lock file)."""
    try:
        yield
    except BaseException as error:
        refusal = refused_write(error, Path(path), expected_bytes)
        if refusal is not None:
            raise refusal from error
        raise


def refused_write(error: BaseException, path: Path, needed: int = 0) -> FileWriteError | None:
    """The `FileWriteError` to raise when ``error`` (or what it was raised from)
    is the system refusing to write ``path``; None for any other error."""
    if isinstance(error, FileWriteError) or not isinstance(error, Exception):
        return None  # already named by a nested write; or Ctrl-C, which stays Ctrl-C
    code = _refusal_code(error)
    if code is None:
        return None
    if code in NO_SPACE:
        free = _free_bytes(path)
        need = f"it needs at least {_human(needed)}, and " if needed else ""
        message = (
            f"No space left on the disk to write {path}: {need}{_human(free)} "
            "are free there. Fix: free space on that disk, or write somewhere else."
        )
    elif code in READ_ONLY:
        message = f"Cannot write {path}: its file system is read-only. Fix: write somewhere else."
    else:
        message = (
            f"No permission to write {path} (as user {_user()}). Fix: make {path.parent} "
            "writable for this user, or write somewhere else."
        )
    refusal = FileWriteError(message)
    refusal.errno, refusal.path, refusal.needed = code, path, needed
    return refusal


def missing_folders(folder: str | os.PathLike) -> list[Path]:
    """The folders that creating ``folder`` (with its parents) would make, deepest first."""
    missing = []
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Removes those of ``folders`` (deepest first) that are empty; keeps the rest."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another writer uses it), or already gone
            pass


# TensorFlow's file ops report the system's refusal in their message only (an OpError).
_TENSORFLOW_REFUSALS = {os.strerror(code): code for code in (*NO_SPACE, *NO_PERMISSION, *READ_ONLY)}


def _refusal_code(error: BaseException | None) -> int | None:
    """The errno of the refusal behind ``error``: Keras and zipfile may raise
    another error while cleaning up after the disk filled."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (*NO_SPACE, *NO_PERMISSION, *READ_ONLY):
            return error.errno
        if type(error).__module__.startswith("tensorflow."):
            for reason, code in _TENSORFLOW_REFUSALS.items():
                if reason in str(error):
                    return code
        error = error.__cause__ or error.__context__
    return None


def _size(path) -> int:
    try:
        return os.path.getsize(path) if path is not None else 0
    except OSError:
        return 0


def _discard(path) -> None:
    if path is not None and os.path.exists(path):
        os.remove(path)


def _free_bytes(path: Path) -> int:
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment nor the password database
        return str(os.getuid())


def _umask() -> int:
    with _lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> None:
    """Gives ``path`` (and, for a folder, everything in it) the default permissions:
    0666 for files and 0777 for folders, minus the umask."""
    mask = _umask()
    path = Path(path)
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for entry in entries:
        os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)
