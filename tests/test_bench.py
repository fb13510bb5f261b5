"""benchmark(): alternation, statistics, speed-up vs FLOPs ratio, fp16/int8 files against the
fp32 baseline; never timed assertions."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import kprune
from kprune.bench import benchmark
from kprune.errors import InvalidArgumentError
from kprune.export.templates.kprune_profile import time_alternating
from tests.conftest import make_tiny_cnn


@pytest.fixture(scope="module")
def original_and_pruned():
    keras.utils.set_random_seed(0)
    original = make_tiny_cnn()
    pruned = kprune.remove_filters(original, {"conv_a": [0, 1, 2, 3], "conv_b": list(range(8))})
    return original, pruned


def test_measures_every_configuration_for_every_model(original_and_pruned):
    original, pruned = original_and_pruned

    report = benchmark(
        [original, pruned],
        runtimes=["keras", "tflite", "onnx"],
        batch_sizes=[1, 4],
        threads=[1],
        warmup=1,
        repeats=3,
    )

    assert [m.label for m in report.models] == ["tiny_cnn", "tiny_cnn'"]
    assert {m.precision for m in report.measurements} == {"fp32"}
    assert "calibration" not in report.settings
    keys = {(m.model, m.runtime, m.threads, m.batch) for m in report.measurements}
    expected = {
        (model, runtime, None if runtime == "keras" else 1, batch)
        for model in ("tiny_cnn", "tiny_cnn'")
        for runtime in ("keras", "tflite", "onnx")
        for batch in (1, 4)
    }
    assert keys == expected and len(report.measurements) == 12
    for m in report.measurements:
        assert m.runs == 3 and 0 < m.median_ms <= m.p90_ms
        assert m.throughput == pytest.approx(m.batch * 1000.0 / m.median_ms)


def test_speedups_pair_latency_ratio_with_flops_ratio(original_and_pruned):
    original, pruned = original_and_pruned

    report = benchmark(
        [original, pruned], runtimes=["tflite"], batch_sizes=[2], threads=[1], warmup=0, repeats=2
    )

    (row,) = report.speedups()
    by_model = {m.model: m for m in report.measurements}
    assert row["model"] == "tiny_cnn'" and row["baseline"] == "tiny_cnn"
    assert row["speedup"] == pytest.approx(by_model["tiny_cnn"].median_ms / by_model["tiny_cnn'"].median_ms)
    assert row["precision"] == "fp32" and row["speedup_over_fp32"] == row["speedup"]
    assert row["flops_ratio"] == pytest.approx(kprune.count_flops(original) / kprune.count_flops(pruned))
    assert row["flops_ratio"] > 1
    assert report.to_dict()["speedups"] == [row]


def test_models_alternate_and_the_first_rotates():
    calls = []
    runners = [lambda name=name: calls.append(name) for name in "abc"]

    timings = time_alternating(runners, warmup=2, repeats=3)

    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, model by model
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [len(t) for t in timings] == [3, 3, 3]


def test_all_cores_is_resolved_and_recorded(original_and_pruned):
    original, _ = original_and_pruned

    report = benchmark([original], runtimes=["onnx"], batch_sizes=[1], threads=[0], repeats=1)

    assert report.settings["threads"] == [os.cpu_count()]
    assert report.measurements[0].threads == os.cpu_count()
    assert report.speedups() == []
    assert report.environment["cpu_count"] == os.cpu_count()


def test_bad_settings_are_refused(original_and_pruned):
    original, _ = original_and_pruned
    other_shape = make_tiny_cnn(input_shape=(8, 8, 3))

    with pytest.raises(InvalidArgumentError, match="runtimes=\\['tensorrt'\\]"):
        benchmark([original], runtimes=["tensorrt"])
    with pytest.raises(InvalidArgumentError, match="same input shape"):
        benchmark([original, other_shape])
    with pytest.raises(InvalidArgumentError, match="repeats=0"):
        benchmark([original], repeats=0)
    with pytest.raises(InvalidArgumentError, match="empty"):
        benchmark([])


def _tensor_dtypes(path, shape) -> set:
    """The dtypes of the tensors of a shape in a .tflite file, read by the runtime."""
    interpreter = Interpreter(model_path=str(path))
    return {d["dtype"] for d in interpreter.get_tensor_details() if tuple(d["shape"]) == shape}


def _input_scale(path) -> float:
    """Scale of the int8 tensor the float32 input is quantized into."""
    interpreter = Interpreter(model_path=str(path))
    scales = [
        d["quantization"][0]
        for d in interpreter.get_tensor_details()
        if tuple(d["shape"]) == (1, 16, 16, 3) and d["dtype"] == np.int8
    ]
    assert len(scales) == 1
    return scales[0]


def test_fp16_and_int8_files_are_timed_against_the_fp32_baseline(original_and_pruned, tmp_path):
    original, pruned = original_and_pruned

    report = benchmark(
        [original, pruned],
        runtimes=["tflite", "onnx"],
        batch_sizes=[1],
        threads=[1],
        precisions=["fp32", "fp16", "int8"],
        warmup=0,
        repeats=2,
        files_dir=tmp_path,
    )

    keys = {(m.model, m.runtime, m.precision) for m in report.measurements}
    assert keys == {
        *(
            (model, "tflite", precision)
            for model in ("tiny_cnn", "tiny_cnn'")
            for precision in ("fp32", "fp16", "int8")
        ),
        ("tiny_cnn", "onnx", "fp32"),
        ("tiny_cnn'", "onnx", "fp32"),
    }
    assert report.settings["precisions"] == ["fp32", "fp16", "int8"]
    assert report.settings["calibration"] == "random inputs (latency only; accuracy not meaningful)"
    median = {(m.model, m.runtime, m.precision): m.median_ms for m in report.measurements}
    rows = {(r["model"], r["runtime"], r["precision"]): r for r in report.speedups()}
    assert set(rows) == keys - {("tiny_cnn", "tflite", "fp32"), ("tiny_cnn", "onnx", "fp32")}
    for (model, runtime, precision), row in rows.items():
        fp32_baseline = median[("tiny_cnn", runtime, "fp32")]
        latency = median[(model, runtime, precision)]
        assert row["speedup_over_fp32"] == pytest.approx(fp32_baseline / latency)
        if model == "tiny_cnn":  # the first model is the baseline of its own precision
            assert row["speedup"] is None and row["flops_ratio"] == 1.0
        else:
            same_precision = median[("tiny_cnn", runtime, precision)]
            assert row["speedup"] == pytest.approx(same_precision / latency)
    assert report.to_dict()["speedups"] == report.speedups()

    files = {(f["model"], f["runtime"], f["precision"]): f for f in report.to_dict()["files"]}
    assert {k: f["quantize"] for k, f in files.items() if k[1] == "tflite"} == {
        (model, "tflite", p): q
        for model in ("tiny_cnn", "tiny_cnn'")
        for p, q in (("fp32", "none"), ("fp16", "float16"), ("int8", "int8"))
    }
    for f in files.values():
        assert f["size_bytes"] == (tmp_path / f["file"]).stat().st_size
    # The runtime's own view of the kept files: conv_b's kernel, (out, h, w, in) in TFLite.
    kernel = (16, 3, 3, 8)
    fp32_file, fp16_file, int8_file = (
        tmp_path / files[("tiny_cnn", "tflite", precision)]["file"] for precision in ("fp32", "fp16", "int8")
    )
    assert _tensor_dtypes(fp32_file, kernel) == {np.float32}
    assert np.float16 in _tensor_dtypes(fp16_file, kernel)
    assert _tensor_dtypes(int8_file, kernel) == {np.int8}
    assert np.int8 in _tensor_dtypes(int8_file, (1, 16, 16, 3))  # the input, quantized
    assert Interpreter(model_path=str(int8_file)).get_input_details()[0]["dtype"] == np.float32


def test_int8_is_calibrated_on_the_given_examples(original_and_pruned, tmp_path):
    original, _ = original_and_pruned
    examples = np.random.default_rng(1).uniform(0, 100, (40, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "examples.npz", x=examples)

    report = benchmark(
        [original],
        runtimes=["tflite"],
        batch_sizes=[1],
        threads=[1],
        precisions=["fp32", "int8"],
        calibration_data=str(tmp_path / "examples.npz"),
        calibration_samples=40,
        warmup=0,
        repeats=1,
        files_dir=tmp_path / "files",
    )
    random = benchmark(
        [original],
        runtimes=["tflite"],
        batch_sizes=[1],
        threads=[1],
        precisions=["fp32", "int8"],
        calibration_samples=40,
        warmup=0,
        repeats=1,
        files_dir=tmp_path / "random",
    )

    assert report.settings["calibration"] == str(tmp_path / "examples.npz")
    assert random.settings["calibration"].startswith("random inputs")
    # An int8 input step of (max - min) / 255: 0..100 here, 0..1 for the random inputs.
    assert _input_scale(tmp_path / "files" / "0_int8.tflite") == pytest.approx(100 / 255, rel=0.05)
    assert _input_scale(tmp_path / "random" / "0_int8.tflite") == pytest.approx(1 / 255, rel=0.05)


def test_int8_is_calibrated_on_a_named_dataset(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_tiny_cnn(input_shape=(16, 16, 3))

    report = benchmark(
        [model],
        runtimes=["tflite"],
        batch_sizes=[1],
        threads=[1],
        precisions=["fp32", "int8"],
        calibration_dataset="synthetic",
        calibration_samples=32,
        warmup=0,
        repeats=1,
    )

    assert report.settings["calibration"].startswith("synthetic (train split, 32 examples")
    assert [f["quantize"] for f in report.files] == ["none", "int8"]


def test_bad_precisions_are_refused(original_and_pruned):
    original, _ = original_and_pruned

    with pytest.raises(InvalidArgumentError, match="precisions=\\['fp32', 'int4'\\]"):
        benchmark([original], precisions=["fp32", "int4"])
    with pytest.raises(InvalidArgumentError, match="includes fp32.*precisions=\\['int8'\\]"):
        benchmark([original], runtimes=["tflite"], precisions=["int8"])
    with pytest.raises(InvalidArgumentError, match="no tflite.*--runtimes tflite"):
        benchmark([original], runtimes=["keras", "onnx"], precisions=["fp32", "int8"])
    with pytest.raises(InvalidArgumentError, match="not both"):
        benchmark(
            [original],
            runtimes=["tflite"],
            precisions=["fp32", "int8"],
            calibration_data=np.zeros((4, 16, 16, 3)),
            calibration_dataset="synthetic",
        )
