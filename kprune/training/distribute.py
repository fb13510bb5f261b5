"""tf.distribute for kprune: which strategy, who writes, how batches are split,
and a training loop for MultiWorkerMirroredStrategy.

Every worker of a multi-worker cluster runs the same program: the same data
pipeline with the same seeds, the same pruning decisions. Each global batch is
split between the workers by example (`distribute_dataset`), so the workers
together see exactly the batches one process would. Only the chief keeps
what it writes (`worker_dir`).

Keras 3.15's ``fit`` does not run under MultiWorkerMirroredStrategy (it
reduces the first batch and the per-step logs with ``strategy.reduce``, which
refuses nested values and scalars across workers; keras-team/keras#20585), so
`fit_multi_worker` drives the model's own ``train_step`` instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import keras
import tensorflow as tf

from kprune.errors import InvalidArgumentError

STRATEGIES = ("none", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """``none`` → None; ``mirrored`` → all local devices; ``multiworker`` →
    the cluster described by $TF_CONFIG (see docs/DISTRIBUTED.md).

    Raises:
        InvalidArgumentError: For ``multiworker`` without a usable $TF_CONFIG,
            before TensorFlow tries to reach the cluster.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def check_tf_config(text: str | None) -> dict:
    """The parsed $TF_CONFIG of a multi-worker run; one-line errors naming the fix."""
    fix = f"Fix: export {TF_CONFIG_EXAMPLE} on each worker, with its own index (docs/DISTRIBUTED.md)."
    if not text:
        raise InvalidArgumentError(f"--strategy multiworker needs $TF_CONFIG, which is not set. {fix}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"$TF_CONFIG is not valid JSON ({error.msg}). {fix}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise InvalidArgumentError(f'$TF_CONFIG needs a "cluster" and a "task" object. {fix}')
    task_type, index = task.get("type"), task.get("index")
    members = cluster.get(task_type)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise InvalidArgumentError(
            f"$TF_CONFIG's task {task_type!r} index {index!r} is not in its cluster "
            f"{ {k: len(v) for k, v in cluster.items() if isinstance(v, list)} }. {fix}"
        )
    return config


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def is_multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    """True for a MultiWorkerMirroredStrategy that spans several workers."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()  # no public way to ask
    )


@contextlib.contextmanager
def worker_dir(run_dir: str | Path, strategy: tf.distribute.Strategy | None) -> Iterator[Path]:
    """``run_dir`` on the chief; on any other worker a temporary folder that is
    removed afterwards. Every worker still writes what the chief writes: saving
    may read variables that are synchronized across workers."""
    if is_chief(strategy):
        yield Path(run_dir)
        return
    scratch = Path(tempfile.mkdtemp(prefix="kprune-worker-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def distribute_dataset(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """``dataset`` (of global batches) spread over the strategy's replicas.

    Sharding is by example (``AutoShardPolicy.DATA``): every worker builds the
    whole pipeline and keeps its slice of each global batch, so the replicas
    together see the batches one process would, whatever files the data came from.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def fit_multi_worker(
    model: keras.Model,
    dataset: tf.data.Dataset,
    strategy: tf.distribute.Strategy,
    *,
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.callbacks.History:
    """What ``model.fit(dataset.repeat(), ...)`` does, under a multi-worker strategy.

    ``model`` must be compiled inside ``strategy.scope()``. Each step runs the
    model's ``train_step`` on every replica (its loss scaled by the number of
    replicas, gradients summed across them by the optimizer), so a step equals
    one step on the global batch in one process.
    """
    with strategy.scope():
        # What fit's first batch would build (model, loss, metrics, optimizer),
        # from the batch spec: reading a batch would advance the pipeline's shuffling.
        model._symbolic_build(data_batch=dataset.element_spec)
    iterator = iter(distribute_dataset(dataset.repeat(), strategy))

    @tf.function
    def train_step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        # One value at a time: MultiWorkerMirroredStrategy.reduce refuses nested values.
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList(
        [*callbacks, history], model=model, epochs=epochs, steps=steps_per_epoch, verbose=0
    )
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            hooks.on_train_batch_begin(step)
            logs = {name: float(value) for name, value in train_step(iterator).items()}
            hooks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history
