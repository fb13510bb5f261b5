import json

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprune.errors import InvalidArgumentError
from kprune.graph import analyze
from kprune.history import PruningHistory
from kprune.surgery import remove_filters, replay
from tests.graph.conftest import mixed_graph
from tests.graph.oracle import zeroed_copy

INPUT = np.random.default_rng(42).normal(size=(3, 8, 8, 3)).astype("float32")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return mixed_graph()


@pytest.fixture(scope="module")
def graph(model):
    return analyze(model)


def _removal(draw_sizes, data):
    removal = {}
    for layer, size in draw_sizes.items():
        chosen = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=size - 1))
        if chosen:
            removal[layer] = chosen
    return removal


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_removal_equals_zeroing_for_any_channel_set(model, graph, data):
    sizes = {"stem": 6, "left": 4, "right": 5, "hidden": 7}
    removal = _removal(sizes, data)
    pruned = remove_filters(model, removal, graph=graph)
    reference = zeroed_copy(model, graph, removal)
    expected = reference(INPUT).numpy()
    assert np.abs(expected).max() > 1e-2  # the comparison is not vacuous
    np.testing.assert_allclose(pruned(INPUT).numpy(), expected, atol=1e-5, rtol=0)


def test_parameter_count_falls_by_the_hand_computed_amount(model, graph):
    pruned = remove_filters(model, {"branch": [0, 1], "right": [4]}, graph=graph)
    # Coupled by the Add: stem and branch both lose channels 0 and 1 (6 → 4 channels).
    removed = (
        2 * (3 * 3 * 3 + 1)  # stem: 2 filters of 3×3×3 weights + bias
        + 2 * 4  # stem_bn: gamma, beta, mean, variance of 2 channels
        + (6 * 6 + 6)
        - (4 * 4 + 4)  # branch: 1×1 kernel 6→6 becomes 4→4, bias 6 → 4
        + 2 * 2 * (3 * 3 + 1)  # dw: 2 channels × multiplier 2, each 3×3 kernel + bias
        + (2 * 2) * 4  # left: 4 input rows (2 channels × 2) of each of its 4 filters
        + 2 * 3 * 3  # right, depthwise part: 2 input channels' 3×3 kernels
        + (6 * 5 + 5)
        - (4 * 4 + 4)  # right, pointwise 6→5 becomes 4→4, bias 5 → 4
        + 16 * 7  # hidden: right's channel 4 sits at 16 flattened positions, × 7 units
    )
    assert removed == 287
    assert model.count_params() - pruned.count_params() == removed
    assert pruned.get_layer("stem").filters == 4
    assert pruned.get_layer("branch").filters == 4
    assert pruned.get_layer("right").filters == 4
    assert pruned.get_layer("hidden").kernel.shape == (128, 7)


def test_original_model_is_untouched(model, graph):
    before = [w.copy() for w in model.get_weights()]
    output_before = model(INPUT).numpy()
    pruned = remove_filters(model, {"stem": [1], "hidden": [0, 6]}, graph=graph)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(model(INPUT).numpy(), output_before)
    assert model.get_layer("stem").filters == 6
    shared = {id(layer) for layer in model.layers} & {id(layer) for layer in pruned.layers}
    assert not shared


def test_same_names_inputs_and_outputs(model, graph):
    pruned = remove_filters(model, {"left": [2]}, graph=graph)
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in model.layers]
    assert pruned.input_shape == model.input_shape
    assert pruned.output_shape == model.output_shape
    assert pruned.name == model.name


def test_rebuilt_layers_keep_the_initializers_of_the_original():
    """Surgery builds the new layers with Zeros (every weight is overwritten); their
    configs and a later re-initialisation still see the user's initializers."""
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(
        6,
        3,
        kernel_initializer=keras.initializers.GlorotUniform(seed=3),
        bias_initializer=keras.initializers.Constant(0.5),
        name="conv",
    )(inputs)
    x = keras.layers.BatchNormalization(gamma_initializer="ones", beta_initializer="he_normal", name="bn")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="orthogonal", name="head")(x))
    pruned = remove_filters(model, {"conv": [1, 4]})
    for name, keys in {
        "conv": ("kernel_initializer", "bias_initializer"),
        "bn": ("gamma_initializer", "beta_initializer", "moving_variance_initializer"),
        "head": ("kernel_initializer",),
    }.items():
        for key in keys:
            assert pruned.get_layer(name).get_config()[key] == model.get_layer(name).get_config()[key], (
                name,
                key,
            )
    assert pruned.get_layer("conv").filters == 4
    np.testing.assert_array_equal(
        pruned.get_layer("conv").get_weights()[1], model.get_layer("conv").get_weights()[1][[0, 2, 3, 5]]
    )
    assert np.all(
        pruned.get_layer("bn").get_weights()[3] == model.get_layer("bn").get_weights()[3][[0, 2, 3, 5]]
    )


def test_saved_model_loads_with_plain_keras(model, graph, tmp_path):
    pruned = remove_filters(model, {"branch": [3], "right": [0, 1]}, graph=graph)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_allclose(loaded(INPUT).numpy(), pruned(INPUT).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "removal, message",
    [
        ({"nope": [0]}, r"'nope' is not a producer layer.*Prunable layers: stem, branch"),
        ({"logits": [0]}, r"'logits' cannot be pruned: its channels reach model output"),
        ({"stem": [6]}, r"index 6 of 'stem' is out of range: the layer has 6 output channels \(0..5\)"),
        ({"stem": [-1]}, r"index -1 of 'stem' is out of range"),
        ({"stem": [2, 2]}, r"index 2 of 'stem' is listed twice"),
        ({"stem": [0.5]}, r"must be integers"),
        ({"left": [0, 1, 2, 3]}, r"leave layer 'left' .* with none"),
        ({"stem": [0, 1, 2], "branch": [3, 4, 5]}, r"leave layer 'stem' .* with none"),
    ],
)
def test_bad_requests_are_refused_clearly(model, graph, removal, message):
    with pytest.raises(InvalidArgumentError, match=message):
        remove_filters(model, removal, graph=graph)


def test_filters_must_be_a_mapping(model):
    with pytest.raises(InvalidArgumentError, match="must map layer names"):
        remove_filters(model, [("stem", [0])])


def test_sequential_model_comes_back_functional_and_exact():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
            keras.layers.MaxPooling2D(name="p1"),
            keras.layers.Conv2D(6, 3, activation="relu", name="c2"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(4, name="out"),
        ]
    )
    graph = analyze(model)
    removal = {"c1": [0, 7], "c2": [3]}
    pruned = remove_filters(model, removal, graph=graph)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 1)).astype("float32")
    reference = zeroed_copy(model, graph, removal)(x).numpy()
    np.testing.assert_allclose(pruned(x).numpy(), reference, atol=1e-5)
    assert not isinstance(pruned, keras.Sequential)
    assert pruned.get_layer("out").kernel.shape == (2 * 2 * 5, 4)


def test_history_is_json_and_replays_exactly(model, tmp_path):
    history = PruningHistory()
    first = remove_filters(model, {"stem": [0, 4]}, history=history)
    second = remove_filters(first, {"right": [1], "hidden": [2]}, history=history)
    path = tmp_path / "history.json"
    history.save(path)
    data = json.loads(path.read_text())
    assert data["steps"] == [{"stem": [0, 4]}, {"right": [1], "hidden": [2]}]
    assert data["model"] == "mixed"
    replayed = replay(model, PruningHistory.load(path))
    assert [w.shape for w in replayed.weights] == [w.shape for w in second.weights]
    for a, b in zip(replayed.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_history_of_another_format_is_refused():
    with pytest.raises(InvalidArgumentError, match="Not a kprune pruning history"):
        PruningHistory.from_dict({"format": "something/2", "steps": []})
