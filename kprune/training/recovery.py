"""Defaults that fit the user's model: step size, fine-tune lengths, optimizer.

`kprune.prune` takes these when the settings leave them open (None):

- **Step size**: each step removes `STEP_FRACTION` of the channels that can
  still be removed, so a model with 160 filters and one with 3,000 both take
  a similar number of steps (an absolute ``filters_per_step`` stays available).
- **Fine-tune lengths**, from the number of training batches per epoch:
  `finetune_steps` per pruning step (a tenth of an epoch) and
  `final_finetune_steps` at the end (ten epochs, fewer on large data).
- **Optimizer**: the class, hyperparameters and learning rate the model was
  compiled with; SGD with Nesterov momentum at 0.01 for a model that is not
  compiled. Every fine-tune follows a cosine decay to zero.

The numbers were chosen by measurement (docs/RESULTS.md, "Default settings on
models that are not ours"; scripts/experiments/bench_defaults.py).
"""

from __future__ import annotations

import math

import keras

STEP_FRACTION = 0.05  # of the channels still removable, per pruning step
FINETUNE_EPOCHS = 0.1  # per pruning step, as a share of an epoch ...
FINETUNE_MIN_STEPS, FINETUNE_MAX_STEPS = 20, 200  # ... within these bounds
FINAL_EPOCHS = 10  # the final fine-tune: this many epochs ...
FINAL_MAX_STEPS = 10_000  # ... but at most this many batches (large data) and at least one epoch
UNKNOWN_EPOCH = 100  # batches per "epoch" of data that cannot tell its length
DEFAULT_OPTIMIZER, DEFAULT_LEARNING_RATE = "sgd", 0.01  # for a model that is not compiled


def channels_per_step(removable: int, fraction: float = STEP_FRACTION) -> int:
    """Channels one step removes: ``fraction`` of the ``removable`` ones, at least one."""
    return max(1, int(round(fraction * removable)))


def estimated_steps(remaining_share: float, fraction: float = STEP_FRACTION) -> int:
    """About how many steps remove ``remaining_share`` of a quantity that every step
    lowers by ``fraction`` of what is left (a geometric approximation)."""
    if remaining_share <= 0:
        return 0
    if remaining_share >= 1 or fraction >= 1:
        return 1
    return max(1, math.ceil(math.log(1 - remaining_share) / math.log(1 - fraction)))


def finetune_steps(batches_per_epoch: int | None) -> int:
    """Batches of fine-tuning after each pruning step."""
    batches = batches_per_epoch or UNKNOWN_EPOCH
    return int(min(FINETUNE_MAX_STEPS, max(FINETUNE_MIN_STEPS, round(FINETUNE_EPOCHS * batches))))


def final_finetune_steps(batches_per_epoch: int | None) -> int:
    """Batches of the final fine-tune: ``FINAL_EPOCHS`` epochs, cut to ``FINAL_MAX_STEPS``
    batches on large data but never below one epoch."""
    batches = batches_per_epoch or UNKNOWN_EPOCH
    return int(max(batches, min(FINAL_EPOCHS * batches, FINAL_MAX_STEPS)))


def compiled_optimizer(model: keras.Model) -> keras.optimizers.Optimizer | None:
    """The optimizer ``model`` was compiled with (a loaded .keras file keeps it), or None."""
    optimizer = getattr(model, "optimizer", None) if getattr(model, "compiled", False) else None
    return optimizer if isinstance(optimizer, keras.optimizers.Optimizer) else None


def initial_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate an optimizer trains at: a float as it is, a schedule's peak
    (its warm-up target, else its initial rate)."""
    rate = optimizer.get_config()["learning_rate"]
    if isinstance(rate, dict):  # a serialized schedule
        rate = keras.optimizers.schedules.deserialize(rate)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        # The peak of a warm-up (CosineDecay's warmup_target), else where it starts.
        peak = getattr(rate, "warmup_target", None) or getattr(rate, "initial_learning_rate", None)
        rate = peak if peak is not None else rate(0)
    return float(keras.ops.convert_to_numpy(rate))
