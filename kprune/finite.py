"""Finite values: bad data and diverged training never become a model.

NaN pixels need not show in the loss: ReLU maps NaN to 0 on this CPU, so the
forward pass and the loss stay finite while the gradient of the first
convolution is NaN; its kernel turns NaN and every later output is constant —
a model that evaluates at a plausible-looking chance accuracy. So kprune
checks the data before work starts (`check_data`) and the weights after every
fine-tune (`non_finite_weights`), besides the loss of every batch.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kprune.errors import InvalidArgumentError

CHECKED_BATCHES = 4  # the cheap pass over the start of the data


def check_data(data: Any, what: str, batches: int = CHECKED_BATCHES) -> None:
    """Refuses NaN or infinite values in the first ``batches`` batches of ``data``.

    Args:
        data: A tf.data dataset of ``(x, y[, sample_weight])`` batches.
        what: Which data it is, for the message (e.g. ``"training"``).

    Raises:
        InvalidArgumentError: Naming the part (inputs, labels, sample weights),
            the batch and the count of bad values, and the fix.
    """
    for number, batch in enumerate(data.take(batches), start=1):
        parts = keras.utils.unpack_x_y_sample_weight(batch)
        for part, name in zip(parts, ("inputs", "labels", "sample weights")):
            for array in keras.tree.flatten(part) if part is not None else []:
                values = np.asarray(array)
                if not np.issubdtype(values.dtype, np.floating):
                    continue
                bad = int(values.size - np.count_nonzero(np.isfinite(values)))
                if bad:
                    kind = "NaN" if np.isnan(values).any() else "Infinite values"
                    raise InvalidArgumentError(
                        f"{kind} in the {what} {name}: "
                        f"batch {number} has {bad:,} of {values.size:,} values not finite. Fix: clean "
                        "the data (e.g. drop those examples, or np.nan_to_num) before pruning."
                    )


def non_finite_weights(model: keras.Model) -> list[str]:
    """Names of the layers of ``model`` that hold a NaN or infinite weight."""
    return [layer.name for layer in model.layers
            if any(not np.isfinite(np.asarray(w)).all() for w in layer.get_weights())]  # fmt: skip
