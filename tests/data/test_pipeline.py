"""load(): splits, shapes, preprocessing, augmentation, limit; cifar10; synthetic."""

import numpy as np
import pytest
import tensorflow as tf

from kprune.data import Preprocessing, as_dataset, dataset_info, fashion_mnist, load, synthetic
from kprune.errors import DatasetNotFoundError, InvalidArgumentError


def collect(split):
    """All (images, labels) of a Split as NumPy arrays."""
    batches = list(split)
    images = np.concatenate([images.numpy() for images, _ in batches])
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    return images, labels


def example_ids(split):
    """The fake dataset stores each example's index in pixel [0, 0]; undo the normalization."""
    images, _ = collect(split)
    prep = split.preprocessing
    raw = (images[:, 0, 0, 0] * prep.std[0] + prep.mean[0]) / prep.scale
    return np.rint(raw).astype(int)


def fmnist(folder, split, **kwargs):
    return load("fashion_mnist", split, data_dir=folder, download=False, shuffle=False, **kwargs)


def test_shapes_dtypes_and_labels(fake_fashion_dir):
    split = fmnist(fake_fashion_dir, "test", batch_size=8)
    images, labels = collect(split)
    first_images, first_labels = next(iter(split))
    assert first_images.dtype == tf.float32 and first_images.shape == (8, 28, 28, 1)
    assert first_labels.dtype == tf.int32
    assert images.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(labels, np.arange(20) % 10)
    assert (split.split, split.num_examples, split.batch_size, split.num_batches) == ("test", 20, 8, 3)
    assert split.info.name == "fashion_mnist"


def test_val_is_carved_from_train_disjoint_and_deterministic(fake_fashion_dir):
    train = example_ids(fmnist(fake_fashion_dir, "train"))
    val = example_ids(fmnist(fake_fashion_dir, "val"))
    assert len(val) == 5 and len(train) == 45  # 10% of 50
    assert set(train).isdisjoint(val)
    assert sorted([*train, *val]) == list(range(50))
    again = example_ids(fmnist(fake_fashion_dir, "val", seed=123))  # the training seed does not move it
    np.testing.assert_array_equal(again, val)
    larger = example_ids(fmnist(fake_fashion_dir, "val", val_fraction=0.2))
    assert len(larger) == 10


def test_test_split_is_untouched(fake_fashion_dir):
    np.testing.assert_array_equal(example_ids(fmnist(fake_fashion_dir, "test")), np.arange(20))


def test_train_is_shuffled_by_default_and_seeded(fake_fashion_dir):
    def ids(seed):
        split = load("fashion_mnist", "train", data_dir=fake_fashion_dir, download=False, seed=seed)
        return example_ids(split)

    first = ids(1)
    assert sorted(first) != list(first)
    np.testing.assert_array_equal(ids(1), first)
    assert not np.array_equal(ids(2), first)


def test_normalization_matches_numpy_and_is_recorded(fake_fashion_dir):
    split = fmnist(fake_fashion_dir, "test")
    images, _ = collect(split)
    raw, _ = fashion_mnist.load_arrays(fake_fashion_dir, download=False)[0]["test"]
    expected = (raw.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-5)
    assert split.preprocessing.to_dict() == {
        "input_shape": [28, 28, 1],
        "scale": 1.0 / 255.0,
        "mean": [0.2860],
        "std": [0.3530],
        "resize": "bilinear",
        "channel_order": "GRAY",
        "layout": "NHWC",
    }


def test_resize_and_gray_to_rgb(fake_fashion_dir):
    split = fmnist(fake_fashion_dir, "test", input_shape=(32, 32, 3))
    images, _ = collect(split)
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    record = split.preprocessing.to_dict()
    assert record["input_shape"] == [32, 32, 3] and record["channel_order"] == "RGB"
    assert record["mean"] == [0.2860] * 3 and record["std"] == [0.3530] * 3


def test_raw_preprocessing_keeps_keras_pixels(fake_fashion_dir):
    split = fmnist(fake_fashion_dir, "test", input_shape=(28, 28, 3), preprocessing="raw")
    images, _ = collect(split)
    raw, _ = fashion_mnist.load_arrays(fake_fashion_dir, download=False)[0]["test"]
    expected = np.repeat(raw.reshape(20, 28, 28, 1).astype(np.float32), 3, axis=-1)
    np.testing.assert_array_equal(images, expected)  # float32 0..255, like keras.utils' loaders
    record = split.preprocessing.to_dict()
    assert (record["scale"], record["mean"], record["std"]) == (1.0, [0.0] * 3, [1.0] * 3)
    assert split.preprocessing.describe() == "raw pixels 0..255 (float32), resized to (28, 28, 3)"
    assert Preprocessing.from_dict(record).to_dict() == record


def test_explicit_preprocessing_sets_the_shape_and_must_agree(fake_fashion_dir):
    explicit = Preprocessing((14, 14, 1), scale=0.5, mean=(3.0,), std=(2.0,))
    images, _ = collect(fmnist(fake_fashion_dir, "test", preprocessing=explicit))
    assert images.shape == (20, 14, 14, 1)
    with pytest.raises(
        InvalidArgumentError,
        match=r"`preprocessing` resizes to \(14, 14, 1\), "
        r"but input_shape=\(28, 28, 1\). Fix:",
    ):
        fmnist(fake_fashion_dir, "test", input_shape=(28, 28, 1), preprocessing=explicit)
    with pytest.raises(
        InvalidArgumentError,
        match=r"`preprocessing` must be one of \('dataset', "
        r"'raw'\) or a kprune.data.Preprocessing. Received preprocessing='card'",
    ):
        fmnist(fake_fashion_dir, "test", preprocessing="card")


def test_preprocessing_downscale_is_2x2_mean_pooling():
    # Bilinear with half-pixel centres at exactly half size samples between 2×2 blocks.
    pixels = np.random.default_rng(0).integers(0, 256, size=(1, 8, 8, 1)).astype(np.float32)
    prep = Preprocessing(input_shape=(4, 4, 1), scale=1.0, mean=(0.0,), std=(1.0,))
    expected = pixels.reshape(1, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(prep.apply(pixels).numpy(), expected, rtol=1e-6)


def test_preprocessing_rgb_to_gray_is_itu_601_luma():
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3)).astype(np.float32)
    prep = Preprocessing(input_shape=(4, 4, 1), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    luma = pixels @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    expected = (luma[..., None] / 255.0 - 0.4) / 0.2  # means of the three source channels
    np.testing.assert_allclose(prep.apply(pixels).numpy(), expected, rtol=1e-4, atol=1e-4)
    assert prep.to_dict()["mean"] == pytest.approx([0.4])


def test_preprocessing_rejects_other_channel_counts():
    prep = Preprocessing(input_shape=(4, 4, 3))
    with pytest.raises(InvalidArgumentError, match="Cannot convert 2 image channels to 3"):
        prep.apply(np.zeros((1, 4, 4, 2), np.float32))


def test_augmentation_only_when_asked(fake_fashion_dir):
    plain, _ = collect(fmnist(fake_fashion_dir, "train"))
    again, _ = collect(fmnist(fake_fashion_dir, "train"))
    augmented, _ = collect(fmnist(fake_fashion_dir, "train", augment=True))
    np.testing.assert_array_equal(plain, again)
    assert augmented.shape == plain.shape
    changed = np.abs(augmented - plain).reshape(len(plain), -1).max(axis=1) > 1e-3
    assert changed.mean() > 0.5  # most images shifted or flipped


def test_limit(fake_fashion_dir):
    split = fmnist(fake_fashion_dir, "train", limit=7, batch_size=3)
    images, labels = collect(split)
    assert (split.num_examples, split.num_batches, len(labels)) == (7, 3, 7)
    full, _ = collect(fmnist(fake_fashion_dir, "train"))
    np.testing.assert_array_equal(images, full[:7])
    assert fmnist(fake_fashion_dir, "test", limit=500).num_examples == 20


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "dev"}, r"`split` must be one of \('train', 'val', 'test'\). Received split='dev'"),
        ({"val_fraction": 1.0}, r"`val_fraction` must be in \(0, 1\). Received val_fraction=1.0"),
        ({"batch_size": 0}, r"`batch_size` must be positive. Received batch_size=0"),
        ({"limit": 0}, r"`limit` must be positive. Received limit=0"),
        (
            {"name": "imagenet"},
            r"Unknown dataset 'imagenet'. Use one of: cifar10, fashion_mnist, "
            r"synthetic, folder:PATH",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"name": "synthetic", "split": "train", **kwargs}
    with pytest.raises(InvalidArgumentError, match=message):
        load(arguments.pop("name"), arguments.pop("split"), **arguments)


def test_cifar10_absent_without_download(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError) as raised:
        load("cifar10", "test", data_dir=empty, download=False)
    message = str(raised.value)
    assert f"CIFAR-10 is not prepared in {empty}" in message
    assert "downloading is disabled" in message
    assert "Fix:" in message and "--data-dir DIR" in message
    assert list(empty.iterdir()) == []  # nothing written


def test_synthetic_is_deterministic_and_learnable_shaped():
    first, info = synthetic.load_arrays((12, 12, 1))
    second, _ = synthetic.load_arrays((12, 12, 1))
    other, _ = synthetic.load_arrays((12, 12, 1), seed=7)
    for split in ("train", "test"):
        np.testing.assert_array_equal(first[split][0], second[split][0])
        np.testing.assert_array_equal(first[split][1], second[split][1])
    assert not np.array_equal(first["train"][0], other["train"][0])
    images, labels = first["train"]
    assert images.shape == (640, 12, 12, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [64] * 10)
    assert info.image_shape == (12, 12, 1) and info.num_classes == 10
    # Each class has its own bright square (place or brightness): class means differ clearly.
    means = np.stack([images[labels == k].mean(axis=0) for k in range(10)]).reshape(10, -1)
    gaps = np.abs(means[:, None] - means[None]).max(axis=-1) + 1000 * np.eye(10)
    assert gaps.min() > 20


def test_synthetic_split_follows_input_shape():
    split = load("synthetic", "val", input_shape=(8, 8, 3), batch_size=16)
    images, labels = collect(split)
    assert images.shape == (64, 8, 8, 3) and split.num_examples == 64
    assert set(np.unique(labels)) <= set(range(10))
    assert dataset_info("synthetic").image_shape == (32, 32, 3)


def test_as_dataset_accepts_arrays_and_rejects_others(tiny_arrays):
    images, labels = tiny_arrays
    batches = list(as_dataset((images, labels), batch_size=20))
    assert [int(b[0].shape[0]) for b in batches] == [20, 20, 8]
    assert batches[0][0].dtype == tf.float32 and batches[0][1].dtype == tf.int32
    with pytest.raises(InvalidArgumentError, match=r"Received list"):
        as_dataset([images, labels])
