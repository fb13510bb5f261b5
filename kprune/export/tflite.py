"""Keras → TFLite through a SavedModel, fp32 / float16 / dynamic-range / full int8.

The converter reads a SavedModel written by ``model.export(..., "tf_saved_model")``
(not ``from_keras_model``) and is limited to TFLite builtin operators: the
runtimes on embedded boards do not carry the Flex (select TensorFlow) ops.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from kprune.errors import FileWriteError, InvalidArgumentError, ModelFileError, UnsupportedModelError
from kprune.export.artifact import (
    QUANTIZE_MODES,
    ExportedArtifact,
    TensorInfo,
    check_suffix,
    model_tensors,
    resolve_model,
)
from kprune.export.examples import collect_inputs
from kprune.files import refused_write, write_atomically
from kprune.graph.rebuild import for_inference

DEFAULT_REPRESENTATIVE_SAMPLES = 300
# Layers whose input activation and weights tell how a model was quantized.
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def export_tflite(
    model: str | os.PathLike | keras.Model,
    path: str | os.PathLike,
    quantize: str = "none",
    representative_data: Any = None,
    *,
    num_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES,
    int8_io: bool = False,
    allow_flex_ops: bool = False,
) -> ExportedArtifact:
    """Converts a Keras model to a ``.tflite`` file of builtin operators only.

    Args:
        model: A ``keras.Model`` or the path of a ``.keras`` file.
        path: Where to write; must end in ``.tflite``. Written atomically.
        quantize: ``"none"`` (float32), ``"float16"`` (float16 weights),
            ``"dynamic"`` (int8 weights, float activations) or ``"int8"``
            (full-integer post-training quantization).
        representative_data: Real, preprocessed examples for ``"int8"``
            calibration, shaped like the model's inputs: an array (one input,
            e.g. images ``(N, H, W, C)`` or series ``(N, T, C)``), a list of
            arrays (one per input, in ``model.inputs`` order), a dict of arrays
            keyed by input name, an ``(x, y)`` tuple, a ``tf.data.Dataset`` of
            ``x`` or ``(x, y)`` elements, or a `kprune.data.Split`.
        num_samples: How many examples of ``representative_data`` calibrate.
        int8_io: With ``"int8"``, make the input and output int8 tensors too
            (the caller quantizes with the input's scale and zero point);
            otherwise they stay float32.
        allow_flex_ops: Let the converter fall back on TensorFlow (Flex) ops.
            The file then needs a TFLite runtime with Flex delegates, which
            embedded runtimes lack.

    Returns:
        The `ExportedArtifact`; ``.ops`` lists every operator the file uses.

    Raises:
        InvalidArgumentError: On an unknown mode, a missing or mismatched
            representative dataset, or a path not ending in ``.tflite``.
        UnsupportedModelError: If the model needs operators that TFLite
            builtins do not have.

    Example:
        >>> calibration = kprune.data.load("fashion_mnist", "train", limit=300)
        >>> export_tflite(model, "model_int8.tflite", "int8", calibration)
    """
    path = check_suffix(path, ".tflite")
    if quantize not in QUANTIZE_MODES:
        raise InvalidArgumentError(
            f"`quantize` must be one of {QUANTIZE_MODES}. Received quantize={quantize!r}."
        )
    if int8_io and quantize != "int8":
        raise InvalidArgumentError(f"`int8_io` needs quantize='int8'. Received quantize={quantize!r}.")
    network, _ = resolve_model(model)
    network = for_inference(network)  # no augmentation layers in the file
    tensors = model_tensors(network)
    calibration = None
    if quantize == "int8":
        if representative_data is None:
            raise InvalidArgumentError(
                "quantize='int8' needs `representative_data`: a few hundred real, "
                "preprocessed examples, e.g. kprune.data.load('fashion_mnist', 'train', "
                "limit=300), or your own arrays shaped like the model's inputs. "
                "Calibrating on random data gives a useless model."
            )
        if num_samples < 1:
            raise InvalidArgumentError(f"`num_samples` must be positive. Received num_samples={num_samples}.")
        inputs, _ = collect_inputs(representative_data, tensors, num_samples, "representative_data")
        calibration = dict(zip(tensors.input_names, inputs))

    content = _convert(network, quantize, calibration, int8_io, allow_flex_ops)
    write_atomically(path, content)
    artifact = describe_tflite(path)
    flex = sorted(op for op in artifact.ops if op.startswith("Flex"))
    if flex and not allow_flex_ops:  # the converter should have refused; never ship it
        path.unlink()
        raise UnsupportedModelError(
            f"TFLite conversion of {network.name!r} produced Flex ops {flex}. "
            "Fix: replace the layers that need them."
        )
    return artifact


def _convert(
    network: keras.Model,
    quantize: str,
    calibration: dict[str, np.ndarray] | None,
    int8_io: bool,
    allow_flex_ops: bool,
) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kprune-savedmodel-") as saved_model:
        try:
            network.export(saved_model, format="tf_saved_model", verbose=False)
        except Exception as error:
            refusal = refused_write(error, Path(saved_model))  # the graph's size is unknown here
            if refusal is None:
                raise
            raise FileWriteError(
                f"{refusal} (TFLite conversion first writes the model as a SavedModel under the system's "
                "temporary folder; TMPDIR=FOLDER moves it.)"
            ) from error
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        _configure(converter, quantize, calibration, int8_io, allow_flex_ops)
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            raise UnsupportedModelError(_conversion_failure(network.name, str(error))) from error


def convert_small_model(
    network: keras.Model, quantize: str = "none", calibration: np.ndarray | None = None
) -> bytes:
    """TFLite content of a small one-input model built in memory, without a SavedModel.

    The latency profiler converts hundreds of single-layer models; converting a
    traced function directly takes about a third of the time of `export_tflite`
    and gives the same builtin operators (same converter settings).

    Args:
        network: A functional model with one input.
        quantize: As in `export_tflite`.
        calibration: Examples for ``"int8"``: one array per input, in order.
    """
    import tensorflow as tf

    spec = [tf.TensorSpec((1, *t.shape[1:]), t.dtype) for t in network.inputs]
    function = tf.function(lambda *x: network(list(x) if len(x) > 1 else x[0], training=False))
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Weights become constants, as in a SavedModel conversion (else the file reads variables).
    concrete = convert_variables_to_constants_v2(function.get_concrete_function(*spec))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], network)
    _configure(converter, quantize, None, False, False)
    if quantize == "int8":
        count = len(calibration[0])
        converter.representative_dataset = lambda: (
            [values[index : index + 1] for values in calibration] for index in range(count)
        )
    try:
        return converter.convert()
    except Exception as error:
        raise UnsupportedModelError(_conversion_failure(network.name, str(error))) from error


def _configure(converter, quantize, calibration, int8_io, allow_flex_ops) -> None:
    import tensorflow as tf

    builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
    ops = [builtins]
    if allow_flex_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: _calibration_samples(calibration)
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8


def _calibration_samples(calibration: dict[str, np.ndarray]) -> Iterator[list | dict]:
    """One example at a time: a list for one input, else a dict keyed by the
    SavedModel signature's input names (the Keras input names)."""
    names = list(calibration)
    count = len(calibration[names[0]])
    for index in range(count):
        if len(names) == 1:
            yield [calibration[names[0]][index : index + 1]]
        else:
            yield {name: values[index : index + 1] for name, values in calibration.items()}


def _conversion_failure(model_name: str, details: str) -> str:
    select_ops = re.search(r"TF Select ops: ([^\n]+)", details)
    if select_ops:
        return (
            f"TFLite conversion of {model_name!r} needs TensorFlow ops that are not TFLite "
            f"builtins: {select_ops.group(1).strip()}. Fix: replace the layers that use them. "
            "(allow_flex_ops=True / --allow-flex-ops converts, but the file then needs the "
            "Flex delegate, which embedded TFLite runtimes do not have.)"
        )
    summary = " ".join(details.split())[:600]
    return f"TFLite conversion of {model_name!r} failed: {summary}"


def tflite_ops(content: bytes) -> dict[str, int]:
    """Operator name → uses in a TFLite flatbuffer; custom ops by their code (``FlexConv2D``)."""
    model = _schema().Model.GetRootAs(content, 0)
    names = _builtin_names()
    codes = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    counts: Counter[str] = Counter()
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            counts[codes[graph.Operators(op_index).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def describe_tflite(path: str | os.PathLike) -> ExportedArtifact:
    """Reads tensors, operators and precision of a ``.tflite`` file.

    Raises:
        ModelFileError: If the file is not a readable TFLite model.
    """
    path = Path(path)
    content = path.read_bytes()
    try:
        schema = _schema()
        if not schema.Model.ModelBufferHasIdentifier(content, 0):
            raise ValueError("no TFL3 identifier")
        model = schema.Model.GetRootAs(content, 0)
        graph = model.Subgraphs(0)
        inputs = [_tensor_info(graph.Tensors(graph.Inputs(i))) for i in range(graph.InputsLength())]
        outputs = [_tensor_info(graph.Tensors(graph.Outputs(i))) for i in range(graph.OutputsLength())]
        ops = tflite_ops(content)
        quantize = _precision(model, graph)
        quantized_io = _quantized_io(model, graph) if quantize == "int8" else None
    except Exception as error:  # flatbuffers raise IndexError, struct.error, ...
        raise ModelFileError(
            f"{path} is not a readable TFLite model ({type(error).__name__}: {error}). "
            "Fix: export it again with `kprune export`."
        ) from error
    return ExportedArtifact(
        path=path,
        format="tflite",
        quantize=quantize,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        ops=ops,
        size_bytes=len(content),
        quantized_io=quantized_io,
    )


def _precision(model, graph) -> str:
    types = _tensor_type_names()
    op_names = _builtin_names()
    activations, weights = set(), set()
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        if op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())) not in _WEIGHTED_OPS:
            continue
        activations.add(types[graph.Tensors(op.Inputs(0)).Type()])
        weights.add(types[graph.Tensors(op.Inputs(1)).Type()])
    all_types = {types[graph.Tensors(i).Type()] for i in range(graph.TensorsLength())}
    if activations & {"INT8", "UINT8", "INT16"}:
        return "int8"
    if weights & {"INT8", "UINT8"}:
        return "dynamic"
    if "FLOAT16" in all_types:
        return "float16"
    return "none"


def _quantized_io(model, graph) -> dict | None:
    """Scale and zero point where float32 inputs/outputs meet the int8 graph."""
    op_names = _builtin_names()
    graph_inputs = {graph.Inputs(i) for i in range(graph.InputsLength())}
    graph_outputs = {graph.Outputs(i) for i in range(graph.OutputsLength())}
    found: dict[str, dict] = {"input": {}, "output": {}}
    for index in range(graph.OperatorsLength()):
        op = graph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name == "QUANTIZE" and op.Inputs(0) in graph_inputs:
            outer, inner, kind = op.Inputs(0), op.Outputs(0), "input"
        elif name == "DEQUANTIZE" and op.Outputs(0) in graph_outputs:
            outer, inner, kind = op.Outputs(0), op.Inputs(0), "output"
        else:
            continue
        quantization = _tensor_info(graph.Tensors(inner)).quantization
        if quantization is not None:
            tensor_name = graph.Tensors(outer).Name().decode()
            found[kind][tensor_name] = {"scale": quantization[0], "zero_point": quantization[1]}
    if len(graph_inputs) == 1 and len(graph_outputs) == 1:  # the bundle manifest's format
        values = {kind: next(iter(by_name.values())) for kind, by_name in found.items() if by_name}
    else:
        values = {f"{kind}s": by_name for kind, by_name in found.items() if by_name}
    return values or None


def _tensor_info(tensor) -> TensorInfo:
    dtype = _tensor_type_names()[tensor.Type()].lower()
    signature = tensor.ShapeSignatureAsNumpy()
    shape = signature if not isinstance(signature, int) and len(signature) else tensor.ShapeAsNumpy()
    quantization = None
    parameters = tensor.Quantization()
    if dtype in ("int8", "uint8", "int16") and parameters is not None and parameters.ScaleLength():
        quantization = (float(parameters.Scale(0)), int(parameters.ZeroPoint(0)))
    return TensorInfo(
        name=tensor.Name().decode(),
        shape=tuple(int(dim) for dim in shape),
        dtype=dtype,
        quantization=quantization,
    )


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _builtin_names() -> dict[int, str]:
    return _enum_names(_schema().BuiltinOperator)


def _tensor_type_names() -> dict[int, str]:
    return _enum_names(_schema().TensorType)


def _enum_names(enum) -> dict[int, str]:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}
