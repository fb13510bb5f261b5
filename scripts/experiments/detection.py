"""A single-class detector on Fashion-MNIST canvases: the data, the model, its loss and metric.

This is the user's side of scripts/experiments/detector.py (and tests/test_detector.py): code a
user would write for their own detector, which kprune then prunes. It lives with the experiment,
not in ``kprune.data``, because it is not a dataset kprune's commands can load by name (they take
classifier datasets): it is one experiment's data and model.

- **Data** (`make_canvases`): 64×64×1 canvases of uniform noise (0..``noise``), each with one
  Fashion-MNIST item scaled by a random factor in ``scale`` (bilinear) and pasted (pixel-wise
  maximum) at a random place inside it; seeded, so equal arguments give equal canvases. The box is
  the tight box of the item's pixels above `INK` (an item's 28×28 frame is mostly empty).
- **Targets** (`grid_targets`): one scale, an S×S grid of stride 64/S (S = `GRID` = 8). The cell
  holding the box centre has objectness 1 and box (cx, cy, w, h): the centre's offset inside that
  cell in [0, 1), and the width and height as fractions of the canvas; every other cell is zero.
- **Model** (`build_detector`): a conv backbone with four strides (2, 4, 8, 16), a top-down path
  (the stride-16 features upsampled ×2 and concatenated with the stride-8 ones), and two heads on
  the stride-8 grid: ``box`` (4 channels, sigmoid) and ``objectness`` (1 channel, sigmoid).
  A third output, ``detections``, concatenates them (objectness first): Keras compiles a metric per
  output, so a metric that needs both heads watches an output that holds both. It has no loss.
- **Loss**: `MaskedBoxLoss` (squared error of the box at the object's cell only) on ``box``,
  binary cross-entropy on ``objectness``.
- **Metric** (`BoxIoU`): per canvas, the predicted box at the cell of highest predicted objectness
  against the true box, as intersection over union; the mean over canvases, or with ``threshold``
  the share of canvases whose IoU reaches it (the hit rate at IoU 0.5: with one object and one
  detection per canvas, precision and recall both equal it).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from PIL import Image

CANVAS = 64
GRID = 8  # cells per side: stride 8
INK = 32  # pixel value (0..255) above which an item's pixel belongs to its box
WIDTHS = (16, 32, 64, 128)  # backbone stages, strides 2, 4, 8, 16
NECK = 64  # channels of the stride-8 features the heads read
OUTPUTS = ("box", "objectness", "detections")
PACKAGE = "kprune_detector"


def make_canvases(
    items: np.ndarray,
    count: int,
    seed: int,
    *,
    scale: tuple[float, float] = (0.75, 1.5),
    noise: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Canvases of one pasted item each, and the items' boxes.

    Args:
        items: Fashion-MNIST images, uint8 of shape (N, 28, 28) or (N, 28, 28, 1).
        count: How many canvases.
        seed: Seed of every random choice (item, scale, place, background).
        scale: Range of the item's scale factor (28 px × factor, rounded).
        noise: Largest background value (0..255).

    Returns:
        ``(images, boxes)``: float32 images of shape (count, 64, 64, 1) in 0..255 and float32
        boxes (count, 4) as (x0, y0, x1, y1), fractions of the canvas side.

    Example:
        >>> images, boxes = make_canvases(arrays["train"][0], 1000, seed=0)
    """
    items = np.asarray(items)
    items = items[..., 0] if items.ndim == 4 else items
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(items), count)
    sides = np.rint(28 * rng.uniform(*scale, count)).astype(int)
    places = np.floor(rng.uniform(size=(count, 2)) * (CANVAS - sides[:, None] + 1)).astype(int)
    # the background last, so that the noise level does not move the items
    images = rng.integers(0, noise + 1, (count, CANVAS, CANVAS), dtype=np.uint8)
    boxes = np.zeros((count, 4), np.float32)
    for n, (pick, side, (top, left)) in enumerate(zip(picks, sides, places)):
        item = np.asarray(Image.fromarray(items[pick]).resize((side, side), Image.BILINEAR))
        region = images[n, top : top + side, left : left + side]
        np.maximum(region, item, out=region)
        rows = np.flatnonzero(item.max(axis=1) > INK)
        cols = np.flatnonzero(item.max(axis=0) > INK)
        boxes[n] = (left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1)
    return images[..., None].astype(np.float32), boxes / CANVAS


def grid_targets(boxes: np.ndarray, grid: int = GRID) -> dict[str, np.ndarray]:
    """The training targets of ``boxes`` (x0, y0, x1, y1 in canvas fractions) on a grid.

    Returns:
        ``{"box": (N, S, S, 4), "objectness": (N, S, S, 1), "detections": (N, S, S, 5)}``,
        float32: see the module docstring.
    """
    boxes = np.asarray(boxes, np.float64)
    count = len(boxes)
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    cols = np.minimum((centre_x * grid).astype(int), grid - 1)
    rows = np.minimum((centre_y * grid).astype(int), grid - 1)
    box = np.zeros((count, grid, grid, 4), np.float32)
    objectness = np.zeros((count, grid, grid, 1), np.float32)
    index = np.arange(count)
    objectness[index, rows, cols, 0] = 1.0
    box[index, rows, cols] = np.stack(
        [
            centre_x * grid - cols,
            centre_y * grid - rows,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        axis=-1,
    )
    return {"box": box, "objectness": objectness, "detections": np.concatenate([objectness, box], -1)}


def build_detector(
    widths: tuple[int, ...] = WIDTHS, neck: int = NECK, name: str = "detector", seed: int | None = None
) -> keras.Model:
    """The detector: backbone of ``len(widths)`` stride-2 stages, top-down path, two heads.

    Stage k (stride 2^(k+1)) is a stride-2 3×3 convolution and a 3×3 one, each with BatchNorm and
    ReLU. The last stage is upsampled ×2 to the stride-8 grid and concatenated with the stage there;
    a 1×1 and a 3×3 convolution (``neck`` channels) feed the heads.

    Returns:
        A functional model with outputs ``box`` (S, S, 4), ``objectness`` (S, S, 1) and
        ``detections`` (S, S, 5), S = 64 / 8.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((CANVAS, CANVAS, 1), name="canvas")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    stages = []
    for stage, width in enumerate(widths):
        for part, stride in (("a", 2), ("b", 1)):
            x = layers.Conv2D(
                width, 3, strides=stride, padding="same", use_bias=False, name=f"s{stage}{part}"
            )(x)
            x = layers.BatchNormalization(name=f"s{stage}{part}_bn")(x)
            x = layers.ReLU(name=f"s{stage}{part}_relu")(x)
        stages.append(x)
    at_grid = len(widths) - 2  # the stage of stride 8
    x = layers.UpSampling2D(2, name="up")(stages[-1])
    x = layers.Concatenate(name="merge")([x, stages[at_grid]])
    for part, size in (("a", 1), ("b", 3)):
        x = layers.Conv2D(neck, size, padding="same", use_bias=False, name=f"neck{part}")(x)
        x = layers.BatchNormalization(name=f"neck{part}_bn")(x)
        x = layers.ReLU(name=f"neck{part}_relu")(x)
    box = layers.Conv2D(4, 1, activation="sigmoid", name="box")(x)
    objectness = layers.Conv2D(1, 1, activation="sigmoid", name="objectness")(x)
    detections = layers.Concatenate(name="detections")([objectness, box])
    return keras.Model(inputs, [box, objectness, detections], name=name)


@keras.saving.register_keras_serializable(PACKAGE)
class MaskedBoxLoss(keras.losses.Loss):
    """Squared error of (cx, cy, w, h), summed over the cells that hold an object.

    A cell holds an object when its target width is positive (`grid_targets` leaves the others 0).
    One value per canvas.
    """

    def __init__(self, name: str = "masked_box", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        mask = ops.cast(y_true[..., 2:3] > 0, y_pred.dtype)
        return ops.sum(ops.square(y_pred - y_true) * mask, axis=(1, 2, 3))


@keras.saving.register_keras_serializable(PACKAGE)
class BoxIoU(keras.metrics.Metric):
    """IoU of the box at the most confident cell with the true box, averaged over canvases.

    Watches the ``detections`` output: (S, S, 5) holding objectness, cx, cy, w, h (`grid_targets`).

    Args:
        threshold: None for the mean IoU; a value for the share of canvases whose IoU reaches it.
        name: The metric's name (``detections_<name>`` in Keras' logs).
    """

    def __init__(self, threshold: float | None = None, name: str = "box_iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        iou = box_iou(best_box(ops.cast(y_true, "float32")), best_box(y_pred))
        values = iou if self.threshold is None else ops.cast(iou >= self.threshold, "float32")
        weights = ops.ones_like(values) if sample_weight is None else ops.reshape(sample_weight, (-1,))
        weights = ops.cast(weights, "float32")
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def best_box(detections):
    """(x0, y0, x1, y1) in canvas fractions of the box at each canvas' most confident cell."""
    grid = detections.shape[1]
    flat = ops.reshape(detections, (-1, grid * grid, 5))
    index = ops.argmax(flat[..., 0], axis=1)
    chosen = ops.take_along_axis(flat, ops.reshape(index, (-1, 1, 1)), axis=1)[:, 0, :]
    row = ops.cast(index // grid, "float32")
    col = ops.cast(index % grid, "float32")
    centre_x, centre_y = (col + chosen[:, 1]) / grid, (row + chosen[:, 2]) / grid
    half_w, half_h = chosen[:, 3] / 2, chosen[:, 4] / 2
    return ops.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=-1)


def box_iou(a, b):
    """Intersection over union of (x0, y0, x1, y1) boxes, row by row."""
    width = ops.maximum(ops.minimum(a[:, 2], b[:, 2]) - ops.maximum(a[:, 0], b[:, 0]), 0.0)
    height = ops.maximum(ops.minimum(a[:, 3], b[:, 3]) - ops.maximum(a[:, 1], b[:, 1]), 0.0)
    intersection = width * height

    def area(box):
        return ops.maximum(box[:, 2] - box[:, 0], 0.0) * ops.maximum(box[:, 3] - box[:, 1], 0.0)

    return ops.divide_no_nan(intersection, area(a) + area(b) - intersection)


def compile_detector(model: keras.Model, learning_rate=2e-3) -> keras.Model:
    """Compiles ``model`` in place: Adam (a rate or a schedule), the two losses (box weighted 5×; ``detections`` has none),
    IoU and hit rate."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"box": MaskedBoxLoss(), "objectness": keras.losses.BinaryCrossentropy(), "detections": None},
        loss_weights={"box": 5.0, "objectness": 1.0, "detections": None},
        metrics={"detections": [BoxIoU(name="box_iou"), BoxIoU(0.5, name="hit50")]},
    )
    return model
