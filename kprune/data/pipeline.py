"""`load()`: a dataset name → a batched, preprocessed tf.data pipeline."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kprune import keras_internals
from kprune.data import cifar10, fashion_mnist, folder, synthetic
from kprune.data.info import DatasetInfo, Preprocessing, Split
from kprune.errors import InvalidArgumentError

NAMES = ("cifar10", "fashion_mnist", "synthetic", "folder:PATH")
SPLITS = ("train", "val", "test")
# The validation split is carved from train with this fixed seed, so it is the
# same for every run whatever the training seed.
SPLIT_SEED = 0
PREPROCESSING = ("dataset", "raw")
# A split that is not what its name promises is said once, here (the CLI prints it).
notes = logging.getLogger("kprune")


def load(
    name: str,
    split: str = "train",
    *,
    input_shape: tuple[int, int, int] | None = None,
    batch_size: int = 64,
    augment: bool = False,
    shuffle: bool | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    preprocessing: str | Preprocessing = "dataset",
    strict_data: bool = False,
) -> Split:
    """Loads one split of a dataset as batches ready for a model.

    Args:
        name: ``"fashion_mnist"``, ``"cifar10"``, ``"folder:PATH"`` or
            ``"synthetic"`` (tests only).
        split: ``"train"``, ``"val"`` (``val_fraction`` of train, carved with a
            fixed seed; a folder's val/ when it has one) or ``"test"`` (a
            folder without test/ gives its val split, and ``Split.note`` says so).
        input_shape: The model's ``(height, width, channels)``; images are
            resized and their channels converted to it. Defaults to the
            shape of an explicit ``preprocessing``, else the dataset's own.
        batch_size: Examples per batch.
        augment: Random translation (±10%) and horizontal flips, for training.
        shuffle: Reshuffle every epoch; defaults to ``split == "train"``.
        val_fraction: Fraction of the training images held out as ``val``.
        seed: Seed of shuffling and augmentation.
        limit: Keep only the first ``limit`` examples of the split.
        data_dir: Where to look for the data first.
        download: Allow downloading when the data is not on disk.
        preprocessing: The input transform after resizing and channel
            conversion: ``"dataset"`` standardizes with the dataset's own
            mean and std (what ``kprune train`` uses); ``"raw"`` keeps the
            pixels as Keras' image loaders give them (float32 0..255); a
            `Preprocessing` applies its scale, mean and std. For a model file,
            `choose_preprocessing` picks one (its card, else raw).
        strict_data: For ``folder:PATH``, refuse a file that TensorFlow cannot
            decode (not an image, empty, truncated, unreadable) instead of
            skipping it with a note naming it.

    Returns:
        A `Split`: ``.dataset`` yields ``(float32 images NHWC, int32 labels)``.

    Raises:
        InvalidArgumentError: On an unknown name or split, a bad argument, or
            (``strict_data``) an image file that cannot be decoded.
        DatasetNotFoundError: If the data is absent and cannot be downloaded.

    Example:
        >>> train = load("fashion_mnist", "train", batch_size=128, augment=True)
    """
    if split not in SPLITS:
        raise InvalidArgumentError(f"`split` must be one of {SPLITS}. Received split={split!r}.")
    if not 0.0 < val_fraction < 1.0:
        raise InvalidArgumentError(f"`val_fraction` must be in (0, 1). Received val_fraction={val_fraction}.")
    if batch_size < 1:
        raise InvalidArgumentError(f"`batch_size` must be positive. Received batch_size={batch_size}.")
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"`limit` must be positive. Received limit={limit}.")
    if shuffle is None:
        shuffle = split == "train"
    input_shape = _input_shape(input_shape, preprocessing)

    note = ""
    if name.startswith("folder:"):
        examples, count, info, note = folder.load(
            name.removeprefix("folder:"), split, input_shape, val_fraction, SPLIT_SEED, strict_data
        )
    else:
        arrays, info = _load_arrays(name, input_shape, data_dir, download)
        images, labels = _select(arrays, split, val_fraction)
        count = len(labels)
        examples = tf.data.Dataset.from_tensor_slices((images, labels))
    if limit is not None:
        count = min(count, limit)
        examples = examples.take(count)

    if note:
        notes.warning(note)
    if preprocessing == "dataset":
        preprocessing = info.preprocessing(input_shape)
    elif preprocessing == "raw":
        preprocessing = Preprocessing.raw(input_shape or info.image_shape)
    pipeline = examples.cache()
    if shuffle:
        pipeline = pipeline.shuffle(min(count, 50_000), seed=seed, reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size)
    augmenter = _augmenter(seed) if augment else None

    def transform(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, training=True)
        return preprocessing.apply(images), tf.cast(labels, tf.int32)

    pipeline = pipeline.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    pipeline = pipeline.prefetch(tf.data.AUTOTUNE)
    return Split(pipeline, info, preprocessing, split, count, batch_size, note)


def _input_shape(input_shape, preprocessing) -> tuple[int, int, int] | None:
    if isinstance(preprocessing, Preprocessing):
        if input_shape is not None and tuple(input_shape) != tuple(preprocessing.input_shape):
            raise InvalidArgumentError(
                f"`preprocessing` resizes to {tuple(preprocessing.input_shape)}, but "
                f"input_shape={tuple(input_shape)}. Fix: give both the model's input shape."
            )
        return tuple(preprocessing.input_shape)
    if preprocessing not in PREPROCESSING:
        raise InvalidArgumentError(
            f"`preprocessing` must be one of {PREPROCESSING} or a kprune.data.Preprocessing. "
            f"Received preprocessing={preprocessing!r}."
        )
    return None if input_shape is None else tuple(input_shape)


def dataset_info(name: str, data_dir=None, download: bool = True) -> DatasetInfo:
    """The `DatasetInfo` of a dataset, without building a pipeline."""
    if name.startswith("folder:"):
        return folder.info(name.removeprefix("folder:"))
    return _load_arrays(name, None, data_dir, download)[1]


def as_dataset(data: Any, batch_size: int = 64) -> tf.data.Dataset:
    """Batches from anything ``model.fit`` takes, as a tf.data.Dataset.

    Accepts a `Split`; a tf.data.Dataset of batches; ``(x, y)`` or ``(x, y,
    sample_weight)`` with NumPy arrays (or dicts/lists of them, for models with
    several inputs or outputs), batched by ``batch_size`` in order; a
    ``keras.utils.PyDataset``; a Python generator of batches. Keras' own data
    adapters do the conversion, so batches look exactly as ``fit`` sees them.
    A generator is read once: pass an infinite one for training data, and
    something that can be read again (arrays, tf.data, PyDataset) for
    validation data.

    Raises:
        InvalidArgumentError: For anything else.
    """
    if isinstance(data, Split):
        return data.dataset
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, tuple) and len(data) in (2, 3):
        x, y, sample_weight = (*data, None)[:3]
        return _from_adapter(
            keras_internals.data_adapters.get_data_adapter(x, y, sample_weight, batch_size=batch_size)
        )
    if isinstance(data, keras.utils.PyDataset) or inspect.isgenerator(data):
        return _from_adapter(keras_internals.data_adapters.get_data_adapter(data))
    raise InvalidArgumentError(
        "Data must be a kprune.data.Split, a tf.data.Dataset of (x, y) batches, "
        "an (x, y) or (x, y, sample_weight) tuple of arrays, a keras.utils.PyDataset "
        f"or a generator of batches. Received {type(data).__name__}."
    )


def _from_adapter(data_adapter) -> tf.data.Dataset:
    dataset = data_adapter.get_tf_dataset()
    if data_adapter.num_batches:  # the adapter knows; its dataset does not say
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(data_adapter.num_batches))
    return dataset


def batches_per_epoch(data: Any, dataset: tf.data.Dataset | None = None) -> int | None:
    """Batches in one pass over ``data``, or None when a dataset cannot tell."""
    if hasattr(data, "num_batches"):
        return data.num_batches
    cardinality = int((dataset if dataset is not None else as_dataset(data)).cardinality())
    return cardinality if cardinality > 0 else None


def _load_arrays(name, input_shape, data_dir, download):
    if name == "fashion_mnist":
        return fashion_mnist.load_arrays(data_dir, download)
    if name == "cifar10":
        return cifar10.load_arrays(data_dir, download)
    if name == "synthetic":
        return synthetic.load_arrays(input_shape)
    raise InvalidArgumentError(f"Unknown dataset {name!r}. Use one of: {', '.join(NAMES)}.")


def _select(arrays: dict, split: str, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    if split == "test":
        return arrays["test"]
    images, labels = arrays["train"]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    held_out = int(round(len(labels) * val_fraction))
    chosen = order[:held_out] if split == "val" else order[held_out:]
    chosen.sort()  # keep file order inside each split: deterministic and cache-friendly
    return images[chosen], labels[chosen]


def _augmenter(seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed + 1),
        ],
        name="augment",
    )
