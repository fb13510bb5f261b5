"""A user's own images: one sub-folder per class.

``folder:PATH`` reads ``PATH/train/<class>/*`` (train and val) and
``PATH/test/<class>/*`` (test); without ``PATH/train``, ``PATH/<class>/*``
serves train and val. Without ``PATH/test`` there is no test split.
Decoding and resizing are keras.utils'.
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


def load(
    root: str,
    split: str,
    image_shape: tuple[int, int, int] | None,
    val_fraction: float,
    split_seed: int,
) -> tuple[tf.data.Dataset, int, DatasetInfo]:
    """One split as an unbatched dataset of (float32 image 0..255, int label).

    Raises:
        DatasetNotFoundError: If the folder does not exist or holds no images.
        InvalidArgumentError: If the test split is asked of a folder without
            test/, or the train or val split would be empty.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetNotFoundError(
            f"Image folder {root} does not exist. Fix: pass folder:PATH with one "
            "sub-folder of images per class."
        )
    if split == "test" and not (root_path / "test").is_dir():
        raise InvalidArgumentError(
            f"folder:{root} has no test split. Fix: arrange it as {root}/train/<class>/ "
            f"and {root}/test/<class>/, or use the val split."
        )
    if split == "test":
        directory = root_path / "test"
    elif (root_path / "train").is_dir():
        directory = root_path / "train"
    else:
        directory = root_path
    height, width, channels = image_shape or DEFAULT_SHAPE
    try:
        dataset = keras.utils.image_dataset_from_directory(
            directory,
            labels="inferred",
            label_mode="int",
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
    if split != "test":
        # Carved here, not with Keras' validation_split: that one puts every file
        # in both subsets when a folder holds fewer than 1 / val_fraction images.
        dataset, count = _carve(dataset, total, split, val_fraction, split_seed)
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
    return dataset, count, info


def _carve(dataset, count: int, split: str, val_fraction: float, split_seed: int):
    """The train or val part of ``dataset``, chosen like the array datasets' split."""
    order = np.random.default_rng(split_seed).permutation(count)
    held_out = int(round(count * val_fraction))
    chosen = order[:held_out] if split == "val" else order[held_out:]
    keep = tf.constant(np.isin(np.arange(count), chosen))
    dataset = dataset.enumerate().filter(lambda index, example: keep[index])
    return dataset.map(lambda index, example: example), len(chosen)
