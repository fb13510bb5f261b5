"""Ranking and fine-tuning under tf.distribute: MirroredStrategy on 2 logical
CPUs, and MultiWorkerMirroredStrategy as two worker processes on localhost.

Logical devices and TF_CONFIG must be set before TensorFlow starts, so each
check runs in fresh Python processes.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, kprune
    from kprune.data import load

    keras.utils.set_random_seed(0)
    shape = (16, 16, 3)
    def build():
        inputs = keras.Input(shape)
        x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv_a")(inputs)
        x = keras.layers.MaxPooling2D(4)(x)
        x = keras.layers.Flatten()(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    plain = build()
    data = load("synthetic", "train", input_shape=shape, batch_size=32, shuffle=False)
    val = load("synthetic", "val", input_shape=shape, batch_size=64)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
        mirrored.set_weights(plain.get_weights())
    alone = kprune.rank(plain, data, "taylor", num_batches=4, normalize="none")
    spread = kprune.rank(mirrored, data, "taylor", num_batches=4, normalize="none", strategy=strategy)
    result = kprune.prune(
        mirrored, lambda seed: load("synthetic", "train", input_shape=shape, batch_size=32, seed=seed),
        val, target_filters=4, filters_per_step=2, finetune_steps=3, final_finetune_epochs=0.1,
        rank_batches=2, strategy=strategy, progress=False, distill=True,
    )
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "max_rel_diff": float(np.max(np.abs(alone["conv_a"] - spread["conv_a"]) / np.abs(alone["conv_a"]).max())),
        "filters": result.model.get_layer("conv_a").filters,
        "steps": len(result.history.steps),
    }))
    """
)


def test_mirrored_strategy_on_two_logical_cpus():
    completed = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2
    assert facts["max_rel_diff"] < 1e-5  # per-example sums add up the same across replicas
    assert facts["filters"] == 8 and facts["steps"] == 2


# --- MultiWorkerMirroredStrategy: two worker processes on localhost ports ------

PRUNE = [
    "prune",
    "--dataset",
    "synthetic",
    "--preprocess",
    "dataset",
    "--criterion",
    "taylor",
    "--target-filters",
    "6",
    "--filters-per-step",
    "3",
    "--rank-batches",
    "2",
    "--finetune-steps",
    "3",
    "--final-finetune-epochs",
    "0.3",
    "--lr",
    "0.05",
    "--no-chance-check",
    "--distill",
]
CLI = "from kprune.cli import main; main()"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start(args: list[str], tmp: Path, tf_config: dict | None = None) -> subprocess.Popen:
    tmp.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]


def test_two_workers_prune_as_one_process_does(tmp_path, tiny_cnn):
    """Two `kprune prune --strategy multiworker` processes (a TF_CONFIG each, on
    127.0.0.1) prune like one process that sees the same global batches of 64:
    each worker gets half of every batch, the gradients and the Taylor sums are
    all-reduced, so the same filters go and the weights agree to float rounding."""
    model_path = tmp_path / "tiny.keras"
    tiny_cnn.save(model_path)
    args = [*PRUNE, "--model", str(model_path)]
    hosts = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers = [
        _start(
            [*args, "--strategy", "multiworker", "--out", str(tmp_path / "cluster")],
            tmp_path / f"tmp-worker{index}",
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}},
        )
        for index in range(2)
    ]
    alone = _start([*args, "--out", str(tmp_path / "alone")], tmp_path / "tmp-alone")
    try:
        for process in (*workers, alone):
            _finish(process)
    finally:  # a worker whose peer failed would wait for it
        for process in (*workers, alone):
            if process.poll() is None:
                process.kill()
                process.wait()

    cluster, single = tmp_path / "cluster", tmp_path / "alone"
    steps = json.loads((single / "history.json").read_text())["steps"]
    assert len(steps) == 2  # 6 filters, 3 per step
    assert json.loads((cluster / "history.json").read_text())["steps"] == steps
    assert list((tmp_path / "tmp-worker1").iterdir()) == []  # the other worker left nothing

    pruned = keras.models.load_model(cluster / "pruned.keras")
    expected = keras.models.load_model(single / "pruned.keras")
    assert pruned.count_params() == expected.count_params() < tiny_cnn.count_params()
    for layer, reference in zip(pruned.layers, expected.layers):
        for weights, reference_weights in zip(layer.get_weights(), reference.get_weights()):
            # Only the order of float32 sums may differ (here the weights came out bit-identical).
            np.testing.assert_allclose(weights, reference_weights, rtol=1e-4, atol=1e-5)
    bias = pruned.get_layer("classifier").get_weights()[1]  # zeros before fine-tuning
    assert np.abs(bias).max() > 1e-2  # training moved the weights far beyond the tolerance
    report = json.loads((cluster / "report.json").read_text())
    reference_report = json.loads((single / "report.json").read_text())
    assert report["test_after"]["accuracy"] == pytest.approx(
        reference_report["test_after"]["accuracy"], abs=0.01
    )  # ≤ 1 of 160
