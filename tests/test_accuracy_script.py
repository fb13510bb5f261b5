"""scripts/experiments/accuracy_tflite.py: a TFLite file's top-1, checked against Keras' own predictions."""

import keras
import numpy as np

from scripts.experiments import accuracy_tflite


def test_tflite_top1_counts_what_keras_predicts(tmp_path):
    import kprune

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    rng = np.random.default_rng(0)
    images = rng.random((50, 8, 8, 1), dtype=np.float32)
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    # Labels right for the first 30 images and wrong for the other 20: 60%.
    labels = np.concatenate([predicted[:30], (predicted[30:] + 1) % 4])
    batches = [(images[:32], labels[:32]), (images[32:], labels[32:])]
    path = kprune.export_tflite(model, tmp_path / "m.tflite").path
    assert accuracy_tflite.tflite_top1(path, batches) == 0.6
    assert accuracy_tflite.keras_top1(model, batches) == 0.6
