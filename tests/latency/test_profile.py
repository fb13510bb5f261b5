import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.export.templates import kprune_profile
from kprune.latency.layers import timed_layers
from kprune.latency.profile import cache_key, grid, profile, write_plan
from kprune.latency.table import LatencyTable
from tests.latency.conftest import SWEEP, make_block_model, make_small_model


def test_grid_covers_the_full_counts_and_small_ones():
    assert grid("matrix", (64, 32)) == [(i, o) for i in (6, 26, 45, 64) for o in (3, 13, 22, 32)]
    assert grid("channels", (3, 3)) == [(1, 1), (2, 2), (3, 3)]
    # One configuration serving an expand (16 -> 96) and a project (96 -> 16): a grid below
    # each shape, none of the 96 x 96 points no layer has.
    both = grid("matrix", (16, 96), (96, 16))
    assert set(both) == set(grid("matrix", (16, 96))) | set(grid("matrix", (96, 16)))
    assert max(i * o for i, o in both) == 16 * 96


def test_profile_measures_every_configuration_on_the_real_runtime(block_model, block_table):
    timed, _ = timed_layers(block_model)
    assert set(block_table.entries) == {layer.key for layer in timed}
    data = block_table.data
    files = [f for group in data["groups"] for f in group]
    assert sorted(files) == sorted(data["measured_ms"]) and all(v > 0 for v in data["measured_ms"].values())
    assert data["sweep"]["couts"] == list(range(1, SWEEP + 1))
    fractions = [item["fraction"] for item in data["calibration"]]
    assert fractions == [1.0, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2, 0.12] + [None] * 8
    # Calibration points: the thinned models really have fewer channels.
    sums = [sum(cin for _, cin, _ in item["layers"]) for item in data["calibration"]]
    assert all(a > b for a, b in itertools.pairwise(sums[:8]))
    assert all(s < sums[0] for s in sums[8:])
    # The unevenly thinned ones: groups thinned by different fractions, not one for all.
    full = {key: cin for key, cin, _ in data["calibration"][0]["layers"]}
    ratios = {round(cin / full[key], 2) for key, cin, _ in data["calibration"][8]["layers"]}
    assert len(ratios) > 1
    assert block_table.step in (1, 2, 4, 8, 16, 32)
    assert data["environment"]["machine"]


def test_weight_counts_of_the_table_equal_keras_counts(block_model, block_table):
    # The traffic term prices weights: each timed layer's count, fitted from the
    # single-layer files, must equal what Keras counts for that layer, here and thinned.
    from kprune.latency.profile import _calibration_models

    for _, model in _calibration_models(block_model)[::3]:
        layers = {layer.name: layer for layer in model.layers}
        for timed in timed_layers(model)[0]:
            expected = sum(int(np.prod(w.shape)) for w in layers[timed.name].weights)
            assert block_table.layer_weights(timed.key, timed.cin, timed.cout) == pytest.approx(
                expected, abs=1e-3
            )


def test_profile_is_cached_by_model_runtime_and_threads(block_model, block_table, block_cache):
    cached = list(block_cache.glob("*.json"))
    assert len(cached) == 1
    again = profile(block_model, repeats=5, warmup=1, cache_dir=block_cache, sweep_channels=SWEEP, seconds=0)
    assert again.data["measured_ms"] == block_table.data["measured_ms"]  # read back, not re-measured
    keys = {
        cache_key(block_model, "tflite", 1, "none", SWEEP),
        cache_key(block_model, "tflite", 2, "none", SWEEP),
        cache_key(block_model, "onnx", 1, "none", SWEEP),
        cache_key(block_model, "tflite", 1, "int8", SWEEP),
        cache_key(make_block_model("other_name"), "tflite", 1, "none", SWEEP),
    }
    assert len(keys) == 5 and cached[0].stem in keys


def test_board_profiler_runs_without_tensorflow_and_writes_a_table(tmp_path):
    folder = tmp_path / "profile"
    plan = write_plan(make_small_model(), folder, sweep_channels=4)
    assert (folder / "plan.json").is_file() and "measured_ms" not in plan
    script = os.path.abspath(kprune_profile.__file__)
    check = (
        "import runpy, sys; sys.argv = ['kprune_profile.py', %r, '--repeats', '2', '--warmup', '0', '--seconds', '0', "
        "'--out', %r]; runpy.run_path(%r, run_name='__main__')"
    ) % (str(folder), str(tmp_path / "t.json"), script)
    code = check.replace(
        "runpy.run_path", "exec(\"import sys\\nassert 'tensorflow' not in sys.modules\") or runpy.run_path"
    )
    done = subprocess.run(
        [sys.executable, "-c", code + "; assert 'tensorflow' not in sys.modules"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(tmp_path / "t.json")
    assert set(table.entries) == set(plan["entries"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runtime": "coreml"}, "`runtime` must be one of"),
        ({"quantize": "int4"}, "`quantize` must be one of"),
        ({"runtime": "onnx", "quantize": "int8"}, "is a TFLite precision. Fix: use runtime='tflite'"),
        ({"threads": 0}, "`threads` and `repeats` must be ≥ 1"),
    ],
)
def test_profile_refuses_bad_settings(block_model, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        profile(block_model, use_cache=False, **kwargs)


def test_int8_profile_times_integer_files(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    folder = tmp_path / "int8"
    plan = write_plan(make_small_model(), folder, quantize="int8", sweep_channels=2)
    name = plan["entries"][next(iter(plan["entries"]))]["files"][-1]
    interpreter = Interpreter(model_path=str(folder / name))
    types = {np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    assert np.dtype(np.int8) in types


def test_onnx_runtime_profile(tmp_path):
    table = profile(
        make_small_model(),
        runtime="onnx",
        repeats=2,
        warmup=0,
        cache_dir=tmp_path,
        sweep_channels=2,
        seconds=0,
    )
    assert table.runtime == "onnx" and table.scale > 0
    assert all(name.endswith(".onnx") for name in table.data["measured_ms"])
    assert set(table.entries) == {layer.key for layer in timed_layers(make_small_model())[0]}


def test_each_file_keeps_its_fastest_pass_and_sweeps_fill_the_time():
    """A runner slow in its first pass (a slow spell of the machine) is timed by its fast pass."""
    import time

    from kprune.export.templates.kprune_profile import time_group

    calls = {"slow": 0}

    def spell():  # the first 4 calls take 5 ms, the later ones 0.5 ms
        calls["slow"] += 1
        time.sleep(0.005 if calls["slow"] <= 4 else 0.0005)

    steady = lambda: time.sleep(0.002)  # noqa: E731
    slow, regular = time_group([spell, steady], warmup=0, repeats=12, passes=3)
    assert 0.0004 < slow < 0.002 < regular < 0.004


def test_the_time_bar_follows_the_sweep_count_once_it_is_known():
    from kprune.latency.profile import _GroupProgress

    bar = _GroupProgress(True)
    bar.update(3, 10)  # the first sweep counts on the minimum of two sweeps
    bar.update(12, 50)  # after it, 10 sweeps of 5 groups fill the time
    task = bar.bar.tasks[0]
    bar.close()
    assert (task.completed, task.total) == (12, 50)
