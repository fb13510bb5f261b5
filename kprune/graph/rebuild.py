"""Building a new functional model from a `DependencyGraph`: the one engine behind
`kprune.remove_filters` (channels left out), `flatten_model` (nested sub-models
inlined) and `for_inference` (training-only augmentation left out).

Every new layer has its original's class, name and config (resized by its
handler), and its weights sliced from the original's; the original model is
never modified.
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from kprune import keras_internals
from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.graph.dependency import DependencyGraph, analyze, part_name


def flatten_model(model: keras.Model, graph: DependencyGraph | None = None) -> keras.Model:
    """A flat functional copy of ``model``: nested sub-models inlined, the same
    layer names, weights and ``trainable`` flags (``model`` itself when it has
    no sub-models). ``model`` is not modified."""
    graph = graph or analyze(model, unsupported="freeze")
    if not graph.flat.nested:
        return model
    return rebuild(graph, keep_masks(graph, np.zeros(len(graph.roots), dtype=bool)))


# Augmentation layers that do nothing at inference ("at inference time, the layer
# does nothing") yet leave random ops (not in TFLite's builtins) in an exported graph.
TRAINING_ONLY = tuple(
    getattr(keras.layers, name)
    for name in (
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomZoom",
        "RandomContrast",
        "RandomBrightness",
        "RandomShear",
        "RandomHue",
        "RandomSaturation",
        "RandomColorJitter",
        "RandomColorDegeneration",
        "RandomSharpness",
        "RandomGrayscale",
        "RandomPosterization",
        "RandomInvert",
        "RandomErasing",
        "RandomGaussianBlur",
        "RandomPerspective",
        "RandomElasticTransform",
        "AugMix",
        "RandAugment",
        "MixUp",
        "CutMix",
    )
    if hasattr(keras.layers, name)
)


def for_inference(model: keras.Model) -> keras.Model:
    """``model`` without its training-only augmentation layers (`TRAINING_ONLY`),
    as exported files run it; ``model`` itself when it has none."""
    try:
        graph = analyze(model, unsupported="freeze")
    except UnsupportedModelError:  # e.g. subclassed: exported as it is
        return model
    if not any(isinstance(call.layer, TRAINING_ONLY) for call in graph.flat.calls):
        return model
    keep = keep_masks(graph, np.zeros(len(graph.roots), dtype=bool))
    return rebuild(graph, keep, skip=TRAINING_ONLY)


def keep_masks(graph: DependencyGraph, removed_roots: np.ndarray) -> dict[int | str, np.ndarray | None]:
    """Canonical tensor id → boolean mask of the channels it keeps (None: all); and
    for the channels inside layers (`DependencyGraph.parts`), part name → mask."""
    masks: dict[int | str, np.ndarray | None] = {}
    for tensor_id, ids in graph.tensor_ids.items():
        masks[tensor_id] = None if ids is None else ~removed_roots[graph.roots[ids]]
    for name, ids in graph.parts().items():
        masks[name] = ~removed_roots[graph.roots[ids]]
    return masks


def rebuild(
    graph: DependencyGraph, keep: dict[int, np.ndarray | None], skip: tuple[type, ...] = ()
) -> keras.Model:
    """A new functional model of ``graph``'s flat calls: each tensor keeps the channels
    of its mask in ``keep`` (`keep_masks`), weights sliced by the layers' handlers;
    layers of the ``skip`` classes with one input and one output are left out."""
    flat = graph.flat
    values: dict[int, keras.KerasTensor] = {}  # canonical id → new tensor
    new_inputs = []
    for tensor in flat.inputs:
        layer, _, _ = keras_internals.producer(tensor)
        new_input = keras.Input(
            shape=tensor.shape[1:],
            batch_size=tensor.shape[0],
            dtype=tensor.dtype,
            name=layer.name,
        )
        values[id(tensor)] = new_input
        new_inputs.append(new_input)

    new_layers: dict[str, keras.Operation] = {}
    for call in flat.calls:
        if skip and isinstance(call.layer, skip) and len(call.inputs) == len(call.outputs) == 1:
            values[call.outputs[0]] = values[call.inputs[0]]  # the layer is left out
            continue
        arguments = {id(t): values[flat.canonical(id(t))] for t in call.node.input_tensors}
        args, kwargs = keras_internals.substituted_arguments(call.node, arguments)
        if call.name not in new_layers:
            new_layers[call.name] = _new_layer(graph, call, keep)
        layer = new_layers[call.name]
        outputs = keras.tree.flatten(layer(*args, **kwargs))
        for tensor_id, output in zip(call.outputs, outputs):
            values[tensor_id] = output
        _set_weights(graph, call, layer, keep)
        _restore_initializers(call.layer, layer)

    outputs = [values[tensor_id] for tensor_id in flat.outputs]
    return keras.Model(
        keras_internals.packed_like(graph.model, "inputs", new_inputs),
        keras_internals.packed_like(graph.model, "outputs", outputs),
        name=graph.model.name,
    )


def _masks_of(call, keep) -> tuple[np.ndarray | None, np.ndarray | None]:
    in_keep = keep.get(call.inputs[0]) if call.inputs else None
    out_keep = keep.get(call.outputs[0]) if call.outputs else None
    return in_keep, out_keep


def _part_masks(call, handler, keep) -> dict[str, np.ndarray]:
    """Part → mask of the channels inside the layer it keeps (`LayerHandler.parts`)."""
    masks = {part: keep.get(part_name(call.name, part)) for part in handler.parts}
    return {part: mask for part, mask in masks.items() if mask is not None}


def _new_layer(graph: DependencyGraph, call, keep) -> keras.Operation:
    layer = call.layer
    handler = graph.handlers[call.name]
    _, out_keep = _masks_of(call, keep)
    if not isinstance(layer, keras.layers.Layer):
        # A stateless keras.ops operation: reused, unless its arguments count the
        # channels (`ops.reshape(x, (-1, 1, 1, c))`).
        if out_keep is None:
            return layer
        config = layer.get_config()
        resized = handler.slice_config(layer, config, out_keep)
        return layer if resized == config else type(layer).from_config(resized)
    config = layer.get_config()
    config["name"] = call.name
    if out_keep is not None:
        config = handler.slice_config(layer, config, out_keep)
    part_keep = _part_masks(call, handler, keep)
    if part_keep:
        config = handler.slice_part_config(layer, config, part_keep)
    return type(layer).from_config(_zeros_initializers(layer, config))


# Every weight of a rebuilt layer is overwritten right after its build, so it is
# built with Zeros: drawing random initial values costs seconds on big models.
_ZEROS = keras.initializers.serialize(keras.initializers.Zeros())


def _initializer_keys(layer) -> list[str]:
    """Config keys of the initializers that ``layer`` keeps as attributes of the same name."""
    config = layer.get_config()
    return [
        key
        for key in config
        if key.endswith("_initializer")
        and isinstance(getattr(layer, key, None), keras.initializers.Initializer)
    ]


def _zeros_initializers(layer, config: dict) -> dict:
    return {**config, **{key: _ZEROS for key in _initializer_keys(layer) if key in config}}


def _restore_initializers(original, new_layer) -> None:
    """The original's initializers back on the rebuilt layer (its config and a re-init use them)."""
    if isinstance(original, keras.layers.Layer):
        for key in _initializer_keys(original):
            setattr(new_layer, key, copy.deepcopy(getattr(original, key)))


def _set_weights(graph: DependencyGraph, call, new_layer, keep) -> None:
    layer = call.layer
    if not isinstance(layer, keras.layers.Layer) or not layer.weights:
        return
    handler = graph.handlers[call.name]
    keys = _weight_keys(layer, set(handler.weight_axes(layer)))
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError(
            f"Layer {call.name!r} has weights with repeated names {keys}; kprune "
            "cannot tell them apart. Fix: give its weights distinct names."
        )
    in_keep, out_keep = _masks_of(call, keep)
    sliced = handler.slice_weights(layer, dict(zip(keys, layer.get_weights())), in_keep, out_keep)
    part_keep = _part_masks(call, handler, keep)
    if part_keep:
        sliced = handler.slice_part_weights(layer, sliced, part_keep)
    # Same class and config: the new layer lists its weights in the same order.
    new_layer.set_weights([sliced[key] for key in keys])
    if hasattr(new_layer, "finalize_state"):  # Normalization derives its statistics here
        new_layer.finalize_state()  # (Keras' own weight loaders call it too)


def _weight_keys(layer, known: set[str]) -> list[str]:
    """A name per weight: the one its handler knows (variable or attribute name); for
    weights of sub-layers whose names repeat (MultiHeadAttention's four ``kernel``s),
    the path inside the layer (``query/kernel``)."""
    attributes = {id(v): a.lstrip("_") for a, v in vars(layer).items() if hasattr(v, "path")}
    names = [weight.name for weight in layer.weights]
    keys = []
    for weight in layer.weights:
        attribute = attributes.get(id(weight))
        if weight.name not in known and attribute in known:
            keys.append(attribute)
        elif names.count(weight.name) > 1 and weight.path.startswith(layer.path + "/"):
            keys.append(weight.path.removeprefix(layer.path + "/"))
        else:
            keys.append(weight.name)
    return keys
