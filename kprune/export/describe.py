"""`describe_artifact()`: the facts of an exported file read back from disk,
whichever format it is in."""

from __future__ import annotations

import os
from pathlib import Path

from kprune.errors import ModelFileError
from kprune.export.artifact import ExportedArtifact
from kprune.export.onnx import describe_onnx
from kprune.export.tflite import describe_tflite


def describe_artifact(path: str | os.PathLike) -> ExportedArtifact:
    """Reads the facts of a ``.tflite`` or ``.onnx`` file.

    Raises:
        ModelFileError: If the file is missing, of another kind, or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Exported model {path} does not exist.")
    if path.suffix == ".tflite":
        return describe_tflite(path)
    if path.suffix == ".onnx":
        return describe_onnx(path)
    raise ModelFileError(
        f"{path} is neither a .tflite nor an .onnx file. Fix: pass files written by `kprune export`."
    )
