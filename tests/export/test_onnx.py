"""export_onnx: onnx.checker, dynamic batch, opset, numerics against Keras."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime
import pytest

from kprune.errors import InvalidArgumentError
from kprune.export import export_onnx
from tests.export.conftest import collect_examples, keras_probabilities


def run_onnxruntime(path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@pytest.mark.parametrize("batch", [1, 7])
def test_matches_keras_within_1e_4_at_any_batch_size(exported, trained_cnn, synthetic_test, batch):
    images, _ = collect_examples(synthetic_test, batch)

    outputs = run_onnxruntime(exported["onnx"].path, images)

    assert outputs.shape == (batch, 10)
    assert np.max(np.abs(outputs - keras_probabilities(trained_cnn, images))) <= 1e-4


def test_batch_dimension_is_symbolic_and_model_passes_checker(exported):
    proto = onnx.load(str(exported["onnx"].path))

    onnx.checker.check_model(proto, full_check=True)
    for value in (proto.graph.input[0], proto.graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [16, 16, 3]
    assert exported["onnx"].input.name == "input" and exported["onnx"].output.name == "output"
    assert exported["onnx"].ops["Conv"] == 2


def test_opset_is_configurable(trained_cnn, tmp_path):
    artifact = export_onnx(trained_cnn, tmp_path / "m.onnx", opset=17)

    proto = onnx.load(str(artifact.path))
    assert artifact.opset == 17
    assert [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")] == [17]


def test_opset_out_of_range_is_refused(trained_cnn, tmp_path):
    with pytest.raises(InvalidArgumentError, match="opset=7"):
        export_onnx(trained_cnn, tmp_path / "m.onnx", opset=7)
    with pytest.raises(InvalidArgumentError, match=r"must end in \.onnx"):
        export_onnx(trained_cnn, tmp_path / "m.tflite")
    assert not list(tmp_path.iterdir())


def test_sequential_and_reloaded_models_convert(trained_cnn, synthetic_test, tmp_path):
    # tf2onnx's from_keras breaks on both; from_function must not.
    keras.utils.set_random_seed(1)
    sequential = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    trained_cnn.save(tmp_path / "saved.keras")
    reloaded = keras.models.load_model(tmp_path / "saved.keras")
    images, _ = collect_examples(synthetic_test, 8)

    for name, model in (("sequential", sequential), ("reloaded", reloaded)):
        artifact = export_onnx(model, tmp_path / f"{name}.onnx")
        outputs = run_onnxruntime(artifact.path, images)
        assert np.max(np.abs(outputs - keras_probabilities(model, images))) <= 1e-4
