"""Regressions found by running analysis and surgery on unusual graphs:
grouped convolutions with groups == filters != in_channels, layers with
weights shared by several calls, and channels_first layers."""

import keras
import numpy as np
import pytest

from kprune.errors import UnsupportedModelError
from kprune.graph import analyze
from kprune.surgery import remove_filters
from tests.graph.oracle import zeroed_copy

layers = keras.layers


def _assert_exact(model, removal, graph=None):
    graph = graph or analyze(model)
    pruned = remove_filters(model, removal, graph=graph)
    images = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    expected = np.asarray(zeroed_copy(model, graph, removal)(images))
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(np.asarray(pruned(images)), expected, atol=1e-5)
    return pruned


def test_grouped_conv_with_as_many_groups_as_filters_but_more_inputs_is_not_depthwise():
    # groups == filters == 4 but 8 input channels: kernel (3, 3, 2, 4), not depthwise:
    # each output reads a block of 2 inputs, so blocks of 2 go with one output each.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="before")(inputs)
    x = layers.Conv2D(4, 3, groups=4, padding="same", name="grouped")(x)
    x = layers.Conv2D(6, 1, name="after")(x)
    outputs = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    graph = analyze(model)
    assert graph.prunable_layers() == ["before", "after"]
    assert graph.group_of("before").channels == 4  # blocks of 2
    pruned = _assert_exact(model, {"after": [1, 4]}, graph)
    assert pruned.get_layer("grouped").kernel.shape == (3, 3, 2, 4)
    assert pruned.get_layer("logits").kernel.shape == (4, 3)
    pruned = remove_filters(model, {"before": [2, 3]}, graph=graph)
    assert pruned.get_layer("grouped").kernel.shape == (3, 3, 2, 3)
    assert pruned.get_layer("grouped").groups == 3 and pruned.get_layer("after").kernel.shape == (1, 1, 3, 6)


@pytest.mark.parametrize("shared_class", ["conv", "batchnorm"])
def test_a_layer_called_on_two_groups_couples_them(shared_class):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    left = layers.Conv2D(6, 3, padding="same", name="left")(inputs)
    right = layers.Conv2D(6, 3, padding="same", name="right")(inputs)
    if shared_class == "conv":
        shared = layers.Conv2D(5, 1, name="shared")
    else:
        shared = layers.BatchNormalization(name="shared")
    joined = layers.Concatenate(name="concat")([shared(left), shared(right)])
    outputs = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(joined))
    model = keras.Model(inputs, outputs)
    if shared_class == "batchnorm":
        shared.set_weights(
            [np.random.default_rng(1).uniform(0.5, 1.5, 6).astype("float32") for _ in range(4)]
        )
    graph = analyze(model)
    # Its weights have one row per input channel, so both inputs keep the same ones.
    assert set(graph.group_of("left").producers) == {"left", "right"}
    pruned = _assert_exact(model, {"left": [0, 2]}, graph)
    assert pruned.get_layer("right").filters == 4


def test_channels_first_layers_are_reported_not_mis_sliced():
    inputs = keras.Input((3, 8, 8))
    x = layers.Conv2D(6, 3, padding="same", data_format="channels_first", name="conv_cf")(inputs)
    x = layers.GlobalAveragePooling2D(data_format="channels_first", name="pool_cf")(x)
    model = keras.Model(inputs, layers.Dense(3, name="logits")(x))
    listed = r"conv_cf \(Conv2D, channels_first\), pool_cf \(GlobalAveragePooling2D, channels_first\)"
    with pytest.raises(UnsupportedModelError, match=listed + r".*Fix: build the model channels_last"):
        analyze(model)
    graph = analyze(model, unsupported="freeze")
    assert graph.prunable_layers() == []


def test_a_producer_with_a_softmax_activation_is_frozen():
    # Softmax normalises over the channels: removing one changes all the others.
    inputs = keras.Input((6,))
    hidden = layers.Dense(5, activation="softmax", name="attention")(inputs)
    model = keras.Model(inputs, layers.Dense(2, name="logits")(hidden))
    graph = analyze(model)
    assert graph.group_of("attention").frozen_by == ["softmax activation of 'attention'"]
    assert graph.prunable_layers() == []
