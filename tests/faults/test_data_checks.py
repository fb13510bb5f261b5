"""The user's data against the model, before any work: one line naming both sides."""

import keras
import numpy as np
import pytest

import kprune
from kprune.errors import InvalidArgumentError

rng = np.random.default_rng(0)
OPTIONS = dict(
    target_filters=2,
    filters_per_step=1,
    finetune_steps=2,
    final_finetune_epochs=0,
    rank_batches=1,
    progress=False,
    check_chance=False,
)


def _model(outputs: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    probs = keras.layers.Dense(outputs, activation="softmax", name="probs")(
        keras.layers.GlobalAveragePooling2D()(h)
    )
    return keras.Model(inputs, probs, name="small")


def _images(size: int = 16, count: int = 64) -> np.ndarray:
    return rng.uniform(0, 255, size=(count, size, size, 3)).astype("float32")


def _refused(model, x, y, pattern: str) -> str:
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(InvalidArgumentError, match=pattern) as error:
        kprune.prune(model, (x, y), (x, y), **OPTIONS)
    assert "\n" not in str(error.value) and "function_node" not in str(error.value)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    return str(error.value)


def test_images_of_the_wrong_size_name_both_shapes():
    message = _refused(
        _model(),
        _images(20),
        rng.integers(0, 3, 64),
        r"^The training inputs have shape \(20, 20, 3\) per example",
    )
    assert "model 'small' takes (16, 16, 3) (input 'image')" in message and "Fix: resize" in message


def test_labels_beyond_the_classes_name_the_range():
    message = _refused(_model(3), _images(), rng.integers(0, 7, 64), r"^The labels run from 0 to 6")
    assert "output 'probs' has 3 classes (labels 0..2)" in message


def test_one_hot_labels_of_the_wrong_width_are_named():
    labels = keras.utils.to_categorical(rng.integers(0, 5, 64), 5)
    model = _model(3)
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    _refused(
        model, _images(), labels, r"^The labels are one-hot vectors of width 5, but output 'probs' has 3"
    )


def test_label_dicts_must_use_the_output_names():
    _refused(
        _model(),
        _images(),
        {"classes": rng.integers(0, 3, 64)},
        r"^The labels name outputs \['classes'\] that model 'small' does not have; its outputs: \['probs'\]",
    )


@pytest.mark.parametrize("command", ["prune", "eval"])
def test_the_cli_names_labels_beyond_the_classes_in_one_line(tmp_path, command):
    """The synthetic dataset has 10 classes; the model 3. Before, `kprune prune` and
    `kprune eval` died in TensorFlow's sparse cross-entropy with its internals."""
    from typer.testing import CliRunner

    from kprune.cli import app

    model_file = tmp_path / "small.keras"
    _model(3).save(model_file)
    original = model_file.read_bytes()
    out = tmp_path / "run"
    arguments = {
        "prune": ["prune", "--model", str(model_file), "--target-params", "0.5", "--out", str(out)],
        "eval": ["eval", str(model_file)],
    }[command]
    result = CliRunner().invoke(app, [*arguments, "--dataset", "synthetic"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0])
    assert errors[0].startswith(
        "Error: The labels run from 0 to 9, but output 'probs' has 3 classes (labels 0..2)."
    )
    assert "function_node" not in result.stderr and "Traceback" not in result.stderr
    assert (
        model_file.read_bytes() == original
        and not (out / "checkpoint").exists()
        and not (out / "pruned.keras").exists()
    )
