"""Distillation from the unpruned model, against NumPy formulas (Hinton et al. 2015)."""

import keras
import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.training.distill import Distillation, DistillingModel
from kprune.training.losses import distillation_kinds

rng = np.random.default_rng(0)
X = rng.normal(size=(6, 5)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1, 2])


def _np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _classifier(seed: int, softmax: bool) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax" if softmax else None, name="out")(hidden)
    return keras.Model(inputs, outputs)


def _logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The output layer's pre-activation, computed by hand from the weights."""
    w1, b1 = model.get_layer("hidden").get_weights()
    w2, b2 = model.get_layer("out").get_weights()
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def _total_loss(student, teacher, kinds, distillation, loss):
    trainee = DistillingModel(student, teacher, kinds, distillation)
    trainee.compile(loss=loss)
    y_pred = trainee(X)
    return float(trainee.compute_loss(x=X, y=LABELS, y_pred=y_pred, training=True))


@pytest.mark.parametrize("softmax", [True, False])
def test_classifier_loss_matches_the_numpy_formula(softmax):
    student, teacher = _classifier(1, softmax), _classifier(2, softmax)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
    kinds = distillation_kinds(student, loss)
    assert kinds == ["probabilities" if softmax else "logits"]
    temperature, weight = 3.0, 0.7
    total = _total_loss(student, teacher, kinds, Distillation(temperature, weight), loss)

    z_s, z_t = _logits(student, X), _logits(teacher, X)
    task = -np.mean(np.log(_np_softmax(z_s)[np.arange(6), LABELS]))
    p_t, p_s = _np_softmax(z_t / temperature), _np_softmax(z_s / temperature)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1)) * temperature**2
    np.testing.assert_allclose(total, (1 - weight) * task + weight * kl, rtol=1e-4)


def test_regression_output_matches_the_teachers_outputs():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    student = keras.Model(inputs, keras.layers.Dense(2, name="box")(inputs))
    teacher = keras.models.clone_model(student)
    teacher.set_weights([w + 0.5 for w in student.get_weights()])
    assert distillation_kinds(student, "mse") == ["match"]
    y = rng.normal(size=(6, 2)).astype("float32")
    trainee = DistillingModel(student, teacher, ["match"], Distillation(weight=0.25))
    trainee.compile(loss="mse")
    total = float(trainee.compute_loss(x=X, y=y, y_pred=trainee(X), training=True))
    s, t = student.predict(X, verbose=0), teacher.predict(X, verbose=0)
    expected = 0.75 * np.mean((s - y) ** 2) + 0.25 * np.mean((s - t) ** 2)
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_several_outputs_each_get_their_kind():
    inputs = keras.Input((5,))
    classes = keras.layers.Dense(3, activation="softmax", name="classes")(inputs)
    box = keras.layers.Dense(4, name="box")(inputs)
    model = keras.Model(inputs, [classes, box])
    loss = {"classes": "sparse_categorical_crossentropy", "box": "mse"}
    assert distillation_kinds(model, loss) == ["probabilities", "match"]


def test_evaluation_has_no_teacher_term():
    student, teacher = _classifier(1, True), _classifier(2, True)
    trainee = DistillingModel(student, teacher, ["probabilities"], Distillation(weight=0.9))
    trainee.compile(loss="sparse_categorical_crossentropy")
    y_pred = trainee(X)
    task = -np.mean(np.log(student.predict(X, verbose=0)[np.arange(6), LABELS]))
    np.testing.assert_allclose(
        float(trainee.compute_loss(x=X, y=LABELS, y_pred=y_pred, training=False)), task, rtol=1e-5
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0.0}, "`distill_temperature` must be positive"),
        ({"weight": 1.5}, r"`distill_weight` must be in \[0, 1\]. Received distill_weight=1.5"),
    ],
)
def test_bad_distillation_settings_are_named(options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Distillation(**options)


def test_training_moves_the_student_and_not_the_teacher():
    student, teacher = _classifier(1, True), _classifier(2, True)
    before_student = [w.copy() for w in student.get_weights()]
    before_teacher = [w.copy() for w in teacher.get_weights()]
    teacher.trainable = False
    trainee = DistillingModel(student, teacher, ["probabilities"], Distillation())
    trainee.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    trainee.fit(X, LABELS, epochs=2, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(student.get_weights(), before_student))
    for a, b in zip(teacher.get_weights(), before_teacher):
        np.testing.assert_array_equal(a, b)
    assert len(trainee.weights) == len(student.weights)  # the teacher is not part of the student
