"""Export of models that are not image classifiers: Conv1D series (N, T, C), Conv3D
volumes (N, D, H, W, C), and a functional model with two inputs and two outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kprune.bench import benchmark
from kprune.errors import InvalidArgumentError, UnsupportedModelError, VerificationError
from kprune.export import export_model, export_onnx, export_tflite, verify_export, write_bundle

SAMPLES = 100


def _decisive(seed: int) -> keras.initializers.Initializer:
    # Wide logits: the top class of random inputs is clear, so int8 agreement is meaningful.
    return keras.initializers.RandomNormal(stddev=1.5, seed=seed)


def series_classifier(seed: int = 0) -> keras.Model:
    """Conv1D on (batch, 24 steps, 3 channels) → 4 class probabilities."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((24, 3), name="series")
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(4, activation="softmax", kernel_initializer=_decisive(seed), name="classes")(
        x
    )
    return keras.Model(inputs, outputs, name="series_classifier")


def volume_classifier(seed: int = 0) -> keras.Model:
    """Conv3D on (batch, 6, 8, 8, 2) volumes → 3 logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 8, 8, 2), name="volume")
    x = keras.layers.Conv3D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    outputs = keras.layers.Dense(3, kernel_initializer=_decisive(seed), name="logits")(x)
    return keras.Model(inputs, outputs, name="volume_classifier")


def two_by_two(seed: int = 0) -> keras.Model:
    """Inputs ``series`` (12, 3) and ``extra`` (5,); outputs ``classes`` (softmax) and
    ``values`` (two regression values)."""
    keras.utils.set_random_seed(seed)
    series = keras.Input((12, 3), name="series")
    extra = keras.Input((5,), name="extra")
    x = keras.layers.Conv1D(6, 3, activation="relu", name="conv")(series)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    joined = keras.layers.Concatenate(name="join")([x, extra])
    classes = keras.layers.Dense(3, activation="softmax", kernel_initializer=_decisive(seed), name="classes")(
        joined
    )
    values = keras.layers.Dense(2, name="values")(joined)
    return keras.Model([series, extra], [classes, values], name="two_by_two")


BUILDERS = {"series": series_classifier, "volume": volume_classifier, "two": two_by_two}


def random_inputs(model: keras.Model, count: int = SAMPLES, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(count, *t.shape[1:])).astype("float32") for t in model.inputs]


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory) -> dict:
    """Name → (fp32 .tflite, int8 .tflite, .onnx); int8 calibrated on the user's arrays
    in three forms: one array, an (x, y) tuple, a dict keyed by input name."""
    folder = tmp_path_factory.mktemp("any_model")
    calibration = {
        "series": random_inputs(models["series"], seed=2)[0],
        "volume": (random_inputs(models["volume"], seed=2)[0], np.zeros(SAMPLES)),
        "two": dict(zip(["series", "extra"], random_inputs(models["two"], seed=2))),
    }
    artifacts = {}
    for name, model in models.items():
        artifacts[name] = (
            export_tflite(model, folder / f"{name}.tflite"),
            export_tflite(model, folder / f"{name}_int8.tflite", "int8", calibration[name]),
            export_onnx(model, folder / f"{name}.onnx"),
        )
    return artifacts


def test_artifacts_describe_every_input_and_output(exported):
    series, volume, two = (exported[name] for name in ("series", "volume", "two"))

    assert series[0].input.shape == (-1, 24, 3) and series[0].output.shape == (-1, 4)
    assert volume[2].input.shape == (-1, 6, 8, 8, 2) and volume[2].output.shape == (-1, 3)
    assert series[1].quantize == "int8" and volume[1].quantize == "int8"
    tflite, int8, onnx = two
    assert sorted(t.shape for t in tflite.inputs) == [(-1, 5), (-1, 12, 3)]
    assert sorted(t.shape for t in tflite.outputs) == [(-1, 2), (-1, 3)]
    assert [t.name for t in onnx.inputs] == ["series", "extra"]
    assert sorted(t.name for t in onnx.outputs) == ["classes", "values"]
    assert int8.quantize == "int8" and set(int8.quantized_io) == {"inputs", "outputs"}
    # One input and one output keep the bundle manifest's keys; several are lists.
    assert {"input", "output"} <= set(series[0].to_dict())
    assert {"inputs", "outputs"} <= set(onnx.to_dict()) and "input" not in onnx.to_dict()
    with pytest.raises(AttributeError, match="has 2 inputs"):
        onnx.input


def keras_reference(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]


def test_tflite_signature_outputs_are_keras_outputs_by_name(models, exported):
    """Read independently of kprune's runner: the signature keys map onto Keras' outputs."""
    from ai_edge_litert.interpreter import Interpreter

    inputs = random_inputs(models["two"], count=4)
    interpreter = Interpreter(model_path=str(exported["two"][0].path))
    outputs = interpreter.get_signature_runner("serving_default")(series=inputs[0], extra=inputs[1])
    classes, values = keras_reference(models["two"], inputs)
    np.testing.assert_allclose(outputs["output_0"], classes, atol=1e-5)
    np.testing.assert_allclose(outputs["output_1"], values, atol=1e-5)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_file_matches_keras(models, exported, name):
    model = models[name]
    inputs = random_inputs(model)
    data = inputs[0] if len(inputs) == 1 else inputs

    report = verify_export(model, list(exported[name]), data, samples=SAMPLES)

    fp32, int8, onnx = report.checks
    assert report.passed and report.samples == SAMPLES
    assert fp32.max_abs_diff <= 1e-4 and onnx.max_abs_diff <= 1e-4
    assert int8.top1_agreement >= 0.98
    if name == "two":  # the regression output is judged by its relative error
        assert 0 < int8.relative_error <= 0.1 and "relative error" in int8.criterion
        assert report.to_dict()["thresholds"]["max_relative_error"] == 0.1
    else:
        assert int8.relative_error is None


def test_a_file_of_another_model_fails_clearly(models, exported, tmp_path):
    stranger = two_by_two(seed=5)  # same inputs and outputs, other weights
    artifact = export_onnx(stranger, tmp_path / "stranger.onnx")
    inputs = random_inputs(models["two"], count=32)

    with pytest.raises(VerificationError, match=r"disagree .* stranger\.onnx \(fp32\): max abs"):
        verify_export(models["two"], [artifact], inputs)
    with pytest.raises(VerificationError, match=r"series\.onnx has 1 input\(s\) and 1 output"):
        verify_export(models["two"], [exported["series"][2]], inputs)


def test_quantized_regression_outputs_are_judged_by_relative_error(models, exported):
    inputs = random_inputs(models["two"], count=32)

    strict = verify_export(
        models["two"],
        [exported["two"][1]],
        inputs,
        max_relative_error=1e-6,
        raise_on_failure=False,
    )

    assert not strict.passed and "relative error ≤" in strict.checks[0].criterion


def test_user_data_must_fit_the_inputs(models, tmp_path):
    model = models["two"]
    series, extra = random_inputs(model, count=8)

    with pytest.raises(InvalidArgumentError, match=r"no values for input\(s\) \['extra'\]"):
        export_tflite(model, tmp_path / "m.tflite", "int8", {"series": series})
    with pytest.raises(InvalidArgumentError, match=r"input 'extra' examples of shape \(4,\)"):
        verify_export(model, [tmp_path / "unused.onnx"], [series, extra[:, :4]])
    with pytest.raises(InvalidArgumentError, match=r"gives 1 input array\(s\), the model takes 2"):
        verify_export(model, [tmp_path / "unused.onnx"], series)
    assert not list(tmp_path.iterdir())


def test_bench_times_a_model_of_two_inputs(models):
    report = benchmark(
        [models["two"]],
        runtimes=["keras", "tflite", "onnx"],
        batch_sizes=[3],
        threads=[1],
        warmup=1,
        repeats=2,
    )

    assert {m.runtime for m in report.measurements} == {"keras", "tflite", "onnx"}
    assert all(m.runs == 2 and m.median_ms > 0 for m in report.measurements)
    assert report.settings["input_shapes"] == [[12, 3], [5]]


def test_export_model_takes_the_users_npz(models, tmp_path):
    model = models["series"]
    (series,) = random_inputs(model, count=40)
    np.savez(tmp_path / "examples.npz", series=series, y=np.zeros(40, np.int64))

    result = export_model(
        model, tmp_path / "out", formats=["onnx"], data=tmp_path / "examples.npz", samples=40
    )

    assert result.verification.passed and result.verification.samples == 40
    assert (tmp_path / "out" / "series_classifier.onnx").is_file()
    with pytest.raises(UnsupportedModelError, match=r"named dataset .*--data FILE\.npz"):
        export_model(model, tmp_path / "again", formats=["onnx"])
    assert not (tmp_path / "again").exists()


def test_bundle_refuses_a_series_model_and_names_the_fix(models, tmp_path):
    with pytest.raises(
        UnsupportedModelError,
        match=r"`kprune bundle` supports image models only.*\(None, 24, 3\).*kprune export",
    ):
        write_bundle(models["series"], tmp_path / "bundle", dataset="synthetic")
    assert not list(tmp_path.iterdir())
