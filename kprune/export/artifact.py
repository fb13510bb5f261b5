"""What an exported file is: format, precision, tensors, operators; shared helpers.

`ExportedArtifact` is what `export_tflite` and `export_onnx` return and what
`kprune.export.describe.describe_artifact` reads back from a file on disk, so that verification,
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

from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.modelio import load_model, resolve_model_path
from kprune.progress import make_progress
from kprune.training.losses import output_names

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
        inputs: The file's input tensors (one for an image classifier).
        outputs: The file's output tensors (the class scores of a classifier).
        ops: Operator name → number of uses (TFLite builtin names, ONNX op types).
        size_bytes: Size of the file.
        opset: ONNX opset (None for TFLite).
        quantized_io: For int8 files with float32 inputs and outputs, the
            ``{"scale", "zero_point"}`` of the int8 tensors right after each
            input and right before each output: ``{"input": ..., "output": ...}``
            for one input and one output, else ``{"inputs": {name: ...},
            "outputs": {name: ...}}`` keyed by the file's tensor names.
    """

    path: Path
    format: str
    quantize: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    opset: int | None = None
    quantized_io: dict | None = None

    @property
    def input(self) -> TensorInfo:
        """The only input; a file with several has none (use ``inputs``)."""
        return _only(self.inputs, "input", self.path)

    @property
    def output(self) -> TensorInfo:
        """The only output; a file with several has none (use ``outputs``)."""
        return _only(self.outputs, "output", self.path)

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
        """The artifact as JSON; ``input``/``output`` for one of each (the
        bundle manifest's format), else ``inputs``/``outputs`` lists."""
        values = {"file": self.path.name, "format": self.format, "quantize": self.quantize}
        if len(self.inputs) == 1 and len(self.outputs) == 1:
            values["input"] = self.input.to_dict()
            values["output"] = self.output.to_dict()
        else:
            values["inputs"] = [tensor.to_dict() for tensor in self.inputs]
            values["outputs"] = [tensor.to_dict() for tensor in self.outputs]
        values["ops"] = dict(self.ops)
        values["size_bytes"] = self.size_bytes
        if self.opset is not None:
            values["opset"] = self.opset
        if self.quantized_io is not None:
            values["quantized_io"] = self.quantized_io
        return values


def _only(tensors: tuple[TensorInfo, ...], kind: str, path: Path) -> TensorInfo:
    if len(tensors) != 1:
        raise AttributeError(f"{path.name} has {len(tensors)} {kind}s, not one; read `{kind}s` instead.")
    return tensors[0]


@dataclass(frozen=True)
class ModelTensors:
    """A Keras model's inputs and outputs in its own order (``model.inputs``,
    ``model.outputs``): Keras names, shapes with -1 for the batch, dtypes."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def single(self) -> bool:
        """One input and one output, the case the bundle's runtime code handles."""
        return len(self.inputs) == 1 and len(self.outputs) == 1


def resolve_model(model: str | os.PathLike | keras.Model) -> tuple[keras.Model, Path | None]:
    """A loaded model and the file it came from (None for an in-memory model)."""
    if isinstance(model, keras.Model):
        return model, None
    path = resolve_model_path(model)
    return load_model(path), Path(path)


def model_tensors(model: keras.Model) -> ModelTensors:
    """The inputs and outputs an export of ``model`` has, in Keras' order.

    Any number of inputs and outputs of any rank is fine (images, time series
    (N, T, C), volumes, feature vectors), as long as every dimension but the
    batch is fixed: exported files have static shapes.

    Raises:
        UnsupportedModelError: If an input has an unknown dimension besides the batch.
    """
    inputs = tuple(_keras_tensor(t, t.name, "input", model) for t in model.inputs)
    # Output tensors are named after the layers that make them (model.output_names).
    outputs = tuple(
        _keras_tensor(t, name, "output", model) for t, name in zip(model.outputs, output_names(model))
    )
    return ModelTensors(inputs, outputs)


def structured_inputs(model: keras.Model, inputs: list):
    """``inputs`` (one per ``model.inputs``) in the structure ``model`` is called with:
    the tensor itself for one input, else the model's list or dict."""
    if len(inputs) == 1:
        return inputs[0]  # also for a Sequential never called, which has no `.input`
    return keras.tree.pack_sequence_as(model.input, list(inputs))


def _keras_tensor(tensor, name: str, kind: str, model: keras.Model) -> TensorInfo:
    shape = tuple(tensor.shape)
    if kind == "input" and (len(shape) < 2 or any(dim is None for dim in shape[1:])):
        raise UnsupportedModelError(
            f"Model {model.name!r} has input {name!r} of shape {shape}; export needs "
            "a batch dimension and fixed sizes for all the others. Fix: build the model "
            "with keras.Input(shape=...) giving every dimension but the batch."
        )
    dims = tuple(-1 if dim is None else int(dim) for dim in shape)
    return TensorInfo(name=name, shape=(-1, *dims[1:]), dtype=str(tensor.dtype))


EXPORT_INSTEAD = (
    "use `kprune export` (kprune.export_tflite / export_onnx), which exports and "
    "verifies models of any inputs and outputs"
)


def image_input_shape(
    model: keras.Model, purpose: str = "This", fix: str = EXPORT_INSTEAD, any_outputs: bool = False
) -> tuple[int, int, int]:
    """The ``(height, width, channels)`` of an image classifier's single input.

    Args:
        purpose: Who needs an image classifier, for the message (``"`kprune bundle`"``).
        fix: What to do instead, for the message.
        any_outputs: Accept any number of outputs (an image model that is not
            a classifier: a detector, a regressor); the input is still one image.

    Raises:
        UnsupportedModelError: If the model has several inputs (or, without
            ``any_outputs``, several outputs), or its input is not a batch of
            images of fixed size.
    """
    shapes = [tuple(tensor.shape) for tensor in model.inputs]
    image = len(model.inputs) == 1 and len(shapes[0]) == 4 and None not in shapes[0][1:]
    if image and any_outputs:
        return tuple(int(dim) for dim in shapes[0][1:])
    if any_outputs:
        raise UnsupportedModelError(
            f"{purpose} supports image models only: one (batch, height, width, channels) "
            f"input, any outputs; model {model.name!r} has input shapes "
            f"{', '.join(map(str, shapes))}. Fix: {fix}."
        )
    if not image or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"{purpose} supports image classifiers only: one (batch, height, width, "
            f"channels) input and one output; model {model.name!r} has input shapes "
            f"{', '.join(map(str, shapes))} and {len(model.outputs)} output(s). Fix: {fix}."
        )
    return tuple(int(dim) for dim in shapes[0][1:])


def check_suffix(path: str | os.PathLike, suffix: str, argument: str = "path") -> Path:
    path = Path(path)
    if path.suffix != suffix:
        raise InvalidArgumentError(f"`{argument}` must end in {suffix}. Received {argument}={str(path)!r}.")
    return path


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def progress_steps(enabled: bool, total: int, description: str = "bundle") -> Iterator[Callable[[str], None]]:
    """Yields ``step(status)``, which advances a progress bar of ``total`` steps."""
    if not enabled:
        yield lambda description: None
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total, status="")
        yield lambda description: progress.update(task, advance=1, status=description)
