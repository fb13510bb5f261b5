"""Image folders with bad files: skipped and named in one note, or refused under --strict-data.

Keras' own loader is the reference: on a clean folder kprune gives its images
and labels exactly; on a folder with a bad file Keras' loader fails while
kprune reads the rest.
"""

import logging
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kprune.cli import app
from kprune.data import image_files, load
from kprune.errors import DatasetNotFoundError, InvalidArgumentError
from tests.cli.test_cli_foundation import assert_one_line_error

runner = CliRunner()
COLOURS = {"cat": (220, 40, 40), "dog": (40, 40, 220)}
SHAPE = (8, 8, 3)


def pixels(class_name: str, index: int, size=(8, 8)) -> np.ndarray:
    """A class's colour with noise; pixel [0, 0] holds the image id, so images differ."""
    rng = np.random.default_rng(index)
    noise = rng.integers(-30, 30, size=(*size, 3))
    image = np.clip(np.array(COLOURS[class_name]) + noise, 0, 255).astype(np.uint8)
    image[0, 0] = 10 * index
    return image


def write_image(path: Path, image: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image)
    (picture.convert(mode) if mode else picture).save(path)
    return path


def write_classes(folder: Path, count: int = 3) -> None:
    for name in COLOURS:
        for index in range(count):
            write_image(folder / name / f"{index}.png", pixels(name, index))


@pytest.fixture
def root(tmp_path):
    """train/ (3 per class) and test/ (3 per class) of 8×8 PNGs."""
    write_classes(tmp_path / "images" / "train")
    write_classes(tmp_path / "images" / "test")
    return tmp_path / "images"


def collect(split):
    images = np.concatenate([images.numpy() for images, _ in split.dataset])
    labels = np.concatenate([labels.numpy() for _, labels in split.dataset])
    return images, labels


def keras_images(directory: Path, image_size=(8, 8), color_mode="rgb"):
    """The reference: keras.utils.image_dataset_from_directory, in file order."""
    data = keras.utils.image_dataset_from_directory(
        str(directory),
        image_size=image_size,
        color_mode=color_mode,
        batch_size=None,
        shuffle=False,
        verbose=False,
        class_names=list(COLOURS),
    )
    images, labels = zip(*data.as_numpy_iterator())
    return np.stack(images), np.array(labels)


def notes(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "kprune"]


def load_test(root: Path, shape=SHAPE, **options):
    return load(f"folder:{root}", "test", input_shape=shape, preprocessing="raw", shuffle=False, **options)


# --- clean folders: exactly Keras' images, labels and order -------------------------------


def test_a_clean_folder_gives_keras_images_labels_and_order(tmp_path):
    test = tmp_path / "mixed_formats" / "test"
    write_classes(tmp_path / "mixed_formats" / "train", 1)
    write_image(test / "cat" / "a.png", pixels("cat", 1))
    write_image(test / "cat" / "b.jpg", pixels("cat", 2, size=(10, 7)))  # resized
    write_image(test / "cat" / "c.gif", pixels("cat", 3))
    write_image(test / "cat" / "d.bmp", pixels("cat", 4))
    write_image(test / "cat" / "E.PNG", pixels("cat", 5))
    write_image(test / "cat" / "nested" / "f.png", pixels("cat", 6))
    (test / "cat" / "notes.txt").write_text("not listed: not an image extension")
    write_image(test / "dog" / "g.jpeg", pixels("dog", 8, size=(5, 12)))
    write_image(test / "dog" / "h.png", pixels("dog", 9), mode="L")
    images, labels = collect(load_test(tmp_path / "mixed_formats"))
    expected_images, expected_labels = keras_images(test)
    assert len(labels) == 8
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(images, expected_images)


def test_a_clean_folder_read_as_grayscale_gives_keras_images(root):
    write_image(root / "test" / "dog" / "gray.jpg", pixels("dog", 5), mode="L")
    images, labels = collect(load_test(root, shape=(8, 8, 1)))
    expected_images, expected_labels = keras_images(root / "test", color_mode="grayscale")
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(images, expected_images)


def test_the_val_split_of_a_flat_folder_is_the_same_files_as_before(tmp_path):
    write_classes(tmp_path / "flat", 5)
    val = load(
        f"folder:{tmp_path / 'flat'}",
        "val",
        input_shape=SHAPE,
        val_fraction=0.2,
        preprocessing="raw",
        shuffle=False,
    )
    keras_all, keras_labels = keras_images(tmp_path / "flat")
    # The rule of the array datasets: a permutation with seed 0, the first 20% held out.
    held_out = np.sort(np.random.default_rng(0).permutation(10)[:2])
    images, labels = collect(val)
    np.testing.assert_array_equal(images, keras_all[held_out])
    np.testing.assert_array_equal(labels, keras_labels[held_out])


# --- bad files: skipped and named, the rest read ------------------------------------------


def keras_fails_on(directory: Path) -> None:
    """The fault is real: Keras' loader (kprune's before this check) stops on it."""
    with pytest.raises(
        Exception, match="Unknown image file format|Invalid PNG|Invalid JPEG|corrupt|Input is empty"
    ):
        keras_images(directory)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("broken.png", b"this is text, not an image\n", "is not an image"),
        (
            "garbage.jpg",
            np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes(),
            "is not an image",
        ),
        ("empty.png", b"", "is empty (0 bytes)"),
    ],
)
def test_a_corrupt_or_empty_file_is_skipped_and_named(root, caplog, name, content, problem):
    expected_images, expected_labels = keras_images(root / "test")  # the folder without it
    (root / "test" / "cat" / name).write_bytes(content)
    keras_fails_on(root / "test")
    images, labels = collect(load_test(root))
    np.testing.assert_array_equal(images, expected_images)  # every good image, none lost
    np.testing.assert_array_equal(labels, expected_labels)
    assert (
        f"Skipping 1 of 7 image files in {root / 'test'} that cannot be decoded: cat/{name} {problem}."
        in notes(caplog)[0]
    )


@pytest.mark.parametrize("suffix, marker", [(".png", "PNG end chunk"), (".jpg", "JPEG end marker")])
def test_a_truncated_file_is_skipped_and_named(root, caplog, suffix, marker):
    expected_images, expected_labels = keras_images(root / "test")  # the folder without it
    whole = write_image(root / "test" / "dog" / f"whole{suffix}", pixels("dog", 7)).read_bytes()
    (root / "test" / "dog" / f"whole{suffix}").unlink()
    (root / "test" / "dog" / f"half{suffix}").write_bytes(whole[: len(whole) // 2])
    keras_fails_on(root / "test")
    split = load_test(root)
    images, labels = collect(split)
    assert split.num_examples == 6
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    (message,) = notes(caplog)
    assert f"dog/half{suffix} is truncated (its {marker} is missing)" in message and "\n" not in message


def test_bytes_after_the_end_marker_are_no_truncation(root, caplog):
    whole = write_image(root / "test" / "dog" / "padded.jpg", pixels("dog", 7)).read_bytes()
    (root / "test" / "dog" / "padded.jpg").write_bytes(whole + b"\0" * 5000)  # beyond the tail read
    images, labels = collect(load_test(root))
    expected_images, expected_labels = keras_images(root / "test")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert len(labels) == 7 and not notes(caplog)


def test_many_bad_files_name_the_first_few_and_count_the_rest(root, caplog):
    for index in range(5):
        (root / "test" / "cat" / f"bad{index}.png").write_text("x")
    assert load_test(root).num_examples == 6
    (message,) = notes(caplog)
    assert message.startswith(f"Skipping 5 of 11 image files in {root / 'test'}")
    assert (
        "cat/bad0.png is not an image; cat/bad1.png is not an image; cat/bad2.png is not an image; and 2 more."
        in message
    )


def test_a_note_is_said_once_however_often_a_split_is_loaded(tmp_path, caplog):
    write_classes(tmp_path / "flat", 4)
    (tmp_path / "flat" / "dog" / "broken.png").write_text("x")
    name = f"folder:{tmp_path / 'flat'}"
    sizes = [
        load(name, split, input_shape=SHAPE, val_fraction=0.25).num_examples
        for split in ("train", "val", "test", "train")
    ]
    assert sum(sizes[:2]) == 8  # the 9 files are carved, then the bad one is left out
    assert len([m for m in notes(caplog) if m.startswith("Skipping")]) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_skipped_and_named(root, caplog):
    locked = write_image(root / "test" / "cat" / "locked.png", pixels("cat", 8))
    locked.chmod(0)
    try:
        assert load_test(root).num_examples == 6
    finally:
        locked.chmod(0o644)
    assert "cat/locked.png cannot be read (Permission denied)" in notes(caplog)[0]


def test_an_unreadable_file_is_skipped_and_named_as_root_too(root, caplog, monkeypatch):
    locked = str(write_image(root / "test" / "cat" / "locked.png", pixels("cat", 8)))
    real_open = open

    def refusing_open(path, *args, **kwargs):  # what open() does to a chmod-000 file for a user
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(image_files, "open", refusing_open, raising=False)
    assert load_test(root).num_examples == 6
    assert "cat/locked.png cannot be read (Permission denied)" in notes(caplog)[0]


def test_a_split_of_bad_files_only_is_one_error_naming_them(root):
    for path in (root / "test").rglob("*.png"):
        path.write_bytes(b"")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"has no readable image for the test split: cat/0.png "
        r"is empty \(0 bytes\); .*; and 3 more\. Fix:",
    ) as error:
        load_test(root)
    assert "\n" not in str(error.value)


# --- --strict-data: refused with the path ----------------------------------------------------


def test_strict_data_refuses_a_bad_file_with_its_path(root):
    (root / "test" / "dog" / "broken.png").write_text("not an image")
    (root / "test" / "dog" / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidArgumentError) as error:
        load_test(root, strict_data=True)
    message = str(error.value)
    assert message.startswith(
        f"Image file {root / 'test' / 'dog' / 'broken.png'} is not an image "
        f"(and 1 more such files in {root / 'test'}). Fix: delete or replace it"
    )
    assert "\n" not in message
    assert load_test(root).num_examples == 6  # without it: skipped


# --- empty class folders and mixed channels: one note each -----------------------------------


def test_an_empty_class_folder_gets_a_note(root, caplog):
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    split = load_test(root)
    assert split.num_examples == 3 and split.info.class_names == ("cat", "dog")
    (message,) = notes(caplog)
    assert message == (
        f"Class folder {root / 'test' / 'dog'} holds no readable images: class 'dog' keeps "
        "its label (1) but has no examples here."
    )


def test_a_class_folder_of_bad_files_only_is_empty_too(root, caplog):
    for path in (root / "test" / "dog").iterdir():
        path.write_text("x")
    assert load_test(root).num_examples == 3
    assert any(
        m.startswith(f"Class folder {root / 'test' / 'dog'} holds no readable images") for m in notes(caplog)
    )


def test_grayscale_and_colour_images_in_one_folder_get_a_note(root, caplog):
    gray = pixels("cat", 9)
    write_image(root / "test" / "cat" / "gray.png", gray, mode="L")
    images, _ = collect(load_test(root))
    (message,) = notes(caplog)
    assert message == (
        f"{root / 'test'} mixes 1 grayscale and 6 colour images (e.g. cat/gray.png is "
        "grayscale): kprune reads them all as RGB, the input's 3 channels."
    )
    luma = np.asarray(Image.fromarray(gray).convert("L"), np.float32)  # Pillow: the reference
    read = images[3]  # cat/0, 1, 2, then gray.png (file order)
    for channel in range(3):
        np.testing.assert_array_equal(read[..., channel], luma)
    caplog.clear()
    load_test(root, shape=(8, 8, 1))
    assert notes(caplog)[0].endswith("kprune reads them all as grayscale, the input's 1 channel.")


def test_gif_and_bmp_are_read_for_a_grayscale_input(root):
    image = pixels("dog", 9)
    write_image(root / "test" / "dog" / "x.gif", image)
    write_image(root / "test" / "dog" / "y.bmp", image)
    with pytest.raises(Exception, match="channels must be 0 or 3 for GIF"):  # Keras' loader cannot
        keras_images(root / "test", color_mode="grayscale")
    images, labels = collect(load_test(root, shape=(8, 8, 1)))
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 1, 1])
    # Pillow's ITU-R 601 luma is the reference (TensorFlow rounds its weights differently: ±1).
    luma = np.asarray(Image.fromarray(image).convert("L"), np.float32)[..., None]
    np.testing.assert_allclose(images[-1], luma, atol=1)  # y.bmp
    gif = np.asarray(Image.open(root / "test" / "dog" / "x.gif").convert("L"), np.float32)[..., None]
    np.testing.assert_allclose(images[-2], gif, atol=1)  # x.gif: the palette's colours, then luma


# --- through the CLI: the note or the error, one line; the model untouched -------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax", name="probs"),
        ],
        name="tiny",
    )
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_eval_skips_a_broken_file_with_a_one_line_note(root, model_file):
    (root / "test" / "cat" / "broken.png").write_text("this is text, not an image")
    before = model_file.read_bytes()
    result = runner.invoke(app, ["eval", str(model_file), "--dataset", f"folder:{root}"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Unknown image file format" not in result.output
    assert "(6 images): accuracy" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if "cannot be decoded" in line]
    assert skipped == [
        (
            f"Note: Skipping 1 of 7 image files in {root / 'test'} that cannot be decoded: "
            "cat/broken.png is not an image. --strict-data stops on them instead."
        )
    ]
    assert model_file.read_bytes() == before


@pytest.mark.parametrize("command", ["eval", "rank", "train", "prune"])
def test_strict_data_is_one_line_naming_the_file_and_nothing_is_written(root, model_file, tmp_path, command):
    broken = root / "train" / "dog" / "broken.png"
    broken.write_bytes(b"")
    out = tmp_path / "out"
    arguments = {
        "eval": ["eval", model_file, "--split", "train"],
        "rank": [
            "rank",
            model_file,
            "--criterion",
            "taylor",
            "--split",
            "train",
            "--out",
            out / "scores.json",
        ],
        "train": ["train", "--model", model_file, "--out", out / "trained.keras", "--epochs", "1"],
        "prune": [
            "prune",
            "--model",
            model_file,
            "--criterion",
            "l1",
            "--target-params",
            "0.5",
            "--out",
            out,
        ],
    }[command]
    before = model_file.read_bytes()
    result = runner.invoke(
        app,
        [
            *map(str, arguments),
            "--dataset",
            f"folder:{root}",
            "--strict-data",
            *([] if command == "train" else ["--preprocess", "raw"]),
        ],
    )  # no card: no note
    assert_one_line_error(result, f"Image file {broken} is empty (0 bytes)", "Fix: delete or replace it")
    assert not out.exists()
    assert model_file.read_bytes() == before


def test_strict_data_in_a_run_config(root, model_file, tmp_path):
    (root / "train" / "cat" / "broken.png").write_text("x")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {model_file}\ndataset: folder:{root}\ncriterion: l1\ntarget_params: 0.5\n"
        "preprocess: raw\nstrict_data: true\n"
    )
    result = runner.invoke(app, ["prune", "--config", str(config), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, f"Image file {root / 'train' / 'cat' / 'broken.png'} is not an image")
    assert not (tmp_path / "run").exists()


@pytest.fixture(autouse=True)
def kprune_notes(caplog):
    caplog.set_level(logging.WARNING, logger="kprune")


def test_damage_inside_a_file_that_passes_the_quick_check_is_one_line(root, model_file):
    """The header and the end marker intact, the pixel data scrambled: TensorFlow's decoder
    refuses it while reading; the CLI prints its reason on one line, not its graph."""
    damaged = root / "test" / "cat" / "0.png"
    content = bytearray(damaged.read_bytes())
    data = content.index(b"IDAT") + 4  # the chunk's compressed pixels; its length and CRC stay
    content[data : data + 8] = bytes(8)
    damaged.write_bytes(bytes(content))
    result = runner.invoke(app, ["eval", str(model_file), "--dataset", f"folder:{root}"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("Note:")]
    expected = (
        "Error: TensorFlow stopped: Invalid PNG data, size 266. Fix: check the data and the model "
        "named above; --debug shows the traceback."
    )
    assert errors == [expected], result.stderr
