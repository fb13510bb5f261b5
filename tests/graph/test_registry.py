"""The handler table: what it covers, and subclasses that override ``call``."""

import inspect

import keras
import pytest
from keras import ops

from kprune.errors import UnsupportedModelError
from kprune.graph import PassThrough, analyze, handler_for, register_handler, registry
from tests.graph.test_handlers import between_convs

layers = keras.layers


def _preprocessing_layers() -> list[type]:
    return sorted(
        (
            value
            for value in vars(keras.layers).values()
            if inspect.isclass(value) and ".preprocessing." in value.__module__
        ),
        key=lambda cls: cls.__name__,
    )


@pytest.mark.parametrize("layer_class", _preprocessing_layers(), ids=lambda cls: cls.__name__)
def test_every_preprocessing_layer_has_a_handler(layer_class):
    handler = handler_for(object.__new__(layer_class))  # the registry reads only the type
    assert handler is not None
    colour = {
        "RandomGrayscale",
        "RandomHue",
        "RandomSaturation",
        "RandomColorJitter",
        "RandomColorDegeneration",
        "AugMix",
        "RandAugment",
    }
    if layer_class.__name__ in colour:
        assert handler.role == "boundary"


class ChannelShuffle(layers.Identity):
    """Not an Identity: it reverses the channels."""

    def call(self, x):
        return ops.flip(x, axis=-1)


class ReLU6(layers.ReLU):
    """A ReLU with another default: same computation, served as a ReLU."""

    def __init__(self, **kwargs):
        super().__init__(max_value=6.0, **kwargs)


def test_a_subclass_that_overrides_call_is_refused_with_its_name():
    model = between_convs(ChannelShuffle(name="shuffle"))
    message = r"shuffle \(ChannelShuffle, a subclass of Identity that overrides call\)"
    with pytest.raises(UnsupportedModelError, match=message + r".*register_handler"):
        analyze(model)
    graph = analyze(model, unsupported="freeze")
    assert graph.group_of("before").frozen_by == ["ChannelShuffle 'shuffle'"]
    assert graph.prunable_layers() == ["after"]


def test_a_subclass_that_only_changes_its_config_is_served_by_its_parent():
    graph = analyze(between_convs(ReLU6(name="relu6")))
    assert "relu6" in graph.group_of("before").layers("passthrough")


def test_a_subclass_that_overrides_call_is_served_once_registered():
    @register_handler(ChannelShuffle)
    class Shuffle(PassThrough):  # a wrong handler, but the user's to choose
        pass

    try:
        assert analyze(between_convs(ChannelShuffle(name="shuffle"))).group_of("before").prunable
    finally:
        registry._HANDLERS.pop(ChannelShuffle)


def test_keras_activation_functions_are_all_classified():
    from kprune.graph.handlers import CHANNEL_MIXING_ACTIVATIONS, ELEMENTWISE_ACTIVATIONS

    names = {
        function.__name__
        for name, function in vars(keras.activations).items()
        if inspect.isfunction(function) and name not in ("get", "serialize", "deserialize")
    }
    assert names == ELEMENTWISE_ACTIVATIONS | CHANNEL_MIXING_ACTIVATIONS
