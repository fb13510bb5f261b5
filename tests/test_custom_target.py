"""A target defined outside the package, through the public door only (`kprune.register_target`).

The toy quantity is the convolutions' width: the sum of ``filters`` over the
model's Conv2D layers, counted here from the Keras model itself.
"""

import keras
import pytest

import kprune
from tests.test_schedule import QUICK, _model, train_stream


def conv_width(model: keras.Model) -> int:
    return sum(layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D))


class ConvWidth(kprune.Target):
    name = "conv_width"

    def measure(self, model, graph=None):
        return float(conv_width(model))

    def channel_costs(self, graph):
        # one channel of a group is one filter of each convolution that produces it
        return {group.index: float(len(group.producers)) for group in graph.groups}


@kprune.register_target("conv_width")
def _conv_width(fraction, context):
    start = conv_width(context.model)
    return ConvWidth(start, (1 - fraction) * start)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = _model()
    kprune.TrainingSetup(kprune.TrainSettings(learning_rate=1e-2)).fit(
        model, train_stream(0), epochs=1, progress=False
    )
    return model


@pytest.fixture(scope="module")
def val():
    return kprune.data.load("synthetic", "val", input_shape=(16, 16, 3), batch_size=64)


def test_a_registered_target_is_pruned_to_and_recorded(trained, val, tmp_path):
    start = conv_width(trained)  # 16 + 24
    result = kprune.prune(trained, train_stream, val, target={"conv_width": 0.5}, run_dir=tmp_path, **QUICK)
    assert result.report["stop_reason"] == "target reached"
    assert conv_width(result.model) <= start / 2
    assert conv_width(trained) == start  # the input model is untouched
    steps = result.report["steps"]
    assert result.report["initial"]["conv_width"] == start
    assert steps[0]["conv_width"] == start
    assert steps[-1]["conv_width"] == conv_width(result.model)
    end = conv_width(result.model)
    assert result.report["target_row"] == [
        "conv_width",
        f"{start}",
        f"{end}",
        f"{100 * (end / start - 1):+.1f}%",
    ]
    # each step stops at the target's budget: the step before the last was still above the goal
    pruning_steps = [s for s in steps if "phase" not in s]
    assert pruning_steps[-2]["conv_width"] > start / 2


def test_a_factory_reads_its_options_from_the_config(trained, val):
    seen = []

    @kprune.register_target("probe")
    def probe(value, context):
        seen.append((value, context.config.target_options, context.model.name))
        return ConvWidth(conv_width(context.model), conv_width(context.model))  # reached at once

    kprune.prune(trained, train_stream, val, target={"probe": 3}, target_options={"table": "t.json"}, **QUICK)
    assert seen == [(3, {"table": "t.json"}, trained.name)]


def test_an_unknown_target_name_is_refused_before_any_work(trained, val, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(kprune.InvalidArgumentError, match="Unknown target 'conv_depth'.*conv_width"):
        kprune.prune(trained, train_stream, val, target={"conv_depth": 0.5}, run_dir=run, **QUICK)
    assert not run.exists()


def test_register_target_refuses_a_taken_or_malformed_name():
    with pytest.raises(kprune.InvalidArgumentError, match="registered already"):
        kprune.register_target("params")
    with pytest.raises(kprune.InvalidArgumentError, match="identifier"):
        kprune.register_target("conv width")


def test_a_factory_must_return_a_target(trained, val):
    kprune.register_target("not_a_target")(lambda value, context: value)
    with pytest.raises(kprune.InvalidArgumentError, match="returned float, not a kprune Target"):
        kprune.prune(trained, train_stream, val, target={"not_a_target": 0.5}, **QUICK)


def test_a_run_names_one_target(trained, val):
    with pytest.raises(kprune.InvalidArgumentError, match="target names one target"):
        kprune.prune(trained, train_stream, val, target={"params": 0.5, "flops": 0.5}, **QUICK)
    with pytest.raises(kprune.InvalidArgumentError, match="give one target, not 2"):
        kprune.prune(trained, train_stream, val, target={"params": 0.5}, target_flops=0.5, **QUICK)
