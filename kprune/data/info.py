"""What a dataset is and how its images become model inputs.

`Preprocessing` is the single description of the input transform. The data
pipeline applies it, and the export bundle writes it into manifest.json so
that a deployment runtime reproduces it without TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import tensorflow as tf

from kprune.errors import InvalidArgumentError


@dataclass(frozen=True)
class Preprocessing:
    """Raw pixels (uint8, 0..255) → model input (float32).

    The transform, in order: resize to ``input_shape[:2]`` (bilinear) when the
    source size differs; convert channels (gray → RGB by repetition, RGB →
    gray by ITU-R 601 luma) when the channel count differs; then
    ``(pixel * scale - mean[c]) / std[c]``.
    """

    input_shape: tuple[int, int, int]
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "bilinear"

    @classmethod
    def raw(cls, input_shape: tuple[int, int, int]) -> Preprocessing:
        """Pixels as Keras' image loaders give them: float32 0..255, resized to ``input_shape``."""
        return cls(tuple(input_shape), scale=1.0, mean=(0.0,), std=(1.0,))

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        """The inverse of `to_dict`: a model card's or a bundle manifest's ``preprocessing``.

        Missing keys take the values the deployment runtime assumes.
        """
        return cls(
            input_shape=tuple(int(v) for v in values["input_shape"]),
            scale=float(values.get("scale", 1.0 / 255.0)),
            mean=tuple(float(v) for v in values.get("mean", (0.0,))),
            std=tuple(float(v) for v in values.get("std", (1.0,))),
            resize=values.get("resize", "bilinear"),
        )

    @property
    def is_raw(self) -> bool:
        """True when the transform only resizes and converts channels: pixels stay 0..255."""
        return self.scale == 1.0 and set(self.mean) == {0.0} and set(self.std) == {1.0}

    def describe(self) -> str:
        """One line for people: ``raw pixels 0..255`` or ``(pixel × 0.00392 − 0.5) / 0.5``."""
        if self.is_raw:
            return f"raw pixels 0..255 (float32), resized to {self.input_shape}"
        mean = "/".join(f"{v:g}" for v in self.mean)
        std = "/".join(f"{v:g}" for v in self.std)
        return f"(pixel × {self.scale:.6g} − {mean}) / {std}, resized to {self.input_shape}"

    @property
    def channel_order(self) -> str:
        return "GRAY" if self.input_shape[-1] == 1 else "RGB"

    def to_dict(self) -> dict:
        """The transform as JSON-ready values; mean and std have one entry per model channel."""
        channels = self.input_shape[-1]
        values = asdict(self)
        values["input_shape"] = list(self.input_shape)
        values["mean"] = _channel_values(self.mean, channels)
        values["std"] = _channel_values(self.std, channels)
        values["channel_order"] = self.channel_order
        values["layout"] = "NHWC"
        return values

    def apply(self, images: tf.Tensor) -> tf.Tensor:
        """Applies the transform to a batch or a single image (..., H, W, C)."""
        images = tf.cast(images, tf.float32)
        height, width, channels = self.input_shape
        if images.shape[-3] != height or images.shape[-2] != width:
            images = tf.image.resize(images, (height, width), method=self.resize)
        if images.shape[-1] != channels:
            if images.shape[-1] == 1 and channels == 3:
                images = tf.image.grayscale_to_rgb(images)
            elif images.shape[-1] == 3 and channels == 1:
                images = tf.image.rgb_to_grayscale(images)
            else:
                raise InvalidArgumentError(
                    f"Cannot convert {images.shape[-1]} image channels to {channels}: "
                    "only 1 → 3 and 3 → 1 are supported."
                )
        mean = _per_channel(self.mean, channels)
        std = _per_channel(self.std, channels)
        return (images * self.scale - mean) / std


def _channel_values(values: tuple[float, ...], channels: int) -> list[float]:
    if len(values) == channels:
        return list(values)
    # One statistic per source channel, model wants another count: use their mean.
    return [sum(values) / len(values)] * channels


def _per_channel(values: tuple[float, ...], channels: int) -> tf.Tensor:
    return tf.constant(_channel_values(values, channels), tf.float32)


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about a dataset, independent of the model it feeds."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # native (height, width, channels)
    mean: tuple[float, ...]  # per-channel mean of pixels scaled to [0, 1]
    std: tuple[float, ...]
    source: str = ""  # where the data was read from

    def preprocessing(self, input_shape: tuple[int, int, int] | None = None) -> Preprocessing:
        """The transform from this dataset's pixels to a model with ``input_shape``."""
        return Preprocessing(
            input_shape=tuple(input_shape or self.image_shape),
            mean=self.mean,
            std=self.std,
        )


@dataclass
class Split:
    """One split of a dataset, batched and ready for ``model.fit``.

    Attributes:
        dataset: Batches of ``(images float32 NHWC, labels int32)``.
        info: The dataset's `DatasetInfo`.
        preprocessing: The transform applied to the pixels.
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_examples: Number of examples in the split (after ``limit``).
        batch_size: Examples per batch (the last batch may be smaller).
        note: Set when the split is not what its name promises, e.g. a folder
            without test/ whose test split is its val/ folder; else empty.
    """

    dataset: tf.data.Dataset
    info: DatasetInfo
    preprocessing: Preprocessing
    split: str
    num_examples: int
    batch_size: int
    note: str = ""

    @property
    def num_batches(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def __iter__(self):
        return iter(self.dataset)
