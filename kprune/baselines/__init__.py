"""The shipped default baseline, inside the package so that every install has it.

Docs, configs and model cards name it ``models/squeezenet1_1_fmnist_sgd.keras``,
as if it lay in the source checkout's models/ folder; this folder is its only
home (one copy in git, the same file in the wheel). `packaged_path` maps that
name to the file here, so it works from any folder and from a wheel install.
See models/README.md.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
DEFAULT = "models/squeezenet1_1_fmnist_sgd.keras"
# The folder in which docs and cards place the shipped models.
_DOCUMENTED_FOLDER = Path("models")


def packaged_path(model: str | os.PathLike) -> Path | None:
    """The packaged file that ``models/NAME.keras`` stands for, or None.

    Only relative ``models/NAME.keras`` names whose NAME ships here map to a
    packaged file; the caller decides whether a file in the working folder
    comes first.

    Example:
        >>> packaged_path("models/squeezenet1_1_fmnist_sgd.keras").name
        'squeezenet1_1_fmnist_sgd.keras'
    """
    path = Path(model)
    if path.is_absolute() or path.suffix != ".keras" or path.parent != _DOCUMENTED_FOLDER:
        return None
    packaged = DIRECTORY / path.name
    return packaged if packaged.is_file() else None
