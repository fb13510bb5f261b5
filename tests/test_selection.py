import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.graph import analyze
from kprune.pruning.selection import group_units, select
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
