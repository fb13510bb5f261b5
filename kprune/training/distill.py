"""Knowledge distillation from the unpruned model while a pruned one is fine-tuned.

The teacher is the model before pruning, frozen and run in inference mode. The
student's loss becomes

    (1 - weight) · task loss  +  weight · Σ_outputs distillation term

where the task loss is the one the model is trained with (its compiled loss
and any regularization terms). The distillation term of an output depends on
what it is:

- a classifier output (trained with a categorical cross-entropy): the
  temperature-softened KL divergence of Hinton et al. (2015),
  ``T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))``, where ``z`` are the logits —
  for an output that ends in a softmax, its log-probabilities, which differ
  from the logits by a constant per example and so give the same softmax;
- any other output (regression, segmentation maps, boxes, a sigmoid): the
  mean squared difference between the student's and the teacher's outputs.

`DistillingModel` is the student's own graph (the same layers, so training it
trains the student) with ``compute_loss`` extended by the distillation term;
Keras' ``fit``, tf.distribute and kprune's multi-worker loop all call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from kprune.errors import InvalidArgumentError

_EPSILON = 1e-7


@dataclass(frozen=True)
class Distillation:
    """How to distill: the softmax temperature and the weight of the teacher's term.

    Attributes:
        temperature: Softens both softmaxes of a classifier output (T ≥ 1
            reveals the teacher's ranking of the wrong classes).
        weight: Share of the distillation term in the loss, in [0, 1]; the
            task loss gets ``1 - weight``.
    """

    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self):
        if not self.temperature > 0:
            raise InvalidArgumentError(
                f"`distill_temperature` must be positive. Received distill_temperature={self.temperature}."
            )
        if not 0 <= self.weight <= 1:
            raise InvalidArgumentError(
                f"`distill_weight` must be in [0, 1]. Received distill_weight={self.weight}."
            )


def softened_kl(teacher_logits, student_logits, temperature: float):
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))`` per example (over the last axis, mean over
    any axes between the batch and the classes)."""
    teacher = keras.ops.softmax(teacher_logits / temperature, axis=-1)
    log_teacher = keras.ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_student = keras.ops.log_softmax(student_logits / temperature, axis=-1)
    values = keras.ops.sum(teacher * (log_teacher - log_student), axis=-1) * temperature**2
    return _per_example(values)


def squared_difference(teacher_outputs, student_outputs):
    """Mean squared difference per example."""
    return _per_example(keras.ops.square(student_outputs - teacher_outputs))


def _per_example(values):
    if len(values.shape) <= 1:
        return values
    return keras.ops.mean(keras.ops.reshape(values, (keras.ops.shape(values)[0], -1)), axis=1)


def as_logits(outputs, probabilities: bool):
    """Logits of a classifier output: log-probabilities for a softmax output."""
    if not probabilities:
        return outputs
    return keras.ops.log(keras.ops.clip(outputs, _EPSILON, 1.0))


class DistillationLoss(keras.losses.Loss):
    """The distillation term of one output: ``call(teacher_outputs, student_outputs)``.

    Args:
        kind: ``"logits"``, ``"probabilities"`` (a classifier output, before or
            after its softmax) or ``"match"`` (any other output).
        temperature: The softmax temperature of a classifier output.
    """

    def __init__(self, kind: str, temperature: float, **kwargs):
        super().__init__(name=kwargs.pop("name", f"distill_{kind}"), **kwargs)
        if kind not in ("logits", "probabilities", "match"):
            raise InvalidArgumentError(f"Unknown distillation kind {kind!r}.")
        self.kind = kind
        self.temperature = temperature

    def call(self, y_true, y_pred):
        teacher, student = keras.ops.stop_gradient(y_true), y_pred
        if self.kind == "match":
            return squared_difference(teacher, student)
        probabilities = self.kind == "probabilities"
        return softened_kl(
            as_logits(teacher, probabilities), as_logits(student, probabilities), self.temperature
        )

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "temperature": self.temperature}


class DistillingModel(keras.Model):
    """The student's graph, trained on its task loss mixed with the teacher's outputs.

    Args:
        student: The model to train (its layers are trained in place).
        teacher: The frozen model to learn from; called with ``training=False``.
        kinds: One `DistillationLoss` kind per output of the student.
        distillation: Temperature and weight.
    """

    def __init__(
        self, student: keras.Model, teacher: keras.Model, kinds: list[str], distillation: Distillation
    ):
        super().__init__(student.inputs, student.outputs, name=student.name)
        if len(kinds) != len(student.outputs) or len(teacher.outputs) != len(student.outputs):
            raise InvalidArgumentError(
                f"The teacher has {len(teacher.outputs)} outputs and the student "
                f"{len(student.outputs)}: distillation needs the same outputs."
            )
        # A plain function, so the teacher's variables are not tracked (nor saved,
        # nor trained) as the student's.
        self._teacher_outputs = lambda x: keras.tree.flatten(teacher(x, training=False))
        self._distill_losses = [DistillationLoss(kind, distillation.temperature) for kind in kinds]
        self._distill_weight = float(distillation.weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        task = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if not training or self._distill_weight == 0:
            return task
        teacher = self._teacher_outputs(x)
        student = keras.tree.flatten(y_pred)
        # Each Loss reduces over the batch the way the compiled loss does (and scales
        # for the number of replicas under tf.distribute).
        term = sum(
            loss(t, s, sample_weight=sample_weight)
            for loss, t, s in zip(self._distill_losses, teacher, student)
        )
        return (1.0 - self._distill_weight) * task + self._distill_weight * term
