"""The user's data as examples for a model's inputs, for int8 calibration and verification.

Whatever form the data comes in, the result is one array per model input, in
the order of ``model.inputs``, with the batch first. Accepted forms follow
Keras' ``fit``:

- an array: the examples of a model with one input;
- a list of arrays: one per input, in the model's order;
- a dict of arrays: one per input, keyed by the Keras input names;
- a tuple ``(x, y)`` or ``(x, y, sample_weight)``: ``x`` in any form above,
  ``y`` the labels (used for accuracy when they are one integer per example);
- a ``tf.data.Dataset`` whose elements are ``x`` or ``(x, y, ...)``, batched
  or not, or a `kprune.data.Split`;
- the path of an ``.npz`` file (``numpy.savez``): arrays keyed by input name
  (or one array ``x`` for one input), and optionally the labels ``y``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kprune.data import Split
from kprune.errors import InvalidArgumentError
from kprune.export.artifact import ModelTensors


def collect_inputs(
    data: Any, tensors: ModelTensors, samples: int, argument: str = "data"
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The first ``samples`` examples of ``data``: one array per model input, and labels.

    Args:
        data: See the module docstring.
        tensors: The model's inputs (`model_tensors`).
        samples: How many examples to take.
        argument: The argument's name, for messages.

    Returns:
        ``(inputs, labels)``: arrays in the model's input order, each with the
        model's dtype and shape; labels as int64, or None when ``data`` has none
        (or they are not one integer per example).

    Raises:
        InvalidArgumentError: If ``data`` is empty, of another type, or does
            not fit the model's inputs (the message names the input).
    """
    columns: list[list[np.ndarray]] = [[] for _ in tensors.inputs]
    label_parts: list[np.ndarray] | None = []
    count = 0
    for x, y in _elements(data, argument):
        arrays = _per_input(x, tensors, argument)
        for column, array in zip(columns, arrays):
            column.append(array)
        labels_here = _labels(y, len(arrays[0]))
        if labels_here is None or label_parts is None:
            label_parts = None
        else:
            label_parts.append(labels_here)
        count += len(arrays[0])
        if count >= samples:
            break
    if count == 0:
        raise InvalidArgumentError(f"`{argument}` holds no examples.")
    inputs = [np.concatenate(column)[:samples] for column in columns]
    labels = None
    if label_parts:
        stacked = np.concatenate(label_parts)[:samples]
        if np.issubdtype(stacked.dtype, np.integer) or np.all(stacked == np.round(stacked)):
            labels = stacked.astype(np.int64)
    return inputs, labels


def _labels(y: Any, count: int) -> np.ndarray | None:
    """One integer class per example, or None (no labels, or not class labels)."""
    if y is None or isinstance(y, dict):
        return None
    try:
        values = np.asarray(y)
    except ValueError:  # a ragged list: labels of several outputs
        return None
    if values.shape not in ((count,), (count, 1)) or not np.issubdtype(values.dtype, np.number):
        return None
    return values.reshape(count)


def _elements(data: Any, argument: str) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` pairs (y may be None) of the data, a batch or one example each."""
    import tensorflow as tf

    if isinstance(data, (str, os.PathLike)):
        data = _read_npz(Path(data), argument)
    if isinstance(data, Split):
        data = data.dataset
    if isinstance(data, tf.data.Dataset):
        for element in data:
            yield _split_labels(tf.nest.map_structure(lambda t: t.numpy(), element))
        return
    if isinstance(data, (np.ndarray, list, dict, tuple)) or tf.is_tensor(data):
        yield _split_labels(data)
        return
    raise InvalidArgumentError(
        f"`{argument}` must be an array, a list or dict of arrays (one per model input), "
        "an (x, y) tuple, a tf.data.Dataset, a kprune.data.Split or an .npz file. "
        f"Received {type(data).__name__}."
    )


def _read_npz(path: Path, argument: str) -> tuple[Any, Any]:
    if path.suffix != ".npz" or not path.is_file():
        raise InvalidArgumentError(
            f"`{argument}` must name an existing .npz file. Received {argument}={str(path)!r}. "
            "Fix: numpy.savez(path, **{input_name: array, ..., 'y': labels})."
        )
    with np.load(path, allow_pickle=False) as arrays:
        values = {name: arrays[name] for name in arrays.files}
    labels = values.pop("y", None)
    x = values.pop("x") if list(values) == ["x"] else values
    return x, labels


def _split_labels(element: Any) -> tuple[Any, Any]:
    # Keras' convention: a tuple is (x, y) or (x, y, sample_weight); lists and dicts are x.
    if isinstance(element, tuple) and len(element) in (2, 3):
        return element[0], element[1]
    if isinstance(element, tuple) and len(element) == 1:
        return element[0], None
    return element, None


def _per_input(x: Any, tensors: ModelTensors, argument: str) -> list[np.ndarray]:
    names = tensors.input_names
    if isinstance(x, dict):
        missing = [name for name in names if name not in x]
        if missing:
            raise InvalidArgumentError(
                f"`{argument}` has no values for input(s) {missing}; it has keys "
                f"{sorted(map(str, x))}. Fix: key the arrays by the model's input names {names}."
            )
        parts = [x[name] for name in names]
    elif isinstance(x, (list, tuple)):
        parts = list(x)
    else:
        parts = [x]
    if len(parts) != len(names):
        raise InvalidArgumentError(
            f"`{argument}` gives {len(parts)} input array(s), the model takes {len(names)} "
            f"({', '.join(names)}). Fix: pass a list in that order or a dict keyed by name."
        )
    return [_fit(np.asarray(part), tensor, argument) for part, tensor in zip(parts, tensors.inputs)]


def _fit(array: np.ndarray, tensor, argument: str) -> np.ndarray:
    expected = tuple(tensor.shape[1:])
    if array.ndim == len(expected):  # one example, not a batch
        array = array[np.newaxis]
    if tuple(array.shape[1:]) != expected:
        raise InvalidArgumentError(
            f"`{argument}` gives input {tensor.name!r} examples of shape "
            f"{tuple(array.shape[1:])}, the model expects {expected}. Fix: pass data "
            "shaped like the model's input (the input_shape the dataset is loaded with)."
        )
    return array.astype(tensor.dtype, copy=False)
