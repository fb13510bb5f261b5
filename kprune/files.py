"""Writing files so that no reader ever sees half of one.

Every file kprune writes (models, checkpoints, exports, reports) goes through
`replaced_atomically`: it is written to a temporary beside its destination,
given the permissions a plain ``open()`` would have (``tempfile`` creates
private 0600 files), and renamed into place in one step. A failure leaves
the destination as it was and removes the temporary.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

_lock = threading.Lock()


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix (Keras needs ``.keras``), lives in
    the same folder (so the rename is atomic) and is removed on failure.

    Example:
        >>> with replaced_atomically("model.keras") as temporary:
        ...     model.save(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        usual_permissions(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_atomically(path: str | os.PathLike, content: bytes) -> None:
    """Writes ``content`` to ``path`` through `replaced_atomically`."""
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(content)


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
