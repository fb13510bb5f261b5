import json

import keras
import pytest
from typer.testing import CliRunner

from kprune.cli import app
from kprune.latency.predict import predict_latency
from kprune.latency.table import LatencyTable

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_profile_writes_a_table_that_predicts_the_model(model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "table.json"
    result = runner.invoke(
        app,
        [
            "profile",
            str(model_file),
            "--out",
            str(out),
            "--repeats",
            "3",
            "--sweep-channels",
            "8",
            "--seconds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Channel tile step" in result.output and "conv_a" in result.output
    table = LatencyTable.load(out)
    assert predict_latency(keras.models.load_model(model_file), table) > 0
    timing = table.data["timing"]
    assert timing["seconds"] == 1 and timing["sweeps"] >= 2  # the plan timed again until 1 s had passed
    assert list((tmp_path / "cache").rglob("*.json"))  # cached for the next run


def test_profile_plan_only_writes_files_for_the_board(model_file, tmp_path):
    folder = tmp_path / "plan"
    result = runner.invoke(
        app, ["profile", str(model_file), "--plan-only", str(folder), "--sweep-channels", "4"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads((folder / "plan.json").read_text())
    assert sorted(p.name for p in folder.glob("*.tflite")) == sorted(f for g in plan["groups"] for f in g)
    assert "kprune_profile.py" in result.output


def test_profile_bad_runtime_is_one_line_and_exit_1(model_file, tmp_path):
    result = runner.invoke(
        app, ["profile", str(model_file), "--runtime", "tensorrt", "--out", str(tmp_path / "t.json")]
    )
    assert result.exit_code == 1
    assert "`runtime` must be one of" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.json").exists()


def test_prune_missing_latency_table_is_one_line(model_file, tmp_path):
    result = runner.invoke(
        app,
        [
            "prune",
            "--model",
            str(model_file),
            "--dataset",
            "synthetic",
            "--target-latency",
            "0.5",
            "--latency-table",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "run"),
            "--no-chance-check",
        ],
    )
    assert result.exit_code == 1
    assert "does not exist. Fix: write one with `kprune profile" in result.output


def test_prune_latency_quantize_reaches_the_config_check_and_a_bad_one_is_one_line(model_file, tmp_path):
    common = ["prune", "--model", str(model_file), "--dataset", "synthetic", "--target-latency", "0.5"]
    result = runner.invoke(app, [*common, "--latency-quantize", "int4", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "latency_quantize" in result.output and "int8" in result.output
    assert not (tmp_path / "bad").exists()


def test_profile_on_a_device_refuses_an_unknown_device_or_a_missing_root(model_file, tmp_path, monkeypatch):
    result = runner.invoke(app, ["profile", str(model_file), "--device", "qemu:cortex-a99"])
    assert result.exit_code == 1 and "`device` must be one of" in result.output
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KPRUNE_AARCH64_ROOT", str(tmp_path / "no-root"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no qemu-aarch64 either: it is named first
    result = runner.invoke(app, ["profile", str(model_file), "--device", "qemu:cortex-a53"])
    assert result.exit_code == 1
    assert (
        "qemu-aarch64 is not on PATH" in result.output
        and "Fix: apt-get install -y qemu-user" in result.output
    )
    assert not (tmp_path / "latency_table.json").exists()
