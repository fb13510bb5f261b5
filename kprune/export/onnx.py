"""Keras → ONNX through tf2onnx's ``from_function``, with a dynamic batch dimension.

``tf2onnx.convert.from_keras`` breaks on Sequential and reloaded models, so
the model is wrapped in a ``tf.function`` whose input signature leaves the
batch dimension open. The result passes ``onnx.checker`` before it is written.

Tensor names (`onnx_names`): a model with one input and one output gets
``"input"`` and ``"output"``; others keep the Keras input names and the names
of the output layers, so that files and models map onto each other by name.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import keras

from kprune.errors import InvalidArgumentError, ModelFileError, UnsupportedModelError
from kprune.export.artifact import (
    ExportedArtifact,
    ModelTensors,
    TensorInfo,
    check_suffix,
    model_tensors,
    resolve_model,
    structured_inputs,
)
from kprune.files import write_atomically
from kprune.graph.rebuild import for_inference

INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"
MIN_OPSET = 13  # onnxruntime releases of the last years all read 13 and later

_ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16"}


def export_onnx(
    model: str | os.PathLike | keras.Model,
    path: str | os.PathLike,
    opset: int | None = None,
) -> ExportedArtifact:
    """Converts a Keras model to an ``.onnx`` file with a dynamic batch size.

    Args:
        model: A ``keras.Model`` or the path of a ``.keras`` file.
        path: Where to write; must end in ``.onnx``. Written atomically.
        opset: ONNX opset; defaults to tf2onnx's preferred one (15 with
            tf2onnx 1.17, readable by onnxruntime 1.10 and later).

    Returns:
        The `ExportedArtifact`. One input and one output are named ``"input"``
        and ``"output"`` (e.g. ``(batch, H, W, C)`` → ``(batch, classes)``);
        several keep their Keras names (see `onnx_names`).

    Raises:
        InvalidArgumentError: On an opset out of range or a path not ending in ``.onnx``.
        UnsupportedModelError: If tf2onnx cannot convert the model or the
            result fails ``onnx.checker``.

    Example:
        >>> export_onnx(model, "model.onnx", opset=17)
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    path = check_suffix(path, ".onnx")
    max_opset = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if opset is not None and not MIN_OPSET <= opset <= max_opset:
        raise InvalidArgumentError(
            f"`opset` must be in [{MIN_OPSET}, {max_opset}] (what tf2onnx "
            f"{tf2onnx.__version__} writes). Received opset={opset}."
        )
    network, _ = resolve_model(model)
    network = for_inference(network)  # no augmentation layers in the file
    tensors = model_tensors(network)
    input_names, output_names = onnx_names(tensors)
    signature = tuple(
        tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name=name)
        for tensor, name in zip(tensors.inputs, input_names)
    )

    @tf.function(input_signature=signature)
    def forward(*inputs):
        structured = structured_inputs(network, list(inputs))
        outputs = keras.tree.flatten(network(structured, training=False))
        return dict(zip(output_names, outputs))

    try:
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises many types
        details = " ".join(str(error).split())[:600]
        raise UnsupportedModelError(
            f"ONNX conversion of {network.name!r} failed: {type(error).__name__}: {details}."
        ) from error
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise UnsupportedModelError(
            f"The ONNX model converted from {network.name!r} fails onnx.checker: {error}"
        ) from error
    write_atomically(path, proto.SerializeToString())
    return describe_onnx(path)


def onnx_names(tensors: ModelTensors) -> tuple[list[str], list[str]]:
    """The ONNX input and output names of a model's export, in Keras' order."""
    if tensors.single:
        return [INPUT_NAME], [OUTPUT_NAME]
    return tensors.input_names, [tensor.name for tensor in tensors.outputs]


def describe_onnx(path: str | os.PathLike) -> ExportedArtifact:
    """Reads tensors, operators and opset of an ``.onnx`` file.

    Raises:
        ModelFileError: If the file is not a readable ONNX model.
    """
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf DecodeError and others
        raise ModelFileError(
            f"{path} is not a readable ONNX model ({type(error).__name__}). "
            "Fix: export it again with `kprune export`."
        ) from error
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    opset = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)
    ops = Counter(node.op_type for node in proto.graph.node)
    return ExportedArtifact(
        path=path,
        format="onnx",
        quantize="none",
        inputs=tuple(_tensor_info(value) for value in inputs),
        outputs=tuple(_tensor_info(value) for value in proto.graph.output),
        ops=dict(sorted(ops.items())),
        size_bytes=path.stat().st_size,
        opset=opset,
    )


def _tensor_info(value) -> TensorInfo:
    tensor_type = value.type.tensor_type
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim)
    return TensorInfo(
        name=value.name,
        shape=shape,
        dtype=_ELEMENT_TYPES.get(tensor_type.elem_type, f"onnx_type_{tensor_type.elem_type}"),
    )
