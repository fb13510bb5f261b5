"""A user's own images: one sub-folder per class.

``folder:PATH`` reads, as Keras users arrange them::

    PATH/train/<class>/*    train (and val, when there is no val/)
    PATH/val/<class>/*      val (also spelled validation/); optional
    PATH/test/<class>/*     test; optional

Without ``PATH/train`` every sub-folder of ``PATH`` is a class, and train and
val are carved from them. A missing val split is the held-out
``val_fraction`` of train; a missing test split is the val split (val/, else
the held-out part of train), and the loader says so in the split's note.

Files, their order and labels, decoding and resizing are those of
``keras.utils.image_dataset_from_directory`` (a test holds them equal), with
one step before: every file is checked (`kprune.data.image_files`), so that a
file TensorFlow cannot decode is skipped and named in a note — or refused,
with ``strict`` — instead of stopping the pipeline midway with a traceback.
An empty class folder, or grayscale and colour images in one folder, get a
note too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from kprune.data.image_files import FileCheck, check_files
from kprune.data.info import DatasetInfo
from kprune.errors import DatasetNotFoundError, InvalidArgumentError

# ImageNet statistics: a reasonable default for photos of unknown origin.
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
DEFAULT_SHAPE = (224, 224, 3)
VAL_FOLDERS = ("val", "validation")
FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # the files Keras' loader lists
NAMED = 3  # files a note names before "and N more"
notes = logging.getLogger("kprune")
_said: set[str] = set()  # each note once per process, however often a split is loaded


def load(
    root: str,
    split: str,
    image_shape: tuple[int, int, int] | None,
    val_fraction: float,
    split_seed: int,
    strict: bool = False,
) -> tuple[tf.data.Dataset, int, DatasetInfo, str]:
    """One split as an unbatched dataset of (float32 image 0..255, int label).

    Args:
        root: The folder (``PATH`` of ``folder:PATH``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_shape: ``(height, width, channels)`` to resize and convert to;
            None for 224×224 RGB.
        val_fraction: Share of train held out as val when there is no val/.
        split_seed: Seed of that hold-out.
        strict: Refuse a folder with a file TensorFlow cannot decode, instead
            of skipping such files with a note.

    Returns:
        ``(examples, count, info, note)``; ``note`` says where a split that
        has no folder of its own comes from, else it is empty.

    Raises:
        DatasetNotFoundError: If the folder does not exist or holds no
            (readable) images.
        InvalidArgumentError: If val/ or test/ lacks a class of train, the
            train or val split would be empty, or (``strict``) a file cannot
            be decoded.
    """
    train_dir, val_dir, test_dir = _split_folders(_existing(root))
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
    decoded_channels = 1 if channels == 1 else 3  # Keras' color_mode: grayscale, else rgb
    paths, labels = _listed(directory, class_names)
    checks = _checked(directory, paths, labels, class_names, decoded_channels, strict)
    readable = np.array([not check.problem for check in checks], bool)
    total = len(paths)
    chosen = np.arange(total)
    if part is not None:
        # Carved here, not with Keras' validation_split: that one puts every file
        # in both subsets when a folder holds fewer than 1 / val_fraction images.
        # Carved from every listed file, so skipping one moves no other between splits.
        chosen = _carve(total, part, val_fraction, split_seed)
        if len(chosen) == 0:
            raise InvalidArgumentError(
                f"folder:{root} has {total} images; val_fraction={val_fraction} leaves "
                f"none for the {split} split. Fix: add images or change val_fraction."
            )
    if not readable[chosen].any():
        unreadable = [(paths[index], checks[index].problem) for index in chosen]
        raise DatasetNotFoundError(
            f"folder:{root} has no readable image for the {split} split: "
            f"{_listing(unreadable, directory)}. Fix: replace these files or add images."
        )
    chosen = chosen[readable[chosen]]
    examples = _decoded(paths[chosen], labels[chosen], (height, width), decoded_channels)
    return examples, len(chosen), _info(root, class_names, (height, width, channels), directory), note


def info(root: str) -> DatasetInfo:
    """The `DatasetInfo` of ``folder:root`` (classes, 224×224 RGB), without reading images.

    Raises:
        DatasetNotFoundError: If the folder does not exist or lists no images.
    """
    train_dir = _split_folders(_existing(root))[0]
    class_names = _class_folders(train_dir)
    _listed(train_dir, class_names)
    return _info(root, class_names, DEFAULT_SHAPE, train_dir)


def _existing(root: str) -> Path:
    if not Path(root).is_dir():
        raise DatasetNotFoundError(
            f"Image folder {root} does not exist. Fix: pass folder:PATH with one "
            "sub-folder of images per class."
        )
    return Path(root)


def _info(root, class_names, image_shape, directory) -> DatasetInfo:
    gray = image_shape[2] == 1
    return DatasetInfo(
        name=f"folder:{root}",
        num_classes=len(class_names),
        class_names=tuple(class_names),
        image_shape=tuple(image_shape),
        mean=GRAY_MEAN if gray else RGB_MEAN,
        std=GRAY_STD if gray else RGB_STD,
        source=str(directory),
    )


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
        note = (
            ""
            if split == "val"
            else (f"folder:{root} has no test/ folder: its test split is {val_dir} (the validation images).")
        )
        return val_dir, None, note
    if split == "test":
        return (
            train_dir,
            "val",
            (
                f"folder:{root} has no test/ or val/ folder: its test split is the held-out "
                f"{val_fraction:.0%} of {train_dir}, the same images as its val split."
            ),
        )
    if split == "train" and val_dir is not None:
        return train_dir, None, ""
    return train_dir, split, ""


def _class_folders(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.is_dir())


def _listed(directory: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(paths, labels) as Keras' loader lists them: class by class, each class
    folder walked in sorted order (sub-folders too), image extensions only."""
    paths, labels = [], []
    for label, name in enumerate(class_names):
        for folder, _, files in sorted(os.walk(os.path.join(directory, name)), key=lambda entry: entry[0]):
            found = [os.path.join(folder, file) for file in sorted(files) if file.lower().endswith(FORMATS)]
            paths += found
            labels += [label] * len(found)
    if not paths:
        raise DatasetNotFoundError(
            f"No images in {directory}: its class folders hold no {', '.join(FORMATS)} files. "
            "Fix: put the images in one sub-folder per class."
        )
    return np.array(paths), np.array(labels, np.int32)


def _checked(directory, paths, labels, class_names, channels, strict) -> list[FileCheck]:
    """Whether TensorFlow can decode each listed file; says (once) what is skipped,
    which classes are left without images and whether channels are mixed.

    Raises:
        InvalidArgumentError: With ``strict``, naming the first bad file.
    """
    checks = check_files(list(paths))
    bad = [(path, check.problem) for path, check in zip(paths, checks) if check.problem]
    if bad and strict:
        path, problem = bad[0]
        others = f" (and {len(bad) - 1} more such files in {directory})" if len(bad) > 1 else ""
        raise InvalidArgumentError(
            f"Image file {path} {problem}{others}. Fix: delete or replace it, or run without "
            "--strict-data to skip such files with a note."
        )
    if bad:
        _note(
            f"Skipping {len(bad)} of {len(paths)} image files in {directory} that cannot be decoded: "
            f"{_listing(bad, directory)}. --strict-data stops on them instead."
        )
    readable_labels = {int(label) for label, check in zip(labels, checks) if not check.problem}
    _note_empty_classes(directory, class_names, readable_labels)
    _note_mixed_channels(directory, paths, checks, channels)
    return checks


def _listing(named_problems, directory) -> str:
    """ "cat/a.png is not an image; dog/b.jpg is empty (0 bytes); and 3 more"."""
    shown = [f"{os.path.relpath(path, directory)} {problem}" for path, problem in named_problems[:NAMED]]
    more = len(named_problems) - NAMED
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _note_empty_classes(directory, class_names, readable_labels: set[int]) -> None:
    empty = [(label, name) for label, name in enumerate(class_names) if label not in readable_labels]
    if len(empty) == 1:
        label, name = empty[0]
        _note(
            f"Class folder {os.path.join(directory, name)} holds no readable images: class {name!r} "
            f"keeps its label ({label}) but has no examples here."
        )
    elif empty:
        folders = ", ".join(os.path.join(directory, name) for _, name in empty)
        _note(
            f"Class folders {folders} hold no readable images: their classes keep their labels "
            "but have no examples here."
        )


def _note_mixed_channels(directory, paths, checks: list[FileCheck], channels: int) -> None:
    gray = [path for path, check in zip(paths, checks) if check.grayscale is True]
    colour = [path for path, check in zip(paths, checks) if check.grayscale is False]
    if gray and colour:
        fewer, kind = (gray, "grayscale") if len(gray) <= len(colour) else (colour, "colour")
        _note(
            f"{directory} mixes {len(gray)} grayscale and {len(colour)} colour images "
            f"(e.g. {os.path.relpath(fewer[0], directory)} is {kind}): kprune reads them all as "
            f"{'grayscale' if channels == 1 else 'RGB'}, the input's {channels} channel"
            f"{'s' if channels > 1 else ''}."
        )


def _note(message: str) -> None:
    if message not in _said:
        _said.add(message)
        notes.warning(message)


def _carve(count: int, split: str, val_fraction: float, split_seed: int) -> np.ndarray:
    """Indices (in file order) of the train or val part, chosen like the array datasets' split."""
    order = np.random.default_rng(split_seed).permutation(count)
    held_out = int(round(count * val_fraction))
    return np.sort(order[:held_out] if split == "val" else order[held_out:])


def _decoded(paths: np.ndarray, labels: np.ndarray, size: tuple[int, int], channels: int) -> tf.data.Dataset:
    """(float32 image 0..255, int32 label) pairs as Keras' loader decodes and resizes them."""

    def read(path, label):
        image = _decode(tf.io.read_file(path), channels)
        image = tf.image.resize(image, size, method="bilinear")
        image.set_shape((*size, channels))
        return image, label

    files = tf.data.Dataset.from_tensor_slices((paths, labels))
    return files.map(read, num_parallel_calls=tf.data.AUTOTUNE)


def _decode(contents: tf.Tensor, channels: int) -> tf.Tensor:
    if channels == 3:
        return tf.image.decode_image(contents, channels=3, expand_animations=False)
    # TensorFlow decodes GIF and BMP in colour only (Keras' loader fails on them for
    # a grayscale input): those are decoded as RGB and converted.
    magic = tf.strings.substr(contents, 0, 2)
    colour_only = tf.logical_or(tf.equal(magic, "GI"), tf.equal(magic, "BM"))
    return tf.cond(
        colour_only,
        lambda: tf.image.rgb_to_grayscale(
            tf.image.decode_image(contents, channels=3, expand_animations=False)
        ),
        lambda: tf.image.decode_image(contents, channels=1, expand_animations=False),
    )
