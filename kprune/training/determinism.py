"""Seeds and TF op determinism: what makes a pruning run repeatable and resumable.

Nothing here runs at import. `deterministic` turns op determinism on for a
block and restores the previous state after it, so that a user's process is
left as it was.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
from tensorflow.python.framework import config as tf_config  # is/disable_op_determinism


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and TensorFlow's global random generators."""
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """TF op determinism inside the block when ``enabled``; the previous state after."""
    was_enabled = tf_config.is_op_determinism_enabled()
    if enabled and not was_enabled:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and not was_enabled:
            tf_config.disable_op_determinism()
