"""Data fixtures: tiny IDX files written here; no test ever downloads."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from kprune.data import fashion_mnist

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Writes ``array`` as an IDX file: 0, 0, type code, ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def write_fake_fashion_mnist(folder: Path, train: int = 50, test: int = 20, seed: int = 0) -> Path:
    """Four IDX .gz files like Fashion-MNIST's; pixel [0, 0] holds the example index."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(count)
        labels = (np.arange(count) % 10).astype(np.uint8)
        image_file, label_file = fashion_mnist.FILES[split]
        write_idx(folder / image_file, images)
        write_idx(folder / label_file, labels)
    return folder


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Tests never reach the network and ignore the user's KPRUNE_DATA_DIR."""

    def refuse():
        raise AssertionError("a test tried to download Fashion-MNIST")

    monkeypatch.setattr(fashion_mnist, "_download_with_keras", refuse)
    monkeypatch.delenv("KPRUNE_DATA_DIR", raising=False)


@pytest.fixture
def fake_fashion_dir(tmp_path) -> Path:
    """A folder with a 50-train / 20-test fake Fashion-MNIST."""
    return write_fake_fashion_mnist(tmp_path / "fmnist")
