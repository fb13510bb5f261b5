"""The one door to Keras' private parts: every use of ``keras.src``, a tensor's
``_keras_history``, an operation's ``_inbound_nodes``, a node's ``arguments``,
a model's ``_functional``/``_nodes_by_depth``/``_inputs_struct``/
``_outputs_struct`` and ``_compile_config`` goes through this module, and
`tests/test_architecture.py` fails on any other.

Keras is pinned below 3.16 (pyproject.toml). An upgrade that moves one of these
is mended here, in one file; the rest of kprune asks these functions.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import keras
from keras.src import activations as _activations
from keras.src.ops import core as _core
from keras.src.ops import math as _math
from keras.src.ops import nn as _nn
from keras.src.ops import numpy as _numpy
from keras.src.trainers import data_adapters as _data_adapters

# --- modules ------------------------------------------------------------------
# The modules whose classes are Keras' own operations (`ops.add` builds an
# ``Add`` from keras.src.ops.numpy), for the graph's handler table.
OPS_MODULES: dict[str, ModuleType] = {
    "activations": _activations,
    "core": _core,
    "math": _math,
    "nn": _nn,
    "numpy": _numpy,
}
# The adapters ``model.fit`` uses to turn arrays, PyDatasets and generators into batches.
data_adapters: ModuleType = _data_adapters


def application_layers() -> dict[str, type]:
    """The custom layers of ``keras.applications`` models that are not in keras.layers."""
    from keras.src.applications.convnext import LayerScale
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    return {"LayerScale": LayerScale, "CustomScaleLayer": CustomScaleLayer}


def public_class_path(cls: type) -> str:
    """``keras.layers.Conv2D`` for the class that lives in ``keras.src.layers…``."""
    return f"{cls.__module__.replace('keras.src.', 'keras.')}.{cls.__name__}"


# --- the functional graph -----------------------------------------------------
def producer(tensor: keras.KerasTensor) -> tuple[Any, int, int]:
    """(operation, node index, output index) of the call that made ``tensor``."""
    operation, node_index, tensor_index = tensor._keras_history
    return operation, node_index, tensor_index


def producing_call(tensor: keras.KerasTensor) -> tuple[Any, Any]:
    """(operation, call node) that made ``tensor`` (an input's node for a model input)."""
    operation, node_index, _ = producer(tensor)
    return operation, operation._inbound_nodes[node_index]


def inbound_nodes(operation) -> list:
    """Every call node of ``operation`` (a layer or a keras.ops operation)."""
    return list(getattr(operation, "_inbound_nodes", []))


def call_arguments(node) -> tuple[tuple, dict]:
    """The positional and keyword arguments a call node was called with."""
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def substituted_arguments(node, values: dict[int, Any]) -> tuple[list, dict]:
    """The node's call arguments with each graph tensor replaced by ``values[id(tensor)]``."""
    return node.arguments.fill_in(values)


def graph_nodes(model: keras.Model) -> list | None:
    """The call nodes of ``model``'s graph; None for a subclassed model."""
    graph = getattr(model, "_functional", None) or model  # a Sequential keeps its graph there
    nodes_by_depth = getattr(graph, "_nodes_by_depth", None)
    if nodes_by_depth is None:
        return None
    return [node for nodes in nodes_by_depth.values() for node in nodes]


def is_graph_model(model: keras.Model) -> bool:
    """Whether ``model`` is functional (or a Sequential): a graph kprune can read."""
    return (
        isinstance(model, keras.Sequential)
        or type(model).__name__ == "Functional"
        or hasattr(model, "_nodes_by_depth")
    )


def packed_like(model: keras.Model, which: str, tensors: list):
    """``tensors`` in ``model``'s own input or output structure (``which``: "inputs"
    or "outputs"): one tensor, a list, or a dict by name."""
    functional = getattr(model, "_functional", model)  # a Sequential wraps a functional
    structure = getattr(functional, f"_{which}_struct", None)
    if structure is None:
        return tensors[0] if len(tensors) == 1 else tensors
    return keras.tree.pack_sequence_as(structure, tensors)


# --- compile state ------------------------------------------------------------
def compile_arguments(model: keras.Model) -> dict:
    """The arguments ``model.compile`` was given ({} if none): loss, metrics, optimizer…"""
    return getattr(getattr(model, "_compile_config", None), "config", None) or {}


# --- attention ----------------------------------------------------------------
def attention_arguments(node) -> dict[str, Any]:
    """A MultiHeadAttention call's ``query``, ``value``, ``key``, ``attention_mask``
    and ``use_causal_mask``, whether given by position or by keyword."""
    args, kwargs = call_arguments(node)
    names = ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask")
    given = {**dict(zip(names, args)), **kwargs}
    return {
        "query": given["query"],
        "value": given["value"],
        "key": given.get("key"),
        "attention_mask": given.get("attention_mask"),
        "use_causal_mask": bool(given.get("use_causal_mask", False)),
    }


def attention_heads(layer, query, value, key=None, attention_mask=None, use_causal_mask=False):
    """What each head of a MultiHeadAttention ``layer`` gives its output projection:
    shape (batch, query positions…, heads, value_dim), in inference mode. Mirrors
    ``MultiHeadAttention.call`` (Keras 3.15) up to ``_output_dense``."""
    key = value if key is None else key
    mask = layer._compute_attention_mask(
        query, value, attention_mask=attention_mask, use_causal_mask=use_causal_mask
    )
    heads, _ = layer._compute_attention(
        layer._query_dense(query), layer._key_dense(key), layer._value_dense(value), mask, False
    )
    if layer._use_gate:
        heads = keras.ops.multiply(heads, layer._gate_dense(query))
    return heads
