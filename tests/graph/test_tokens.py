"""Transformer-style blocks on tokens: the hidden width of a Dense MLP is pruned like
filters; LayerNormalization over the model width stays a boundary.

Oracle: `zeroed_copy` (the first Dense's units zeroed: GELU(0) = 0, so the second
Dense sees zeros where the pruned model has no rows).
"""

import keras
from keras import layers

from kprune.graph import analyze
from tests.graph.oracle import assert_exact


def mlp_block(width=32, hidden=64, tokens=16):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((tokens, width))
    x = layers.LayerNormalization(name="ln1")(inputs)
    h = layers.Dense(hidden, activation="gelu", name="fc1")(x)
    h = layers.Dense(width, name="fc2")(h)
    x = layers.Add(name="residual")([inputs, h])
    x = layers.LayerNormalization(name="ln2")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


def test_the_mlp_hidden_width_is_prunable_and_the_model_width_is_not(tmp_path):
    model = mlp_block()
    graph = analyze(model)
    assert graph.prunable_layers() == ["fc1"]
    width = graph.group_of("fc2")
    assert any("LayerNormalization 'ln1'" in reason for reason in width.frozen_by)
    pruned = assert_exact(model, {"fc1": [1, 5, 9, 40]}, saved_to=tmp_path / "p.keras")
    assert pruned.get_layer("fc1").kernel.shape == (32, 60)
    assert pruned.get_layer("fc2").kernel.shape == (60, 32)
