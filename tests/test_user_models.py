"""Models and setups the way Keras users build them: rank → prune → export, each.

Every case is a small model trained for a few steps on data where the classes
are easy to tell apart (class k brightens channel k, or a time series' channel
k), built and compiled the way the Keras guides do it. Each goes through
`kprune.rank`, `kprune.prune` (a tiny budget) and export to TFLite and ONNX,
whose float32 outputs must equal Keras' (invariant 4).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from tensorflow.python.framework import config as tf_config

import kprune
from kprune.errors import InvalidArgumentError
from kprune.graph.rebuild import flatten_model

CLASSES = 3


def _images(count: int, seed: int = 0, size: int = 16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=count)
    images = rng.uniform(0, 80, size=(count, size, size, 3)).astype("float32")
    images[np.arange(count), :, :, labels] += 150.0  # class k: channel k is bright
    return images, labels


def _series(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=count)
    series = rng.normal(size=(count, 24, 3)).astype("float32")
    series[np.arange(count), :, labels] += 2.0
    return series, labels


def _conv_stem(inputs, prefix="c"):
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"{prefix}1")(inputs)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name=f"{prefix}2")(x)
    return keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)


def _adam():
    return keras.optimizers.Adam(0.01)  # the toy tasks are learnt in a few dozen steps


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)  # models built in a test start from the same weights


def _fit(model, x, y, steps=30, **fit_kwargs):
    keras.utils.set_random_seed(0)
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=max(1, steps * 16 // len(np.asarray(keras.tree.flatten(x)[0]))),
        verbose=0,
        **fit_kwargs,
    )
    return model


# --- the user models: (model, train data, val data) --------------------------------
def transfer_learning():
    """A keras.applications backbone called as one nested layer, frozen, new head.

    No ImageNet weights offline: the backbone is first trained here (standing in
    for pretrained weights), then frozen and the model compiled again, as the
    Keras transfer-learning guide does."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    for layer in base.layers:  # moving statistics that settle within the short stand-in training
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = base(x, training=False)  # the guide's call: BatchNorm in inference mode once frozen
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu", name="head_hidden")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    x_train, y_train = _images(96, 0, 32)
    _fit(model, x_train, y_train, steps=30)
    base.trainable = False
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, (x_train, y_train), _images(48, 1, 32)


def one_hot_label_smoothing():
    """CategoricalCrossentropy on one-hot labels with label smoothing."""
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(CLASSES, name="logits")(_conv_stem(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(
        _adam(),
        keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    x, y = _images(96)
    _fit(model, x, np.eye(CLASSES)[y])
    xv, yv = _images(48, 1)
    return model, (x, np.eye(CLASSES)[y]), (xv, np.eye(CLASSES)[yv])


def two_outputs_dict():
    """A dict of two outputs, two compiled losses with loss_weights, dict labels."""
    inputs = keras.Input((16, 16, 3))
    features = _conv_stem(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = {
        "kind": keras.layers.Dense(CLASSES, activation="softmax", name="kind")(features),
        "brightness": keras.layers.Dense(1, name="brightness")(features),
    }
    model = keras.Model(inputs, outputs)
    model.compile(
        _adam(),
        loss={"kind": "sparse_categorical_crossentropy", "brightness": "mse"},
        loss_weights={"kind": 1.0, "brightness": 0.5},
        metrics={"kind": ["accuracy"]},
    )

    def labels(x, y):
        return {"kind": y, "brightness": x.mean(axis=(1, 2, 3))[:, None] / 255.0}

    x, y = _images(96)
    _fit(model, x, labels(x, y))
    xv, yv = _images(48, 1)
    return model, (x, labels(x, y)), (xv, labels(xv, yv))


def augmentation_layers():
    """RandomFlip, RandomTranslation and Rescaling inside the model."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomTranslation(0.1, 0.1)(x)
    x = keras.layers.Rescaling(1 / 255)(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(_conv_stem(x)))
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train, y_train = _images(96)
    _fit(model, x_train, y_train)
    return model, (x_train, y_train), _images(48, 1)


def keras_ops_activations():
    """keras.ops.relu / silu / relu6 written between convolutions."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = ops.relu(keras.layers.Conv2D(8, 3, padding="same", name="a")(x))
    x = ops.silu(keras.layers.Conv2D(8, 3, padding="same", name="b")(x))
    x = ops.relu6(keras.layers.Conv2D(12, 3, padding="same", name="c")(x))
    x = ops.mean(x, axis=(1, 2))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x))
    model.compile(_adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x_train, y_train = _images(96)
    _fit(model, x_train, y_train)
    return model, (x_train, y_train), _images(48, 1)


def conv1d_time_series():
    """A Conv1D model on (batch, time, channels) series."""
    model = keras.Sequential(
        [
            keras.Input((24, 3)),
            keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="t1"),
            keras.layers.Conv1D(12, 3, padding="same", activation="relu", name="t2"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _series(96)
    _fit(model, x, y)
    return model, (x, y), _series(48, 1)


def sample_weights():
    """NumPy (x, y, sample_weight) data; a Sequential compiled with from_logits."""
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu", name="s1"),
            keras.layers.BatchNormalization(name="s1_bn"),
            keras.layers.Conv2D(12, 3, activation="relu", name="s2"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )
    model.compile(_adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = _images(96)
    weights = np.where(y == 0, 2.0, 1.0).astype("float32")
    _fit(model, x, y, sample_weight=weights)
    return model, (x, y, weights), _images(48, 1)


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size=16):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


def py_dataset():
    """Training and validation data as keras.utils.PyDataset."""
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(
        inputs,
        keras.layers.Dense(CLASSES, activation="softmax")(
            _conv_stem(keras.layers.Rescaling(1 / 255)(inputs))
        ),
    )
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _images(96)
    _fit(model, x, y)
    return model, _Batches(x, y), _Batches(*_images(48, 1))


def generator_training_data():
    """An infinite Python generator of training batches (validation: arrays)."""
    model, _, val = augmentation_layers()
    x, y = _images(96)

    def batches():
        while True:
            for start in range(0, 96, 16):
                yield x[start : start + 16], y[start : start + 16]

    return model, batches(), val


def two_inputs():
    """An image and a vector of features, two keras.Input, concatenated."""
    image = keras.Input((16, 16, 3), name="image")
    features = keras.Input((4,), name="features")
    x = _conv_stem(keras.layers.Rescaling(1 / 255)(image))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(6, activation="relu", name="f1")(features)])
    model = keras.Model(
        {"image": image, "features": features},
        keras.layers.Dense(CLASSES, activation="softmax", name="out")(x),
    )
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])

    def inputs(seed):
        x, y = _images(96 if seed == 0 else 48, seed)
        return {"image": x, "features": np.random.default_rng(seed).normal(size=(len(x), 4))}, y

    train, val = inputs(0), inputs(1)
    _fit(model, *train)
    return model, train, val


def residual_depthwise():
    """A MobileNet-style block written by hand: depthwise, BatchNorm, residual Add."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(12, 3, padding="same", name="stem")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name="stem_bn")(x))
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name="dw_bn")(y))
    y = keras.layers.Conv2D(12, 1, name="project")(y)
    x = keras.layers.Add(name="residual")([x, keras.layers.BatchNormalization(name="project_bn")(y)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="out")(x))
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train, y_train = _images(96)
    _fit(model, x_train, y_train)
    return model, (x_train, y_train), _images(48, 1)


def conv3d_volumes():
    """A Conv3D model on (batch, depth, height, width, channels) volumes."""

    def volumes(count, seed):
        x, y = _images(count, seed, 8)
        return np.repeat(x[:, None] / 255.0, 4, axis=1).astype("float32"), y

    model = keras.Sequential(
        [
            keras.Input((4, 8, 8, 3)),
            keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="v1"),
            keras.layers.Conv3D(12, 3, padding="same", activation="relu", name="v2"),
            keras.layers.GlobalAveragePooling3D(),
            keras.layers.Dense(CLASSES, activation="softmax", name="out"),
        ]
    )
    model.compile(_adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = volumes(96, 0)
    _fit(model, *train)
    return model, train, volumes(48, 1)


CASES = {
    "transfer_learning": transfer_learning,
    "one_hot_label_smoothing": one_hot_label_smoothing,
    "two_outputs_dict": two_outputs_dict,
    "augmentation_layers": augmentation_layers,
    "keras_ops_activations": keras_ops_activations,
    "conv1d_time_series": conv1d_time_series,
    "sample_weights": sample_weights,
    "py_dataset": py_dataset,
    "generator_training_data": generator_training_data,
    "two_inputs": two_inputs,
    "residual_depthwise": residual_depthwise,
    "conv3d_volumes": conv3d_volumes,
}
QUICK = dict(
    target_filters=4,
    filters_per_step=4,
    rank_batches=1,
    finetune_steps=2,
    final_finetune_epochs=0,
    progress=False,
)


def _first_inputs(data):
    """A few examples of ``data`` as the model takes them (for export checks)."""
    if isinstance(data, keras.utils.PyDataset):
        return data[0][0]
    return keras.tree.map_structure(lambda array: array[:16], data[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_rank_prune_export(case, tmp_path):
    model, train, val = CASES[case]()
    weights = [w.copy() for w in model.get_weights()]
    rank_data = train if not hasattr(train, "__next__") else val
    scores = kprune.rank(model, rank_data, "taylor", num_batches=2)
    assert scores and all(np.all(np.isfinite(values)) for values in scores.values())

    determinism_before = tf_config.is_op_determinism_enabled()
    result = kprune.prune(model, train, val, **QUICK)
    assert tf_config.is_op_determinism_enabled() == determinism_before
    pruned = result.model
    assert kprune.count_params(pruned) < kprune.count_params(model)
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)  # the user's model is untouched
    start = result.report["steps"][0]
    assert start["val_monitor"] > 1.2 / CLASSES or start["monitor"] != "accuracy"

    examples = _first_inputs(val)
    tflite = kprune.export_tflite(pruned, tmp_path / "m.tflite")
    onnx = kprune.export_onnx(pruned, tmp_path / "m.onnx")
    report = kprune.verify_export(pruned, [tflite, onnx], examples, samples=16)
    assert report.passed
    assert all(check.max_abs_diff <= 1e-4 for check in report.checks)


def test_compiled_loss_is_what_taylor_differentiates():
    """Taylor of a model compiled with CategoricalCrossentropy(label_smoothing=0.1)
    equals Taylor with that loss given, and differs with loss='mse'."""
    model, (x, y), _ = one_hot_label_smoothing()
    compiled = kprune.rank(model, (x[:32], y[:32]), "taylor", normalize="none")
    given = kprune.rank(
        model,
        (x[:32], y[:32]),
        "taylor",
        normalize="none",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    )
    for name in compiled:
        np.testing.assert_allclose(compiled[name], given[name], rtol=1e-5)
    mse = kprune.rank(model, (x[:32], y[:32]), "taylor", normalize="none", loss="mse")
    assert any(not np.allclose(compiled[n], mse[n], rtol=1e-3) for n in compiled)


def test_monitor_a_loss_stops_on_a_rise(tmp_path):
    """With monitor='loss' the budget counts a *rise* of the loss as the drop."""
    model, train, val = sample_weights()
    result = kprune.prune(
        model,
        train,
        val,
        monitor="loss",
        max_accuracy_drop=0.0,
        filters_per_step=8,
        rank_batches=1,
        finetune_steps=0,
        final_finetune_epochs=0,
        progress=False,
    )
    steps = result.report["steps"]
    assert steps[0]["monitor"] == "loss"
    rolled = [s for s in steps if s.get("rolled_back")]
    assert rolled and rolled[0]["val_monitor"] > steps[0]["val_monitor"]
    assert "accuracy budget" in result.report["stop_reason"]


def test_finetune_callable_is_used():
    model, train, val = augmentation_layers()
    calls = []

    def my_finetune(network, data, steps):
        calls.append(steps)
        network.compile("sgd", "sparse_categorical_crossentropy")
        network.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return network

    kprune.prune(model, train, val, finetune=my_finetune, **QUICK)
    assert calls and all(steps == QUICK["finetune_steps"] for steps in calls)


def test_model_near_chance_stops_before_pruning(tmp_path):
    inputs = keras.Input((16, 16, 3))
    head = keras.layers.Dense(CLASSES, activation="softmax", kernel_initializer="zeros")
    constant = keras.Model(inputs, head(_conv_stem(inputs)))  # every class 1/3: top-1 is class 0
    x, y = _images(48)
    with pytest.raises(InvalidArgumentError, match=r"about chance for 3 classes .*--preprocess"):
        kprune.prune(constant, (x, y), (x, y), run_dir=tmp_path / "run", **QUICK)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "loss, labels, message",
    [
        ("sparse_categorical_crossentropy", np.zeros((48, 5)), r"one-hot vectors of width 5"),
        ("mse", np.zeros((48, 7)), r"cannot be computed on the outputs"),
        (lambda y_true, y_pred: ops.sum(y_pred), None, r"not one value per example"),
    ],
)
def test_bad_setups_fail_before_any_work(loss, labels, message, tmp_path):
    model, (x, y), _ = augmentation_layers()
    labels = y[:48] if labels is None else labels
    with pytest.raises(InvalidArgumentError, match=message):
        kprune.prune(model, (x[:48], labels), (x[:48], y[:48]), loss=loss, run_dir=tmp_path / "run", **QUICK)
    assert not (tmp_path / "run").exists()


def test_multi_output_model_without_a_loss_is_refused():
    model, train, val = two_outputs_dict()
    bare = keras.Model(model.inputs, model.outputs)  # same layers, not compiled
    with pytest.raises(InvalidArgumentError, match=r"has 2 outputs .* and no loss"):
        kprune.rank(bare, train, "taylor")


@pytest.mark.parametrize("trainable", [True, False])
def test_nested_batchnorm_statistics_move_as_in_keras(trainable):
    """A backbone called with training=False: after kprune's fine-tune of the
    flattened model, BatchNorm statistics and weights equal Keras' own fit of
    the nested model (in Keras 3, ``trainable=False`` is what keeps BatchNorm
    in inference mode during fit; a ``training=False`` call argument does not)."""

    def build():
        keras.utils.set_random_seed(0)
        base_in = keras.Input((8, 8, 3))
        y = keras.layers.Conv2D(4, 3, name="base_conv")(base_in)
        y = keras.layers.BatchNormalization(name="base_bn")(y)
        base = keras.Model(base_in, keras.layers.ReLU()(y), name="base")
        base.trainable = trainable
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
        return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(x))

    x, y = _images(64, 0, 8)
    x /= 255.0
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    reference = build()
    reference.compile(keras.optimizers.SGD(0.1), loss)
    reference.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    nested = build()
    flat = flatten_model(nested)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    assert flat.get_layer("base_bn").trainable == trainable
    setup = kprune.TrainingSetup(loss=loss, optimizer=keras.optimizers.SGD(0.1))
    setup.finetune(flat, kprune.data.as_dataset((x, y), batch_size=16), steps=4)

    expected = reference.get_layer("base").get_layer("base_bn")
    actual = flat.get_layer("base_bn")
    for name in ("moving_mean", "moving_variance", "gamma", "beta"):
        np.testing.assert_allclose(
            getattr(actual, name).numpy(), getattr(expected, name).numpy(), rtol=1e-5, atol=1e-6
        )
    moved = not np.allclose(expected.moving_mean.numpy(), 0.0)
    assert moved == trainable


def test_nested_model_info_and_export_as_it_is(tmp_path):
    """`kprune info` and export take a model with a nested sub-model without flattening first."""
    from typer.testing import CliRunner

    from kprune.cli import app

    base_in = keras.Input((8, 8, 3))
    y = keras.layers.BatchNormalization(name="inner_bn")(keras.layers.Conv2D(4, 3, name="inner")(base_in))
    base = keras.Model(base_in, keras.layers.ReLU()(y), name="base")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="top")(base(inputs, training=False))
    model = keras.Model(
        inputs, keras.layers.Dense(CLASSES, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    )
    model.save(tmp_path / "nested.keras")
    result = CliRunner().invoke(app, ["info", str(tmp_path / "nested.keras"), "--groups"])
    assert result.exit_code == 0, result.output
    assert "inner" in result.output and "top" in result.output
    files = [
        kprune.export_tflite(model, tmp_path / "m.tflite"),
        kprune.export_onnx(model, tmp_path / "m.onnx"),
    ]
    examples = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    assert kprune.verify_export(model, files, examples, samples=8).passed
