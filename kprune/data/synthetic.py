"""A deterministic, learnable toy dataset for unit tests (never for results).

Each class is a bright square at its own position on a noisy background, so a
small CNN separates the classes after a few steps.
"""

from __future__ import annotations

import numpy as np

from kprune.data.info import DatasetInfo

NUM_CLASSES = 10
SIZES = {"train": 640, "test": 160}
DEFAULT_SHAPE = (32, 32, 3)


def load_arrays(
    image_shape: tuple[int, int, int] | None = None, seed: int = 1234
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], DatasetInfo]:
    """Both splits as uint8 images and int64 labels; identical for equal arguments."""
    height, width, channels = image_shape or DEFAULT_SHAPE
    rng = np.random.default_rng(seed)
    patch = max(2, min(height, width) // 4)
    arrays = {}
    for split, count in SIZES.items():
        labels = np.arange(count) % NUM_CLASSES
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(count, height, width, channels), dtype=np.uint8)
        for index, label in enumerate(labels):
            top = (label * 7) % max(1, height - patch)
            left = (label * 3) % max(1, width - patch)
            images[index, top : top + patch, left : left + patch, :] = 200 + label * 5
        arrays[split] = (images, labels.astype(np.int64))
    info = DatasetInfo(
        name="synthetic",
        num_classes=NUM_CLASSES,
        class_names=tuple(f"class_{k}" for k in range(NUM_CLASSES)),
        image_shape=(height, width, channels),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        source="generated",
    )
    return arrays, info
