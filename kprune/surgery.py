"""`remove_filters()`: a new, smaller functional model; the only place that builds one.

Removing channel k of a producer removes group channel k of its whole group
(coupled producers, e.g. the branches of an Add, lose the same channel), the
matching positions of every channel-wise layer it passes (BatchNorm, PReLU,
DepthwiseConv, …), and the matching input rows of every consumer (Conv,
Dense — through Concatenate offsets and Flatten expansion). The original model
is never modified; the result has the same inputs, outputs and layer names
and loads with plain ``keras.models.load_model``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import keras
import numpy as np

from kprune.errors import InvalidArgumentError, UnsupportedModelError
from kprune.files import write_atomically
from kprune.graph import DependencyGraph, analyze

HISTORY_FORMAT = "kprune.history/1"


@dataclass
class PruningHistory:
    """What was removed, step by step, as JSON-serialisable data.

    Each step maps producer names to the channel indices removed, numbered as
    in the model *before* that step. `replay()` re-applies the steps.
    """

    steps: list[dict[str, list[int]]] = field(default_factory=list)
    model_name: str | None = None

    def append(self, removed: Mapping[str, Iterable[int]]) -> None:
        self.steps.append({name: sorted(int(i) for i in idx) for name, idx in removed.items()})

    def to_dict(self) -> dict:
        return {"format": HISTORY_FORMAT, "model": self.model_name, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: Mapping) -> PruningHistory:
        if data.get("format") != HISTORY_FORMAT:
            raise InvalidArgumentError(
                f"Not a kprune pruning history (format {data.get('format')!r}, "
                f"expected {HISTORY_FORMAT!r})."
            )
        return cls(steps=[dict(step) for step in data["steps"]], model_name=data.get("model"))

    def save(self, path: str | Path) -> None:
        write_atomically(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> PruningHistory:
        return cls.from_dict(json.loads(Path(path).read_text()))


def remove_filters(
    model: keras.Model,
    filters: Mapping[str, Iterable[int]],
    *,
    graph: DependencyGraph | None = None,
    history: PruningHistory | None = None,
    unsupported: str = "error",
) -> keras.Model:
    """Returns a copy of ``model`` without the given output channels.

    Args:
        model: A functional or Sequential model (nested models are flattened
            into the result). It is not modified.
        filters: Producer layer name → indices of its output channels to
            remove. Coupled producers (one group) lose the same channels;
            naming any member of a group is enough.
        graph: ``analyze(model)``, if already computed.
        history: A `PruningHistory` to append this step to.
        unsupported: Passed to `analyze()` when ``graph`` is not given.

    Returns:
        A new functional ``keras.Model`` with sliced weights.

    Raises:
        InvalidArgumentError: Unknown or non-prunable layer (the prunable ones
            are listed), index out of range, duplicate index, or a removal that
            leaves a layer without channels.
        UnsupportedModelError: See `analyze()`.

    Example:
        >>> pruned = remove_filters(model, {"fire2_squeeze1x1": [0, 5]})
    """
    graph = graph or analyze(model, unsupported=unsupported)
    removed_roots = _removed_roots(graph, filters)
    keep = _keep_masks(graph, removed_roots)
    pruned = _rebuild(graph, keep)
    if history is not None:
        history.model_name = history.model_name or model.name
        history.append(filters)
    return pruned


def flatten_model(model: keras.Model, graph: DependencyGraph | None = None) -> keras.Model:
    """A flat functional copy of ``model``: nested sub-models inlined, the same
    layer names, weights and ``trainable`` flags (``model`` itself when it has
    no sub-models). ``model`` is not modified."""
    graph = graph or analyze(model, unsupported="freeze")
    if not graph.flat.nested:
        return model
    return _rebuild(graph, _keep_masks(graph, np.zeros(len(graph.roots), dtype=bool)))


# Augmentation layers that do nothing at inference ("at inference time, the layer
# does nothing") yet leave random ops (not in TFLite's builtins) in an exported graph.
TRAINING_ONLY = tuple(getattr(keras.layers, name) for name in (
    "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast",
    "RandomBrightness", "RandomShear", "RandomHue", "RandomSaturation", "RandomColorJitter",
    "RandomColorDegeneration", "RandomSharpness", "RandomGrayscale", "RandomPosterization",
    "RandomInvert", "RandomErasing", "RandomGaussianBlur", "RandomPerspective",
    "RandomElasticTransform", "AugMix", "RandAugment", "MixUp", "CutMix",
) if hasattr(keras.layers, name))  # fmt: skip


def for_inference(model: keras.Model) -> keras.Model:
    """``model`` without its training-only augmentation layers (`TRAINING_ONLY`),
    as exported files run it; ``model`` itself when it has none."""
    try:
        graph = analyze(model, unsupported="freeze")
    except UnsupportedModelError:  # e.g. subclassed: exported as it is
        return model
    if not any(isinstance(call.layer, TRAINING_ONLY) for call in graph.flat.calls):
        return model
    keep = _keep_masks(graph, np.zeros(len(graph.roots), dtype=bool))
    return _rebuild(graph, keep, skip=TRAINING_ONLY)


def replay(model: keras.Model, history: PruningHistory | Mapping) -> keras.Model:
    """Re-applies every step of ``history`` to ``model``; ``model`` is not modified.

    Given the model that the history started from, the result equals the
    pruned model (architecture and weights) before any fine-tuning.
    """
    if not isinstance(history, PruningHistory):
        history = PruningHistory.from_dict(history)
    for step in history.steps:
        model = remove_filters(model, step)
    return model


def _removed_roots(graph: DependencyGraph, filters: Mapping[str, Iterable[int]]) -> np.ndarray:
    """Validates the request completely, then returns the root ids to remove."""
    if not isinstance(filters, Mapping):
        raise InvalidArgumentError(
            f"`filters` must map layer names to channel indices. Received {type(filters).__name__}."
        )
    removed = np.zeros(len(graph.roots), dtype=bool)
    for layer, indices in filters.items():
        group = graph.group_of(layer)
        if not group.prunable:
            raise InvalidArgumentError(
                f"Layer {layer!r} cannot be pruned: its channels reach "
                f"{'; '.join(group.frozen_by)}. Prunable layers: "
                f"{', '.join(graph.prunable_layers()) or 'none'}."
            )
        indices = _checked_indices(layer, indices, len(group.producers[layer]))
        removed[graph.roots[graph.producer_ids(layer)[indices]]] = True
    for group in graph.groups:
        for name in group.producers:
            kept = ~removed[graph.roots[graph.producer_ids(name)]]
            if not kept.any():
                raise InvalidArgumentError(
                    f"Removing these channels would leave layer {name!r} (group "
                    f"{group.index}, {group.channels} channels) with none. Keep at least one."
                )
    return removed


def _checked_indices(layer: str, indices: Iterable[int], size: int) -> np.ndarray:
    values = np.asarray(list(indices))
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise InvalidArgumentError(
            f"Channel indices of {layer!r} must be integers. Received {values.tolist()}."
        )
    values = values.astype(np.int64)
    bad = values[(values < 0) | (values >= size)]
    if bad.size:
        raise InvalidArgumentError(
            f"Channel index {int(bad[0])} of {layer!r} is out of range: the layer has "
            f"{size} output channels (0..{size - 1})."
        )
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise InvalidArgumentError(
            f"Channel index {int(unique[counts > 1][0])} of {layer!r} is listed twice."
        )
    return values


def _keep_masks(graph: DependencyGraph, removed_roots: np.ndarray) -> dict[int, np.ndarray | None]:
    """Canonical tensor id → boolean mask of the channels it keeps (None: all)."""
    masks = {}
    for tensor_id, ids in graph.tensor_ids.items():
        masks[tensor_id] = None if ids is None else ~removed_roots[graph.roots[ids]]
    return masks


def _rebuild(
    graph: DependencyGraph, keep: dict[int, np.ndarray | None], skip: tuple[type, ...] = ()
) -> keras.Model:
    flat = graph.flat
    values: dict[int, keras.KerasTensor] = {}  # canonical id → new tensor
    new_inputs = []
    for tensor in flat.inputs:
        layer = tensor._keras_history.operation
        new_input = keras.Input(
            shape=tensor.shape[1:], batch_size=tensor.shape[0], dtype=tensor.dtype,
            name=layer.name,
        )  # fmt: skip
        values[id(tensor)] = new_input
        new_inputs.append(new_input)

    new_layers: dict[str, keras.Operation] = {}
    for call in flat.calls:
        if skip and isinstance(call.layer, skip) and len(call.inputs) == len(call.outputs) == 1:
            values[call.outputs[0]] = values[call.inputs[0]]  # the layer is left out
            continue
        arguments = {id(t): values[flat.canonical(id(t))] for t in call.node.input_tensors}
        args, kwargs = call.node.arguments.fill_in(arguments)
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
        _packed(graph.model, "_inputs_struct", new_inputs),
        _packed(graph.model, "_outputs_struct", outputs),
        name=graph.model.name,
    )


def _packed(model, attribute: str, tensors: list):
    """Tensors in the model's own input/output structure (single, list or dict)."""
    functional = getattr(model, "_functional", model)  # a Sequential wraps a functional
    structure = getattr(functional, attribute, None)
    if structure is None:
        return tensors[0] if len(tensors) == 1 else tensors
    return keras.tree.pack_sequence_as(structure, tensors)


def _masks_of(call, keep) -> tuple[np.ndarray | None, np.ndarray | None]:
    in_keep = keep.get(call.inputs[0]) if call.inputs else None
    out_keep = keep.get(call.outputs[0]) if call.outputs else None
    return in_keep, out_keep


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
    return type(layer).from_config(_zeros_initializers(layer, config))


# Every weight of a rebuilt layer is overwritten right after its build, so it is
# built with Zeros: drawing random initial values costs seconds on big models.
_ZEROS = keras.initializers.serialize(keras.initializers.Zeros())


def _initializer_keys(layer) -> list[str]:
    """Config keys of the initializers that ``layer`` keeps as attributes of the same name."""
    config = layer.get_config()
    return [
        key for key in config
        if key.endswith("_initializer")
        and isinstance(getattr(layer, key, None), keras.initializers.Initializer)
    ]  # fmt: skip


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
    # Same class and config: the new layer lists its weights in the same order.
    new_layer.set_weights([sliced[key] for key in keys])
    if hasattr(new_layer, "finalize_state"):  # Normalization derives its statistics here
        new_layer.finalize_state()  # (Keras' own weight loaders call it too)


def _weight_keys(layer, known: set[str]) -> list[str]:
    """A name per weight: the one its handler knows (variable or attribute name)."""
    attributes = {id(v): a.lstrip("_") for a, v in vars(layer).items() if hasattr(v, "path")}
    keys = []
    for weight in layer.weights:
        attribute = attributes.get(id(weight))
        keys.append(attribute if weight.name not in known and attribute in known else weight.name)
    return keys
