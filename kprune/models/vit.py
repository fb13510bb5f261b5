"""ViT-tiny: a small Vision Transformer (Dosovitskiy et al., 2021) as a Keras functional model.

Patches of ``patch_size``² pixels are embedded by a strided convolution into
``width`` channels; a 3×3 depthwise convolution on the patch grid, added to
the embedding, gives each token its position (the conditional position
encoding of Chu et al., 2023, in place of a learned table, so that the model
is plain Keras layers). Then ``depth`` pre-norm blocks, each
``x + MultiHeadAttention(LayerNorm(x))`` and ``x + MLP(LayerNorm(x))`` with a
GELU MLP of ``mlp_ratio × width`` units (GELU's tanh form, which ONNX
can express), a final LayerNorm, the mean over the
tokens and a Dense classifier.

What kprune prunes in it: the heads of each attention (whole heads) and the
hidden units of each MLP. The model width is the residual stream that every
LayerNorm normalizes over: a boundary, kept.

Layer names: ``patch_embed``, ``position``, ``block{i}_attention``,
``block{i}_mlp1``, ``block{i}_mlp2`` (i = 1 … depth), ``head``.
"""

from __future__ import annotations

import keras

from kprune.errors import InvalidArgumentError


def vit_tiny(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    patch_size: int = 4,
    width: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: int = 2,
    dropout: float = 0.0,
) -> keras.Model:
    """Builds a ViT-tiny with random weights.

    Args:
        input_shape: ``(height, width, channels)``; both sides a multiple of
            ``patch_size``.
        num_classes: Classes of the softmax output.
        patch_size: Side of a square patch, in pixels.
        width: Channels of every token.
        depth: Transformer blocks.
        heads: Attention heads per block (``width / heads`` channels each).
        mlp_ratio: The MLP's hidden units per token channel.
        dropout: Dropout after the attention and in the MLP.

    Raises:
        InvalidArgumentError: If a side is not a multiple of ``patch_size`` or
            ``width`` not of ``heads``.

    Example:
        >>> model = vit_tiny((28, 28, 1), 10)
    """
    height, side, _ = input_shape
    if height % patch_size or side % patch_size:
        raise InvalidArgumentError(
            f"The input's sides must be multiples of `patch_size`. Received input_shape={input_shape}, "
            f"patch_size={patch_size}."
        )
    if width % heads:
        raise InvalidArgumentError(
            f"`width` must be a multiple of `heads`. Received width={width}, heads={heads}."
        )
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embed")(inputs)
    position = layers.DepthwiseConv2D(3, padding="same", name="position")(x)
    x = layers.Add(name="position_add")([x, position])
    tokens = (height // patch_size) * (side // patch_size)
    x = layers.Reshape((tokens, width), name="tokens")(x)
    for i in range(1, depth + 1):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        y = layers.MultiHeadAttention(heads, width // heads, dropout=dropout, name=f"block{i}_attention")(y, y)
        x = layers.Add(name=f"block{i}_add1")([x, y])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        y = layers.Dense(mlp_ratio * width, name=f"block{i}_mlp1")(y)
        y = keras.ops.gelu(y, approximate=True)  # tanh form: exact GELU's erfc has no ONNX operator
        y = layers.Dropout(dropout, name=f"block{i}_dropout")(y)
        y = layers.Dense(width, name=f"block{i}_mlp2")(y)
        x = layers.Add(name=f"block{i}_add2")([x, y])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="vit_tiny")
