"""A latency target in the pruning loop, on a small CNN and the synthetic dataset."""

import json

import keras
import pytest

import kprune
from kprune.latency.predict import predict_latency
from kprune.latency.profile import profile
from kprune.latency.table import LatencyTable
from kprune.training.setup import TrainingSetup, TrainSettings
from tests.test_schedule import QUICK, _model, train_stream


def test_prune_to_a_latency_target_keeps_tile_sized_layers(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    TrainingSetup(TrainSettings(learning_rate=1e-2)).fit(model, train_stream(0), epochs=2, progress=False)
    val = kprune.data.load("synthetic", "val", input_shape=(16, 16, 3), batch_size=64)
    table = profile(model, repeats=3, warmup=1, cache_dir=tmp_path / "cache", sweep_channels=8, seconds=0)
    table_path = table.save(tmp_path / "table.json")
    run = tmp_path / "run"
    result = kprune.prune(
        model,
        train_stream,
        val,
        target_latency=0.3,
        latency_table=str(table_path),
        round_to=4,
        latency_per_step=0.2,
        run_dir=run,
        **QUICK,
    )
    steps = result.report["steps"]
    initial = predict_latency(model, table)
    assert steps[0]["latency_ms"] == initial
    final = predict_latency(result.model, table)
    assert steps[-1]["latency_ms"] == final
    assert final <= 0.7 * initial or "nothing left" in result.report["stop_reason"]
    assert (
        result.report["stop_reason"] in ("target reached",) or "nothing left" in result.report["stop_reason"]
    )
    for name in ("conv_a", "conv_b"):
        filters = result.model.get_layer(name).filters
        assert filters == model.get_layer(name).filters or filters % 4 == 0, (name, filters)
    assert LatencyTable.load(run / "latency_table.json").data == table.data
    assert json.loads((run / "report.json").read_text())["config"]["target_latency"] == 0.3
    # a step removes at most latency_per_step of the start latency (a tile may overshoot a little)
    latencies = [s["latency_ms"] for s in steps if "phase" not in s]
    assert len(latencies) >= 2 and all(b < a for a, b in zip(latencies, latencies[1:]))


def test_latency_ms_target_is_a_goal_in_milliseconds(block_model, block_table, tmp_path):
    from kprune.config import PruneConfig
    from kprune.graph import analyze
    from kprune.pruning.targets import LatencyTarget, TargetContext, make_target

    table_path = str(block_table.save(tmp_path / "table.json"))
    graph = analyze(block_model)

    def target(**options):
        config = PruneConfig(latency_table=table_path, **options)
        return make_target(config, TargetContext(block_model, graph, config))

    initial = predict_latency(block_model, block_table)
    ms = target(latency_ms=initial / 2)
    assert isinstance(ms, LatencyTarget) and ms.initial == initial and ms.goal == initial / 2
    assert ms.remaining(block_model) == initial - initial / 2
    share = target(target_latency=0.75, latency_per_step=0.1)
    assert share.goal == 0.25 * initial and share.per_step == 0.1


def test_a_table_in_instructions_prunes_to_a_share_not_to_milliseconds(block_model, block_table, tmp_path):
    from kprune.config import PruneConfig
    from kprune.errors import InvalidArgumentError
    from kprune.graph import analyze
    from kprune.pruning.targets import TargetContext, make_target

    data = json.loads(json.dumps(block_table.data))
    data["unit"] = "instructions"
    data["measured_instructions"] = {name: 1e6 * value for name, value in data.pop("measured_ms").items()}
    table_path = str(LatencyTable(data).save(tmp_path / "instructions.json"))
    graph = analyze(block_model)

    def target(**options):
        config = PruneConfig(latency_table=table_path, **options)
        return make_target(config, TargetContext(block_model, graph, config))

    share = target(target_latency=0.5)
    assert share.initial == pytest.approx(1e6 * predict_latency(block_model, block_table), rel=1e-6)
    with pytest.raises(InvalidArgumentError, match="counts instructions.*Fix: prune to a share of it"):
        target(latency_ms=0.1)
    # the records and the end-of-run row speak the table's unit
    record = share.record(block_model)
    assert set(record) == {"latency_instructions", "latency_removed"} and record["latency_removed"] == 0
    label, before, after, change = share.summary(record, record)
    assert label == "latency (predicted instructions)" and before == after and change == "+0.0%"


def test_the_cli_sizes_latency_steps_by_latency_and_refuses_a_channel_step(block_cache, tmp_path):
    from typer.testing import CliRunner

    from kprune.cli import app
    from tests.latency.conftest import SWEEP, make_block_model

    keras.utils.set_random_seed(0)
    model = make_block_model(classes=10)  # the synthetic dataset's classes
    table = profile(model, repeats=3, warmup=1, cache_dir=block_cache, sweep_channels=SWEEP, seconds=0)
    model_file, table_file = tmp_path / "block.keras", str(table.save(tmp_path / "table.json"))
    model.save(model_file)
    base = ["prune", "--criterion", "l1", "--model", str(model_file), "--dataset", "synthetic"]
    base += ["--target-latency", "0.3", "--latency-table", table_file]
    runner = CliRunner()
    for flag, value in (("--step-fraction", "0.02"), ("--filters-per-step", "4")):
        refused = runner.invoke(app, [*base, flag, value, "--out", str(tmp_path / "refused")])
        assert refused.exit_code == 1, refused.output
        assert f"`{flag}` does not apply to a latency target" in refused.output
        assert "--latency-per-step (now 0.03)" in refused.output
        assert not (tmp_path / "refused").exists()  # nothing written

    out = tmp_path / "run"
    quick = ["--finetune-steps", "2", "--final-finetune-epochs", "0.1", "--rank-batches", "1"]
    quick += ["--no-chance-check"]  # an untrained model
    result = runner.invoke(app, [*base, "--latency-per-step", "0.2", *quick, "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the plan names the step the target takes, not a channel count that does not apply
    assert "more steps of up to 20% of the start latency (latency_per_step) each" in result.output
    assert json.loads((out / "report.json").read_text())["config"]["latency_per_step"] == 0.2
