"""folder:PATH datasets read with keras.utils.image_dataset_from_directory."""

import numpy as np
import pytest
import tensorflow as tf

from kprune.data import Preprocessing, dataset_info, load
from kprune.data.folder import RGB_MEAN, RGB_STD
from kprune.errors import DatasetNotFoundError, InvalidArgumentError

# Class → its solid colour, so that a label can be checked against its pixels.
COLOURS = {"cat": (250, 10, 10), "dog": (10, 10, 250)}


def write_pngs(folder, count):
    """``count`` 6×6 PNGs per class; the green of pixel [0, 0] is a unique image id."""
    for class_index, (name, colour) in enumerate(COLOURS.items()):
        (folder / name).mkdir(parents=True)
        for index in range(count):
            pixels = np.tile(np.array(colour, np.uint8), (6, 6, 1))
            pixels[0, 0, 1] = 100 + 10 * class_index + index
            tf.io.write_file(str(folder / name / f"{index}.png"), tf.io.encode_png(pixels))


def image_ids(split):
    images, _ = collect(split)
    green = images[:, 0, 0, 1] * RGB_STD[1] + RGB_MEAN[1]
    return sorted(np.rint(green * 255).astype(int))


@pytest.fixture
def image_root(tmp_path):
    write_pngs(tmp_path / "images" / "train", 4)
    write_pngs(tmp_path / "images" / "test", 2)
    return tmp_path / "images"


def collect(split):
    images = np.concatenate([images.numpy() for images, _ in split])
    labels = np.concatenate([labels.numpy() for _, labels in split])
    return images, labels


def test_splits_sizes_classes_and_labels(image_root):
    name = f"folder:{image_root}"
    train = load(name, "train", input_shape=(8, 8, 3), val_fraction=0.25)
    val = load(name, "val", input_shape=(8, 8, 3), val_fraction=0.25)
    test = load(name, "test", input_shape=(8, 8, 3))
    assert (train.num_examples, val.num_examples, test.num_examples) == (6, 2, 4)
    assert train.info.class_names == ("cat", "dog") and train.info.num_classes == 2
    assert train.info.source == str(image_root / "train")
    assert test.info.source == str(image_root / "test")
    images, labels = collect(test)
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(labels), [2, 2])
    for image, label in zip(images, labels):
        colour = COLOURS[("cat", "dog")[label]]
        expected = (np.array(colour) / 255.0 - np.array(RGB_MEAN)) / np.array(RGB_STD)
        np.testing.assert_allclose(image[3, 3], expected, rtol=1e-4, atol=1e-4)


def test_train_and_val_are_disjoint_and_deterministic(image_root):
    name = f"folder:{image_root}"
    train = image_ids(load(name, "train", input_shape=(6, 6, 3), val_fraction=0.25))
    val = image_ids(load(name, "val", input_shape=(6, 6, 3), val_fraction=0.25))
    assert len(train) == 6 and len(val) == 2
    assert sorted(train + val) == [100, 101, 102, 103, 110, 111, 112, 113]
    assert image_ids(load(name, "val", input_shape=(6, 6, 3), val_fraction=0.25, seed=9)) == val
    assert image_ids(load(name, "test", input_shape=(6, 6, 3))) == [100, 101, 110, 111]
    assert dataset_info(name).class_names == ("cat", "dog")


def test_tiny_folder_val_split(image_root):
    # 8 images at val_fraction 0.1: Keras' own validation_split would give val = all 8.
    name = f"folder:{image_root}"
    assert load(name, "train", input_shape=(6, 6, 3), val_fraction=0.1).num_examples == 7
    assert load(name, "val", input_shape=(6, 6, 3), val_fraction=0.1).num_examples == 1
    with pytest.raises(
        InvalidArgumentError,
        match=r"has 8 images; val_fraction=0.05 leaves none "
        r"for the val split",
    ):
        load(name, "val", input_shape=(6, 6, 3), val_fraction=0.05)


def test_grayscale_model_input(image_root):
    split = load(f"folder:{image_root}", "test", input_shape=(6, 6, 1))
    images, _ = collect(split)
    assert images.shape == (4, 6, 6, 1)
    assert split.preprocessing.to_dict()["channel_order"] == "GRAY"


def test_flat_class_folders_serve_train_and_val(tmp_path):
    write_pngs(tmp_path / "flat", 5)
    train = load(f"folder:{tmp_path / 'flat'}", "train", input_shape=(6, 6, 3), val_fraction=0.2)
    assert train.info.class_names == ("cat", "dog") and train.num_examples == 8


def test_without_test_folder_the_test_split_is_val_and_says_so(tmp_path, caplog):
    write_pngs(tmp_path / "keras" / "train", 3)
    write_pngs(tmp_path / "keras" / "val", 2)
    name = f"folder:{tmp_path / 'keras'}"
    # val/ is the val split, whole; train/ is all train (nothing carved).
    assert load(name, "train", input_shape=(6, 6, 3)).num_examples == 6
    val = load(name, "val", input_shape=(6, 6, 3))
    assert val.num_examples == 4 and val.note == ""
    assert val.info.source == str(tmp_path / "keras" / "val")
    assert not caplog.records
    test = load(name, "test", input_shape=(6, 6, 3))
    assert image_ids(test) == image_ids(val) == [100, 101, 110, 111]
    assert test.note == (
        f"{name} has no test/ folder: its test split is {tmp_path / 'keras' / 'val'} (the validation images)."
    )
    assert [record.getMessage() for record in caplog.records] == [test.note]  # said once


def test_without_test_or_val_the_test_split_is_the_held_out_part(tmp_path, caplog):
    write_pngs(tmp_path / "only" / "train", 4)
    root = tmp_path / "only"
    test = load(f"folder:{root}", "test", input_shape=(6, 6, 3), val_fraction=0.25)
    val = load(f"folder:{root}", "val", input_shape=(6, 6, 3), val_fraction=0.25)
    assert image_ids(test) == image_ids(val) and test.num_examples == 2
    assert "has no test/ or val/ folder: its test split is the held-out 25%" in test.note
    assert caplog.records[0].getMessage() == test.note
    # train/ without test/ still holds the training classes (not a class called "train").
    assert test.info.class_names == ("cat", "dog")
    # A flat folder (classes directly under PATH) falls back the same way.
    write_pngs(tmp_path / "flat", 4)
    flat = load(f"folder:{tmp_path / 'flat'}", "test", input_shape=(6, 6, 3), val_fraction=0.25)
    assert flat.num_examples == 2 and "held-out 25%" in flat.note


def test_validation_folder_name_and_missing_class(tmp_path):
    write_pngs(tmp_path / "data" / "train", 2)
    write_pngs(tmp_path / "data" / "validation", 1)
    assert load(f"folder:{tmp_path / 'data'}", "val", input_shape=(6, 6, 3)).num_examples == 2
    (tmp_path / "data" / "test" / "cat").mkdir(parents=True)
    with pytest.raises(InvalidArgumentError, match=r"test has no folder for the classes \['dog'\] of "):
        load(f"folder:{tmp_path / 'data'}", "test", input_shape=(6, 6, 3))


def test_raw_and_explicit_preprocessing_of_folder_images(image_root):
    name = f"folder:{image_root}"
    raw, labels = collect(load(name, "test", input_shape=(6, 6, 3), preprocessing="raw"))
    expected = np.array([COLOURS[("cat", "dog")[label]] for label in labels], np.float32)
    np.testing.assert_array_equal(raw[:, 3, 3], expected)  # Keras' 0..255 floats, untouched
    explicit = Preprocessing((6, 6, 3), scale=2.0, mean=(1.0, 2.0, 3.0), std=(4.0,))
    images, _ = collect(load(name, "test", preprocessing=explicit))
    np.testing.assert_allclose(images[:, 3, 3], (expected * 2.0 - [1.0, 2.0, 3.0]) / 4.0, rtol=1e-6)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"Image folder .*absent does not exist. Fix:"):
        load(f"folder:{tmp_path / 'absent'}", "train")
    (tmp_path / "empty" / "test").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"No images in .*empty"):
        load(f"folder:{tmp_path / 'empty'}", "test")
