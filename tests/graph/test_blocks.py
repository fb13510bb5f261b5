"""Layers that work on blocks of channels: GroupNormalization and grouped convolutions.

Oracle: `zeroed_through_consumers` — the original model with the removed
channels' producers zeroed *and* their consumers' input rows zeroed. The
zeroed-producer oracle alone does not apply here: GroupNormalization turns a
zeroed block into β, and a grouped convolution turns it into its bias, which
the next layers still see. Removing whole blocks leaves the other blocks'
statistics and outputs untouched, so the pruned model equals that reference.
"""

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune.graph import analyze
from kprune.metrics import channel_params, count_params
from kprune.pruning.selection import select
from kprune.surgery import remove_filters
from tests.graph.oracle import assert_exact, zeroed_through_consumers


def _randomize(model, seed=1):
    """Non-trivial γ, β, biases and statistics, so that a slicing mistake shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights(
                [w if w.ndim > 1 else rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in weights]
            )
    return model


def group_norm_model(groups=4, filters=16):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(filters, 3, padding="same", name="a")(inputs)
    x = layers.GroupNormalization(groups=groups, name="gn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Conv2D(6, 1, name="c")(x)
    outputs = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(x))
    return _randomize(keras.Model(inputs, outputs))


def grouped_conv_model(norm_groups=4, conv_groups=4, grouped_filters=12):
    """a (16) → GroupNorm → grouped conv (16 → grouped_filters) → BN → ReLU → c."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", name="a")(inputs)
    x = layers.GroupNormalization(groups=norm_groups, name="gn")(x)
    x = layers.Conv2D(grouped_filters, 3, groups=conv_groups, padding="same", name="g")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Conv2D(6, 1, name="c")(x)
    outputs = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(x))
    return _randomize(keras.Model(inputs, outputs))


def test_group_norm_ties_its_groups_and_loses_whole_ones(tmp_path):
    model = group_norm_model()
    graph = analyze(model)
    group = graph.group_of("a")
    assert group.prunable and group.channels == 4  # 4 blocks of 4 channels
    assert group.tied_by == ["GroupNormalization 'gn' (4 groups)"]
    assert group.producers["a"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    pruned = assert_exact(
        model,
        {"a": [4, 5, 6, 7, 12, 13, 14, 15]},
        reference=zeroed_through_consumers,
        saved_to=tmp_path / "p.keras",
    )
    norm = pruned.get_layer("gn")
    assert norm.groups == 2 and norm.gamma.shape == (8,)
    gamma = model.get_layer("gn").get_weights()[0]
    np.testing.assert_array_equal(norm.get_weights()[0], gamma[[0, 1, 2, 3, 8, 9, 10, 11]])
    assert pruned.get_layer("c").kernel.shape == (1, 1, 8, 6)


def test_part_of_a_block_is_refused_naming_the_fix():
    model = group_norm_model()
    with pytest.raises(
        kprune.InvalidArgumentError, match=r"Channels 4\.\.7 of 'a' go together.*Fix: remove the whole block"
    ):
        remove_filters(model, {"a": [4, 5]})


def test_group_norm_with_one_group_is_a_boundary_and_with_one_channel_per_group_channel_wise(tmp_path):
    one_group = analyze(group_norm_model(groups=1))
    assert not one_group.group_of("a").prunable
    assert "one group" in one_group.group_of("a").frozen_by[0]
    per_channel = group_norm_model(groups=16)
    graph = analyze(per_channel)
    assert graph.group_of("a").channels == 16 and graph.group_of("a").prunable
    pruned = assert_exact(
        per_channel, {"a": [3, 9]}, reference=zeroed_through_consumers, saved_to=tmp_path / "p.keras"
    )
    assert pruned.get_layer("gn").groups == 14


@pytest.mark.parametrize(
    ("conv_groups", "grouped_filters", "kept_filters"),
    [(4, 12, 9), (8, 8, 6), (4, 4, 3)],  # 3 outputs per group of 4 inputs; 1 per 2; 1 per 4
)
def test_a_grouped_conv_loses_whole_groups_of_inputs_and_outputs(
    tmp_path, conv_groups, grouped_filters, kept_filters
):
    model = grouped_conv_model(conv_groups=conv_groups, grouped_filters=grouped_filters)
    graph = analyze(model)
    assert graph.prunable_layers() == ["a", "c"]  # g follows a; it makes no channels of its own
    assert graph.group_of("a").channels == 4  # GroupNorm's blocks of 4 hold g's smaller ones
    pruned = assert_exact(
        model, {"a": [8, 9, 10, 11]}, reference=zeroed_through_consumers, saved_to=tmp_path / "p.keras"
    )
    grouped = pruned.get_layer("g")
    assert grouped.filters == kept_filters and grouped.groups == conv_groups * 3 // 4
    assert grouped.kernel.shape == (3, 3, 16 // conv_groups, kept_filters)  # each group keeps its inputs
    assert pruned.get_layer("bn").gamma.shape == (kept_filters,)
    assert pruned.get_layer("c").kernel.shape == (1, 1, kept_filters, 6)


def test_blocks_of_two_layers_join_into_the_larger():
    # GroupNorm ties blocks of 8, the grouped conv blocks of 4: a block is 8 channels.
    model = grouped_conv_model(norm_groups=2, conv_groups=4)
    group = analyze(model).group_of("a")
    assert group.channels == 2 and len(group.tied_by) == 2
    with pytest.raises(kprune.InvalidArgumentError, match="go together"):
        remove_filters(model, {"a": [0, 1, 2, 3]})
    pruned = remove_filters(model, {"a": list(range(8))})
    assert pruned.get_layer("gn").groups == 1 and pruned.get_layer("g").groups == 2


def test_selection_takes_whole_blocks_and_their_costs_are_what_removal_saves():
    model = grouped_conv_model()
    graph = analyze(model)
    group = graph.group_of("a")
    scores = {g.index: np.arange(g.channels, dtype=float) + 1 for g in graph.groups if g.prunable}
    spec = select(graph, scores, count=1, min_per_group=1)
    assert spec["a"] == [0, 1, 2, 3]  # the lowest-scored block, whole
    pruned = remove_filters(model, spec)  # accepted: whole blocks
    # the per-channel cost kprune's targets use is what removing one block saves
    saved = count_params(model) - count_params(remove_filters(model, {"a": [0, 1, 2, 3]}))
    assert channel_params(graph)[group.index] == pytest.approx(saved, rel=0.02)
    assert pruned.get_layer("g").groups == 3


def test_a_pruning_run_with_taylor_keeps_every_block_whole():
    from tests.test_schedule import QUICK, train_stream

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same", name="a")(inputs)
    x = layers.GroupNormalization(groups=4, name="gn")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(16, 3, groups=4, padding="same", name="g")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(16, 3, padding="same", name="c")(x)
    x = layers.GlobalAveragePooling2D()(layers.MaxPooling2D(4)(x))
    model = keras.Model(inputs, layers.Dense(10, name="logits")(x))
    val = kprune.data.load("synthetic", "val", input_shape=(16, 16, 3), batch_size=64)
    result = kprune.prune(model, train_stream, val, criterion="taylor", target_params=0.4, **QUICK)
    assert result.report["stop_reason"] == "target reached"
    norm, grouped = result.model.get_layer("gn"), result.model.get_layer("g")
    kept = result.model.get_layer("a").filters
    assert kept % 4 == 0 and norm.groups == kept // 4 == grouped.groups and grouped.filters == kept
    assert kept < 16 or result.model.get_layer("c").filters < 16
