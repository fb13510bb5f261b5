import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from kprune.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="probs")(x))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_rank_prints_the_weakest_and_writes_every_score(model_file, tmp_path):
    out = tmp_path / "scores.json"
    result = runner.invoke(
        app, ["rank", str(model_file), "--criterion", "l1", "--show", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert scores["criterion"] == "l1" and set(scores["scores"]) == {"conv_a", "conv_b"}
    kernel = keras.models.load_model(model_file).get_layer("conv_b").kernel.numpy()
    l1 = np.abs(kernel).sum((0, 1, 2))
    np.testing.assert_allclose(scores["scores"]["conv_b"], l1 / np.linalg.norm(l1), rtol=1e-6)
    weakest = int(np.argmin(l1))
    assert f"{weakest}: " in result.output and "Scores of 11 filters written" in result.output


def test_rank_with_data_on_the_synthetic_set(model_file):
    result = runner.invoke(
        app, ["rank", str(model_file), "--criterion", "taylor", "--dataset", "synthetic", "--batches", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "conv_a" in result.output and "taylor" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--criterion", "bogus"], "Unknown criterion 'bogus'"),
        (["--criterion", "bn_gamma"], "needs a BatchNormalization"),
        (["--criterion", "l1", "--normalize", "max"], "normalize"),
    ],
)
def test_rank_user_errors(model_file, arguments, message):
    result = runner.invoke(app, ["rank", str(model_file), *arguments])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
