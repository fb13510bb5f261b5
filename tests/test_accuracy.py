"""FiniteAccuracy: Keras' accuracy on finite predictions, a NaN or infinite prediction wrong."""

import keras
import numpy as np
import pytest

from kprune.training.accuracy import FiniteAccuracy, finite_accuracies
from kprune.training.setup import TrainingSetup

rng = np.random.default_rng(0)
CLASSES = 4


def _result(metric, y_true, y_pred, sample_weight=None) -> float:
    metric.update_state(y_true, y_pred, sample_weight=sample_weight)
    return float(metric.result())


@pytest.mark.parametrize(
    "kind, keras_metric, labels",
    [
        ("accuracy", keras.metrics.SparseCategoricalAccuracy(), rng.integers(0, CLASSES, 32)),
        ("accuracy", keras.metrics.CategoricalAccuracy(), np.eye(CLASSES)[rng.integers(0, CLASSES, 32)]),
        (
            "sparse_top_k_categorical_accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=2),
            rng.integers(0, CLASSES, 32),
        ),
    ],
)
def test_on_finite_predictions_it_equals_keras(kind, keras_metric, labels):
    predictions = rng.normal(size=(32, CLASSES)).astype("float32")
    weights = rng.uniform(0, 1, 32).astype("float32")
    options = {"k": 2} if "top_k" in kind else {}
    ours = _result(FiniteAccuracy(kind, **options), labels, predictions, weights)
    assert ours == pytest.approx(_result(keras_metric, labels, predictions, weights))


def test_a_non_finite_prediction_is_wrong_where_keras_takes_its_argmax():
    labels = np.array([0, 0, 1, 2, 0, 3])
    predictions = np.eye(CLASSES, dtype="float32")[[0, 1, 1, 2, 3, 3]]  # rows 0, 2, 3, 5 right
    predictions[0] = np.nan  # argmax of NaN: class 0, the label: Keras counts it right
    predictions[2, 1] = np.inf
    predictions[4] = np.nan  # label 0 again
    finite_and_right = np.array([False, False, False, True, False, True])  # NumPy reference
    assert _result(FiniteAccuracy(), labels, predictions) == pytest.approx(finite_and_right.mean())
    assert _result(keras.metrics.SparseCategoricalAccuracy(), labels, predictions) > finite_and_right.mean()


def test_binary_predictions_are_judged_one_value_at_a_time():
    labels = np.array([[0.0], [1.0], [0.0], [1.0]])
    predictions = np.array([[0.2], [0.9], [np.nan], [np.inf]], dtype="float32")
    # NaN > 0.5 is false: Keras says "0", right for label 0; inf > 0.5 is true and right for label 1
    assert _result(keras.metrics.BinaryAccuracy(), labels, predictions) == 1.0
    assert _result(FiniteAccuracy(), labels, predictions) == pytest.approx(0.5)


def test_the_swap_keeps_names_and_options_and_leaves_other_metrics():
    swapped = finite_accuracies(
        ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"), "mae"]
    )
    assert [getattr(m, "name", m) for m in swapped] == ["accuracy", "top3", "mae"]
    assert isinstance(swapped[1], FiniteAccuracy) and swapped[1].options == {"k": 3}
    assert finite_accuracies({"out": "acc"})["out"].kind == "acc"


def test_evaluation_counts_nan_outputs_as_wrong():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))  # no ReLU: it would map NaN to 0 on the CPU
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(inputs))
    features = rng.normal(size=(40, 8)).astype("float32")
    features[:10, 0] = np.nan  # the first 10 examples give NaN outputs
    labels = np.zeros(40, "int32")  # argmax of NaN is 0: Keras counts those 10 right
    outputs = model.predict(features, verbose=0)
    right = (outputs.argmax(-1) == labels) & np.isfinite(outputs).all(-1)  # NumPy reference
    assert np.isnan(outputs[:10]).all() and not right[:10].any()
    metrics = TrainingSetup.for_model(model).evaluate(model, (features, labels))
    assert metrics["accuracy"] == pytest.approx(right.mean())
