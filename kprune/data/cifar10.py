"""CIFAR-10 through tensorflow-datasets (the optional extra ``kprune[cifar10]``).

tfds keeps prepared data under ``data_dir`` (default ``~/tensorflow_datasets``).
When it is absent, tfds downloads it, which needs the internet; without it the
user gets one error that says how to bring the data over. Without tfds
itself, the error names the extra that installs it.
"""

from __future__ import annotations

import os

import numpy as np

from kprune.data.info import DatasetInfo
from kprune.errors import DatasetNotFoundError, MissingDependencyError

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel statistics of the 50,000 training images scaled to [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def load_arrays(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], DatasetInfo]:
    """Loads both splits as ``{"train": (images, labels), "test": ...}``.

    Raises:
        DatasetNotFoundError: If the data is not prepared and cannot be downloaded.
        MissingDependencyError: If tensorflow-datasets is not installed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # an optional dependency: only CIFAR-10 needs it
        raise MissingDependencyError(
            "The cifar10 dataset needs tensorflow-datasets, which is not installed. "
            "Fix: pip install 'kprune[cifar10]'."
        ) from None

    data_dir = data_dir or os.environ.get("KPRUNE_DATA_DIR")
    builder = tfds.builder("cifar10", data_dir=data_dir)
    if not builder.is_prepared():
        if not download:
            raise _not_found(builder.data_dir, "downloading is disabled")
        try:
            builder.download_and_prepare()
        except Exception as error:  # any network or disk failure: tell the user how to fix it
            raise _not_found(builder.data_dir, f"{type(error).__name__}") from error
    arrays = {}
    for split in ("train", "test"):
        data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        arrays[split] = (data["image"], data["label"].astype(np.int64))
    info = DatasetInfo(
        name="cifar10",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        image_shape=(32, 32, 3),
        mean=MEAN,
        std=STD,
        source=str(builder.data_dir),
    )
    return arrays, info


def _not_found(data_dir, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"CIFAR-10 is not prepared in {data_dir} and could not be downloaded "
        f'({reason}). Fix: on a machine with internet run `python -c "import '
        "tensorflow_datasets as tfds; tfds.load('cifar10', data_dir='DIR')\"`, copy DIR "
        "here and pass --data-dir DIR."
    )
