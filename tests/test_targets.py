"""Targets against hand-counted parameters and filters of tiny models."""

import keras
import pytest

from kprune.config import PruneConfig
from kprune.graph import analyze
from kprune.pruning.targets import (
    FiltersTarget,
    FlopsTarget,
    ParamsTarget,
    TargetContext,
    initial_size,
    make_target,
)
from kprune.surgery import remove_filters


def _coupled_model():
    """Two 4-filter convs added together (one group of 4 channels), then a 3-filter conv."""
    inputs = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.Conv2D(3, 1, name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def _target(model, **options):
    config = PruneConfig(**options)
    return make_target(config, TargetContext(model, analyze(model), config))


def test_initial_size_counts_params_flops_and_group_channels():
    model = _coupled_model()
    size = initial_size(model, analyze(model))
    # a, b: 2·4+4 = 12 each; c: 4·3+3 = 15; out: 3·2+2 = 8.
    assert size["params"] == 12 + 12 + 15 + 8
    # The a+b group (4 channels) and c (3) are prunable; `out` is the model output.
    assert size["filters"] == 4 + 3


def test_filters_target_counts_coupled_producers_once():
    model = _coupled_model()
    graph = analyze(model)
    config = PruneConfig(target_filters=4)
    target = make_target(config, TargetContext(model, graph, config))
    assert isinstance(target, FiltersTarget) and (target.initial, target.goal) == (7, 3)
    # Removing 2 channels of the a+b group removes 2 filters, not 4.
    pruned = remove_filters(model, {"a": [0, 1]})
    assert target.measure(pruned) == 5
    assert target.remaining(pruned) == 2
    assert target.progress(pruned) == pytest.approx(2 / 4)
    assert not target.reached(pruned)
    assert target.reached(remove_filters(pruned, {"a": [0], "c": [0, 1]}))


def test_filters_target_fraction_is_rounded_share_of_prunable_channels():
    model = _coupled_model()
    target = _target(model, target_filters=0.5)
    assert target.goal == 7 - round(0.5 * 7)


def test_params_target_budget_and_costs():
    model = _coupled_model()
    graph = analyze(model)
    target = _target(model, target_params=0.25)
    assert isinstance(target, ParamsTarget)
    assert target.goal == pytest.approx(0.75 * 47)
    assert target.remaining(model) == pytest.approx(47 - 0.75 * 47)
    costs = target.channel_costs(graph)
    group = graph.group_of("a").index
    # One channel of the a+b group: a's and b's kernel column and bias (3 each),
    # plus c's share of its 15 parameters by input channel, 15 / 4 (an estimate:
    # c's bias does not shrink); really removed: 3 + 3 + 3 = 9.
    assert costs[group] == pytest.approx(3 + 3 + 15 / 4)
    pruned = remove_filters(model, {"a": [0]})
    assert target.measure(pruned) == 47 - 9
    assert target.progress(pruned) == pytest.approx(9 / (0.25 * 47))


def test_flops_target_measures_flops():
    model = _coupled_model()
    target = _target(model, target_flops=0.5)
    assert isinstance(target, FlopsTarget) and target.goal == pytest.approx(target.initial / 2)


def test_no_target_without_a_target_field():
    model = _coupled_model()
    assert _target(model, max_accuracy_drop=1.0) is None
