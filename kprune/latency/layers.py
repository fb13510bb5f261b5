"""Which layers of a model cost time on a runtime, and the single-layer models that time them.

A model's inference time is modelled as the sum of the times of its layers,
each a function of the layer's channel counts, plus a constant. A layer's
*configuration* is everything about it except those counts — its class,
kernel, strides, padding, activation, the spatial size of its inputs — and is
the key of its entry in a latency table, so that a pruned copy of the model
(same configurations, fewer channels) is predicted from the same entries.

Layers come in three kinds:

- ``matrix``: Conv, Dense, SeparableConv, ConvTranspose — time depends on the
  input channels and the output channels (``cin``, ``cout``);
- ``channels``: everything else that becomes an operator (pooling,
  depthwise convolution, concatenation, addition, standalone BatchNorm, …) —
  time depends on one count, the channels of all its inputs together;
- free: layers that are no operator at inference (dropout, augmentation,
  reshapes that only relabel the shape) and activations or BatchNorm that
  the TFLite converter fuses into the layer before them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import keras
import numpy as np

from kprune import keras_internals
from kprune.graph.flatten import Call, FlatGraph, flatten
from kprune.graph.rebuild import TRAINING_ONLY

MATRIX = "matrix"
CHANNELS = "channels"

_layers = keras.layers
_MATRIX_LAYERS = (
    _layers.Conv1D,
    _layers.Conv2D,
    _layers.Conv3D,
    _layers.Dense,
    _layers.SeparableConv1D,
    _layers.SeparableConv2D,
    _layers.Conv1DTranspose,
    _layers.Conv2DTranspose,
    _layers.Conv3DTranspose,
)
_DEPTHWISE = (_layers.DepthwiseConv1D, _layers.DepthwiseConv2D)
# Identity at inference: no operator in an exported file.
_FREE_LAYERS = (
    _layers.InputLayer,
    _layers.Dropout,
    _layers.SpatialDropout1D,
    _layers.SpatialDropout2D,
    _layers.SpatialDropout3D,
    _layers.GaussianNoise,
    _layers.GaussianDropout,
    _layers.AlphaDropout,
    _layers.ActivityRegularization,
    _layers.Identity,
    *TRAINING_ONLY,
)
# Activations TFLite fuses into the convolution, dense or add before them.
_FUSED_ACTIVATIONS = ("relu", "relu6", "linear", None)
_FUSING_LAYERS = (*_MATRIX_LAYERS, *_DEPTHWISE, _layers.Add)
# Configuration entries that are channel counts, names or training-only settings.
_NOT_CONFIGURATION = {"name", "trainable", "dtype", "filters", "units", "seed", "build_config"}


@dataclass(frozen=True)
class TimedLayer:
    """One call of a layer that costs time: its entry key and channel counts.

    ``cin`` is the channels of all inputs together; ``cout`` is the output
    channels of a ``matrix`` layer and equals ``cin`` for a ``channels`` one.
    """

    name: str
    kind: str
    key: str
    cin: int
    cout: int
    configuration: dict = field(compare=False, repr=False)
    input_ids: tuple[int, ...] = field(default=(), compare=False, repr=False)
    output_id: int = field(default=-1, compare=False, repr=False)


def timed_layers(model: keras.Model | FlatGraph) -> tuple[list[TimedLayer], list[str]]:
    """The layers of a model that cost time, and the names of those that cannot be keyed.

    Args:
        model: A model, or its `FlatGraph` (then tensor ids match that graph's).

    Returns:
        (timed layers in graph order, names of layers that cost time but have
        no channel axis to key them by — their time goes to the constant).
    """
    flat = model if isinstance(model, FlatGraph) else flatten(model)
    fused = _fused_calls(flat)
    timed, untimed = [], []
    for call in flat.calls:
        layer = call.layer
        if isinstance(layer, _FREE_LAYERS) or call.name in fused or _is_free(call):
            continue
        inputs = [flat.tensors[t] for t in call.inputs]
        outputs = [flat.tensors[t] for t in call.outputs]
        if not inputs or len(outputs) != 1 or not _has_channels(inputs + outputs):
            untimed.append(call.name)
            continue
        kind = MATRIX if isinstance(layer, _MATRIX_LAYERS) and _groups(layer) == 1 else CHANNELS
        configuration = _configuration(layer, inputs)
        key = _key(configuration)
        cin = int(sum(t.shape[-1] for t in inputs))
        cout = int(outputs[0].shape[-1]) if kind == MATRIX else cin
        timed.append(
            TimedLayer(call.name, kind, key, cin, cout, configuration, tuple(call.inputs), call.outputs[0])
        )
    return timed, untimed


def single_layer_model(flat: FlatGraph, name: str, cin: int, cout: int) -> keras.Model:
    """A model of one call ``name`` of a flattened model with other channel counts, batch 1.

    For a ``matrix`` layer the input has ``cin`` channels and the layer
    ``cout`` filters; for a ``channels`` layer every input's channels are
    scaled so that together they hold ``cin`` (``cout`` is ignored). The new
    layer is built from the original's configuration with fresh weights:
    latency does not depend on their values.

    Raises:
        ValueError: If the layer cannot be rebuilt with these counts.
    """
    call = flat.calls_by_name[name]
    layer = call.layer
    config = layer.get_config()
    if isinstance(layer, _MATRIX_LAYERS):
        config["filters" if "filters" in config else "units"] = int(cout)
    clone = type(layer).from_config(config)
    total = sum(flat.tensors[t].shape[-1] for t in call.inputs)
    new_inputs, replaced = [], {}
    for tensor_id in call.inputs:
        tensor = flat.tensors[tensor_id]
        channels = tensor.shape[-1]
        if len(call.inputs) > 1 and _same_channels(flat, call):
            channels = max(1, round(cin / len(call.inputs)))
        elif isinstance(layer, _MATRIX_LAYERS):
            channels = cin
        else:
            channels = max(1, round(cin * channels / total))
        replaced[tensor_id] = keras.Input(
            tuple(tensor.shape[1:-1]) + (channels,), batch_size=1, dtype=tensor.dtype
        )
        new_inputs.append(replaced[tensor_id])
    arguments, keywords = keras_internals.call_arguments(call.node)

    def swap(value):
        if isinstance(value, keras.KerasTensor):
            return replaced[flat.canonical(id(value))]
        return value

    args = keras.tree.map_structure(swap, list(arguments))
    kwargs = keras.tree.map_structure(swap, keywords)
    kwargs.pop("training", None)
    output = clone(*args, **kwargs)
    return keras.Model(new_inputs, output, name=f"{name}_{cin}_{cout}")


def _same_channels(flat: FlatGraph, call: Call) -> bool:
    counts = {flat.tensors[t].shape[-1] for t in call.inputs}
    return len(counts) == 1 and not isinstance(call.layer, _layers.Concatenate)


def _fused_calls(flat: FlatGraph) -> set[str]:
    """Calls the TFLite converter folds into the call before them: BatchNorm after a
    convolution (folded into its weights) and ReLU/ReLU6 after a convolution, dense,
    add or folded BatchNorm, when nothing else reads the tensor in between."""
    producer = flat.producer_call()
    consumers = flat.consumers
    fused: set[str] = set()
    for call in flat.calls:
        if len(call.inputs) != 1:
            continue
        source = producer.get(call.inputs[0])
        if source is None or len(consumers.get(call.inputs[0], [])) != 1:
            continue
        folds_into = isinstance(source.layer, _FUSING_LAYERS) or source.name in fused
        if not folds_into:
            continue
        layer = call.layer
        if isinstance(layer, _layers.BatchNormalization) and not isinstance(source.layer, _layers.Add):
            fused.add(call.name)
        elif _fusable_activation(layer):
            fused.add(call.name)
    return fused


def _fusable_activation(layer) -> bool:
    if isinstance(layer, _layers.ReLU):
        config = layer.get_config()
        return (
            config.get("negative_slope", 0) == 0
            and config.get("threshold", 0) == 0
            and (config.get("max_value") in (None, 6, 6.0))
        )
    if isinstance(layer, _layers.Activation):
        activation = layer.get_config().get("activation")
        return activation in _FUSED_ACTIVATIONS
    name = type(layer).__name__.lower()
    return name in ("relu", "relu6")  # keras.ops.relu / relu6 recorded as operations


def _is_free(call: Call) -> bool:
    """Layers that only relabel a shape: a reshape of a contiguous tensor copies nothing."""
    return isinstance(call.layer, _layers.Flatten | _layers.Reshape)


def _has_channels(tensors) -> bool:
    return all(t.shape[-1] is not None and len(t.shape) >= 2 for t in tensors)


def _groups(layer) -> int:
    return int(getattr(layer, "groups", 1) or 1)


def _configuration(layer, inputs) -> dict:
    config = {}
    for name, value in layer.get_config().items():
        if name in _NOT_CONFIGURATION or name.endswith(("_initializer", "_regularizer", "_constraint")):
            continue
        config[name] = value
    return {
        "class": type(layer).__name__,
        "config": _jsonable(config),
        "input_spatial": [list(t.shape[1:-1]) for t in inputs],
    }


def _key(configuration: dict) -> str:
    text = json.dumps(configuration, sort_keys=True)
    return f"{configuration['class']}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
