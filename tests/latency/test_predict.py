import pytest

import kprune
from kprune.errors import InvalidArgumentError
from kprune.graph import analyze
from kprune.latency.layers import timed_layers
from kprune.latency.predict import GroupLatency, predict_latency
from tests.latency.conftest import make_block_model


def _halve(model, graph, groups):
    """Removes every odd group channel: each member keeps exactly half of its channels."""
    removal = {}
    for index in groups:
        group = graph.groups[index]
        drop = set(range(1, group.channels, 2))
        for name, channels in group.producers.items():
            indices = [i for i, c in enumerate(channels.tolist()) if c in drop]
            if indices:
                removal[name] = indices
    return kprune.remove_filters(model, removal)


def test_predict_latency_of_the_profiled_model_matches_its_calibration(block_model, block_table):
    full = next(item for item in block_table.calibration if item["fraction"] == 1.0)
    assert predict_latency(block_model, block_table) == pytest.approx(block_table.predict(full["layers"]))


def test_group_latency_counts_equal_the_channels_of_the_real_pruned_model(block_model, block_table):
    graph = analyze(block_model)
    latency = GroupLatency(graph, block_table)
    prunable = [g.index for g in graph.groups if g.prunable]
    kept = {index: graph.groups[index].channels // 2 for index in prunable}
    pruned = _halve(block_model, graph, prunable)
    reference = {layer.name: (layer.cin, layer.cout) for layer in timed_layers(pruned)[0]}
    cin, cout = latency.counts(kept)
    assert {layer.name: (int(i), int(o)) for layer, i, o in zip(latency.layers, cin, cout)} == reference
    assert latency.predict(kept) == pytest.approx(predict_latency(pruned, block_table), rel=1e-9)
    assert latency.predict(kept) < latency.predict()


def test_predict_latency_refuses_a_model_the_table_never_saw(block_table):
    import keras

    inputs = keras.Input((20, 20, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 5, name="wide")(inputs))
    with pytest.raises(
        InvalidArgumentError, match="has no entry for layer\\(s\\) wide .*Fix: profile this model"
    ):
        predict_latency(other, block_table)


def test_a_renamed_copy_is_predicted_from_the_same_entries(block_table):
    copy = make_block_model(name="renamed")
    assert predict_latency(copy, block_table) > 0
