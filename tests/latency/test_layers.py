import keras
import numpy as np
import pytest

from kprune.graph.flatten import flatten
from kprune.latency.layers import CHANNELS, MATRIX, single_layer_model, timed_layers


def test_timed_layers_kinds_counts_and_fusion(block_model):
    timed, untimed = timed_layers(block_model)
    by_name = {layer.name: layer for layer in timed}
    # BN after a conv folds into it, ReLU after it fuses, Dropout is no operator.
    assert "stem_bn" not in by_name and "stem_relu" not in by_name and "drop" not in by_name
    assert untimed == []
    expected = {
        "stem": (MATRIX, 3, 24),
        "left": (MATRIX, 24, 16),
        "right": (MATRIX, 24, 16),
        "concat": (CHANNELS, 32, 32),
        "pool": (CHANNELS, 32, 32),
        "proj": (MATRIX, 32, 32),
        "add": (CHANNELS, 64, 64),
        "gap": (CHANNELS, 32, 32),
        "head": (MATRIX, 32, 5),
    }
    assert {n: (layer.kind, layer.cin, layer.cout) for n, layer in by_name.items()} == expected


def test_same_configuration_shares_a_key_whatever_the_channels():
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    b = keras.layers.Conv2D(16, 1, name="b")(a)  # same config, other filters and input channels
    c = keras.layers.Conv2D(16, 3, name="c")(b)  # other kernel
    timed, _ = timed_layers(keras.Model(inputs, c))
    keys = {layer.name: layer.key for layer in timed}
    assert keys["a"] == keys["b"] != keys["c"]


def test_standalone_batchnorm_and_activation_after_concat_are_timed():
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    b = keras.layers.Conv2D(8, 1, name="b")(inputs)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.BatchNormalization(name="bn")(x)  # after a concat: no conv to fold into
    x = keras.layers.Activation("sigmoid", name="act")(x)  # not fusable
    names = [layer.name for layer in timed_layers(keras.Model(inputs, x))[0]]
    assert names == ["a", "b", "cat", "bn", "act"]


@pytest.mark.parametrize("name, cin, cout", [("left", 7, 5), ("right", 3, 9), ("head", 11, 5)])
def test_single_layer_model_of_a_matrix_layer(block_model, name, cin, cout):
    model = single_layer_model(flatten(block_model), name, cin, cout)
    assert model.inputs[0].shape == (1, *block_model.get_layer(name).input.shape[1:-1], cin)
    assert model.outputs[0].shape[-1] == cout
    layer = model.layers[-1]
    assert layer.get_config()["kernel_size" if name != "head" else "units"] == (
        block_model.get_layer(name).get_config()["kernel_size"] if name != "head" else cout
    )


def test_single_layer_model_of_a_concatenation_splits_channels(block_model):
    model = single_layer_model(flatten(block_model), "concat", 10, 10)
    assert [int(t.shape[-1]) for t in model.inputs] == [5, 5]
    assert model.outputs[0].shape[-1] == 10
    added = single_layer_model(flatten(block_model), "add", 12, 12)
    assert [int(t.shape[-1]) for t in added.inputs] == [6, 6]
    outputs = added([np.ones((1, 6, 6, 6), "float32")] * 2)
    np.testing.assert_allclose(np.asarray(outputs), 2.0)
