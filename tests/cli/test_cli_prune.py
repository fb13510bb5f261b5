import json

import keras
import pytest
from typer.testing import CliRunner

from kprune.cli import app

runner = CliRunner()
QUICK = [
    "--dataset",
    "synthetic",
    "--filters-per-step",
    "8",
    "--finetune-steps",
    "2",
    "--final-finetune-epochs",
    "0.1",
    "--rank-batches",
    "1",
]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(4, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def run_dir(model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "l1"
    result = runner.invoke(
        app,
        [
            "prune",
            "--criterion",
            "l1",
            "--model",
            str(model_file),
            "--target-params",
            "0.3",
            "--out",
            str(out),
            *QUICK,
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_prune_writes_the_run_and_prints_before_after(run_dir):
    out, output = run_dir
    for name in (
        "pruned.keras",
        "pruned.card.json",
        "pruned.card.md",
        "config.yaml",
        "report.json",
        "history.json",
        "accuracy_vs_params.png",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["test_after"]["params"] <= 0.7 * report["test_before"]["params"]
    assert report["criterion"] == "l1" and report["dataset"] == "synthetic"
    for label in ("parameters", "FLOPs", "size on disk", "top-1 accuracy", "Stopped: target reached"):
        assert label in output
    card = json.loads((out / "pruned.card.json").read_text())
    assert card["command"].startswith("kprune prune --criterion l1 --model ")
    assert "--target-params 0.3" in card["command"] and "--filters-per-step 8" in card["command"]


def test_resume_of_a_finished_run_returns_it(run_dir, model_file):
    out, _ = run_dir
    result = runner.invoke(
        app,
        [
            "prune",
            "--criterion",
            "l1",
            "--model",
            str(model_file),
            "--target-params",
            "0.3",
            "--out",
            str(out),
            "--resume",
            *QUICK,
        ],
    )
    assert result.exit_code == 0, result.output


def test_report_redraws_and_overlays(run_dir, tmp_path):
    out, _ = run_dir
    overlay = tmp_path / "overlay.png"
    result = runner.invoke(app, ["report", str(out), str(out), "--out", str(overlay)])
    assert result.exit_code == 0, result.output
    assert overlay.is_file() and "l1" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--target-params", "1.5"], "target_params"),
        (["--resume"], "--resume needs --out"),
        (["--criterion", "tailor"], "Unknown criterion 'tailor'"),
        (["--model", "missing.keras"], "missing.keras does not exist"),
        (["--config", "nope.yaml"], "nope.yaml does not exist"),
    ],
)
def test_user_errors_exit_1_with_one_line(model_file, arguments, message):
    base = ["prune", "--criterion", "l1", "--model", str(model_file), "--dataset", "synthetic"]
    result = runner.invoke(app, [*base, *arguments])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(model_file.parent.glob("*.yaml"))  # nothing written


def test_nothing_is_written_on_a_bad_criterion(model_file, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "prune",
            "--criterion",
            "tailor",
            "--model",
            str(model_file),
            "--dataset",
            "synthetic",
            "--target-params",
            "0.3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1 and not out.exists()


def test_report_of_a_folder_without_a_run_fails_clearly(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "holds no report.json" in result.output


def test_log_lines_are_whole_and_name_no_source_file(capsys):
    from kprune.progress import PruneProgress

    text = "step 3: params -41.0%  FLOPs -30.2%  " + "x" * 150
    with PruneProgress(False) as display:
        display.log(text)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith(text) and "progress.py" not in lines[0]


def test_tables_keep_their_columns_when_piped(capsys, monkeypatch):
    from rich.table import Table

    monkeypatch.delenv("COLUMNS", raising=False)  # pytest-xdist sets 80; a pipe has none
    from kprune.cli._common import _console

    table = Table()
    for name in ("runtime", "threads", "median ms", "p90 ms", "speed-up", "parameters", "FLOPs", "file"):
        table.add_column(name)
    table.add_row("tflite fp32", "1", "0.463", "0.470", "3.74×", "217,671", "19.6 M", "model_int8.tflite")
    _console().print(table)  # stdout is not a terminal under pytest, as in a pipe or a log
    row = [line for line in capsys.readouterr().out.splitlines() if "tflite fp32" in line]
    assert len(row) == 1 and "model_int8.tflite" in row[0]
