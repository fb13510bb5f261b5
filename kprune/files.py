"""Permissions of files written through a temporary and a rename.

``tempfile.mkstemp`` and ``mkdtemp`` create private entries (0600 / 0700) so
that nobody sees a half-written file; once complete, the file is given the
permissions a plain ``open()`` or ``mkdir()`` would have (0666 / 0777 minus
the umask) before it is renamed into place, so other users and tools can
read models, exports and bundles as usual.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_lock = threading.Lock()


def _umask() -> int:
    with _lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> None:
    """Gives ``path`` (and, for a folder, everything in it) the default permissions."""
    mask = _umask()
    path = Path(path)
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for entry in entries:
        os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)
