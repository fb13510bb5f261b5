"""export_tflite: every precision, builtin ops only, numerics against Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.export import export_tflite, tflite_ops
from tests.export.conftest import QUANTIZE_MODES, collect_examples, keras_probabilities


def run_litert(path, images: np.ndarray) -> np.ndarray:
    """Runs a .tflite file with ai_edge_litert's interpreter directly, image by image."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for image in images:
        values = image[np.newaxis]
        if source["dtype"] == np.int8:
            scale, zero_point = source["quantization"]
            values = np.clip(np.round(values / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], values)
        interpreter.invoke()
        result = interpreter.get_tensor(target["index"])[0]
        if target["dtype"] == np.int8:
            scale, zero_point = target["quantization"]
            result = (result.astype(np.float32) - zero_point) * scale
        outputs.append(result)
    return np.stack(outputs)


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_every_mode_converts_to_builtin_ops_only(exported, mode):
    artifact = exported[mode]

    assert artifact.path.is_file() and artifact.size_bytes == artifact.path.stat().st_size
    assert artifact.quantize == mode
    assert not [op for op in artifact.ops if op.startswith("Flex") or op == "CUSTOM"]
    assert artifact.ops["CONV_2D"] == 2 and artifact.ops["FULLY_CONNECTED"] == 1
    assert artifact.input.shape == (-1, 16, 16, 3) and artifact.output.shape == (-1, 10)


def test_ops_are_counted_from_the_flatbuffer(exported):
    content = exported["none"].path.read_bytes()

    # Two Conv2D (BatchNorm and ReLU fused in), one Dense, one softmax, two pools.
    ops = tflite_ops(content)

    assert ops["CONV_2D"] == 2 and ops["MAX_POOL_2D"] == 2 and ops["SOFTMAX"] == 1
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops


def test_fp32_matches_keras_within_1e_4(exported, trained_cnn, synthetic_test):
    images, _ = collect_examples(synthetic_test, 64)

    outputs = run_litert(exported["none"].path, images)

    assert np.max(np.abs(outputs - keras_probabilities(trained_cnn, images))) <= 1e-4


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int8"])
def test_quantized_modes_keep_top1_agreement(exported, trained_cnn, synthetic_test, mode):
    images, labels = collect_examples(synthetic_test, 160)
    reference = keras_probabilities(trained_cnn, images).argmax(-1)

    outputs = run_litert(exported[mode].path, images)

    assert np.mean(outputs.argmax(-1) == reference) >= 0.98
    assert np.mean(reference == labels) == 1.0  # the fixture model did learn


def test_quantized_files_are_smaller(exported):
    sizes = {mode: exported[mode].size_bytes for mode in QUANTIZE_MODES}

    assert sizes["int8"] < sizes["float16"] < sizes["none"]
    assert sizes["dynamic"] < sizes["none"]


def test_int8_with_float_io_records_internal_quantization(exported):
    artifact = exported["int8"]

    assert artifact.input.dtype == "float32" and artifact.input.quantization is None
    assert set(artifact.quantized_io) == {"input", "output"}
    assert artifact.quantized_io["input"]["scale"] > 0
    assert artifact.ops["QUANTIZE"] >= 1 and artifact.ops["DEQUANTIZE"] >= 1


def test_int8_io_gives_int8_tensors(trained_cnn, synthetic_train, synthetic_test, tmp_path):
    artifact = export_tflite(
        trained_cnn, tmp_path / "io.tflite", "int8", synthetic_train, num_samples=200, int8_io=True
    )
    images, _ = collect_examples(synthetic_test, 64)

    outputs = run_litert(artifact.path, images)

    assert artifact.input.dtype == "int8" and artifact.output.dtype == "int8"
    scale, _ = artifact.input.quantization
    assert 0 < scale < 1
    reference = keras_probabilities(trained_cnn, images).argmax(-1)
    assert np.mean(outputs.argmax(-1) == reference) >= 0.98


def test_batch_dimension_is_dynamic(exported, trained_cnn, synthetic_test):
    from kprune.export.templates.kprune_runtime import TFLiteModel

    images, _ = collect_examples(synthetic_test, 7)
    model = TFLiteModel(exported["none"].path)

    outputs = model.predict(images)

    assert outputs.shape == (7, 10)
    np.testing.assert_allclose(outputs, keras_probabilities(trained_cnn, images), atol=1e-4)


def test_int8_needs_representative_data(trained_cnn, tmp_path):
    with pytest.raises(InvalidArgumentError, match="representative_data"):
        export_tflite(trained_cnn, tmp_path / "m.tflite", "int8")
    assert not list(tmp_path.iterdir())


def test_representative_data_must_fit_the_input(trained_cnn, tmp_path):
    wrong = np.zeros((8, 28, 28, 1), np.float32)

    with pytest.raises(InvalidArgumentError, match=r"\(28, 28, 1\).*\(16, 16, 3\)"):
        export_tflite(trained_cnn, tmp_path / "m.tflite", "int8", wrong)


def test_unknown_mode_and_bad_path_are_refused(trained_cnn, tmp_path):
    with pytest.raises(InvalidArgumentError, match="quantize='int4'"):
        export_tflite(trained_cnn, tmp_path / "m.tflite", "int4")
    with pytest.raises(InvalidArgumentError, match=r"must end in \.tflite"):
        export_tflite(trained_cnn, tmp_path / "m.onnx")
    with pytest.raises(InvalidArgumentError, match="int8_io"):
        export_tflite(trained_cnn, tmp_path / "m.tflite", int8_io=True)


def determinant_model() -> keras.Model:
    """A 4×4×1 "image" classifier whose Lambda needs tf.linalg.det (no TFLite builtin)."""
    inputs = keras.Input((4, 4, 1))
    matrices = keras.layers.Reshape((4, 4))(inputs)
    determinant = keras.layers.Lambda(lambda t: tf.expand_dims(tf.linalg.det(t), -1))(matrices)
    return keras.Model(inputs, keras.layers.Dense(3)(determinant))


def test_ops_outside_the_builtins_are_refused_by_name(tmp_path):
    with pytest.raises(UnsupportedModelError, match="builtins: MatrixDeterminant"):
        export_tflite(determinant_model(), tmp_path / "flex.tflite")
    assert not list(tmp_path.iterdir())


def test_flex_ops_only_when_allowed_and_then_listed(tmp_path):
    artifact = export_tflite(determinant_model(), tmp_path / "flex.tflite", allow_flex_ops=True)

    assert artifact.ops["FlexMatrixDeterminant"] == 1
