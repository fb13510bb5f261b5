"""count_params / count_flops / layer_table against hand-computed values.

Convention: 1 multiply-accumulate (MAC) = 2 FLOPs, only MAC layers count, batch 1.
"""

import keras
import pytest

from kprune.errors import InvalidArgumentError
from kprune.metrics import count_flops, count_params, file_size, layer_table

layers = keras.layers


def single(layer, input_shape):
    return keras.Sequential([keras.Input(input_shape), layer])


@pytest.mark.parametrize(
    "layer, input_shape, macs, params",
    [
        # 9×9×4 → 8 filters 3×3, stride 2, same: 5×5 outputs, 3·3·4 MACs each.
        (
            layers.Conv2D(8, 3, strides=2, padding="same"),
            (9, 9, 4),
            5 * 5 * 8 * (3 * 3 * 4),
            3 * 3 * 4 * 8 + 8,
        ),
        # valid: (9 − 3) // 2 + 1 = 4 → 4×4 outputs.
        (
            layers.Conv2D(8, 3, strides=2, padding="valid"),
            (9, 9, 4),
            4 * 4 * 8 * (3 * 3 * 4),
            3 * 3 * 4 * 8 + 8,
        ),
        # Non-square kernel and stride, no bias: 10×7 input, (2, 3) kernel, strides (2, 1), valid → 5×5.
        (
            layers.Conv2D(6, (2, 3), strides=(2, 1), use_bias=False),
            (10, 7, 2),
            5 * 5 * 6 * (2 * 3 * 2),
            2 * 3 * 2 * 6,
        ),
        # groups=2: each filter sees 4 / 2 = 2 input channels.
        (
            layers.Conv2D(8, 3, groups=2, padding="same"),
            (6, 6, 4),
            6 * 6 * 8 * (3 * 3 * 2),
            3 * 3 * 2 * 8 + 8,
        ),
        # depthwise, multiplier 2, valid: 4×4 outputs × 4·2 channels × 3·3 taps.
        (
            layers.DepthwiseConv2D(3, depth_multiplier=2),
            (6, 6, 4),
            4 * 4 * (4 * 2) * (3 * 3),
            3 * 3 * 4 * 2 + 8,
        ),
        # separable: depthwise 6·6·(4·2)·9 + pointwise 6·6·(4·2)·8.
        (
            layers.SeparableConv2D(8, 3, depth_multiplier=2, padding="same"),
            (6, 6, 4),
            6 * 6 * 8 * 9 + 6 * 6 * 8 * 8,
            3 * 3 * 4 * 2 + 1 * 1 * 8 * 8 + 8,
        ),
        # transpose: every one of the 4·4 inputs × 3 channels is scattered through 3·3·5 weights.
        (
            layers.Conv2DTranspose(5, 3, strides=2, padding="same"),
            (4, 4, 3),
            4 * 4 * 3 * (3 * 3 * 5),
            3 * 3 * 5 * 3 + 5,
        ),
        # Conv1D: length 20, kernel 5, valid → 16 outputs × 6 filters × 5·3.
        (layers.Conv1D(6, 5), (20, 3), 16 * 6 * (5 * 3), 5 * 3 * 6 + 6),
        # Dense on a vector: 5 × 7.
        (layers.Dense(7), (5,), 5 * 7, 5 * 7 + 7),
        # Dense on 4×4×5: applied at each of the 16 positions.
        (layers.Dense(7), (4, 4, 5), 4 * 4 * 5 * 7, 5 * 7 + 7),
    ],
    ids=[
        "conv_same_s2",
        "conv_valid_s2",
        "conv_rect",
        "conv_groups",
        "depthwise",
        "separable",
        "transpose",
        "conv1d",
        "dense_2d",
        "dense_4d",
    ],
)
def test_single_layer(layer, input_shape, macs, params):
    model = single(layer, input_shape)
    assert count_flops(model) == 2 * macs
    assert count_params(model) == params


def test_layers_without_macs_count_zero():
    inputs = keras.Input((8, 8, 4))
    x = layers.BatchNormalization()(inputs)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    y = layers.AveragePooling2D(2)(inputs)
    x = layers.Concatenate()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, x)
    assert count_flops(model) == 0
    assert count_params(model) == 4 * 4  # gamma, beta, moving mean, moving variance


def test_small_cnn_total(tiny_cnn):
    # conv_a 16×16×(3·3·3)·8, conv_b 8×8×(3·3·8)·16, classifier 16·10.
    macs = 16 * 16 * 27 * 8 + 8 * 8 * 72 * 16 + 16 * 10
    assert count_flops(tiny_cnn) == 2 * macs
    assert count_params(tiny_cnn) == (27 * 8 + 8) + (72 * 16 + 16) + (16 * 10 + 10)
    rows = {row.name: row for row in layer_table(tiny_cnn)}
    assert rows["conv_b"].flops == 2 * 8 * 8 * 72 * 16
    assert rows["conv_b"].filters == 16 and rows["classifier"].filters == 10
    assert rows["pool_a"].filters is None and rows["pool_a"].flops == 0
    assert rows["conv_b"].output_shape == (None, 8, 8, 16)
    assert rows["conv_a"].params == 27 * 8 + 8


def test_nested_model_expanded():
    inner = keras.Sequential([keras.Input((6,)), layers.Dense(4), layers.Dense(3)], name="inner")
    inputs = keras.Input((6,))
    outputs = layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    assert count_flops(model) == 2 * (6 * 4 + 4 * 3 + 3 * 2)
    assert count_params(model) == (6 * 4 + 4) + (4 * 3 + 3) + (3 * 2 + 2)
    names = [row.name for row in layer_table(model)]
    assert "inner" not in names and "head" in names and len(names) == 4  # input + 3 Dense


def test_nested_model_called_twice_counts_twice():
    inner_inputs = keras.Input((6,))
    inner = keras.Model(inner_inputs, layers.Dense(4)(inner_inputs), name="inner")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, [inner(inputs), inner(inputs)])
    assert count_flops(model) == 2 * 2 * (6 * 4)
    assert count_params(model) == 6 * 4 + 4


def test_layer_shared_with_another_model_counts_once():
    dense = layers.Dense(3)
    first_inputs, second_inputs = keras.Input((4,)), keras.Input((4,))
    first = keras.Model(first_inputs, dense(first_inputs))
    second = keras.Model(second_inputs, dense(second_inputs))
    assert count_flops(first) == count_flops(second) == 2 * 4 * 3


def test_unknown_spatial_size_is_a_clear_error():
    inputs = keras.Input((None, None, 3))
    outputs = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, name="stem")(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.raises(
        InvalidArgumentError,
        match=r"Cannot count the FLOPs of layer 'stem'.*"
        r"Fix: build the model with a fixed input_shape",
    ):
        count_flops(model)


def test_file_size(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 1234)
    assert file_size(path) == 1234
