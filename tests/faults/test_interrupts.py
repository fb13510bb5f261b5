"""Signals inside `kprune.interrupts.deferred` wait for the next safe point (between batches),
so that they never land inside TensorFlow's tracing, which would turn them into unrelated errors."""

import os
import signal

import keras
import numpy as np
import pytest

from kprune import interrupts
from kprune.training.setup import TrainingSetup, TrainSettings


def test_a_deferred_signal_waits_for_check_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised
        with pytest.raises(interrupts.Terminated):
            interrupts.check()
    with interrupts.deferred():
        interrupts.check()  # a new block starts clean
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt) as raised:
            interrupts.check()
        assert not isinstance(raised.value, interrupts.Terminated)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    interrupts.check()  # outside the block: nothing


def test_the_third_signal_stops_at_once():
    with interrupts.deferred(), pytest.raises(KeyboardInterrupt):
        for _ in range(interrupts.AT_ONCE - 1):
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the third signal did not stop at once")


def test_a_signal_during_training_stops_it_at_the_end_of_that_batch():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    x, y = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.arange(64) % 2
    ended = []

    class SignalAtBatch2(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

        def on_train_batch_end(self, batch, logs=None):
            ended.append(batch)

    with interrupts.deferred(), pytest.raises(KeyboardInterrupt):
        TrainingSetup(TrainSettings()).fit(
            model, (x, y), epochs=1, steps_per_epoch=8, callbacks=[SignalAtBatch2()], progress=False
        )
    assert ended == [0, 1]  # batch 2 trained, then the run stopped before any callback after the check
