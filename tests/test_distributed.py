"""Ranking and fine-tuning under tf.distribute.MirroredStrategy on 2 logical CPUs.

Logical devices must be configured before TensorFlow starts, so the check runs
in a fresh Python process.
"""

import json
import subprocess
import sys
import textwrap

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
        rank_batches=2, strategy=strategy, progress=False,
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
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert facts["replicas"] == 2
    assert facts["max_rel_diff"] < 1e-5  # per-example sums add up the same across replicas
    assert facts["filters"] == 8 and facts["steps"] == 2
