"""SqueezeNet builders: parameter counts, layer names, stems, shapes, errors."""

import keras
import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.metrics import count_flops, count_params
from kprune.models import squeezenet
from kprune.models.squeezenet import FIRE_FILTERS

FIRES = range(2, 10)


def conv_params(in_channels, filters, kernel, bias=True):
    return kernel * kernel * in_channels * filters + (filters if bias else 0)


def reference_params(conv1_kernel, conv1_filters, in_channels, num_classes, bias=True):
    """Parameters of SqueezeNet summed layer by layer from the paper's table."""
    total = conv_params(in_channels, conv1_filters, conv1_kernel, bias)
    channels = conv1_filters
    for squeeze, expand1x1, expand3x3 in FIRE_FILTERS.values():
        total += conv_params(channels, squeeze, 1, bias)
        total += conv_params(squeeze, expand1x1, 1, bias)
        total += conv_params(squeeze, expand3x3, 3, bias)
        channels = expand1x1 + expand3x3
    return total + conv_params(channels, num_classes, 1, bias)


@pytest.mark.parametrize(
    "version, expected, conv1",
    [("1.0", 1_248_424, (7, 96)), ("1.1", 1_235_496, (3, 64))],
)
def test_imagenet_param_counts_match_reference(version, expected, conv1):
    model = squeezenet(version, (224, 224, 3), 1000, stem="imagenet", batch_norm=False)
    assert count_params(model) == expected
    assert reference_params(*conv1, in_channels=3, num_classes=1000) == expected


@pytest.mark.parametrize(
    "version, sizes",
    [
        # torchvision (ceil_mode pooling): 224 → conv1 109 → 54 → 27 → 13
        ("1.0", {"conv1": 109, "pool1": 54, "pool4": 27, "pool8": 13, "conv10": 13}),
        # 224 → conv1 111 → 55 → 27 → 13
        ("1.1", {"conv1": 111, "pool1": 55, "pool3": 27, "pool5": 13, "conv10": 13}),
    ],
)
def test_imagenet_stem_spatial_sizes_match_torchvision(version, sizes):
    model = squeezenet(version)
    for name, size in sizes.items():
        assert model.get_layer(name).output.shape[1:3] == (size, size), name


def test_imagenet_flops_match_reference():
    model = squeezenet("1.1")
    # conv1 3×3×3→64 on 111², then fires at 55², 27², 13², conv10 512→1000 on 13².
    macs = 111 * 111 * 27 * 64
    fire_sizes = {2: 55, 3: 55, 4: 27, 5: 27, 6: 13, 7: 13, 8: 13, 9: 13}
    channels = 64
    for fire, (squeeze, e1, e3) in FIRE_FILTERS.items():
        side = fire_sizes[fire]
        macs += side * side * (channels * squeeze + squeeze * e1 + 9 * squeeze * e3)
        channels = e1 + e3
    macs += 13 * 13 * 512 * 1000
    assert count_flops(model) == 2 * macs == 698_303_872


def test_layer_names():
    model = squeezenet("1.1", (32, 32, 3), 10, stem="cifar")
    names = {layer.name for layer in model.layers}
    expected = {"conv1", "conv10"}
    for fire in FIRES:
        expected |= {f"fire{fire}_{part}" for part in ("squeeze1x1", "expand1x1", "expand3x3", "concat")}
    assert expected <= names
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs[0] == "conv1" and convs[-1] == "conv10"
    assert len(convs) == 2 + 3 * len(FIRES)
    for fire, (squeeze, e1, e3) in FIRE_FILTERS.items():
        assert model.get_layer(f"fire{fire}_squeeze1x1").filters == squeeze
        assert model.get_layer(f"fire{fire}_expand1x1").filters == e1
        assert model.get_layer(f"fire{fire}_expand3x3").filters == e3
        assert model.get_layer(f"fire{fire}_concat").output.shape[-1] == e1 + e3


@pytest.mark.parametrize(
    "version, input_shape, sides",
    [
        ("1.1", (32, 32, 3), {"conv1": 32, "pool1": 16, "fire2_concat": 16, "pool3": 8, "pool5": 4}),
        ("1.1", (28, 28, 1), {"conv1": 28, "pool1": 14, "pool3": 7, "pool5": 4, "conv10": 4}),
        ("1.0", (32, 32, 3), {"conv1": 32, "pool1": 16, "pool4": 8, "pool8": 4, "conv10": 4}),
    ],
)
def test_cifar_stem_shapes(version, input_shape, sides):
    model = squeezenet(version, input_shape, 10, stem="cifar")
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == (None, 10)
    for name, side in sides.items():
        assert model.get_layer(name).output.shape[1:3] == (side, side), name
    assert model.get_layer("conv1").kernel_size == (3, 3)
    assert model.get_layer("conv1").strides == (1, 1)
    in_channels, filters = input_shape[-1], 96 if version == "1.0" else 64
    assert count_params(model) == reference_params(3, filters, in_channels, 10)


def test_cifar_stem_outputs_probabilities():
    model = squeezenet("1.1", (32, 32, 3), 10, stem="cifar")
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_classifier_activation_none_gives_raw_scores():
    model = squeezenet("1.1", (32, 32, 3), 10, stem="cifar", classifier_activation=None)
    assert model.layers[-1].name == "avgpool10"
    assert "predictions" not in {layer.name for layer in model.layers}


def test_batch_norm_variant():
    model = squeezenet("1.1", (32, 32, 3), 10, stem="cifar", batch_norm=True)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(not conv.use_bias for conv in convs)
    for conv in convs:
        norm = model.get_layer(f"{conv.name}_bn")
        assert isinstance(norm, keras.layers.BatchNormalization)
        assert norm.input.shape == conv.output.shape
    # Each BN holds gamma, beta, moving mean and moving variance per channel.
    bn_params = 4 * sum(conv.filters for conv in convs)
    expected = reference_params(3, 64, 3, 10, bias=False) + bn_params
    assert count_params(model) == expected


def test_default_name_and_custom_name():
    assert squeezenet("1.0", (32, 32, 3), 10, stem="cifar").name == "squeezenet1_0"
    assert squeezenet("1.1", (32, 32, 3), 10, stem="cifar", name="net").name == "net"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"version": "2.0"}, r"`version` must be '1.0' or '1.1'. Received version='2.0'"),
        ({"stem": "tiny"}, r"`stem` must be one of \('imagenet', 'cifar'\). Received stem='tiny'"),
        (
            {"input_shape": (32, 32)},
            r"`input_shape` must be \(height, width, channels\). "
            r"Received input_shape=\(32, 32\)",
        ),
        ({"input_shape": (0, 32, 3)}, r"Received input_shape=\(0, 32, 3\)"),
        ({"num_classes": 0}, r"`num_classes` must be at least 1. Received num_classes=0"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = {"version": "1.1", "input_shape": (32, 32, 3), "num_classes": 10, "stem": "cifar"}
    with pytest.raises(InvalidArgumentError, match=message):
        squeezenet(**{**arguments, **kwargs})
