"""The foundation commands: train, eval, info, models; errors; --debug; quiet start-up."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from kprune.cli import _common, app
from kprune.errors import InvalidArgumentError, ModelFileError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in lines[0]


COMMANDS = sorted(info.name for info in app.registered_commands)


def test_foundation_commands_registered():
    assert {"train", "eval", "info", "models"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_works_everywhere(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_lists_the_options():
    assert "--out" in invoke("train", "--help").output
    assert "--split" in invoke("eval", "--help").output
    assert "--input-shape" in invoke("info", "--help").output
    top = invoke("--help").output
    for command in ("train", "eval", "info", "models"):
        assert re.search(rf"│ {command}\s", top), command


def test_version_prints_the_package_version():
    import kprune

    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"kprune {kprune.__version__}\n"


def test_models_lists_registered_names():
    result = invoke("models")
    assert result.exit_code == 0
    names = result.stdout.split()
    assert names == sorted(names)
    for name in (
        "squeezenet1_0",
        "squeezenet1_1",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "resnet50_v2",
        "efficientnet_v2_s",
    ):
        assert name in names


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `kprune train` run on synthetic data (32x32 RGB, resized to 36x36), shared by the tests below."""
    from tensorflow.python.framework import config as tf_config

    out = tmp_path_factory.mktemp("run") / "tiny.keras"
    args = [
        "train",
        "--model",
        "squeezenet1_1",
        "--dataset",
        "synthetic",
        "--limit",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--input-shape",
        "36,36,3",
        "--out",
        str(out),
    ]
    try:
        result = invoke(*args)
    finally:
        tf_config.disable_op_determinism()  # train seeds and makes ops deterministic
    return out, result


def test_train_writes_model_and_card(trained):
    out, result = trained
    assert result.exit_code == 0, result.output
    assert out.is_file()
    json_path, md_path = out.with_name("tiny.card.json"), out.with_name("tiny.card.md")
    card = json.loads(json_path.read_text())
    assert card["dataset"] == "synthetic" and card["architecture"] == "squeezenet1_1"
    assert (card["train_examples"], card["val_examples"], card["test_examples"]) == (32, 32, 32)
    assert card["input_shape"] == [36, 36, 3] and card["epochs"] == 1
    assert 0.0 <= card["test_accuracy"] <= 1.0
    assert card["params"] == 727_626  # SqueezeNet 1.1, cifar stem, 3 channels, 10 classes
    # Rebuilt from the parsed options: defaults (--model squeezenet1_1, --batch-size 128…) left out.
    assert card["command"] == (
        f"kprune train --out {out} --dataset synthetic --epochs 1.0 --batch-size 32 --input-shape 36,36,3 --limit 32"
    )
    assert card["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert "Reproduce with:" in md_path.read_text()
    assert re.fullmatch(
        r"Saved .*tiny.keras: test accuracy \d\.\d{4} on 32 synthetic test "
        r"images, 727.63 k params, .*FLOPs, \d+ s.\n",
        result.stdout,
    )


def test_eval_prints_accuracy(trained):
    import keras

    from kprune.data import load

    out, _ = trained
    result = invoke("eval", out, "--dataset", "synthetic", "--split", "test", "--limit", 40)
    assert result.exit_code == 0, result.output
    match = re.fullmatch(
        r".*tiny.keras on synthetic test \(40 images\): accuracy (\d\.\d{4}), "
        r"loss (\d+\.\d{4})\n",
        result.stdout,
    )  # one line, for scripts
    assert match, result.stdout
    model = keras.models.load_model(out)
    images, labels = zip(*load("synthetic", "test", input_shape=(36, 36, 3), limit=40))
    predicted = model.predict(np.concatenate(images), verbose=0)
    expected = np.mean(predicted.argmax(axis=1) == np.concatenate(labels))
    assert float(match.group(1)) == pytest.approx(expected, abs=5e-5)


def test_info_prints_totals():
    result = invoke("info", "squeezenet1_1", "--input-shape", "32,32,3", "--num-classes", 10)
    assert result.exit_code == 0, result.output
    # Totals of SqueezeNet 1.1 with the cifar stem (see tests/models/test_squeezenet.py).
    assert re.search(r"│ total\s.*727,626 │ 47,022,080 │", result.stdout)
    assert "727.63 k params, 47.02 MFLOPs" in result.stdout
    for name in ("conv1", "fire9_expand3x3", "conv10"):
        assert re.search(rf"│ {name}\s", result.stdout), name  # names never cut short


def test_info_of_a_model_file(trained):
    out, _ = trained
    result = invoke("info", out)
    assert result.exit_code == 0 and "727,626" in result.stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["info", "resnet_9000"], ["Unknown model 'resnet_9000'", "squeezenet1_1"]),
        (["train", "--dataset", "imagenet", "--out", "x.keras"], ["Unknown dataset 'imagenet'"]),
        (["eval", "missing.keras"], ["missing.keras does not exist", "Fix:"]),
        (["info", "squeezenet1_1", "--input-shape", "32,a,3"], ["`--input-shape` must be H,W,C"]),
        (["info", "squeezenet1_1", "--input-shape", "32,32"], ["`input_shape` must be (height, width"]),
        (["info", "mobilenet_v2", "--input-shape", "8,8,3"], ["at least 32x32"]),
        (
            [
                "train",
                "--model",
                "mobilenet_v2",
                "--input-shape",
                "28,28,1",
                "--dataset",
                "synthetic",
                "--out",
                "x.keras",
            ],
            ["at least 32x32"],
        ),
        (["train", "--input-shape", "32x32", "--out", "x.keras"], ["`--input-shape` must be H,W,C"]),
        (["train", "--out", "x.h5"], ["must end in .keras", "Fix: name it MODEL.keras"]),
        (
            [
                "train",
                "--model",
                "models/squeezenet1_1_fmnist_sgd.keras",
                "--input-shape",
                "32,32,1",
                "--out",
                "x.keras",
            ],
            ["applies to a model built by name", "Fix: leave input_shape out"],
        ),
    ],
)
def test_user_errors_are_one_line(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_train_stops_at_an_unfinished_training_unless_resumed(tmp_path):
    (tmp_path / "x.training").mkdir()  # left by a killed `kprune train --out x.keras`
    result = invoke(
        "train",
        "--dataset",
        "synthetic",
        "--limit",
        "32",
        "--input-shape",
        "36,36,3",
        "--out",
        tmp_path / "x.keras",
    )
    assert_one_line_error(result, "x.training holds an unfinished training", "Fix: pass --resume")
    assert "--resume" in invoke("train", "--help").output


def test_corrupt_model_file_is_one_line(tmp_path):
    path = tmp_path / "x.keras"
    path.write_bytes(b"not a zip archive")
    assert_one_line_error(invoke("eval", path, "--dataset", "synthetic"), "Cannot load", "Fix:")


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("--debug", "info", "resnet_9000")
    assert result.exit_code == 1
    assert isinstance(result.exception, InvalidArgumentError)
    result = invoke("--debug", "eval", tmp_path / "missing.keras")
    assert isinstance(result.exception, ModelFileError)
    # The flag does not stick to later commands.
    assert_one_line_error(invoke("info", "resnet_9000"), "Unknown model")


# --- quiet TensorFlow start-up ----------------------------------------------------


@pytest.fixture
def noisy_module(tmp_path, monkeypatch):
    """A module that writes to file descriptor 2 when imported, like TensorFlow's C++."""
    (tmp_path / "noisy_native.py").write_text(
        "import os\nos.write(2, b'WARNING: All log messages before absl::InitializeLog()\\n')\n"
    )
    (tmp_path / "broken_native.py").write_text("raise ImportError('libfoo.so: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("noisy_native", "broken_native"):
        sys.modules.pop(name, None)


def test_quiet_import_hides_fd2_noise_then_restores(noisy_module, capfd, monkeypatch):
    monkeypatch.setattr(_common.state, "debug", False)
    _common.quiet_import("noisy_native")
    assert "noisy_native" in sys.modules
    os.write(2, b"real error\n")
    assert capfd.readouterr().err == "real error\n"


def test_quiet_import_shows_everything_with_debug(noisy_module, capfd, monkeypatch):
    monkeypatch.setattr(_common.state, "debug", True)
    _common.quiet_import("noisy_native")
    assert "noisy_native" in sys.modules
    assert "absl::InitializeLog" in capfd.readouterr().err


def test_quiet_import_keeps_import_errors(noisy_module, capfd, monkeypatch):
    monkeypatch.setattr(_common.state, "debug", False)
    with pytest.raises(ImportError, match="libfoo.so"):
        _common.quiet_import("broken_native")
    os.write(2, b"still visible\n")
    assert capfd.readouterr().err == "still visible\n"


def test_cli_process_prints_only_the_error():
    """A real process: TensorFlow's start-up lines must not reach the user."""
    env = {**os.environ, "KPRUNE_PROGRESS": "0"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from kprune.cli import main; main()",
            "info",
            "squeezenet1_1",
            "--input-shape",
            "32,a,3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: `--input-shape` must be H,W,C such as 32,32,3. Received '32,a,3'."
    ]
    assert result.stdout == ""
