"""Criteria against an explicit NumPy reference: values, not only order.

The network is small enough to differentiate by hand:
x → c1 (1×1 conv, ReLU) ─┐
x → c2 (1×1 conv) → BN → ReLU ─┴→ concat → global average → dense → softmax CE.
For a map z that reaches the loss only through the global average and the
dense layer, ∂C/∂z[n, m, k] = ((p_n − y_n) · W_dense[offset + k]) / M.
"""

import keras
import numpy as np
import pytest

import kprune
from kprune.criteria.statistics import collect_statistics, observation_points
from kprune.errors import InvalidArgumentError
from kprune.graph import analyze
from kprune.metrics import channel_flops
from kprune.pruning.ranking import rank

EPS = 1e-3  # BatchNormalization epsilon


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    inputs = keras.Input((4, 4, 2))
    z1 = keras.layers.Conv2D(3, 1, activation="relu", name="c1")(inputs)
    h2 = keras.layers.Conv2D(2, 1, name="c2")(inputs)
    h2 = keras.layers.BatchNormalization(epsilon=EPS, name="bn")(h2)
    z2 = keras.layers.ReLU(name="relu")(h2)
    joined = keras.layers.Concatenate(name="concat")([z1, z2])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(joined)
    logits = keras.layers.Dense(3, name="head")(pooled)
    model = keras.Model(inputs, logits)
    weights = {
        "c1": [rng.normal(size=(1, 1, 2, 3)), rng.normal(0, 0.3, 3)],
        "c2": [rng.normal(size=(1, 1, 2, 2)), rng.normal(0, 0.3, 2)],
        "bn": [
            rng.uniform(0.5, 1.5, 2),
            rng.normal(0, 0.3, 2),
            rng.normal(0, 0.3, 2),
            rng.uniform(0.5, 2, 2),
        ],
        "head": [rng.normal(size=(5, 3)), rng.normal(0, 0.3, 3)],
    }
    for name, values in weights.items():
        model.get_layer(name).set_weights([np.asarray(v, "float32") for v in values])
    x = rng.normal(size=(7, 4, 4, 2)).astype("float32")
    y = rng.integers(0, 3, 7).astype("int32")
    return model, weights, x, y


def reference_maps(weights, x, y):
    """z1, z2 (N, M, C) and ∂C/∂z for each, in NumPy."""
    flat = x.reshape(len(x), -1, 2)
    w1, b1 = weights["c1"]
    z1 = np.maximum(flat @ w1[0, 0] + b1, 0)
    w2, b2 = weights["c2"]
    gamma, beta, mean, variance = weights["bn"]
    h2 = (flat @ w2[0, 0] + b2 - mean) / np.sqrt(variance + EPS) * gamma + beta
    z2 = np.maximum(h2, 0)
    pooled = np.concatenate([z1, z2], -1).mean(1)
    wd, bd = weights["head"]
    logits = pooled @ wd + bd
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_logits = p - np.eye(3)[y]
    d_pooled = d_logits @ wd.T  # (N, 5)
    positions = flat.shape[1]
    g1 = np.repeat(d_pooled[:, None, :3] / positions, positions, 1)
    g2 = np.repeat(d_pooled[:, None, 3:] / positions, positions, 1)
    return (z1, g1), (z2, g2)


def reference(weights, x, y):
    stats = {"taylor": {}, "l2": {}, "apoz": {}}
    for name, (z, g) in zip(("c1", "c2"), reference_maps(weights, x, y)):
        stats["taylor"][name] = np.abs((z * g).mean(1)).mean(0)
        stats["l2"][name] = np.sqrt((z**2).sum(1)).mean(0)
        stats["apoz"][name] = (z == 0).mean(1).mean(0)
    return stats


def batches(x, y, size=3):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)  # 3 + 3 + 1 examples


def test_observation_points_are_after_bn_and_activation(setup):
    model, *_ = setup
    graph = analyze(model)
    points = observation_points(graph)
    assert graph.flat.tensors[points["c1"]] is model.get_layer("c1").output
    assert graph.flat.tensors[points["c2"]] is model.get_layer("relu").output


def test_statistics_match_the_numpy_reference(setup):
    model, weights, x, y = setup
    expected = reference(weights, x, y)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)  # 3 + 3 + 1 examples
    measured = collect_statistics(model, data, statistics=("taylor", "l2", "apoz"))
    for stat in ("taylor", "l2", "apoz"):
        for name in ("c1", "c2"):
            np.testing.assert_allclose(measured[stat][name], expected[stat][name], rtol=1e-5, atol=1e-7)
    assert (expected["apoz"]["c1"] > 0).any()  # the ReLU does zero some positions


def test_taylor_takes_the_absolute_value_per_example(setup):
    _, weights, x, y = setup
    (z, g), _ = reference_maps(weights, x, y)
    per_example = np.abs((z * g).mean(1)).mean(0)
    of_batch_mean = np.abs((z * g).mean(1).mean(0))
    assert not np.allclose(per_example, of_batch_mean)  # the distinction is real here


@pytest.mark.parametrize("normalize", ["l2", "none"])
def test_rank_values_with_and_without_normalization(setup, normalize):
    model, weights, x, y = setup
    expected = reference(weights, x, y)
    scores = rank(model, batches(x, y), "taylor", normalize=normalize)
    for name in ("c1", "c2"):
        values = expected["taylor"][name]
        if normalize == "l2":
            values = values / np.linalg.norm(values)
        np.testing.assert_allclose(scores[name], values, rtol=1e-5)


def test_combined_is_the_documented_weighted_sum(setup):
    model, weights, x, y = setup
    expected = reference(weights, x, y)
    scores = rank(model, batches(x, y), "combined", normalize="none", alpha=0.3)
    for name in ("c1", "c2"):
        t = expected["taylor"][name] / np.linalg.norm(expected["taylor"][name])
        a = expected["l2"][name] / np.linalg.norm(expected["l2"][name])
        np.testing.assert_allclose(scores[name], 0.3 * t + 0.7 * a, rtol=1e-5)


def test_apoz_and_weight_norms(setup):
    model, weights, x, y = setup
    expected = reference(weights, x, y)
    apoz = rank(model, batches(x, y), "apoz", normalize="none")
    np.testing.assert_allclose(apoz["c1"], 1 - expected["apoz"]["c1"], rtol=1e-5)
    l1 = rank(model, None, "l1", normalize="none")
    np.testing.assert_allclose(l1["c2"], np.abs(weights["c2"][0]).sum((0, 1, 2)), rtol=1e-6)
    l2w = rank(model, None, "l2_weight", normalize="none")
    np.testing.assert_allclose(l2w["c1"], np.sqrt((weights["c1"][0] ** 2).sum((0, 1, 2))), rtol=1e-6)


def test_bn_gamma_reads_the_following_batchnorm(setup):
    model, weights, *_ = setup
    with pytest.raises(InvalidArgumentError, match="'bn_gamma' needs a BatchNormalization.*c1"):
        rank(model, None, "bn_gamma")
    scores = rank(model, None, "bn_gamma", normalize="none", graph=_graph_without(model, "c1"))
    np.testing.assert_allclose(scores["c2"], np.abs(weights["bn"][0]), rtol=1e-6)


def _graph_without(model, layer):
    graph = analyze(model)
    graph.group_of(layer).frozen_by.append("test")
    return graph


def test_flops_penalty_is_molchanov_eq9(setup):
    model, weights, x, y = setup
    graph = analyze(model)
    plain = rank(model, batches(x, y), "taylor", graph=graph)
    penalized = rank(model, batches(x, y), "taylor", graph=graph, flops_weight=0.5)
    # 1×1 convs on 4×4: a channel of c1 costs 2·16·2 (its filter) + 2·3 (a head row)... by hand:
    costs = channel_flops(graph)
    c1_cost = 2 * 16 * 2 + 2 * 3  # its own filter over 16 positions; one input row of head
    c2_cost = 2 * 16 * 2 + 2 * 3
    assert costs[graph.group_of("c1").index] == pytest.approx(c1_cost)
    assert costs[graph.group_of("c2").index] == pytest.approx(c2_cost)
    np.testing.assert_allclose(
        penalized["c1"], plain["c1"] - 0.5 * c1_cost / max(c1_cost, c2_cost), rtol=1e-6
    )


def test_random_is_seeded(setup):
    model, *_ = setup
    first = rank(model, None, "random", seed=3)
    again = rank(model, None, "random", seed=3)
    other = rank(model, None, "random", seed=4)
    np.testing.assert_array_equal(first["c1"], again["c1"])
    assert not np.array_equal(first["c1"], other["c1"])


def test_coupled_producers_share_the_summed_score():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(3, 1, name="a")(inputs)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    added = keras.layers.Add(name="add")([a, b])
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(added)))
    raw = rank(model, None, "l1", normalize="none")
    kernel_a = np.abs(model.get_layer("a").kernel.numpy()).sum((0, 1, 2))
    kernel_b = np.abs(model.get_layer("b").kernel.numpy()).sum((0, 1, 2))
    np.testing.assert_allclose(raw["a"], kernel_a + kernel_b, rtol=1e-6)
    np.testing.assert_array_equal(raw["a"], raw["b"])


def test_unknown_criterion_lists_the_valid_ones(setup):
    model, *_ = setup
    with pytest.raises(InvalidArgumentError, match="Unknown criterion 'tailor'. Use one of: taylor, l2"):
        rank(model, None, "tailor")
    with pytest.raises(InvalidArgumentError, match="needs data"):
        rank(model, None, "taylor")
    with pytest.raises(InvalidArgumentError, match="normalize"):
        rank(model, None, "l1", normalize="max")


def test_users_can_register_a_criterion(setup):
    model, *_ = setup

    @kprune.register_criterion("ones", needs_data=False)
    def ones(model, data, graph, **options):
        return {name: np.ones(len(graph.producer_ids(name))) for name in graph.prunable_layers()}

    scores = rank(model, None, "ones", normalize="none")
    np.testing.assert_array_equal(scores["c1"], [1, 1, 1])


def test_compiled_loss_is_used(setup):
    model, weights, x, y = setup
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    try:
        scores = rank(model, batches(x, y), "taylor", normalize="none")
        np.testing.assert_allclose(scores["c1"], reference(weights, x, y)["taylor"]["c1"], rtol=1e-5)
    finally:
        model.compile(loss=None)
