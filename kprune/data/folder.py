"""A user's own images: one sub-folder per class.

``folder:PATH`` reads ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``
when both exist; otherwise ``PATH/<class>/*`` serves train and val, and there
is no test split. Decoding and resizing are keras.utils'.
"""

from __future__ import annotations

from pathlib import Path

import keras
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
        InvalidArgumentError: If the test split is asked of a folder without test/.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetNotFoundError(
            f"Image folder {root} does not exist. Fix: pass folder:PATH with one "
            "sub-folder of images per class."
        )
    has_splits = (root_path / "train").is_dir() and (root_path / "test").is_dir()
    if split == "test" and not has_splits:
        raise InvalidArgumentError(
            f"folder:{root} has no test split. Fix: arrange it as {root}/train/<class>/ "
            f"and {root}/test/<class>/, or use the val split."
        )
    directory = root_path / ("test" if split == "test" else "train") if has_splits else root_path
    height, width, channels = image_shape or DEFAULT_SHAPE
    options = dict(
        labels="inferred",
        label_mode="int",
        color_mode="grayscale" if channels == 1 else "rgb",
        image_size=(height, width),
        batch_size=None,
        shuffle=True,
        seed=split_seed,
        verbose=False,
    )
    try:
        if split == "test":
            dataset = keras.utils.image_dataset_from_directory(directory, **options)
        else:
            subset = "training" if split == "train" else "validation"
            dataset = keras.utils.image_dataset_from_directory(
                directory, validation_split=val_fraction, subset=subset, **options
            )
    except ValueError as error:
        raise DatasetNotFoundError(f"No images in {directory}: {error}") from error
    gray = channels == 1
    info = DatasetInfo(
        name=f"folder:{root}",
        num_classes=len(dataset.class_names),
        class_names=tuple(dataset.class_names),
        image_shape=(height, width, channels),
        mean=GRAY_MEAN if gray else RGB_MEAN,
        std=GRAY_STD if gray else RGB_STD,
        source=str(directory),
    )
    return dataset, len(dataset.file_paths), info
