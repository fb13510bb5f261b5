"""Fashion-MNIST: IDX parsing, where the files are looked for, the real data."""

import gzip

import numpy as np
import pytest

from kprune.data import fashion_mnist, load, read_idx
from kprune.errors import DatasetNotFoundError, InvalidArgumentError

from .conftest import write_fake_fashion_mnist, write_idx

# --- IDX parsing --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_uint8_plain_and_gzipped(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)


def test_read_idx_big_endian_types(tmp_path):
    ints = np.array([[-5, 70000], [1, 2]], dtype=">i4")
    floats = np.array([1.5, -2.25, 3e8], dtype=">f4")
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "i.idx", ints)), ints)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.idx", floats)), floats)


def test_read_idx_by_hand_bytes(tmp_path):
    # magic 0x00000801 (uint8, 1 dim), length 3, then the bytes 7 8 9.
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes.fromhex("00000801 00000003 070809"))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"IDX file .*nothing.gz does not exist"):
        read_idx(tmp_path / "nothing.gz")


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(InvalidArgumentError, match=r"is not an IDX file \(bad magic number\)"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "odd-idx1-ubyte"
    path.write_bytes(bytes.fromhex("00000701 00000001 00"))
    with pytest.raises(InvalidArgumentError, match="bad magic number"):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte", np.zeros((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        InvalidArgumentError,
        match=r"truncated or corrupt: header says shape \(4, 5, 5\) \(100 bytes of data\), "
        r"file holds 90",
    ):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "h-idx3-ubyte"
    path.write_bytes(bytes.fromhex("00000803 00000004 0000"))  # 3 dims announced, 1.5 given
    with pytest.raises(InvalidArgumentError, match=r"truncated: its header announces 3 dimensions"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte.gz", np.zeros((4, 5, 5), np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(InvalidArgumentError, match=r"Cannot read IDX file .*t-idx3-ubyte.gz"):
        read_idx(path)


def test_read_idx_not_gzip_despite_suffix(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(bytes.fromhex("00000801 00000001 05"))
    with pytest.raises(InvalidArgumentError, match="Cannot read IDX file"):
        read_idx(path)


# --- where the files are looked for -------------------------------------------------


@pytest.fixture
def locations(tmp_path, monkeypatch):
    """Four candidate folders, each with a fake dataset of a distinct size."""
    folders = {
        "argument": tmp_path / "argument",
        "environment": tmp_path / "environment",
        "debian": tmp_path / "debian",
        "keras": tmp_path / "keras",
    }
    for index, folder in enumerate(folders.values()):
        write_fake_fashion_mnist(folder, train=10 + index, test=5)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", folders["debian"])
    monkeypatch.setattr(fashion_mnist, "KERAS_DIR", folders["keras"])
    monkeypatch.setenv("KPRUNE_DATA_DIR", str(folders["environment"]))
    return folders


def test_search_order(locations, monkeypatch):
    def source(data_dir=None):
        arrays, info = fashion_mnist.load_arrays(data_dir, download=False)
        return info.source, len(arrays["train"][1])

    assert source(locations["argument"]) == (str(locations["argument"]), 10)
    assert source() == (str(locations["environment"]), 11)
    monkeypatch.delenv("KPRUNE_DATA_DIR")
    assert source() == (str(locations["debian"]), 12)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", locations["argument"] / "absent")
    assert source() == (str(locations["keras"]), 13)


def test_candidate_dirs_order(locations):
    dirs = fashion_mnist.candidate_dirs("/data")
    assert [str(d) for d in dirs] == [
        "/data",
        "/data/fashion-mnist",
        str(locations["environment"]),
        str(locations["environment"] / "fashion-mnist"),
        str(locations["debian"]),
        str(locations["keras"]),
    ]


def test_data_dir_subfolder_named_fashion_mnist(tmp_path):
    write_fake_fashion_mnist(tmp_path / "fashion-mnist", train=7)
    arrays, info = fashion_mnist.load_arrays(tmp_path, download=False)
    assert info.source == str(tmp_path / "fashion-mnist")
    assert len(arrays["train"][1]) == 7


def test_incomplete_folder_is_skipped(locations):
    (locations["argument"] / fashion_mnist.FILES["test"][1]).unlink()
    _, info = fashion_mnist.load_arrays(locations["argument"], download=False)
    assert info.source == str(locations["environment"])


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fashion_mnist, "KERAS_DIR", tmp_path / "no-keras")
    return tmp_path


def test_missing_dataset_says_how_to_fix(nowhere):
    with pytest.raises(DatasetNotFoundError) as raised:
        fashion_mnist.load_arrays(nowhere / "empty", download=False)
    message = str(raised.value)
    assert message.startswith("Fashion-MNIST not found (searched ")
    assert str(nowhere / "empty") in message and str(nowhere / "no-debian") in message
    assert "Fix: run `bash scripts/checks/fetch_data.sh`" in message
    assert "--data-dir" in message


def test_missing_dataset_tries_download_once_then_fails(nowhere, monkeypatch):
    calls = []
    monkeypatch.setattr(fashion_mnist, "_download_with_keras", lambda: calls.append(1))
    with pytest.raises(DatasetNotFoundError, match="could not be downloaded"):
        load("fashion_mnist", "train", data_dir=nowhere, download=True)
    assert calls == [1]


def test_download_result_is_used(nowhere, monkeypatch):
    downloaded = write_fake_fashion_mnist(nowhere / "downloaded", train=9)
    monkeypatch.setattr(fashion_mnist, "_download_with_keras", lambda: downloaded)
    arrays, info = fashion_mnist.load_arrays(None, download=True)
    assert info.source == str(downloaded) and len(arrays["train"][1]) == 9


def test_mismatched_images_and_labels(fake_fashion_dir):
    write_idx(fake_fashion_dir / fashion_mnist.FILES["test"][1], np.zeros(3, np.uint8))
    with pytest.raises(
        InvalidArgumentError,
        match=r"do not form a dataset: images \(20, 28, 28\), "
        r"labels \(3,\)",
    ):
        fashion_mnist.load_arrays(fake_fashion_dir, download=False)


def test_arrays_shapes_dtypes_and_info(fake_fashion_dir):
    arrays, info = fashion_mnist.load_arrays(fake_fashion_dir, download=False)
    images, labels = arrays["train"]
    assert images.shape == (50, 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels) == set(range(10))
    assert arrays["test"][0].shape == (20, 28, 28, 1)
    raw = np.frombuffer(
        gzip.decompress((fake_fashion_dir / "train-images-idx3-ubyte.gz").read_bytes())[16:],
        np.uint8,
    ).reshape(50, 28, 28)
    np.testing.assert_array_equal(images[..., 0], raw)
    assert info.num_classes == 10 and len(info.class_names) == 10
    assert info.image_shape == (28, 28, 1) and info.class_names[0] == "T-shirt/top"


# --- the real data (Debian package dataset-fashion-mnist) ---------------------------

realdata = pytest.mark.skipif(
    not all(
        (fashion_mnist.DEBIAN_DIR / name).is_file() for pair in fashion_mnist.FILES.values() for name in pair
    ),
    reason=f"Fashion-MNIST is not installed in {fashion_mnist.DEBIAN_DIR} "
    "(run `bash scripts/checks/fetch_data.sh`)",
)


@pytest.fixture(scope="module")
def real_arrays():
    arrays, info = fashion_mnist.load_arrays(fashion_mnist.DEBIAN_DIR, download=False)
    return arrays, info


@pytest.mark.realdata
@realdata
def test_real_split_sizes_and_labels(real_arrays):
    arrays, _ = real_arrays
    assert arrays["train"][0].shape == (60_000, 28, 28, 1)
    assert arrays["test"][0].shape == (10_000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(arrays["train"][1]), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(arrays["test"][1]), [1000] * 10)
    splits = {
        split: load(
            "fashion_mnist", split, batch_size=1000, data_dir=fashion_mnist.DEBIAN_DIR, download=False
        )
        for split in ("train", "val", "test")
    }
    assert {split: s.num_examples for split, s in splits.items()} == {
        "train": 54_000,
        "val": 6_000,
        "test": 10_000,
    }
    val_labels = np.concatenate([labels.numpy() for _, labels in splits["val"]])
    counts = np.bincount(val_labels, minlength=10)
    assert counts.sum() == 6000
    assert counts.min() >= 500 and counts.max() <= 700, counts  # balanced-ish, not skewed


@pytest.mark.realdata
@realdata
def test_real_mean_and_std_constants(real_arrays):
    arrays, _ = real_arrays
    # Exact statistics from the histogram of the 47,040,000 training pixel values.
    counts = np.bincount(arrays["train"][0].ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    total = counts.sum()
    mean = (counts * values).sum() / total
    std = np.sqrt((counts * values**2).sum() / total - mean**2)
    assert abs(mean - fashion_mnist.MEAN[0]) < 5e-4, mean
    assert abs(std - fashion_mnist.STD[0]) < 5e-4, std
