"""Analysis and exact surgery on real architectures: SqueezeNet, keras.applications,
a Sequential CNN and a model with nested sub-models (tests/graph/zoo.py).

For each model: analyze, remove random channels of every prunable group, then
check (1) the pruned outputs equal those of the original with the channels
zeroed (tests/graph/oracle.py), on outputs of a non-vacuous magnitude; (2) the
parameter count fell by exactly the number of weight entries that an
independent per-class count says are gone; (3) the pruned model round-trips
through a ``.keras`` file with plain ``keras.models.load_model``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kprune.graph import analyze
from kprune.surgery import remove_filters
from tests.graph.oracle import outputs, random_removal, zeroed, zeroed_copy, zeroed_through_consumers
from tests.graph.zoo import CASES, SLOW_CASES, THROUGH_CONSUMERS, prepared

layers = keras.layers


# Producers that must form exactly one group (residual Adds, SE gates, nesting).
COUPLED = {
    "nested": [{"conv", "block_conv"}],  # outer conv + inner conv meet at the inner Add
    "ResNet50": [
        {"conv2_block1_0_conv", "conv2_block1_3_conv", "conv2_block2_3_conv", "conv2_block3_3_conv"},
    ],
    "MobileNetV2": [{"block_3_project", "block_4_project", "block_5_project"}],
    "EfficientNetB0": [
        {"stem_conv", "block1a_se_expand"},  # SE gate × depthwise output (Multiply)
        {"block2a_expand_conv", "block2a_se_expand"},
        {"block4a_project_conv", "block4b_project_conv", "block4c_project_conv"},
    ],
}


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
        if isinstance(layer, layers.MultiHeadAttention):
            heads = graph.producer_ids(f"{call.name}/heads")
            kept_heads = int((~removed_roots[graph.roots[heads]]).sum())
            shapes = {w.path: tuple(w.shape) for w in layer.weights}  # four "kernel"s: by path
            before = sum(math.prod(shape) for shape in shapes.values())
            after = sum(math.prod(shape) for shape in _kept_attention(shapes, kept_heads, kept_out).values())
            counts[call.name] = before - after
            continue
        after = sum(math.prod(shape) for shape in _kept_shapes(layer, shapes, kept_in, kept_out).values())
        counts[call.name] = before - after
    return counts


def _kept_attention(shapes, kept_heads, kept_out):
    """MultiHeadAttention: query/key/value kernels (in, heads, dim), biases (heads, dim);
    output kernel (heads, dim, out), bias (out)."""
    result = {}
    for path, shape in shapes.items():
        shape = list(shape)
        if "attention_output" in path:
            if len(shape) == 3:
                shape[0] = kept_heads
            shape[-1] = kept_out
        else:
            shape[1 if len(shape) == 3 else 0] = kept_heads
        result[path] = tuple(shape)
    return result


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


def _assert_exact(model, graph, removal, pruned, images, through_consumers=False) -> np.ndarray:
    if through_consumers:
        expected = outputs(zeroed_through_consumers(model, graph, removal), images)
    else:
        with zeroed(model, graph, removal):
            expected = outputs(model, images)
    scale = float(np.abs(expected).max())
    assert 1e-1 < scale < 1e3, f"outputs of magnitude {scale:.2e} make the comparison vacuous"
    original = outputs(model, images)
    assert np.abs(original - expected).max() > 1e-3 * scale, "the removal changes nothing"
    actual = outputs(pruned, images)
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
    model, images = prepared(case)
    graph = analyze(model)
    _assert_coupled(graph, case)
    removal = random_removal(graph, np.random.default_rng(1), fraction=0.25, max_per_layer=3)
    assert len(removal) == sum(g.prunable and g.channels > 1 for g in graph.groups) > 0

    pruned = remove_filters(model, removal, graph=graph)

    actual = _assert_exact(model, graph, removal, pruned, images, case in THROUGH_CONSUMERS)
    _assert_params_fell_exactly(model, graph, removal, pruned)
    assert not any(isinstance(layer, keras.Model) for layer in pruned.layers)  # flattened
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(outputs(loaded, images), actual)


def test_parameter_check_fails_when_channels_are_only_zeroed():
    model, _ = prepared("sequential_cnn")
    graph = analyze(model)
    removal = {"c1": [0, 3], "fc1": [1]}
    with pytest.raises(AssertionError, match="expected, actual"):
        _assert_params_fell_exactly(model, graph, removal, zeroed_copy(model, graph, removal))


def test_nested_layers_keep_their_names_or_get_the_submodel_prefix():
    model, _ = prepared("nested")
    pruned = remove_filters(model, {"block_conv": [2]})
    names = [layer.name for layer in pruned.layers]
    for name in ("conv", "block_conv", "bn", "side", "head_conv", "flat", "logits"):
        assert name in names
    # Coupled through the inner Add: the outer conv loses channel 2 as well.
    assert pruned.get_layer("conv").filters == pruned.get_layer("block_conv").filters == 11
    assert pruned.get_layer("head_conv").kernel.shape == (1, 1, 11 + 6, 9)


def test_convnext_grouped_depthwise_conv_passes_channels_and_layernorm_freezes():
    model = CASES["ConvNeXtTiny"]()
    graph = analyze(model)
    # The residual stream of stage 0: the blocks' last convs, coupled by the Adds.
    stream = graph.group_of("convnext_tiny_stage_0_block_0_pointwise_conv_2")
    assert set(stream.layers("producer")) >= {"convnext_tiny_stage_0_block_2_pointwise_conv_2"}
    depthwise = "convnext_tiny_stage_0_block_0_depthwise_conv"  # Conv2D with groups == 96
    assert depthwise in stream.layers("passthrough") and depthwise not in graph.prunable_layers()
    assert "LayerNormalization 'convnext_tiny_stage_0_block_0_layernorm'" in stream.frozen_by
    # The 4× expansion inside a block has no LayerNorm after it: prunable.
    assert graph.group_of("convnext_tiny_stage_0_block_0_pointwise_conv_1").prunable
