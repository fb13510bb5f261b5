"""A user's own images: one sub-folder per class.

``folder:PATH`` reads, as Keras users arrange them::

    PATH/train/<class>/*    train (and val, when there is no val/)
    PATH/val/<class>/*      val (also spelled validation/); optional
    PATH/test/<class>/*     test; optional

Without ``PATH/train`` every sub-folder of ``PATH`` is a class, and train and
val are carved from them. A missing val split is the held-out
``val_fraction`` of train; a missing test split is the val split (val/, else
the held-out part of train), and the loader says so in the split's note.
Decoding and resizing are keras.utils' (`image_dataset_from_directory`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kprune.data.info import DatasetInfo
from kprune.errors import DatasetNotFoundError, InvalidArgumentError

# ImageNet statistics: a reasonable default for photos of unknown origin.
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
DEFAULT_SHAPE = (224, 224, 3)
VAL_FOLDERS = ("val", "validation")


def load(
    root: str,
    split: str,
    image_shape: tuple[int, int, int] | None,
    val_fraction: float,
    split_seed: int,
) -> tuple[tf.data.Dataset, int, DatasetInfo, str]:
    """One split as an unbatched dataset of (float32 image 0..255, int label).

    Returns:
        ``(examples, count, info, note)``; ``note`` says where a split that
        has no folder of its own comes from, else it is empty.

    Raises:
        DatasetNotFoundError: If the folder does not exist or holds no images.
        InvalidArgumentError: If val/ or test/ lacks a class of train, or the
            train or val split would be empty.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetNotFoundError(
            f"Image folder {root} does not exist. Fix: pass folder:PATH with one "
            "sub-folder of images per class."
        )
    train_dir, val_dir, test_dir = _split_folders(root_path)
    directory, part, note = _source(root, split, train_dir, val_dir, test_dir, val_fraction)
    class_names = _class_folders(train_dir)
    if directory != train_dir:
        missing = sorted(set(class_names) - set(_class_folders(directory)))
        if missing:
            raise InvalidArgumentError(
                f"{directory} has no folder for the classes {missing} of {train_dir}. Fix: "
                "give every split a sub-folder for each class (it may be empty of images)."
            )
    height, width, channels = image_shape or DEFAULT_SHAPE
    try:
        dataset = keras.utils.image_dataset_from_directory(
            directory,
            labels="inferred",
            label_mode="int",
            class_names=list(class_names) if class_names else None,
            color_mode="grayscale" if channels == 1 else "rgb",
            image_size=(height, width),
            batch_size=None,
            shuffle=False,  # sorted files; the pipeline shuffles training batches
            verbose=False,
        )
    except ValueError as error:
        raise DatasetNotFoundError(f"No images in {directory}: {error}") from error
    class_names = tuple(dataset.class_names)
    count = total = len(dataset.file_paths)
    if part is not None:
        # Carved here, not with Keras' validation_split: that one puts every file
        # in both subsets when a folder holds fewer than 1 / val_fraction images.
        dataset, count = _carve(dataset, total, part, val_fraction, split_seed)
        if count == 0:
            raise InvalidArgumentError(
                f"folder:{root} has {total} images; val_fraction={val_fraction} leaves "
                f"none for the {split} split. Fix: add images or change val_fraction."
            )
    gray = channels == 1
    info = DatasetInfo(
        name=f"folder:{root}",
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=(height, width, channels),
        mean=GRAY_MEAN if gray else RGB_MEAN,
        std=GRAY_STD if gray else RGB_STD,
        source=str(directory),
    )
    return dataset, count, info, note


def _split_folders(root: Path) -> tuple[Path, Path | None, Path | None]:
    """(train, val or None, test or None); split folders count only beside train/."""
    if not (root / "train").is_dir():
        return root, None, None
    val = next((root / name for name in VAL_FOLDERS if (root / name).is_dir()), None)
    test = root / "test" if (root / "test").is_dir() else None
    return root / "train", val, test


def _source(root, split, train_dir, val_dir, test_dir, val_fraction):
    """(folder to read, part of it to carve — "train", "val" or None —, note)."""
    if split == "test" and test_dir is not None:
        return test_dir, None, ""
    if split in ("val", "test") and val_dir is not None:
        note = "" if split == "val" else (
            f"folder:{root} has no test/ folder: its test split is {val_dir} "
            "(the validation images)."
        )  # fmt: skip
        return val_dir, None, note
    if split == "test":
        return train_dir, "val", (
            f"folder:{root} has no test/ or val/ folder: its test split is the held-out "
            f"{val_fraction:.0%} of {train_dir}, the same images as its val split."
        )  # fmt: skip
    if split == "train" and val_dir is not None:
        return train_dir, None, ""
    return train_dir, split, ""


def _class_folders(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.is_dir())


def _carve(dataset, count: int, split: str, val_fraction: float, split_seed: int):
    """The train or val part of ``dataset``, chosen like the array datasets' split."""
    order = np.random.default_rng(split_seed).permutation(count)
    held_out = int(round(count * val_fraction))
    chosen = order[:held_out] if split == "val" else order[held_out:]
    keep = tf.constant(np.isin(np.arange(count), chosen))
    dataset = dataset.enumerate().filter(lambda index, example: keep[index])
    return dataset.map(lambda index, example: example), len(chosen)
