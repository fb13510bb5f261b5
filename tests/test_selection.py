import keras
import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.graph import analyze
from kprune.pruning.selection import group_units, removable_channels, select, select_for_latency
from kprune.surgery import remove_filters
from tests.graph.conftest import mixed_graph


def test_units_are_lowest_first_and_respect_the_minimum():
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    units = group_units(scores, group=0, min_keep=2, round_to=None)
    assert [u.channels for u in units] == [(1,), (3,), (0,)]  # keeps the best two
    assert [u.score for u in units] == [0.1, 0.3, 0.5]


def test_round_to_trims_the_first_unit_and_keeps_multiples():
    scores = np.arange(10, dtype=float)[::-1]  # channel 9 is the weakest
    units = group_units(scores, group=3, min_keep=1, round_to=4)
    # 10 channels: first unit of 2 (10 % 4) brings it to 8, then 4 more to 4.
    assert [u.channels for u in units] == [(9, 8), (7, 6, 5, 4)]
    assert units[1].score == pytest.approx(np.mean([2, 3, 4, 5]))
    assert group_units(np.ones(4), 0, 1, round_to=4) == []


def test_select_takes_the_globally_lowest_within_count():
    graph = analyze(mixed_graph())
    stem, left, right = (graph.group_of(n).index for n in ("stem", "left", "right"))
    scores = {
        stem: np.array([0.9, 0.05, 0.8, 0.7, 0.6, 0.5]),
        left: np.array([0.01, 0.4, 0.3, 0.2]),
        right: np.array([0.5, 0.5, 0.02, 0.5, 0.5]),
    }
    spec = select(graph, scores, count=3)
    # The Add couples stem and branch: both are named for the same channel.
    assert spec == {"left": [0], "right": [2], "stem": [1], "branch": [1]}
    assert select(graph, scores, count=3, ignore=("branch",)) == {"left": [0, 3], "right": [2]}


def test_budget_stops_selection_by_cost():
    graph = analyze(mixed_graph())
    left, right = graph.group_of("left").index, graph.group_of("right").index
    scores = {left: np.array([0.1, 0.2, 0.3, 0.4]), right: np.array([0.15, 0.5, 0.6, 0.7, 0.8])}
    costs = {left: 10.0, right: 100.0}
    spec = select(graph, scores, count=10, costs=costs, budget=115.0)
    assert spec == {"left": [0, 1], "right": [0]}  # 10 + 100 < 115, then 10 more reaches it


def test_unknown_ignored_layer_is_an_error():
    graph = analyze(mixed_graph())
    with pytest.raises(InvalidArgumentError, match=r"`ignore` names unknown producer layer\(s\) \['nope'\]"):
        select(graph, {}, count=1, ignore=("nope",))


def _concat_then_add():
    """Two convolutions concatenated and added to a third: one group of 8 channels,
    4 of them made by `left` only and 4 by `right` only."""
    inputs = keras.Input((6, 6, 3))
    left = keras.layers.Conv2D(4, 1, name="left")(inputs)
    right = keras.layers.Conv2D(4, 1, name="right")(inputs)
    both = keras.layers.Concatenate(name="concat")([left, right])
    added = keras.layers.Add(name="add")([both, keras.layers.Conv2D(8, 1, name="proj")(inputs)])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(added)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))


@pytest.mark.parametrize("min_per_group", [1, 2])
def test_a_layer_that_makes_part_of_a_group_keeps_its_best_channels(min_per_group):
    model = _concat_then_add()
    graph = analyze(model)
    group = graph.group_of("left")
    assert group is graph.group_of("right") and group.channels == 8
    left = graph.groups[group.index].producers["left"]
    scores = np.full(8, 0.5)
    scores[left] = [0.01, 0.04, 0.02, 0.03]  # `left` holds the weakest channels of the group
    spec = select(graph, {group.index: scores}, count=7, min_per_group=min_per_group)
    best_of_left = set(left[[1, 3]][:min_per_group].tolist())  # scores 0.04, then 0.03
    removed = set(spec["proj"])
    assert not best_of_left & removed and len(removed) == 8 - 2 * min_per_group  # each part keeps its own
    # what the plan counts as removable agrees: 8 channels, less min_per_group for each part
    assert removable_channels(graph, min_per_group=min_per_group)[group.index] == 8 - 2 * min_per_group
    pruned = remove_filters(model, spec, graph=graph)  # the surgery accepts it: no layer is emptied
    assert pruned.get_layer("left").filters == min_per_group

    # the latency selection keeps them too (a time that falls with every channel removed)
    spec = select_for_latency(
        graph,
        {group.index: scores},
        8,
        predict=lambda kept: sum(kept.values()) or 8.0,
        step=1,
        budget=8.0,
        min_per_group=min_per_group,
    )
    assert not best_of_left & set(spec["proj"])
    assert remove_filters(model, spec, graph=graph).get_layer("left").filters == min_per_group
