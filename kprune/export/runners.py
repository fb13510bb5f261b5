"""Exported files run by their runtimes on a Keras model's inputs, giving its outputs.

`open_artifact` returns a function ``inputs → outputs``: lists of arrays in
the Keras model's order (``model.inputs``, ``model.outputs``), whatever order
the file keeps its tensors in. A file with one input runs through the
bundle's runtime code (templates/kprune_runtime.py), so that what kprune
verifies and times is what runs on the board (also its outputs' matching, for
a raw-output bundle). Files with several inputs are matched to the model by
name, as the runtime matches outputs:

- TFLite: through the SavedModel signature the file was converted from;
  its inputs are keyed by the Keras input names and its outputs are
  ``output_0``, ``output_1``, … in Keras' order (TensorFlow's convention),
  or the keys of a model whose outputs are a dict.
- ONNX: by the names `kprune.export.onnx.onnx_names` gave the tensors.

The subgraph order of a TFLite file is not Keras' (outputs often come
reversed), which is why nothing here relies on position.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kprune.errors import ModelFileError, VerificationError
from kprune.export.artifact import ExportedArtifact, ModelTensors
from kprune.export.onnx import onnx_names
from kprune.export.templates import kprune_runtime as runtime

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
SIGNATURE_KEY = "serving_default"


def open_artifact(artifact: ExportedArtifact, tensors: ModelTensors, threads: int | None = None) -> Runner:
    """A function that runs ``artifact`` on the model's inputs and returns its outputs.

    Args:
        artifact: The exported file.
        tensors: The Keras model's inputs and outputs (`model_tensors`).
        threads: Inference threads; None lets the runtime choose.

    Raises:
        VerificationError: If the file's inputs or outputs are not the model's
            (their number, names or shapes).
        ModelFileError: If the runtime cannot load the file.
    """
    path = artifact.path
    if (len(artifact.inputs), len(artifact.outputs)) != (len(tensors.inputs), len(tensors.outputs)):
        raise VerificationError(
            f"{path} has {len(artifact.inputs)} input(s) and {len(artifact.outputs)} output(s), "
            f"the model {len(tensors.inputs)} and {len(tensors.outputs)}. Fix: it was "
            "exported from another model; export again."
        )
    try:
        if len(tensors.inputs) == 1:
            _check_shapes(path, [artifact.input.shape], tensors)
            model = runtime.open_model(path, threads, _file_output_names(artifact, tensors))
            return lambda inputs: model.run(inputs[0])
        if artifact.format == "tflite":
            return _TFLiteSignature(artifact, tensors, threads)
        return _OnnxByName(artifact, tensors, threads)
    except (runtime.BundleError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"Cannot run {path}: {error}. Fix: export it again.") from error


def _file_output_names(artifact: ExportedArtifact, tensors: ModelTensors) -> list[str]:
    """The names the runtime finds a file's outputs by, in Keras' order: the Keras output
    names (a TFLite signature's keys ``output_<i>`` are tried first, by the runtime)."""
    if artifact.format == "onnx":
        return onnx_names(tensors)[1]
    return [tensor.name for tensor in tensors.outputs]


def _check_shapes(path, file_shapes, tensors: ModelTensors) -> None:
    for file_shape, tensor in zip(file_shapes, tensors.inputs):
        expected = tuple(int(dim) if isinstance(dim, (int, np.integer)) else -1 for dim in file_shape)
        if expected[1:] != tuple(tensor.shape[1:]):
            raise VerificationError(
                f"{path} expects inputs of shape {expected[1:]}, the model "
                f"{tuple(tensor.shape[1:])} (input {tensor.name!r}). Fix: it was exported "
                "from another model; export again."
            )


def _match(path, kind: str, file_names, wanted: list[list[str]]) -> list[str]:
    """The file's names in Keras' order: the first of ``wanted`` that they equal as a set."""
    for names in wanted:
        if set(names) == set(file_names) and len(names) == len(file_names):
            return names
    raise VerificationError(
        f"{path} has {kind}s named {sorted(file_names)}, the model {wanted[0]}. Fix: it "
        "was exported from another model; export again."
    )


class _TFLiteSignature:
    """A multi-input/output .tflite file, its tensors found through its signature."""

    def __init__(self, artifact: ExportedArtifact, tensors: ModelTensors, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(artifact.path), num_threads=threads)
        signatures = self._interpreter.get_signature_list()
        if SIGNATURE_KEY not in signatures:
            raise VerificationError(
                f"{artifact.path} has no {SIGNATURE_KEY!r} signature (it has "
                f"{sorted(signatures)}), so its tensors cannot be matched to the model's. "
                "Fix: export it with kprune.export_tflite."
            )
        inputs, outputs = _signature_details(self._interpreter)
        input_keys = _match(artifact.path, "input", inputs, [tensors.input_names])
        count = len(tensors.outputs)
        output_keys = _match(
            artifact.path,
            "output",
            outputs,
            [[f"output_{i}" for i in range(count)], [t.name for t in tensors.outputs]],
        )
        self._inputs = [inputs[key] for key in input_keys]
        self._outputs = [outputs[key] for key in output_keys]
        _check_shapes(artifact.path, [d["shape_signature"] for d in self._inputs], tensors)
        self._shapes = [tuple(d["shape"]) for d in self._inputs]
        self._interpreter.allocate_tensors()

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        shapes = [tuple(values.shape) for values in inputs]
        if shapes != self._shapes:  # a new batch size
            for details, shape in zip(self._inputs, shapes):
                self._interpreter.resize_tensor_input(details["index"], list(shape))
            self._interpreter.allocate_tensors()
            self._shapes = shapes
        for details, values in zip(self._inputs, inputs):
            self._interpreter.set_tensor(details["index"], _to_file(values, details))
        self._interpreter.invoke()
        return [
            _from_file(self._interpreter.get_tensor(details["index"]), details) for details in self._outputs
        ]


def _signature_details(interpreter) -> tuple[dict, dict]:
    # The signature runner holds views of the interpreter's tensors, which forbid
    # resizing them: read its details and let it go.
    signature = interpreter.get_signature_runner(SIGNATURE_KEY)
    details = signature.get_input_details(), signature.get_output_details()
    del signature
    return details


def _to_file(values: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details.get("quantization", (0.0, 0))
    if dtype.kind != "i" or not scale or np.issubdtype(values.dtype, np.integer):
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _from_file(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details.get("quantization", (0.0, 0))
    if np.dtype(details["dtype"]).kind != "i" or not scale:
        return np.array(values)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class _OnnxByName:
    """A multi-input/output .onnx file, its tensors found by name."""

    def __init__(self, artifact: ExportedArtifact, tensors: ModelTensors, threads: int | None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(artifact.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFileError(f"Cannot load {artifact.path}: {error}") from error
        input_names, output_names = onnx_names(tensors)
        by_name = {value.name: value for value in self._session.get_inputs()}
        self._input_names = _match(artifact.path, "input", by_name, [input_names])
        self._output_names = _match(
            artifact.path,
            "output",
            [value.name for value in self._session.get_outputs()],
            [output_names],
        )
        _check_shapes(artifact.path, [by_name[name].shape for name in self._input_names], tensors)
        self._dtypes = [tensor.dtype for tensor in tensors.inputs]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        feed = {
            name: values.astype(dtype, copy=False)
            for name, values, dtype in zip(self._input_names, inputs, self._dtypes)
        }
        return [np.asarray(values) for values in self._session.run(self._output_names, feed)]
