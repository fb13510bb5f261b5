"""Analysis and exact surgery on real architectures: SqueezeNet, keras.applications,
a Sequential CNN and a model with nested sub-models.

For each model: analyze, remove random channels of every prunable group, then
check (1) the pruned outputs equal those of the original with the channels
zeroed (tests/graph/oracle.py), on outputs of a non-vacuous magnitude; (2) the
parameter count fell by exactly the number of weight entries that an
independent per-class count says are gone; (3) the pruned model round-trips
through a ``.keras`` file with plain ``keras.models.load_model``.

Random-init weights hide mistakes: biases are 0, BatchNorm is the identity at
its default statistics (outputs of deep nets shrink to ~1e-12) and ConvNeXt's
layer scale is 1e-6. So every constant-initialised weight gets random values
and BatchNorm statistics are calibrated on a batch before anything is checked.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import kprune
from kprune.graph import analyze
from kprune.surgery import remove_filters
from tests.graph.oracle import random_removal, zeroed_copy

layers = keras.layers
applications = keras.applications


# ---------------------------------------------------------------- model builders


def _application(name: str, side: int = 32):
    def build():
        function = getattr(applications, name)
        options = {"weights": None, "input_shape": (side, side, 3), "classes": 10}
        if "classifier_activation" in function.__code__.co_varnames:
            options["classifier_activation"] = None  # softmax saturation hides differences
        return function(**options)

    return build


def _squeezenet(version: str, stem: str, batch_norm: bool):
    def build():
        side = 64 if stem == "imagenet" else 32
        return kprune.models.squeezenet(
            version, input_shape=(side, side, 3), num_classes=10, stem=stem,
            batch_norm=batch_norm, classifier_activation=None,
        )  # fmt: skip

    return build


def _sequential_cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(12, 3, padding="same", use_bias=False, name="c1"),
            layers.BatchNormalization(name="c1_bn"),
            layers.ReLU(name="c1_relu"),
            layers.MaxPooling2D(name="p1"),
            layers.Conv2D(10, 3, activation="relu", name="c2"),
            layers.Dropout(0.2, name="drop"),
            layers.Conv2D(8, 3, activation="relu", name="c3"),
            layers.Flatten(name="flat"),
            layers.Dense(16, activation="relu", name="fc1"),
            layers.Dense(5, name="fc2"),
        ],
        name="sequential_cnn",
    )


def _nested():
    """Functional model → (residual functional block, Sequential head)."""
    block_in = keras.Input((8, 8, 12), name="block_in")
    x = layers.Conv2D(12, 3, padding="same", use_bias=False, name="conv")(block_in)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Add(name="add")([block_in, x])
    branch = layers.Conv2D(6, 1, activation="relu", name="side")(x)
    x = layers.Concatenate(name="concat")([x, branch])
    block = keras.Model(block_in, x, name="block")
    head = keras.Sequential(
        [keras.Input((4, 4, 18)), layers.Conv2D(9, 1, activation="relu", name="conv"),
         layers.Flatten(name="flat"), layers.Dense(4, name="logits")],
        name="head",
    )  # fmt: skip

    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(12, 3, padding="same", name="conv")(inputs)
    x = layers.MaxPooling2D(name="pool")(x)
    x = block(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    return keras.Model(inputs, head(x), name="nested")


CASES = {
    **{
        f"squeezenet{version}-{stem}{'-bn' if bn else ''}": _squeezenet(version, stem, bn)
        for version in ("1.0", "1.1")
        for stem in ("imagenet", "cifar")
        for bn in (False, True)
    },
    "sequential_cnn": _sequential_cnn,
    "nested": _nested,
    "VGG16": _application("VGG16"),
    "ResNet50": _application("ResNet50"),
    "ResNet50V2": _application("ResNet50V2"),
    "MobileNetV2": _application("MobileNetV2"),
    "DenseNet121": _application("DenseNet121"),
    "EfficientNetB0": _application("EfficientNetB0"),
    "MobileNetV3Small": _application("MobileNetV3Small"),
    "Xception": _application("Xception", 71),  # the smallest side Keras accepts
    "ConvNeXtTiny": _application("ConvNeXtTiny"),
}
SLOW_CASES = {
    "InceptionV3": _application("InceptionV3", 75),
    "NASNetMobile": _application("NASNetMobile"),
    "InceptionResNetV2": _application("InceptionResNetV2", 75),
}


# Producers that must form exactly one group (residual Adds, SE gates, nesting).
COUPLED = {
    "nested": [{"conv", "block_conv"}],  # outer conv + inner conv meet at the inner Add
    "ResNet50": [
        {"conv2_block1_0_conv", "conv2_block1_3_conv", "conv2_block2_3_conv",
         "conv2_block3_3_conv"},
    ],
    "MobileNetV2": [{"block_3_project", "block_4_project", "block_5_project"}],
    "EfficientNetB0": [
        {"stem_conv", "block1a_se_expand"},  # SE gate × depthwise output (Multiply)
        {"block2a_expand_conv", "block2a_se_expand"},
        {"block4a_project_conv", "block4b_project_conv", "block4c_project_conv"},
    ],
}


# ---------------------------------------------------------------- making outputs non-vacuous


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _randomize_constant_weights(model, rng) -> None:
    """Random values for the weights that start constant (biases, β, γ, layer scales)."""
    for layer in _all_layers(model):
        if isinstance(layer, layers.Normalization):
            continue  # fixed input statistics, not a learned weight
        for variable in layer.weights:
            value = np.asarray(variable)
            if value.size < 2 or value.min() != value.max():
                continue
            if variable.name in ("moving_mean", "moving_variance"):
                continue  # calibrated below
            if variable.name in ("bias", "beta"):
                value = rng.normal(0.0, 0.2, value.shape)
            else:  # gamma, layer scale, PReLU alpha, …
                value = rng.uniform(0.5, 1.5, value.shape)
            variable.assign(value.astype(variable.dtype))


def _calibrate_batchnorm(model, images) -> None:
    """Sets every BatchNorm's moving statistics to those of one batch (momentum 0)."""
    batch_norms = [
        layer for layer in _all_layers(model) if isinstance(layer, layers.BatchNormalization)
    ]
    if not batch_norms:
        return
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum
        # A channel that barely varies on one small batch would amplify float32
        # rounding by up to 1/sqrt(epsilon); a floor keeps every BN gain near 1.
        variance = np.asarray(layer.moving_variance)
        layer.moving_variance.assign(variance + 0.5 * np.median(variance))


def _prepared(case: str):
    keras.utils.set_random_seed(0)
    model = {**CASES, **SLOW_CASES}[case]()
    rng = np.random.default_rng(0)
    _randomize_constant_weights(model, rng)
    shape = model.input_shape[1:]
    _calibrate_batchnorm(model, rng.normal(size=(8, *shape)).astype("float32"))
    images = rng.normal(size=(4, *shape)).astype("float32")
    return model, images


# ---------------------------------------------------------------- independent parameter count


def _removed_entries(graph, removal) -> dict[str, int]:
    """Layer name → weight entries that removing ``removal`` takes away.

    Axis meanings come from the Keras layer documentation, written out here
    independently of kprune's handlers; which channels each tensor loses comes
    from the graph's channel ids.
    """
    removed_roots = np.zeros(len(graph.roots), dtype=bool)
    for name, indices in removal.items():
        removed_roots[graph.roots[graph.producer_ids(name)[indices]]] = True

    def kept(tensor_id):
        ids = graph.tensor_ids.get(tensor_id)
        return None if ids is None else int((~removed_roots[graph.roots[ids]]).sum())

    counts = {}
    for call in graph.flat.calls:
        layer = call.layer
        if call.name in counts or not isinstance(layer, layers.Layer) or not layer.weights:
            continue
        shapes = {w.name: tuple(w.shape) for w in layer.weights}
        before = sum(math.prod(shape) for shape in shapes.values())
        kept_in = kept(call.inputs[0]) if call.inputs else None
        kept_out = kept(call.outputs[0])
        after = sum(
            math.prod(shape)
            for shape in _kept_shapes(layer, shapes, kept_in, kept_out).values()
        )
        counts[call.name] = before - after
    return counts


TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)


def _kept_shapes(layer, shapes, kept_in, kept_out):
    """Weight shapes after the input keeps ``kept_in`` and the output ``kept_out`` channels."""

    def replace(shape, axis, size):
        if size is None:
            return shape
        shape = list(shape)
        shape[axis] = size
        return tuple(shape)

    if isinstance(layer, layers.Normalization):
        return shapes  # input statistics; the model input is never pruned
    result = {}
    for name, shape in shapes.items():
        if isinstance(layer, TRANSPOSED):
            if name == "kernel":  # (..., filters, in_channels)
                shape = replace(replace(shape, -1, kept_in), -2, kept_out)
            else:
                shape = replace(shape, 0, kept_out)
        elif isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
            multiplier = layer.depth_multiplier
            if name == "depthwise_kernel":  # (..., in_channels, multiplier)
                shape = replace(shape, -2, kept_in)
            elif name == "pointwise_kernel":  # (..., in_channels · multiplier, filters)
                in_size = None if kept_in is None else kept_in * multiplier
                shape = replace(replace(shape, -2, in_size), -1, kept_out)
            else:
                shape = replace(shape, 0, kept_out)
        elif isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
            if name == "kernel":  # (..., in_channels, multiplier)
                shape = replace(shape, -2, kept_in)
            else:  # bias: in_channels · multiplier
                shape = replace(shape, 0, kept_out)
        elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense)):
            if getattr(layer, "groups", 1) == 1 and name == "kernel":  # (..., in, filters)
                shape = replace(replace(shape, -2, kept_in), -1, kept_out)
            elif name == "kernel":  # grouped: (..., in / groups, filters)
                shape = replace(shape, -1, kept_out)
                if layer.groups == shape[-1]:  # depthwise-like: one input per group
                    shape = replace(shape, -2, 1)
            else:
                shape = replace(shape, 0, kept_out)
        elif len(shape) == 1:  # BatchNorm statistics and scales, layer scale γ, …
            shape = replace(shape, 0, kept_in)
        else:
            raise AssertionError(f"no expected-shape rule for {type(layer).__name__}.{name}")
        result[name] = shape
    return result


# ---------------------------------------------------------------- the checks


def _assert_exact(model, graph, removal, pruned, images) -> np.ndarray:
    expected = np.asarray(zeroed_copy(model, graph, removal)(images, training=False))
    scale = float(np.abs(expected).max())
    assert 1e-1 < scale < 1e3, f"outputs of magnitude {scale:.2e} make the comparison vacuous"
    original = np.asarray(model(images, training=False))
    assert np.abs(original - expected).max() > 1e-3 * scale, "the removal changes nothing"
    actual = np.asarray(pruned(images, training=False))
    # 1e-5 absolute for outputs up to 1; relative to the output scale above.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * max(1.0, scale))
    return actual


def _assert_params_fell_exactly(model, graph, removal, pruned) -> None:
    removed = _removed_entries(graph, removal)
    assert sum(removed.values()) > 0
    before = {name: _layer_of(graph, name).count_params() for name in removed}
    wrong = {
        name: (before[name] - count, pruned.get_layer(name).count_params())
        for name, count in removed.items()
        if before[name] - count != pruned.get_layer(name).count_params()
    }
    assert not wrong, f"layer: (expected, actual) params {wrong}"
    assert pruned.count_params() == model.count_params() - sum(removed.values())


def _layer_of(graph, name):
    return next(call.layer for call in graph.flat.calls if call.name == name)


def _assert_coupled(graph, case) -> None:
    for producers in COUPLED.get(case, []):
        group = graph.group_of(next(iter(producers)))
        assert set(group.producers) == producers, graph.describe()
        assert group.prunable


@pytest.mark.parametrize(
    "case", [*CASES, *(pytest.param(case, marks=pytest.mark.slow) for case in SLOW_CASES)]
)
def test_removal_is_exact_smaller_and_reloadable(case, tmp_path):
    model, images = _prepared(case)
    graph = analyze(model)
    _assert_coupled(graph, case)
    removal = random_removal(graph, np.random.default_rng(1), fraction=0.25, max_per_layer=3)
    assert len(removal) == sum(g.prunable and g.channels > 1 for g in graph.groups) > 0

    pruned = remove_filters(model, removal, graph=graph)

    actual = _assert_exact(model, graph, removal, pruned, images)
    _assert_params_fell_exactly(model, graph, removal, pruned)
    assert not any(isinstance(layer, keras.Model) for layer in pruned.layers)  # flattened
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(images, training=False)), actual)


def test_parameter_check_fails_when_channels_are_only_zeroed():
    model, _ = _prepared("sequential_cnn")
    graph = analyze(model)
    removal = {"c1": [0, 3], "fc1": [1]}
    with pytest.raises(AssertionError, match="expected, actual"):
        _assert_params_fell_exactly(model, graph, removal, zeroed_copy(model, graph, removal))


def test_nested_layers_keep_their_names_or_get_the_submodel_prefix():
    model, _ = _prepared("nested")
    pruned = remove_filters(model, {"block_conv": [2]})
    names = [layer.name for layer in pruned.layers]
    for name in ("conv", "block_conv", "bn", "side", "head_conv", "flat", "logits"):
        assert name in names
    # Coupled through the inner Add: the outer conv loses channel 2 as well.
    assert pruned.get_layer("conv").filters == pruned.get_layer("block_conv").filters == 11
    assert pruned.get_layer("head_conv").kernel.shape == (1, 1, 11 + 6, 9)
