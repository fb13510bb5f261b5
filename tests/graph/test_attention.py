"""MultiHeadAttention loses whole heads.

Oracle: the original model with the removed heads' rows of the output projection
zeroed (a head whose output is multiplied by zero contributes nothing; its query,
key and value projections then do not matter). Scores are checked against
finite differences of the loss (Taylor) and a NumPy attention (L2, L1), costs
against Keras' own parameter counts and a hand-written MAC formula.
"""

import keras
import numpy as np
import pytest
from keras import layers

from kprune.criteria import get as get_criterion
from kprune.criteria.statistics import collect_statistics
from kprune.graph import analyze
from kprune.metrics import channel_flops, channel_params, count_flops, count_params
from kprune.surgery import remove_filters

TOKENS, WIDTH, HEADS, KEY_DIM = 6, 8, 4, 3


def attention_model(*, value_dim=None, use_gate=False, use_bias=True, cross=False, causal=False, image=False):
    keras.utils.set_random_seed(0)
    shape = (2, 3, WIDTH) if image else (TOKENS, WIDTH)
    inputs = [keras.Input(shape, name="tokens")]
    x = layers.LayerNormalization(name="ln")(inputs[0])
    attention = layers.MultiHeadAttention(
        HEADS,
        KEY_DIM,
        value_dim=value_dim,
        use_gate=use_gate,
        use_bias=use_bias,
        attention_axes=(1, 2) if image else None,
        name="att",
    )
    if cross:
        inputs.append(keras.Input((TOKENS + 2, WIDTH + 2), name="memory"))
        y = attention(x, inputs[1], use_causal_mask=causal)
    else:
        y = attention(x, x, use_causal_mask=causal)
    x = layers.Add(name="residual")([inputs[0], y])
    x = layers.Reshape((-1, WIDTH))(x) if image else x
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs if cross else inputs[0], outputs)


def batch(model, n=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(n, *t.shape[1:])).astype("float32") for t in model.inputs]
    return arrays if len(arrays) > 1 else arrays[0]


def zeroed_heads(model, heads):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    output = copy.get_layer("att").output_dense
    kernel = output.kernel.numpy()
    kernel[heads] = 0.0
    output.kernel.assign(kernel)
    return copy


def test_heads_are_a_group_of_their_own_and_the_inputs_stay():
    graph = analyze(attention_model())
    assert graph.prunable_layers() == ["att/heads"]
    heads = graph.group_of("att/heads")
    assert heads.channels == HEADS
    assert heads.layers("producer") == ["att/heads"]
    width = graph.group_of("att")  # its output channels: the residual stream, frozen by LayerNorm
    assert any("LayerNormalization 'ln'" in reason for reason in width.frozen_by)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"value_dim": 5},
        {"use_gate": True},
        {"use_bias": False},
        {"cross": True},
        {"causal": True},
        {"image": True},
    ],
    ids=["self", "value_dim", "gate", "no_bias", "cross", "causal", "2d_axes"],
)
def test_removing_heads_equals_zeroing_their_output_rows(options, tmp_path):
    model = attention_model(**options)
    pruned = remove_filters(model, {"att/heads": [0, 2]})
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    pruned = keras.models.load_model(path)
    x = batch(model)
    expected = zeroed_heads(model, [0, 2])(x)
    assert np.abs(pruned(x) - expected).max() < 1e-5
    assert np.abs(model(x) - expected).max() > 1e-3  # the removed heads mattered
    attention = pruned.get_layer("att")
    assert attention.num_heads == 2
    assert attention.output_dense.kernel.shape[0] == 2
    assert count_params(pruned) < count_params(model)


def _per_example_loss(model, x, y):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    return np.asarray(loss(y, model(x)), dtype=np.float64)


@pytest.mark.parametrize(
    "options", [{"use_gate": True}, {"cross": True, "causal": True}], ids=["gate", "cross"]
)
def test_head_taylor_is_the_gate_derivative_by_finite_differences(options):
    model = attention_model(**options)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch(model, 8), np.arange(8) % 3
    scores = collect_statistics(model, (x, y), statistics=("taylor",))["taylor"]["att/heads"]
    expected = []
    for head in range(HEADS):  # a gate ξ on head h scales its output rows; dC/dξ at ξ = 1
        sides = []
        for sign in (1, -1):
            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
            kernel = copy.get_layer("att").output_dense.kernel
            values = kernel.numpy()
            values[head] *= 1 + sign * 1e-3
            kernel.assign(values)
            sides.append(_per_example_loss(copy, x, y))
        derivative = (sides[0] - sides[1]) / 2e-3
        expected.append(np.mean(np.abs(derivative) / TOKENS))  # mean over positions, per example
    np.testing.assert_allclose(scores, expected, rtol=2e-2, atol=1e-6)


def _numpy_heads(model, x):
    """Each head's output before the output projection, by NumPy: (n, tokens, heads, value_dim)."""
    attention = model.get_layer("att")
    normed = keras.Model(model.input, model.get_layer("ln").output)(x).numpy()
    q, k, v = (
        np.einsum("ntd,dhk->nthk", normed, dense.kernel.numpy()) + dense.bias.numpy()
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense)
    )
    logits = np.einsum("nthk,nshk->nhts", q, k) / np.sqrt(KEY_DIM)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("nhts,nshv->nthv", weights, v)


def test_head_l2_is_the_norm_of_each_heads_output():
    model = attention_model()
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = batch(model, 6), np.arange(6) % 3
    scores = collect_statistics(model, (x, y), statistics=("l2",))["l2"]["att/heads"]
    heads = _numpy_heads(model, x)
    expected = np.sqrt(np.square(heads).sum(axis=(1, 3))).mean(0)
    np.testing.assert_allclose(scores, expected, rtol=1e-4)


def test_head_l1_sums_every_weight_of_the_head():
    model = attention_model()
    attention = model.get_layer("att")
    expected = np.zeros(HEADS)
    for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
        expected += np.abs(dense.kernel.numpy()).sum(axis=(0, 2)) + np.abs(dense.bias.numpy()).sum(1)
    expected += np.abs(attention.output_dense.kernel.numpy()).sum(axis=(1, 2))
    scores = get_criterion("l1")(model, None, analyze(model))["att/heads"]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_attention_flops_and_the_cost_of_one_head():
    model = attention_model(value_dim=5)
    v = 5
    macs = TOKENS * WIDTH * HEADS * KEY_DIM * 2 + TOKENS * WIDTH * HEADS * v  # query, key, value
    macs += TOKENS * TOKENS * HEADS * (KEY_DIM + v) + TOKENS * HEADS * v * WIDTH  # products, output
    macs += WIDTH * 3  # logits
    assert count_flops(model) == 2 * macs
    graph = analyze(model)
    heads = graph.group_of("att/heads").index
    pruned = remove_filters(model, {"att/heads": [1]})
    assert channel_flops(graph)[heads] == pytest.approx(count_flops(model) - count_flops(pruned))
    saved = count_params(model) - count_params(pruned)
    # The estimate shares the output bias (WIDTH values) among the heads too.
    assert channel_params(graph)[heads] == pytest.approx(saved + WIDTH / HEADS)
