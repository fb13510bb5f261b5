import json

import numpy as np
import pytest

from kprune.errors import ModelFileError
from kprune.latency.table import Entry, LatencyTable, fit_step, padded


def test_padded_rounds_up_to_the_step():
    np.testing.assert_array_equal(padded([1, 16, 17, 33], 16), [16, 16, 32, 48])


@pytest.mark.parametrize("step", [4, 8, 16])
def test_fit_step_finds_the_staircase_of_a_sweep(step):
    rng = np.random.default_rng(step)
    channels = np.arange(1, 65)
    times = 0.02 + 0.001 * np.ceil(channels / step) * step
    times = times * (1 + 0.01 * rng.standard_normal(len(channels)))  # 1% noise
    assert fit_step(channels.tolist(), times.tolist()) == step


def test_fit_step_of_a_straight_line_is_fine_grained():
    channels = np.arange(1, 65)
    assert fit_step(channels.tolist(), (0.01 + 0.002 * channels).tolist()) <= 2


def test_matrix_entry_recovers_a_bilinear_time_exactly():
    # t = a + b·cin + c·P(cout) + d·cin·P(cout), P rounding to 8
    a, b, c, d = 0.01, 0.0002, 0.0003, 0.00001
    points = [(i, o) for i in (4, 16, 40, 64) for o in (5, 16, 30, 64)]
    times = [a + b * i + c * padded(o, 8) + d * i * padded(o, 8) for i, o in points]
    entry = Entry("k", "matrix", ["x"], (64, 64), points, [float(t) for t in times])
    entry.fit(8)
    np.testing.assert_allclose(entry.coefficients, [a, b, c, d], rtol=1e-6, atol=1e-12)
    expected = a + b * 20 + c * 24 + d * 20 * 24  # cout 17 → 24 at step 8
    np.testing.assert_allclose(entry.predict(20, 17, 8), expected, rtol=1e-9)


def _table_data():
    """A hand-made measured table: one channel entry t = 0.1 + 0.01·P(c), step 4,
    and whole models timed at exactly 2·Σ + 0.05."""
    sweep_c = list(range(1, 33))
    measured = {f"s{c}": 0.1 + 0.01 * float(padded(c, 4)) for c in sweep_c}
    points = [[4, 4], [12, 12], [20, 20], [32, 32]]
    for cin, _ in points:
        measured[f"e{cin}"] = 0.1 + 0.01 * cin
    calibration = []
    for fraction, c in ((1.0, 32), (0.5, 16), (0.25, 8)):
        layer_sum = 2 * (0.1 + 0.01 * c)  # two layers of this entry
        measured[f"m{c}"] = 2 * layer_sum + 0.05
        calibration.append({"fraction": fraction, "file": f"m{c}", "layers": [["k", c, c], ["k", c, c]]})
    return {
        "format": "kprune-latency-table",
        "version": 1,
        "runtime": "tflite",
        "quantize": "none",
        "threads": 1,
        "model": {"name": "hand"},
        "measured_ms": measured,
        "sweep": {"layer": "x", "cin": 8, "couts": sweep_c, "files": [f"s{c}" for c in sweep_c]},
        "entries": {
            "k": {
                "kind": "channels",
                "layers": ["x", "y"],
                "full": [32, 32],
                "points": points,
                "files": [f"e{c}" for c, _ in points],
            }
        },
        "calibration": calibration,
        "groups": [],
    }


def test_table_fits_step_entries_and_calibration():
    table = LatencyTable(_table_data())
    assert table.step == 4
    np.testing.assert_allclose(table.layer_ms("k", 10, 10), 0.1 + 0.01 * 12, rtol=1e-9)
    np.testing.assert_allclose([table.scale, table.offset], [2.0, 0.05], rtol=1e-9)
    np.testing.assert_allclose(table.predict([["k", 13, 13]]), 2 * (0.1 + 0.01 * 16) + 0.05, rtol=1e-9)
    assert table.fast_sizes(13) == [12, 8, 4]
    assert table.fast_sizes(12, minimum=5) == [8]


def test_table_round_trips_through_a_file(tmp_path):
    table = LatencyTable(_table_data())
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert loaded.step == table.step and loaded.predict([["k", 20, 20]]) == table.predict([["k", 20, 20]])


def test_load_refuses_missing_foreign_and_unmeasured_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist. Fix: write one with `kprune profile"):
        LatencyTable.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ModelFileError, match="is not JSON"):
        LatencyTable.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(ModelFileError, match="is not a kprune latency table"):
        LatencyTable.load(tmp_path / "other.json")
    plan = _table_data()
    del plan["measured_ms"]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ModelFileError, match="never measured. Fix: run `python kprune_profile.py`"):
        LatencyTable.load(tmp_path / "plan.json")


def test_calibration_never_scales_by_a_negative_factor():
    data = _table_data()
    # whole-model times that shrink as layers grow (noise on a tiny model): shift only
    for item, value in zip(data["calibration"], (0.30, 0.31, 0.32)):
        data["measured_ms"][item["file"]] = value
    table = LatencyTable(data)
    sums = np.array([table.layer_sum(item["layers"]) for item in data["calibration"]])
    assert table.scale == 1.0
    np.testing.assert_allclose(table.offset, np.mean(np.array([0.30, 0.31, 0.32]) - sums))


def _weighed_table_data(scale=1.5, traffic=2e-4, resident_c=12, offset=0.05):
    """The hand-made table in format 3: each file of entry k holds 10·c weights, and eight
    whole models (two k layers of c channels) are timed at exactly
    scale·Σ + traffic·max(0, W − W(resident_c)) + offset."""
    data = _table_data()
    entry = data["entries"]["k"]
    entry["weights"] = [10 * c for c, _ in entry["points"]]
    measured, calibration = data["measured_ms"], []
    for c in (32, 28, 24, 20, 16, 12, 8, 4):
        layer_sum = 2 * (0.1 + 0.01 * float(padded(c, 4)))
        weights = 2 * 10 * c
        measured[f"m{c}"] = scale * layer_sum + traffic * max(0, weights - 2 * 10 * resident_c) + offset
        calibration.append({"fraction": c / 32, "file": f"m{c}", "layers": [["k", c, c], ["k", c, c]]})
    data["calibration"] = calibration
    return data


def test_weight_traffic_term_is_recovered_from_the_calibration_models():
    # Independent reference: the formula the times were made with.
    table = LatencyTable(_weighed_table_data())
    np.testing.assert_allclose(table.layer_weights("k", 7, 7), 70, rtol=1e-9)
    np.testing.assert_allclose(
        [table.scale, table.traffic, table.resident, table.offset],
        [1.5, 2e-4, 240, 0.05],
        rtol=1e-6,
        atol=1e-9,
    )
    for c, expected_traffic in ((30, 2e-4 * (600 - 240)), (10, 0.0)):
        expected = 1.5 * 2 * (0.1 + 0.01 * float(padded(c, 4))) + expected_traffic + 0.05
        np.testing.assert_allclose(table.predict([["k", c, c], ["k", c, c]]), expected, rtol=1e-6)


def test_without_weight_traffic_the_term_stays_off():
    # Whole models timed at exactly 2·Σ + 0.05 with weight counts known: no traffic is invented.
    data = _weighed_table_data(scale=2.0, traffic=0.0)
    table = LatencyTable(data)
    np.testing.assert_allclose([table.scale, table.offset], [2.0, 0.05], rtol=1e-6)
    assert table.traffic * 1000 == pytest.approx(0.0, abs=1e-9)


def test_a_table_without_a_unit_is_in_ms():
    table = LatencyTable(_table_data())  # the tables of format ≤ 5: no "unit"
    assert table.unit == "ms" and table.measured is table.data["measured_ms"]
    assert table.summary()["unit"] == "ms" and "offset_ms" in table.summary()


def test_an_instruction_table_predicts_in_instructions(tmp_path):
    data = _table_data()
    ms_prediction = LatencyTable(data).predict([["k", 13, 13]])
    # The same table with every measurement scaled to instructions: the fit is linear, so every
    # prediction scales by the same factor (and the step, a shape, stays).
    data = json.loads(json.dumps(data))
    data["unit"] = "instructions"
    data["measured_instructions"] = {name: 1e6 * value for name, value in data.pop("measured_ms").items()}
    table = LatencyTable.load(LatencyTable(data).save(tmp_path / "t.json"))
    assert table.unit == "instructions" and table.step == 4
    np.testing.assert_allclose(table.predict([["k", 13, 13]]), 1e6 * ms_prediction, rtol=1e-9)
    assert "offset_instructions" in table.summary() and "offset_ms" not in table.summary()


def test_load_refuses_an_unknown_unit_and_an_uncounted_plan(tmp_path):
    data = _table_data()
    data["unit"] = "cycles"
    data["measured_cycles"] = data.pop("measured_ms")
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="incomplete .unknown unit 'cycles'.*Fix: profile again"):
        LatencyTable.load(tmp_path / "t.json")
    data = _table_data()
    data["unit"] = "instructions"  # measured_ms present, but no measured_instructions
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="never measured"):
        LatencyTable.load(tmp_path / "plan.json")
