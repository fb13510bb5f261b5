"""verify_export: real runtimes against Keras; tampered files and violated thresholds fail."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import kprune
from kprune.errors import InvalidArgumentError, ModelFileError, VerificationError
from kprune.export import export_onnx, export_tflite, verify_export
from tests.export.conftest import QUANTIZE_MODES, collect_examples, make_position_cnn, synthetic


def test_every_mode_passes_and_reports_numbers(exported, trained_cnn, synthetic_test):
    report = verify_export(trained_cnn, list(exported.values()), synthetic_test, samples=160)

    assert report.passed and report.samples == 160
    assert report.keras_accuracy == 1.0
    by_name = {check.artifact.path.name: check for check in report.checks}
    assert set(by_name) == {f"model_{m}.tflite" for m in QUANTIZE_MODES} | {"model.onnx"}
    for name in ("model_none.tflite", "model.onnx"):
        assert by_name[name].max_abs_diff <= 1e-4 and by_name[name].accuracy == 1.0
        assert "max abs diff" in by_name[name].criterion
    assert by_name["model_int8.tflite"].top1_agreement >= 0.98
    assert "agreement" in by_name["model_int8.tflite"].criterion
    assert report.to_dict()["thresholds"] == {"max_abs_diff": 1e-4, "min_agreement": 0.98}


def test_tampered_tflite_fails(exported, trained_cnn, synthetic_test, copy_of):
    tampered = copy_of(exported["none"].path)
    # The classifier's bias is stored verbatim in the flatbuffer: shift it.
    bias = trained_cnn.get_layer("classifier").bias.numpy().astype("<f4")
    content = tampered.read_bytes()
    offset = content.index(bias.tobytes())
    shifted = (bias + np.arange(10, dtype="<f4")).tobytes()
    tampered.write_bytes(content[:offset] + shifted + content[offset + len(shifted) :])

    with pytest.raises(VerificationError, match=r"model_none\.tflite \(fp32\): max abs diff .* FAILED"):
        verify_export(trained_cnn, [tampered], synthetic_test, samples=64)


def test_tampered_onnx_fails(exported, trained_cnn, synthetic_test, copy_of):
    tampered = copy_of(exported["onnx"].path)
    proto = onnx.load(str(tampered))
    weights = max(proto.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    values = numpy_helper.to_array(weights) * 1.5
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    onnx.save(proto, str(tampered))

    report = verify_export(trained_cnn, [tampered], synthetic_test, samples=64, raise_on_failure=False)

    assert not report.passed and report.checks[0].max_abs_diff > 1e-4
    with pytest.raises(VerificationError, match="model.onnx"):
        report.raise_for_failures()


def test_fp32_threshold_is_configurable(trained_cnn, synthetic_test, tmp_path):
    perturbed = keras.models.clone_model(trained_cnn)
    perturbed.set_weights([w + 1e-3 for w in trained_cnn.get_weights()])
    artifact = export_tflite(perturbed, tmp_path / "perturbed.tflite")

    strict = verify_export(trained_cnn, [artifact], synthetic_test, samples=64, raise_on_failure=False)
    loose = verify_export(trained_cnn, [artifact], synthetic_test, samples=64, max_abs_diff=0.5)

    assert not strict.passed and strict.checks[0].max_abs_diff > 1e-4
    assert loose.passed


def test_int8_agreement_below_threshold_fails(trained_cnn, synthetic_train, synthetic_test, tmp_path):
    # Same shapes, other weights: an int8 file that does not come from this model.
    keras.utils.set_random_seed(7)
    stranger = make_position_cnn()
    artifact = export_tflite(stranger, tmp_path / "stranger_int8.tflite", "int8", synthetic_train)

    with pytest.raises(VerificationError, match=r"stranger_int8\.tflite \(int8\).*agreement"):
        verify_export(trained_cnn, [artifact], synthetic_test, samples=160)
    lenient = verify_export(
        trained_cnn,
        [artifact],
        synthetic_test,
        samples=160,
        min_agreement=0.01,
        raise_on_failure=False,
    )
    assert lenient.checks[0].top1_agreement < 0.98


def test_file_of_another_input_shape_is_named(trained_cnn, synthetic_test, tmp_path):
    other = make_position_cnn(input_shape=(8, 8, 3))
    artifact = export_onnx(other, tmp_path / "other.onnx")

    with pytest.raises(VerificationError, match=r"other\.onnx expects inputs of shape \(8, 8, 3\)"):
        verify_export(trained_cnn, [artifact], synthetic_test, samples=8)


def test_corrupt_and_missing_files_are_model_file_errors(trained_cnn, synthetic_test, tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all" * 10)

    with pytest.raises(ModelFileError, match="corrupt.tflite is not a readable TFLite model"):
        verify_export(trained_cnn, [corrupt], synthetic_test)
    with pytest.raises(ModelFileError, match="does not exist"):
        verify_export(trained_cnn, [tmp_path / "missing.onnx"], synthetic_test)


def test_thresholds_and_inputs_are_validated(trained_cnn, exported, synthetic_test):
    files = [exported["onnx"]]
    with pytest.raises(InvalidArgumentError, match="min_agreement=1.5"):
        verify_export(trained_cnn, files, synthetic_test, min_agreement=1.5)
    with pytest.raises(InvalidArgumentError, match="max_abs_diff=0"):
        verify_export(trained_cnn, files, synthetic_test, max_abs_diff=0)
    with pytest.raises(InvalidArgumentError, match=r"\(28, 28, 1\)"):
        verify_export(trained_cnn, files, synthetic("test", input_shape=(28, 28, 1)))
    with pytest.raises(InvalidArgumentError, match="empty"):
        verify_export(trained_cnn, [], synthetic_test)


def test_arrays_without_labels_give_no_accuracy(exported, trained_cnn, synthetic_test):
    images, _ = collect_examples(synthetic_test, 16)

    report = verify_export(trained_cnn, [exported["onnx"]], images)

    assert report.keras_accuracy is None and report.checks[0].accuracy is None


def he_initialized_squeezenet() -> keras.Model:
    """SqueezeNet 1.1 (cifar stem) with He-normal kernels, so that logits are O(1).

    With Keras' default init the logits of an untrained SqueezeNet are ~1e-3,
    and a 1e-4 tolerance would test nothing.
    """
    model = kprune.models.squeezenet(
        "1.1", input_shape=(32, 32, 3), num_classes=10, stem="cifar", classifier_activation=None
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel
            fan_in = np.prod(kernel.shape[:-1])
            kernel.assign(rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape).astype("float32"))
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype("float32"))
    return model


@pytest.mark.slow
def test_squeezenet_before_and_after_surgery(tmp_path):
    """TFLite and ONNX of SqueezeNet match Keras before and after filter removal."""
    surgery = pytest.importorskip(
        "kprune.surgery", reason="kprune.surgery.remove_filters is not available yet"
    )
    original = he_initialized_squeezenet()
    pruned = surgery.remove_filters(
        original,
        {
            "fire2_squeeze1x1": [0, 5],
            "fire4_expand3x3": list(range(0, 128, 3)),
            "fire9_expand1x1": list(range(64)),
        },
    )
    data = synthetic("test", input_shape=(32, 32, 3), limit=32)
    images, _ = collect_examples(data, 32)
    assert np.abs(np.asarray(original(images))).max() > 0.1  # logits big enough to compare

    sizes = {}
    for name, model in (("original", original), ("pruned", pruned)):
        files = [
            export_tflite(model, tmp_path / f"{name}.tflite"),
            export_onnx(model, tmp_path / f"{name}.onnx"),
        ]
        report = verify_export(model, files, data, samples=32)
        assert report.passed and max(c.max_abs_diff for c in report.checks) <= 1e-4
        sizes[name] = files[0].size_bytes
    assert kprune.count_flops(pruned) < kprune.count_flops(original)
    assert sizes["pruned"] < sizes["original"]
