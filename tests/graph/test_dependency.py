import keras
import numpy as np
import pytest

from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.graph import PassThrough, analyze, register_handler
from kprune.models import squeezenet


def test_groups_of_the_mixed_graph(mixed_model):
    graph = analyze(mixed_model)
    coupled = graph.group_of("stem")
    assert set(coupled.producers) == {"stem", "branch"}
    assert coupled.channels == 6
    assert coupled.layers("merge") == ["add"]
    assert "stem_bn" in coupled.layers("passthrough")
    assert "dw" in coupled.layers("passthrough")
    # The depthwise multiplier repeats each channel twice on its way to `left`.
    left_input = next(m for m in coupled.members if m.role == "consumer" and m.layer == "left")
    assert left_input.size == 12 and len(left_input.positions) == 12
    # `right` (separable) is a consumer of the coupled channels too.
    assert "right" in coupled.layers("consumer")
    assert coupled.prunable


def test_concatenate_offsets_and_flatten_expansion(mixed_model):
    graph = analyze(mixed_model)
    left, right = graph.group_of("left"), graph.group_of("right")
    concat_left = next(m for m in left.members if m.role == "concat")
    concat_right = next(m for m in right.members if m.role == "concat")
    np.testing.assert_array_equal(concat_left.positions, [0, 1, 2, 3])
    np.testing.assert_array_equal(concat_right.positions, [4, 5, 6, 7, 8])
    # Flatten of a 4×4×9 map: channel c of `right` sits at 16 positions p·9 + 4 + c.
    hidden = next(m for m in right.members if m.role == "consumer" and m.layer == "hidden")
    expected = np.sort([p * 9 + 4 + c for p in range(16) for c in range(5)])
    np.testing.assert_array_equal(hidden.positions, expected)
    assert hidden.size == 144


def test_output_producer_is_frozen(mixed_model):
    graph = analyze(mixed_model)
    assert not graph.group_of("logits").prunable
    assert "model output 'logits'" in graph.group_of("logits").frozen_by
    assert graph.prunable_layers() == ["stem", "branch", "left", "right", "hidden"]


def test_squeezenet_groups_are_one_per_producer():
    model = squeezenet("1.1", (32, 32, 3), 10, stem="cifar")
    graph = analyze(model)
    assert len(graph.groups) == 26  # conv1, 8 fire modules × 3, conv10
    assert graph.prunable_layers()[0] == "conv1"
    assert "conv10" not in graph.prunable_layers()
    squeeze = graph.group_of("fire3_squeeze1x1")
    consumers = {m.layer: m for m in graph.group_of("fire2_expand3x3").members if m.role == "consumer"}
    assert consumers["fire3_squeeze1x1"].span() == "64..127 of 128"
    assert squeeze.layers("consumer") == ["fire3_expand1x1", "fire3_expand3x3"]


def test_describe_names_roles_and_spans(mixed_model):
    text = analyze(mixed_model).describe()
    assert "producers: stem, branch" in text
    assert "coupled by: add" in text
    assert "concatenated in: concat [4..8 of 9]" in text
    assert "frozen by model output 'logits'" in text


class Scale(keras.layers.Layer):
    """A custom per-channel scale, unknown to kprune until registered."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def _model_with_custom_layers():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="first")(inputs)
    x = Scale(name="scale_a")(x)
    x = keras.layers.Conv2D(5, 1, name="second")(x)
    x = Scale(name="scale_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_unsupported_layers_are_all_listed_before_any_change():
    with pytest.raises(UnsupportedModelError, match=r"2 layer\(s\): scale_a \(Scale\), scale_b \(Scale\)"):
        analyze(_model_with_custom_layers())


def test_unsupported_freeze_mode_keeps_the_rest_prunable():
    graph = analyze(_model_with_custom_layers(), unsupported="freeze")
    assert not graph.group_of("first").prunable
    assert "Scale 'scale_a'" in graph.group_of("first").frozen_by[0]
    assert not graph.group_of("second").prunable
    with pytest.raises(InvalidArgumentError, match="unsupported"):
        analyze(_model_with_custom_layers(), unsupported="ignore")


def test_registered_handler_makes_a_custom_layer_prunable():
    @register_handler(Scale)
    class ScaleHandler(PassThrough):
        per_channel_weights = ("scale",)

    try:
        graph = analyze(_model_with_custom_layers())
        assert graph.prunable_layers() == ["first", "second"]
        assert "scale_a" in graph.group_of("first").layers("passthrough")
    finally:
        from kprune.graph import registry

        registry._HANDLERS.pop(Scale)


def test_subclassed_model_is_refused_with_the_fix():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="subclassed.*keras.Input"):
        analyze(model)


def test_sequential_and_nested_models_are_flattened():
    inner_input = keras.Input((8, 8, 4))
    inner = keras.Model(inner_input, keras.layers.Conv2D(3, 1, name="inner_conv")(inner_input), name="block")
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, padding="same", name="outer_conv"),
            inner,
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    graph = analyze(sequential)
    assert graph.prunable_layers() == ["outer_conv", "inner_conv"]
    assert "inner_conv" in graph.group_of("outer_conv").layers("consumer")
