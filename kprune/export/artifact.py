"""What an exported file is: format, precision, tensors, operators; shared helpers.

`ExportedArtifact` is what `export_tflite` and `export_onnx` return and what
`describe_artifact` reads back from a file on disk, so that verification,
benchmarks and the bundle manifest all speak about a file the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import keras

from kprune.errors import InvalidArgumentError, ModelFileError, UnsupportedModelError

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# Precisions whose outputs must equal Keras' within max_abs_diff; the others
# are judged by top-1 agreement.
EXACT_MODES = ("none",)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of an artifact.

    ``shape`` holds -1 for a dynamic dimension (the batch). ``quantization``
    is ``(scale, zero_point)`` for an integer tensor, else None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int] | None = None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["shape"] = list(self.shape)
        if self.quantization is not None:
            scale, zero_point = self.quantization
            values["quantization"] = {"scale": scale, "zero_point": zero_point}
        return values


@dataclass(frozen=True)
class ExportedArtifact:
    """A TFLite or ONNX file and the facts kprune checks about it.

    Attributes:
        path: The file.
        format: ``"tflite"`` or ``"onnx"``.
        quantize: ``"none"`` (float32), ``"float16"``, ``"dynamic"`` or ``"int8"``.
        input: The image input.
        output: The class scores.
        ops: Operator name → number of uses (TFLite builtin names, ONNX op types).
        size_bytes: Size of the file.
        opset: ONNX opset (None for TFLite).
        quantized_io: For int8 files with float32 input and output, the
            ``{"scale", "zero_point"}`` of the int8 tensors right after the
            input and right before the output, as ``{"input": ..., "output": ...}``.
    """

    path: Path
    format: str
    quantize: str
    input: TensorInfo
    output: TensorInfo
    ops: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    opset: int | None = None
    quantized_io: dict | None = None

    @property
    def exact(self) -> bool:
        """True for float32 artifacts, which must match Keras numerically."""
        return self.quantize in EXACT_MODES

    @property
    def label(self) -> str:
        """``model.tflite (int8)``: how reports name the artifact."""
        precision = "fp32" if self.quantize == "none" else self.quantize
        return f"{self.path.name} ({precision})"

    def to_dict(self) -> dict:
        values = {
            "file": self.path.name,
            "format": self.format,
            "quantize": self.quantize,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "ops": dict(self.ops),
            "size_bytes": self.size_bytes,
        }
        if self.opset is not None:
            values["opset"] = self.opset
        if self.quantized_io is not None:
            values["quantized_io"] = self.quantized_io
        return values


def describe_artifact(path: str | os.PathLike) -> ExportedArtifact:
    """Reads the facts of a ``.tflite`` or ``.onnx`` file.

    Raises:
        ModelFileError: If the file is missing, of another kind, or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Exported model {path} does not exist.")
    if path.suffix == ".tflite":
        from kprune.export.tflite import describe_tflite

        return describe_tflite(path)
    if path.suffix == ".onnx":
        from kprune.export.onnx import describe_onnx

        return describe_onnx(path)
    raise ModelFileError(
        f"{path} is neither a .tflite nor an .onnx file. Fix: pass files written "
        "by `kprune export`."
    )


def resolve_model(model: str | os.PathLike | keras.Model) -> tuple[keras.Model, Path | None]:
    """A loaded model and the file it came from (None for an in-memory model)."""
    from kprune.modelio import load_model, resolve_model_path

    if isinstance(model, keras.Model):
        return model, None
    path = resolve_model_path(model)
    return load_model(path), Path(path)


def image_input_shape(model: keras.Model) -> tuple[int, int, int]:
    """The ``(height, width, channels)`` of an image classifier's single input.

    Raises:
        UnsupportedModelError: If the model has several inputs or outputs, or
            its input is not a batch of images of fixed size.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; export supports image classifiers "
            "with one input and one output."
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(dim is None for dim in shape[1:]):
        raise UnsupportedModelError(
            f"Model {model.name!r} has input shape {shape}; export needs "
            "(batch, height, width, channels) with fixed height, width and channels. "
            "Fix: build the model with keras.Input(shape=(H, W, C))."
        )
    return tuple(int(dim) for dim in shape[1:])


def check_suffix(path: str | os.PathLike, suffix: str, argument: str = "path") -> Path:
    path = Path(path)
    if path.suffix != suffix:
        raise InvalidArgumentError(
            f"`{argument}` must end in {suffix}. Received {argument}={str(path)!r}."
        )
    return path


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def progress_steps(
    enabled: bool, total: int, description: str = "bundle"
) -> Iterator[Callable[[str], None]]:
    """Yields ``step(status)``, which advances a progress bar of ``total`` steps."""
    if not enabled:
        yield lambda description: None
        return
    from kprune.progress import make_progress

    with make_progress() as progress:
        task = progress.add_task(description, total=total, status="")
        yield lambda description: progress.update(task, advance=1, status=description)
