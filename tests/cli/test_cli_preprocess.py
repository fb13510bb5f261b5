"""Issue 12.3: a user's own Keras CNN (Rescaling(1/255) first, trained on
keras.utils.image_dataset_from_directory) gets the pixels Keras gives it, not
kprune's guess; --preprocess and the model card change that; a folder without
test/ is evaluated on val/ and says so."""

import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from kprune import baselines
from kprune.cli import app
from kprune.data import Preprocessing, choose_preprocessing, fashion_mnist, load
from kprune.data.folder import RGB_MEAN, RGB_STD
from tests.cli.test_cli_foundation import assert_one_line_error

runner = CliRunner()
COLOURS = {"blue": (30, 30, 220), "green": (30, 220, 30), "red": (220, 30, 30)}
SHAPE = (8, 8, 3)
ACCURACY = re.compile(r"accuracy (\d\.\d{4}), loss")


def write_folder(root: Path, rng) -> None:
    """train/ (8 per class) and val/ (4 per class) of noisy 12×12 colour PNGs; no test/."""
    for split, count in (("train", 8), ("val", 4)):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(-60, 60, size=(12, 12, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                tf.io.write_file(str(root / split / name / f"{index}.png"), tf.io.encode_png(pixels))


def keras_val(root: Path):
    """The val folder as Keras' own loader gives it: (float32 images 0..255, labels)."""
    data = keras.utils.image_dataset_from_directory(
        str(root / "val"), image_size=SHAPE[:2], batch_size=None, shuffle=False, verbose=False
    )
    images, labels = zip(*data.as_numpy_iterator())
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The issue's user: a folder, a CNN with Rescaling(1/255) first, Keras' accuracy on val/."""
    home = tmp_path_factory.mktemp("user")
    write_folder(home / "data", np.random.default_rng(0))
    keras.utils.set_random_seed(0)
    train = keras.utils.image_dataset_from_directory(
        str(home / "data" / "train"), image_size=SHAPE[:2], batch_size=8, seed=0, verbose=False
    )
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="my_cnn",
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(train, epochs=30, verbose=0)
    path = home / "my_cnn.keras"
    model.save(path)
    images, labels = keras_val(home / "data")
    keras_accuracy = float(np.mean(model.predict(images, verbose=0).argmax(-1) == labels))
    assert keras_accuracy >= 0.9  # the scenario needs a model that really learned
    return home / "data", path, model, keras_accuracy


def eval_accuracy(*args) -> tuple[float, object]:
    result = runner.invoke(app, ["eval", *map(str, args)])
    assert result.exit_code == 0, result.output
    return float(ACCURACY.search(result.stdout).group(1)), result


def numpy_accuracy(model, root, transform) -> float:
    images, labels = keras_val(root)
    return float(np.mean(model.predict(transform(images), verbose=0).argmax(-1) == labels))


def test_eval_gives_keras_accuracy_and_says_where_test_comes_from(user):
    root, path, _, keras_accuracy = user
    accuracy, result = eval_accuracy(path, "--dataset", f"folder:{root}")
    assert accuracy == pytest.approx(keras_accuracy, abs=5e-5)  # not 33.33%
    assert "(12 images)" in result.stdout
    notes = [line for line in result.stderr.splitlines() if line.startswith("Note:")]
    assert len(notes) == 2, result.stderr
    assert "has no kprune model card: its inputs are raw pixels 0..255" in result.stderr
    assert result.stderr.count("has no test/ folder: its test split is") == 1


def test_library_load_gives_keras_pixels(user):
    root, path, model, keras_accuracy = user
    chosen = choose_preprocessing(None, path, SHAPE)
    split = load(f"folder:{root}", "val", input_shape=SHAPE, preprocessing=chosen.preprocessing)
    images = np.concatenate([batch.numpy() for batch, _ in split])
    labels = np.concatenate([batch.numpy() for _, batch in split])
    expected_images, expected_labels = keras_val(root)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert np.mean(model.predict(images, verbose=0).argmax(-1) == labels) == keras_accuracy


@pytest.mark.parametrize(
    ("option", "transform"),
    [
        ("raw", lambda x: x),
        ("dataset", lambda x: (x / 255.0 - np.array(RGB_MEAN)) / np.array(RGB_STD)),
        ("scale=1/255,mean=0.5,std=0.5", lambda x: (x / 255.0 - 0.5) / 0.5),
        ("scale=2,mean=10:20:30,std=4", lambda x: (x * 2.0 - np.array([10, 20, 30])) / 4.0),
    ],
)
def test_preprocess_option_applies(user, option, transform):
    root, path, model, _ = user
    accuracy, _ = eval_accuracy(path, "--dataset", f"folder:{root}", "--preprocess", option)
    assert accuracy == pytest.approx(numpy_accuracy(model, root, transform), abs=5e-5)


def test_a_model_card_gives_the_preprocessing_and_the_option_overrides_it(user, tmp_path):
    root, path, model, keras_accuracy = user
    carded = tmp_path / "carded.keras"
    shutil.copy(path, carded)
    card = {"preprocessing": Preprocessing(SHAPE, 1 / 255, (0.5,), (0.5,)).to_dict()}
    (tmp_path / "carded.card.json").write_text(json.dumps(card))
    accuracy, result = eval_accuracy(carded, "--dataset", f"folder:{root}")
    assert accuracy == pytest.approx(numpy_accuracy(model, root, lambda x: (x / 255.0 - 0.5) / 0.5), abs=5e-5)
    assert "model card" not in result.stderr
    accuracy, _ = eval_accuracy(carded, "--dataset", f"folder:{root}", "--preprocess", "raw")
    assert accuracy == pytest.approx(keras_accuracy, abs=5e-5)


def test_prune_starts_from_keras_accuracy_and_records_the_preprocessing(user, tmp_path):
    root, path, _, keras_accuracy = user
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "prune",
            "--model",
            str(path),
            "--dataset",
            f"folder:{root}",
            "--criterion",
            "l1",
            "--target-filters",
            "1",
            "--filters-per-step",
            "1",
            "--finetune-steps",
            "1",
            "--final-finetune-epochs",
            "0",
            "--rank-batches",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["test_before"]["accuracy"] == pytest.approx(keras_accuracy, abs=5e-5)
    assert report["preprocess"] == "raw"
    label, before, after, _ = report["target_row"]  # the filters target's row in the summary
    assert label == "prunable channels" and int(before.replace(",", "")) - int(after.replace(",", "")) == 1
    assert "prunable channels" in result.stdout
    assert report["preprocessing"] == Preprocessing.raw(SHAPE).to_dict()
    assert "has no test/ folder" in report["test_split_note"]
    assert result.stderr.count("has no test/ folder") == 1
    card = json.loads((out / "pruned.card.json").read_text())
    assert card["preprocess"] == "raw" and card["preprocessing"]["scale"] == 1.0


@pytest.mark.parametrize("command", ["eval", "prune", "rank", "export"])
def test_bad_preprocess_text_is_one_line_naming_the_fix(user, tmp_path, monkeypatch, command):
    root, path, _, _ = user
    monkeypatch.chdir(tmp_path)
    arguments = {
        "eval": ["eval", path],
        "rank": ["rank", path, "--criterion", "taylor"],
        "prune": ["prune", "--model", path, "--target-params", "0.5", "--out", tmp_path / "run"],
        "export": ["export", path, "--out", tmp_path / "export"],
    }[command]
    result = runner.invoke(
        app, [*map(str, arguments), "--dataset", f"folder:{root}", "--preprocess", "scale=1/255;mean=0.5"]
    )
    assert_one_line_error(
        result,
        "`preprocess` must be raw, card, dataset or scale=S,mean=M,std=D",
        "Received preprocess='scale=1/255;mean=0.5'. Fix: e.g. --preprocess raw",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_bad_preprocess_in_a_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("criterion: l1\ntarget_params: 0.5\npreprocess: imagenet\n")
    result = runner.invoke(app, ["prune", "--config", str(config), "--out", str(tmp_path / "run")])
    assert_one_line_error(
        result,
        "`preprocess`: `preprocess` must be raw, card, dataset",
        "Received preprocess='imagenet'. Fix:",
    )


BASELINE = baselines.DIRECTORY / "squeezenet1_1_fmnist_sgd.keras"  # the shipped one


def test_the_shipped_baseline_keeps_its_preprocessing():
    # Its card says the Fashion-MNIST standardization: runs give today's numbers.
    chosen = choose_preprocessing(None, BASELINE, (28, 28, 1))
    assert chosen.name == "card"
    assert chosen.preprocessing == Preprocessing((28, 28, 1), mean=fashion_mnist.MEAN, std=fashion_mnist.STD)


@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason="real Fashion-MNIST not installed")
def test_the_shipped_baseline_eval_is_unchanged():
    default, result = eval_accuracy(BASELINE, "--limit", "256")
    dataset, _ = eval_accuracy(BASELINE, "--limit", "256", "--preprocess", "dataset")
    assert default == dataset > 0.85
    assert "Note:" not in result.stderr


def test_bundle_of_a_keras_model_ships_raw_pixels_the_runtime_reproduces(user, tmp_path):
    from kprune.export.templates import kprune_runtime as runtime

    root, path, _, keras_accuracy = user
    bundle = tmp_path / "bundle"
    result = runner.invoke(
        app,
        ["bundle", str(path), "-o", str(bundle), "-d", f"folder:{root}", "--no-int8", "-n", "12", "--json"],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["preprocessing"] == Preprocessing.raw(SHAPE).to_dict()
    assert manifest["metrics"]["verification"]["keras_accuracy"] == pytest.approx(keras_accuracy)
    # On the board, scale=1, mean=0, std=1 is raw pixels too: resized, then left as 0..255.
    image = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    values = runtime.Preprocessor(manifest["preprocessing"])(image)
    np.testing.assert_array_equal(values, image.astype(np.float32))
