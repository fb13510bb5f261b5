"""Fashion-MNIST (Xiao et al., 2017) from its IDX .gz files.

Looked for, in order: the ``data_dir`` argument, ``$KPRUNE_DATA_DIR``,
``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``,
installed by ``scripts/checks/fetch_data.sh``) and ``~/.keras/datasets/fashion-mnist``;
else Keras downloads it, on machines with internet.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np

from kprune.data.info import DatasetInfo
from kprune.errors import DatasetNotFoundError, InvalidArgumentError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_DIR = Path("~/.keras/datasets/fashion-mnist")
# Of the 60,000 training images scaled to [0, 1]; tests/data check them on the real files.
MEAN, STD = (0.2860,), (0.3530,)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) into a NumPy array.

    The format (LeCun's MNIST page): two zero bytes, a type code, the number
    of dimensions, each dimension as a big-endian uint32, then the data.

    Raises:
        DatasetNotFoundError: If the file does not exist.
        InvalidArgumentError: If the file is not a valid IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"IDX file {path} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            content = handle.read()
    except (OSError, EOFError) as error:
        raise InvalidArgumentError(f"Cannot read IDX file {path}: {error}.") from error
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in _IDX_DTYPES:
        raise InvalidArgumentError(f"{path} is not an IDX file (bad magic number).")
    ndim = content[3]
    header_end = 4 + 4 * ndim
    if len(content) < header_end:
        raise InvalidArgumentError(
            f"{path} is truncated: its header announces {ndim} dimensions "
            f"({header_end} bytes), the file holds {len(content)} bytes."
        )
    shape = tuple(int(d) for d in np.frombuffer(content[4:header_end], dtype=">u4"))
    dtype = np.dtype(_IDX_DTYPES[content[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(content) - header_end != expected:
        raise InvalidArgumentError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes of data), file holds {len(content) - header_end}."
        )
    return np.frombuffer(content, dtype=dtype, offset=header_end).reshape(shape)


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for the IDX files, in order."""
    dirs = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    if os.environ.get("KPRUNE_DATA_DIR"):
        base = Path(os.environ["KPRUNE_DATA_DIR"])
        dirs += [base, base / "fashion-mnist"]
    dirs += [DEBIAN_DIR, KERAS_DIR.expanduser()]
    return dirs


def find(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first candidate folder holding all four IDX files, or None."""
    needed = [name for pair in FILES.values() for name in pair]
    for folder in candidate_dirs(data_dir):
        if all((folder / name).is_file() for name in needed):
            return folder
    return None


def load_arrays(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], DatasetInfo]:
    """Loads both splits as ``{"train": (images, labels), "test": ...}``.

    Images are uint8 of shape (N, 28, 28, 1); labels int64 in 0..9.

    Raises:
        DatasetNotFoundError: If the files are nowhere and cannot be downloaded.
    """
    folder = find(data_dir)
    if folder is None and download:
        folder = _download_with_keras()
    if folder is None:
        searched = ", ".join(str(d) for d in candidate_dirs(data_dir))
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found (searched {searched}) and it could not be "
            "downloaded. Fix: run `bash scripts/checks/fetch_data.sh` (installs the Debian "
            "package dataset-fashion-mnist) or pass --data-dir to a folder holding "
            "the four *-ubyte.gz files."
        )
    stamps = tuple((folder / name).stat().st_mtime_ns for pair in FILES.values() for name in pair)
    arrays = _read_folder(folder, stamps)
    info = DatasetInfo(
        name="fashion_mnist",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        image_shape=(28, 28, 1),
        mean=MEAN,
        std=STD,
        source=str(folder),
    )
    return arrays, info


@functools.lru_cache(maxsize=2)
def _read_folder(folder: Path, stamps: tuple) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decodes the four files once per process (pruning reloads data every step);
    ``stamps`` (modification times) make a changed file read again."""
    arrays = {}
    for split, (image_file, label_file) in FILES.items():
        images = read_idx(folder / image_file)
        labels = read_idx(folder / label_file).astype(np.int64)
        if images.ndim != 3 or len(images) != len(labels):
            raise InvalidArgumentError(
                f"{folder / image_file} and {label_file} do not form a dataset: "
                f"images {images.shape}, labels {labels.shape}."
            )
        images.flags.writeable = False
        labels.flags.writeable = False
        arrays[split] = (images[..., np.newaxis], labels)
    return arrays


def _download_with_keras() -> Path | None:
    import keras

    try:
        keras.datasets.fashion_mnist.load_data()
    except Exception:  # no network: every failure mode means "not available"
        return None
    folder = KERAS_DIR.expanduser()
    return folder if find(folder) else None
