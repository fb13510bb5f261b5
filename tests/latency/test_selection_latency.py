"""select_for_latency against hand-computed choices, with an explicit time formula."""

import keras
import numpy as np
import pytest

from kprune.graph import analyze
from kprune.pruning.selection import select_for_latency

STEP = 8
PER_TILE_MS = {"a": 0.02, "b": 0.001, "c": 0.002}  # ms per channel, paid per whole tile of 8


def _chain():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu", name="a")(inputs)
    x = keras.layers.Conv2D(32, 1, activation="relu", name="b")(x)
    x = keras.layers.Conv2D(32, 1, activation="relu", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


@pytest.fixture(scope="module")
def setup():
    graph = analyze(_chain())
    index = {name: graph.group_of(name).index for name in "abc"}
    sizes = {name: graph.groups[i].channels for name, i in index.items()}

    def predict(kept):
        total = 0.0
        for name, i in index.items():
            channels = kept.get(i, sizes[name])
            total += PER_TILE_MS[name] * np.ceil(channels / STEP) * STEP
        return total

    scores = {
        index["a"]: np.ones(16),
        index["b"]: np.r_[np.full(16, 0.1), np.ones(16)],
        index["c"]: np.full(32, 0.5),
    }
    return graph, predict, scores


def test_cheapest_importance_per_millisecond_goes_first_until_the_budget(setup):
    graph, predict, scores = setup
    # ratios (importance lost / ms saved): a 16→8: 8/0.16 = 50; b 32→24 and 24→16: 0.8/0.008 = 100;
    # c 32→24: 4/0.016 = 250; b 16→8: 8/0.008 = 1000. Saved after each: 0.16, 0.168, 0.176.
    spec = select_for_latency(graph, scores, 100, predict=predict, step=STEP, budget=0.17)
    assert spec == {"a": list(range(8)), "b": list(range(16))}


def test_count_and_budget_limits(setup):
    graph, predict, scores = setup
    assert select_for_latency(graph, scores, 8, predict=predict, step=STEP, budget=1.0) == {
        "a": list(range(8))
    }
    everything = select_for_latency(graph, scores, 1000, predict=predict, step=STEP, budget=1.0)
    # every group ends at the floor: one tile of 8 channels each
    assert {name: len(indices) for name, indices in everything.items()} == {"a": 8, "b": 24, "c": 24}


def test_sizes_snap_to_tiles_and_respect_the_minimum(setup):
    graph, predict, scores = setup
    spec = select_for_latency(graph, scores, 1000, predict=predict, step=STEP, budget=1.0, min_per_group=12)
    # the floor is the first multiple of 8 at or above 12: 16
    assert {name: len(indices) for name, indices in spec.items()} == {"b": 16, "c": 16}
    assert select_for_latency(
        graph, scores, 1000, predict=predict, step=STEP, budget=1.0, ignore=("a", "b")
    ) == {"c": list(range(24))}


def test_a_move_that_saves_nothing_is_skipped_for_the_next_size(setup):
    graph, _, scores = setup
    index = graph.group_of("c").index

    def predict(kept):  # c only gets faster below 16 channels
        return 0.001 * (kept.get(index, 32) <= 16) * -1 + 0.01

    spec = select_for_latency(graph, {index: scores[index]}, 1000, predict=predict, step=STEP, budget=0.0005)
    assert spec == {"c": list(range(16))}
