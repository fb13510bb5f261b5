"""A Keras model → its calls in topological order, nested models inlined.

Keras' private graph structures (a tensor's producing call, an operation's
call nodes, a node's arguments) are read through `kprune.keras_internals`.

Nested functional or Sequential sub-models are flattened: their layers become
calls of the outer graph, so that channels flow through them like through any
layer, and the pruned model comes back as one flat functional model. A nested
layer keeps its name unless the outer model already has a layer of that name;
then it is renamed ``<submodel>_<layer>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import keras

from kprune import keras_internals
from kprune.errors import UnsupportedModelError


@dataclass
class Call:
    """One call of one layer (or Keras operation) in the flattened graph.

    Attributes:
        layer: The Keras layer or operation that is called.
        name: Its unique name in the flattened graph.
        node: The Keras node recording the call (arguments, outputs).
        inputs: Canonical ids of the input tensors, in argument order.
        outputs: Canonical ids of the output tensors.
    """

    layer: keras.Operation
    name: str
    node: object
    inputs: list[int]
    outputs: list[int]

    def constant_arguments(self) -> list:
        """The call's arguments that hold no graph tensor (``6.0`` in ``ops.clip(x, 0.0, 6.0)``)."""
        args, kwargs = keras_internals.call_arguments(self.node)
        values = [*args, *kwargs.values()]
        return [
            value
            for value in values
            if not any(isinstance(t, keras.KerasTensor) for t in keras.tree.flatten(value))
        ]


@dataclass
class FlatGraph:
    """The calls of a model, inputs first, each after the calls it depends on."""

    calls: list[Call]
    inputs: list[keras.KerasTensor]
    outputs: list[int]  # canonical ids of the model outputs
    tensors: dict[int, keras.KerasTensor]  # canonical id → tensor
    aliases: dict[int, int] = field(default_factory=dict)  # id → canonical id
    nested: bool = False  # whether sub-models were inlined

    def canonical(self, tensor_id: int) -> int:
        while tensor_id in self.aliases:
            tensor_id = self.aliases[tensor_id]
        return tensor_id

    def producer_call(self) -> dict[int, Call]:
        """Canonical tensor id → the call that outputs it."""
        return {output: call for call in self.calls for output in call.outputs}

    @cached_property
    def calls_by_name(self) -> dict[str, Call]:
        """Call name → its first call (a shared layer is called under one name)."""
        named: dict[str, Call] = {}
        for call in self.calls:
            named.setdefault(call.name, call)
        return named

    @cached_property
    def consumers(self) -> dict[int, list[Call]]:
        """Canonical tensor id → the calls that take it as an input."""
        consumers: dict[int, list[Call]] = {}
        for call in self.calls:
            for tensor_id in call.inputs:
                consumers.setdefault(tensor_id, []).append(call)
        return consumers


def flatten(model: keras.Model) -> FlatGraph:
    """Lists the calls of a functional or Sequential model in topological order.

    Raises:
        UnsupportedModelError: For subclassed or unbuilt models, or a nested
            model that is called more than once.
    """
    _check_functional(model)
    graph = FlatGraph(calls=[], inputs=list(model.inputs), outputs=[], tensors={})
    taken_names = {layer.name for layer in model.layers}
    inlined: set[int] = set()
    done: set[int] = set()

    def visit_model(inner: keras.Model, prefix: str | None) -> list[int]:
        for tensor in inner.inputs:
            graph.tensors.setdefault(graph.canonical(id(tensor)), tensor)
        stack = [(tensor, False) for tensor in reversed(inner.outputs)]
        while stack:
            tensor, expanded = stack.pop()
            operation, node = keras_internals.producing_call(tensor)
            if id(node) in done or node.is_input:
                continue
            if not expanded:
                stack.append((tensor, True))
                stack.extend((t, False) for t in reversed(node.input_tensors))
                continue
            done.add(id(node))
            if isinstance(operation, keras.Model):
                inline(operation, node)
            else:
                graph.calls.append(make_call(operation, node, prefix))
        return [graph.canonical(id(t)) for t in inner.outputs]

    def inline(inner: keras.Model, node) -> None:
        _check_functional(inner)
        if id(inner) in inlined:
            raise UnsupportedModelError(
                f"Nested model {inner.name!r} is called more than once; kprune cannot "
                "flatten shared sub-models. Fix: build the model without reusing it."
            )
        inlined.add(id(inner))
        graph.nested = True
        for inner_input, outer_input in zip(inner.inputs, node.input_tensors):
            graph.aliases[id(inner_input)] = graph.canonical(id(outer_input))
        inner_outputs = visit_model(inner, inner.name)
        for outer_output, inner_output in zip(node.outputs, inner_outputs):
            graph.aliases[id(outer_output)] = inner_output

    def make_call(operation, node, prefix: str | None) -> Call:
        name = operation.name
        if prefix is not None and name in taken_names:
            name = f"{prefix}_{name}"
        taken_names.add(name)
        for tensor in node.outputs:
            graph.tensors[id(tensor)] = tensor
        return Call(
            layer=operation,
            name=name,
            node=node,
            inputs=[graph.canonical(id(t)) for t in node.input_tensors],
            outputs=[id(t) for t in node.outputs],
        )

    graph.outputs = visit_model(model, None)
    # A shared layer appears once per call; its calls keep the layer's one name.
    return graph


def _check_functional(model) -> None:
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(f"Expected a keras.Model. Received {type(model).__name__}.")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not keras_internals.is_graph_model(model) or not inputs:
        detail = "an unbuilt Sequential" if isinstance(model, keras.Sequential) else "subclassed"
        raise UnsupportedModelError(
            f"Model {model.name!r} is {detail}: kprune needs a functional or built "
            "Sequential model whose graph it can read. Fix: build it with keras.Input "
            "(e.g. keras.Sequential([keras.Input(shape), ...]) or keras.Model(inputs, outputs))."
        )
