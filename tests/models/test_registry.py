"""The name → builder registry: SqueezeNet, keras.applications, custom builders."""

import re

import keras
import pytest

from kprune.errors import InvalidArgumentError
from kprune.models import available, build, register, registry


def test_squeezenet_names_registered():
    names = available()
    assert names == sorted(names)
    assert {"squeezenet1_0", "squeezenet1_1"} <= set(names)


@pytest.mark.parametrize(
    "function_name, name",
    [
        ("ResNet50", "resnet50"),
        ("ResNet50V2", "resnet50_v2"),
        ("ResNet152V2", "resnet152_v2"),
        ("MobileNet", "mobilenet"),
        ("MobileNetV2", "mobilenet_v2"),
        ("MobileNetV3Small", "mobilenet_v3_small"),
        ("MobileNetV3Large", "mobilenet_v3_large"),
        ("EfficientNetB0", "efficientnet_b0"),
        ("EfficientNetV2B3", "efficientnet_v2_b3"),
        ("EfficientNetV2S", "efficientnet_v2_s"),
        ("EfficientNetV2L", "efficientnet_v2_l"),
        ("InceptionResNetV2", "inception_resnet_v2"),
        ("InceptionV3", "inception_v3"),
        ("ConvNeXtTiny", "convnext_tiny"),
        ("ConvNeXtXLarge", "convnext_xlarge"),
        ("DenseNet121", "densenet121"),
        ("NASNetMobile", "nasnet_mobile"),
        ("VGG16", "vgg16"),
        ("Xception", "xception"),
    ],
)
def test_application_names(function_name, name):
    assert registry.APPLICATIONS[function_name] == name
    assert name in available()


def test_application_table_is_readable_and_complete():
    names = list(registry.APPLICATIONS.values())
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z]+[0-9]*(_[a-z0-9]+)*", name), name
    # Every architecture this Keras ships is in the table.
    shipped = {
        attribute
        for attribute in dir(keras.applications)
        if attribute[0].isupper() and callable(getattr(keras.applications, attribute))
    }
    assert shipped <= set(registry.APPLICATIONS)
    assert set(names) <= set(available())


def test_build_squeezenet_picks_stem_from_input_size():
    small = build("squeezenet1_1", (32, 32, 3), 10)
    assert small.get_layer("conv1").strides == (1, 1)  # cifar stem
    assert small.output_shape == (None, 10)
    large = build("squeezenet1_0", (224, 224, 3), 5)
    assert large.get_layer("conv1").strides == (2, 2)  # imagenet stem
    assert large.get_layer("conv1").kernel_size == (7, 7)
    assert large.output_shape == (None, 5)


def test_build_passes_options():
    model = build("squeezenet1_1", (32, 32, 3), 10, batch_norm=True, stem="imagenet")
    assert "conv1_bn" in {layer.name for layer in model.layers}
    assert model.get_layer("conv1").strides == (2, 2)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_build_keras_application_with_random_weights(name):
    model = build(name, (32, 32, 3), 10)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)


def test_application_batch_norm_uses_keras_default_momentum():
    # keras.applications.MobileNetV2 sets 0.999 for ImageNet; on Fashion-MNIST's
    # 235 steps an epoch its moving statistics stay near their initial values.
    keras_own = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    assert {
        layer.momentum for layer in keras_own.layers if isinstance(layer, keras.layers.BatchNormalization)
    } == {0.999}
    model = build("mobilenet_v2", (32, 32, 3), 10)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(momenta) == 52
    assert set(momenta) == {keras.layers.BatchNormalization().momentum}


def test_unknown_name_lists_valid_ones():
    with pytest.raises(InvalidArgumentError, match=r"Unknown model 'resnet_9000'") as raised:
        build("resnet_9000", (32, 32, 3), 10)
    message = str(raised.value)
    for name in ("squeezenet1_0", "squeezenet1_1", "mobilenet_v2", "resnet50_v2"):
        assert name in message
    assert ".keras file" in message


def test_application_rejecting_the_shape_is_a_user_error():
    with pytest.raises(
        InvalidArgumentError,
        match=r"MobileNetV2 cannot be built with "
        r"input_shape=\(16, 16, 3\).*at least 32x32",
    ):
        build("mobilenet_v2", (16, 16, 3), 10)


def test_custom_builder_registered_before_first_listing(monkeypatch):
    # A fresh registry: a user's builder registered first must not hide keras.applications.
    fresh = {name: registry._BUILDERS[name] for name in ("squeezenet1_0", "squeezenet1_1")}
    monkeypatch.setattr(registry, "_BUILDERS", fresh)
    monkeypatch.setattr(registry, "_applications_registered", False)

    @register("tiny_dense")
    def tiny_dense(input_shape, num_classes, **kwargs):
        inputs = keras.Input(input_shape)
        outputs = keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, outputs, name="tiny_dense")

    names = available()
    assert "tiny_dense" in names and "resnet50" in names and "squeezenet1_1" in names
    model = build("tiny_dense", (4, 4, 1), 3)
    assert model.name == "tiny_dense" and model.output_shape == (None, 3)
