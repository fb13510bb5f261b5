"""Channel-wise layers and operations users put between convolutions: element-wise
`keras.ops` and `keras.activations`, preprocessing and augmentation layers,
Normalization and Rescaling with per-channel values. Each model is pruned and
compared with the exactness oracle, then saved and reloaded with plain Keras."""

import keras
import numpy as np
import pytest
from keras import ops

from kprune.graph import analyze
from tests.graph.oracle import assert_exact, zeroed_through_consumers

layers = keras.layers
REMOVAL = {"before": [1, 4]}


def between_convs(middle, side: int = 8, channels: int = 6) -> keras.Model:
    """image → Conv2D "before" (6 channels) → middle → Conv2D "after" → Dense."""
    keras.utils.set_random_seed(0)
    bias = keras.initializers.RandomNormal(stddev=0.5)
    inputs = keras.Input((side, side, 3), name="image")
    x = layers.Conv2D(channels, 3, padding="same", bias_initializer=bias, name="before")(inputs)
    x = middle(x)
    x = layers.Conv2D(4, 1, bias_initializer=bias, name="after")(x)
    outputs = layers.Dense(3, name="logits")(layers.Flatten(name="flatten")(x))
    return keras.Model(inputs, outputs)


def branches(*functions):
    """One tensor through every function, the results summed: one model covers many ops."""
    return lambda x: layers.Add(name="sum")([f(x) for f in functions])


# f(0) = 0: the plain oracle (removed channels zeroed at the producer) is exact.
ZERO_PRESERVING = {
    "nn": branches(
        ops.relu,
        ops.relu6,
        ops.silu,
        ops.gelu,
        ops.hard_silu,
        ops.elu,
        ops.selu,
        ops.leaky_relu,
        ops.celu,
        ops.hard_tanh,
        ops.soft_shrink,
        ops.tanh_shrink,
        lambda x: ops.threshold(x, 0.1, 0.0),
    ),
    "numpy": branches(
        ops.tanh,
        ops.abs,
        ops.negative,
        ops.square,
        ops.sin,
        ops.arctan,
        ops.sinh,
        ops.expm1,
        ops.cbrt,
        ops.erf,
        lambda x: ops.clip(x, 0.0, 6.0),
        lambda x: ops.where(x > 0, x, 0.1 * x),
        lambda x: ops.stop_gradient(ops.cast(x, "float32")),
        lambda x: ops.log1p(ops.abs(x)),
        lambda x: ops.sqrt(ops.abs(x)),
    ),
    "activations": branches(
        keras.activations.relu,
        keras.activations.silu,
        keras.activations.gelu,
        keras.activations.elu,
        lambda x: keras.activations.relu(x, max_value=2.0, negative_slope=0.1),
        lambda x: keras.activations.leaky_relu(x, 0.3),
    ),
    "Activation layers": branches(
        *(
            layers.Activation(name, name=f"act_{name}")
            for name in (
                "relu",
                "relu6",
                "swish",
                "gelu",
                "hard_swish",
                "mish",
                "tanh",
                "selu",
                "elu",
                "linear",
            )
        )
    ),
}
# f(0) ≠ 0: the consumers' rows of removed channels are zeroed in the reference too.
NOT_ZERO_PRESERVING = {
    "nn": branches(
        ops.sigmoid,
        ops.hard_sigmoid,
        ops.softplus,
        ops.softsign,
        ops.log_sigmoid,
        ops.sparse_plus,
        ops.sparse_sigmoid,
        ops.squareplus,
    ),
    "numpy": branches(
        ops.exp,
        ops.cos,
        ops.cosh,
        lambda x: ops.log(ops.abs(x) + 1.0),
        lambda x: ops.reciprocal(ops.abs(x) + 1.0),
        lambda x: 2.0 ** ops.tanh(x),
        lambda x: ops.cast(ops.logical_not(x > 0), "float32"),
    ),
    "Activation layers": branches(
        *(
            layers.Activation(name, name=f"act_{name}")
            for name in ("sigmoid", "hard_sigmoid", "softplus", "exponential")
        )
    ),
}


@pytest.mark.parametrize("family", ZERO_PRESERVING)
def test_zero_preserving_elementwise_ops_pass_channels_through(family, tmp_path):
    model = between_convs(ZERO_PRESERVING[family])
    graph = analyze(model)
    assert graph.prunable_layers() == ["before", "after"]
    assert "sum" in graph.group_of("before").layers("merge")
    pruned = assert_exact(model, REMOVAL, saved_to=tmp_path / "pruned.keras")
    assert pruned.get_layer("after").kernel.shape == (1, 1, 4, 4)


@pytest.mark.parametrize("family", NOT_ZERO_PRESERVING)
def test_other_elementwise_ops_pass_channels_through(family, tmp_path):
    model = between_convs(NOT_ZERO_PRESERVING[family])
    assert analyze(model).prunable_layers() == ["before", "after"]
    assert_exact(model, REMOVAL, reference=zeroed_through_consumers, saved_to=tmp_path / "p.keras")


def _augmented(x):
    for layer in (
        layers.RandomFlip(name="flip"),
        layers.RandomTranslation(0.2, 0.2, name="translate"),
        layers.RandomRotation(0.1, name="rotate"),
        layers.RandomZoom(0.2, name="zoom"),
        layers.RandomContrast(0.2, name="contrast"),
        layers.Resizing(6, 6, name="resize"),
        layers.CenterCrop(4, 4, name="crop"),
        layers.Rescaling(0.5, name="rescale"),
    ):
        x = layer(x)
    return x


def test_augmentation_and_resizing_layers_pass_channels_through(tmp_path):
    model = between_convs(_augmented)
    graph = analyze(model)
    passed = graph.group_of("before").layers("passthrough")
    assert passed == ["flip", "translate", "rotate", "zoom", "contrast", "resize", "crop", "rescale"]
    pruned = assert_exact(model, REMOVAL, saved_to=tmp_path / "pruned.keras")  # inference: identity
    assert pruned.get_layer("logits").kernel.shape == (4 * 4 * 4, 3)


def test_colour_augmentation_is_a_boundary():
    model = between_convs(layers.RandomGrayscale(name="gray"), channels=3)
    graph = analyze(model)
    assert graph.group_of("before").frozen_by == ["RandomGrayscale 'gray'"]
    assert graph.prunable_layers() == ["after"]


def _adapted_normalization(x):
    normalization = layers.Normalization(name="norm")
    normalization.adapt(np.random.default_rng(1).normal(2.0, 3.0, (16, 8, 8, 6)).astype("float32"))
    return normalization(x)


@pytest.mark.parametrize(
    "middle",
    [
        _adapted_normalization,
        lambda x: layers.Normalization(mean=[1, 2, 3, 4, 5, 6], variance=[1, 4, 9, 1, 4, 9], name="norm")(x),
        lambda x: layers.Rescaling(np.arange(1, 7, dtype="float32"), offset=[0, 1, 2, 3, 4, 5], name="norm")(
            x
        ),
    ],
    ids=["adapted", "normalization_config", "rescaling"],
)
def test_per_channel_statistics_are_sliced(middle, tmp_path):
    model = between_convs(middle)
    assert "norm" in analyze(model).group_of("before").layers("passthrough")
    pruned = assert_exact(
        model, REMOVAL, reference=zeroed_through_consumers, saved_to=tmp_path / "pruned.keras"
    )
    layer = pruned.get_layer("norm")
    kept = [0, 2, 3, 5]
    if isinstance(layer, layers.Rescaling):
        np.testing.assert_array_equal(np.ravel(layer.scale), np.arange(1, 7)[kept])
        np.testing.assert_array_equal(np.ravel(layer.offset), np.arange(6)[kept])
    else:
        np.testing.assert_allclose(np.ravel(layer.mean), np.ravel(model.get_layer("norm").mean)[kept])


def test_rescaling_with_scalars_keeps_its_config():
    model = between_convs(layers.Rescaling(2.0, offset=-1.0, name="rescale"))
    pruned = assert_exact(model, REMOVAL, reference=zeroed_through_consumers)
    assert pruned.get_layer("rescale").get_config()["scale"] == 2.0


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "sparsemax"], ids=lambda name: name)
def test_channel_mixing_activations_are_boundaries(function):
    graph = analyze(between_convs(layers.Activation(function, name="mix")))
    assert graph.group_of("before").frozen_by == [f"Activation 'mix' ({function} activation)"]
    inputs = keras.Input((4,))  # the same function as a producer's activation
    dense = layers.Dense(5, activation=function, name="attention")(inputs)
    graph = analyze(keras.Model(inputs, layers.Dense(2)(dense)))
    assert graph.group_of("attention").frozen_by == [f"{function} activation of 'attention'"]


def test_an_unknown_activation_function_is_a_boundary():
    graph = analyze(between_convs(layers.Activation(lambda x: x[..., ::-1], name="reverse")))
    assert "not known to be element-wise" in graph.group_of("before").frozen_by[0]


def test_a_constant_with_one_value_per_channel_freezes_the_channels():
    # kprune does not slice constants recorded in an operation's arguments.
    for per_channel in (
        lambda x: x * np.arange(6, dtype="float32"),
        lambda x: ops.clip(x, 0.0, np.full(6, 6.0, dtype="float32")),
    ):
        graph = analyze(between_convs(per_channel))
        assert "one value per channel" in graph.group_of("before").frozen_by[0]
    assert analyze(between_convs(lambda x: x * 2.0)).group_of("before").prunable
