"""The bundle's runtime (templates/kprune_runtime.py, kprune_images.py): preprocessing, files.

References are TensorFlow's resize and kprune's Preprocessing, which the
training pipeline applies, and arrays written as PNG by an encoder here.
"""

from __future__ import annotations

import ast
import struct
import sys
import zlib
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf

from kprune.data import Preprocessing
from kprune.export.templates import kprune_images as images
from kprune.export.templates import kprune_runtime as runtime

TEMPLATES = (
    "kprune_runtime.py",
    "kprune_images.py",
    "run_bundle.py",
    "rtmaps_kprune.py",
    "kprune_profile.py",
)
ALLOWED_IMPORTS = {
    "__future__",
    "argparse",
    "hashlib",
    "json",
    "os",
    "platform",
    "struct",
    "sys",
    "time",
    "zlib",
    "numpy",
    "ai_edge_litert",
    "tflite_runtime",
    "onnxruntime",
    "PIL",
    "rtmaps",
    "kprune_runtime",
    "kprune_images",
}


def random_image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(
    ("source", "target"), [((28, 28), (32, 32)), ((40, 30), (16, 16)), ((7, 9), (21, 5))]
)
def test_resize_matches_tensorflow_bilinear(source, target):
    image = random_image((*source, 3)).astype(np.float32)

    resized = runtime.resize_bilinear(image, *target)

    expected = tf.image.resize(image, target, method="bilinear").numpy()
    np.testing.assert_allclose(resized, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("image_shape", "input_shape", "mean", "std"),
    [
        ((16, 16, 3), (16, 16, 3), (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)),
        ((40, 40, 3), (28, 28, 1), (0.286,), (0.353,)),  # resize, then RGB → gray
        ((28, 28, 1), (32, 32, 3), (0.2,), (0.3,)),  # resize, then gray → RGB
    ],
)
def test_preprocessing_matches_the_training_pipeline(image_shape, input_shape, mean, std):
    preprocessing = Preprocessing(input_shape=input_shape, mean=mean, std=std)
    image = random_image(image_shape, seed=1)

    values = runtime.Preprocessor(preprocessing.to_dict())(image)

    expected = preprocessing.apply(tf.constant(image)).numpy()
    assert values.dtype == np.float32 and values.shape == input_shape
    np.testing.assert_allclose(values, expected, atol=2e-5)


def test_channel_orders_are_normalised_to_rgb():
    preprocess = runtime.Preprocessor(Preprocessing(input_shape=(8, 8, 3)).to_dict())
    rgb = random_image((8, 8, 3), seed=2)
    alpha = np.full((8, 8, 1), 255, np.uint8)

    reference = preprocess(rgb, "RGB")

    np.testing.assert_array_equal(preprocess(rgb[:, :, ::-1], "BGR"), reference)
    np.testing.assert_array_equal(preprocess(np.concatenate([rgb, alpha], 2), "RGBA"), reference)
    bgra = np.concatenate([rgb[:, :, ::-1], alpha], 2)
    np.testing.assert_array_equal(preprocess(bgra, "BGRA "), reference)
    gray = random_image((8, 8, 1), seed=3)
    np.testing.assert_array_equal(preprocess(gray, "Y800"), preprocess(gray[:, :, 0], "GRAY\x00"))
    with pytest.raises(runtime.BundleError, match="YUV"):
        preprocess(rgb, "YUV")


def encode_png(pixels: np.ndarray, colour: int, depth: int = 8, palette=None, filters=(0,)) -> bytes:
    """A PNG encoder for tests: row r uses filter filters[r % len(filters)]."""
    height, width = pixels.shape[:2]
    data = pixels.astype(">u2").tobytes() if depth == 16 else pixels.astype(np.uint8).tobytes()
    stride = len(data) // height
    bpp = max(1, stride // width)
    rows, previous = [], bytes(stride)
    for r in range(height):
        line = data[r * stride : (r + 1) * stride]
        kind = filters[r % len(filters)]
        encoded = bytearray()
        for i, value in enumerate(line):
            left = line[i - bpp] if i >= bpp else 0
            up, upper_left = previous[i], previous[i - bpp] if i >= bpp else 0
            estimate = left + up - upper_left
            paeth = min(
                (abs(estimate - left), 0, left),
                (abs(estimate - up), 1, up),
                (abs(estimate - upper_left), 2, upper_left),
            )[2]
            predictor = (0, left, up, (left + up) // 2, paeth)[kind]
            encoded.append((value - predictor) & 0xFF)
        rows.append(bytes([kind]) + bytes(encoded))
        previous = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunks = chunk(b"IHDR", header)
    if palette is not None:
        chunks += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    chunks += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)])
@pytest.mark.parametrize(("colour", "channels"), [(0, 1), (2, 3), (6, 4)])
def test_png_decoder_reverses_every_filter(filters, colour, channels):
    pixels = random_image((6, 5, channels), seed=colour)

    decoded = images.decode_png(encode_png(pixels, colour, filters=filters))

    expected = pixels[:, :, :3] if channels == 4 else pixels  # alpha is dropped
    np.testing.assert_array_equal(decoded, expected)


def test_png_decoder_reads_palette_and_16_bit():
    palette = random_image((4, 3), seed=3)
    indices = random_image((5, 6, 1), seed=4) % 4
    wide = np.random.default_rng(5).integers(0, 65536, size=(3, 4, 3))

    np.testing.assert_array_equal(
        images.decode_png(encode_png(indices, 3, palette=palette)), palette[indices[:, :, 0]]
    )
    np.testing.assert_array_equal(images.decode_png(encode_png(wide, 2, depth=16, filters=(1, 4))), wide >> 8)


def test_read_image_needs_no_pillow_for_png_and_pnm(tmp_path, monkeypatch):
    from PIL import Image

    rgb, gray = random_image((9, 7, 3), seed=6), random_image((9, 7), seed=7)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    (tmp_path / "gray.pgm").write_bytes(b"P5\n# comment\n7 9\n255\n" + gray.tobytes())
    with_pillow = {name: images.read_image(tmp_path / name) for name in ("rgb.png", "gray.png")}
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now raises ImportError

    pixels, order = images.read_image(tmp_path / "rgb.png")
    np.testing.assert_array_equal(pixels, rgb)
    assert order == "RGB" and with_pillow["rgb.png"][1] == "RGB"
    np.testing.assert_array_equal(with_pillow["rgb.png"][0], rgb)
    for name in ("gray.png", "gray.pgm"):
        pixels, order = images.read_image(tmp_path / name)
        np.testing.assert_array_equal(pixels[:, :, 0], gray)
        assert order == "GRAY"
    np.testing.assert_array_equal(with_pillow["gray.png"][0][:, :, 0], gray)


def test_find_images_walks_folders_in_sorted_order(tmp_path):
    for name in ("b/2.png", "b/1.png", "a/z.npy", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")

    found = images.find_images([tmp_path])

    assert [p[len(str(tmp_path)) + 1 :] for p in found] == ["a/z.npy", "b/1.png", "b/2.png"]
    with pytest.raises(images.ImageError, match="does not exist"):
        images.find_images([tmp_path / "missing"])


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_import_only_numpy_and_runtimes_on_python_3_8(name):
    source = resources.files("kprune.export.templates").joinpath(name).read_text()

    tree = ast.parse(source, feature_version=(3, 8))

    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    assert "tensorflow" not in source.replace("TensorFlow", "") and "import kprune\n" not in source
