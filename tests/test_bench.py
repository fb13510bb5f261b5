"""benchmark(): alternation, statistics and speed-up vs FLOPs ratio; never timed assertions."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import _time_alternating, benchmark
from kprune.errors import InvalidArgumentError
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
        [original, pruned], runtimes=["keras", "tflite", "onnx"], batch_sizes=[1, 4],
        threads=[1], warmup=1, repeats=3,
    )  # fmt: skip

    assert [m.label for m in report.models] == ["tiny_cnn", "tiny_cnn'"]
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

    report = benchmark([original, pruned], runtimes=["tflite"], batch_sizes=[2], threads=[1],
                       warmup=0, repeats=2)  # fmt: skip

    (row,) = report.speedups()
    by_model = {m.model: m for m in report.measurements}
    assert row["model"] == "tiny_cnn'" and row["baseline"] == "tiny_cnn"
    assert row["speedup"] == pytest.approx(
        by_model["tiny_cnn"].median_ms / by_model["tiny_cnn'"].median_ms
    )
    assert row["flops_ratio"] == pytest.approx(
        kprune.count_flops(original) / kprune.count_flops(pruned)
    )
    assert row["flops_ratio"] > 1
    assert report.to_dict()["speedups"] == [row]


def test_models_alternate_and_the_first_rotates():
    calls = []
    runners = [lambda name=name: calls.append(name) for name in "abc"]

    timings = _time_alternating(runners, warmup=2, repeats=3)

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
