"""Reading and writing models: .keras files or registered builder names."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from kprune import baselines
from kprune.errors import InvalidArgumentError, ModelFileError
from kprune.files import replaced_atomically
from kprune.models import build


def resolve_model_path(source: str | os.PathLike) -> str:
    """The file ``source`` names: itself, or the packaged copy of a shipped model.

    ``models/squeezenet1_1_fmnist_sgd.keras`` (the default of `kprune prune`)
    is a file of that name in the working folder when there is one, else the
    baseline shipped inside the package (kprune/baselines/), so that the name
    works from any folder and from a wheel install. Anything else, model
    names included, comes back as given.

    Example:
        >>> resolve_model_path("models/squeezenet1_1_fmnist_sgd.keras")  # from /tmp
        '/…/site-packages/kprune/baselines/squeezenet1_1_fmnist_sgd.keras'
    """
    if Path(source).exists():
        return str(source)
    packaged = baselines.packaged_path(source)
    return str(packaged) if packaged is not None else str(source)


def load_model(
    source: str | os.PathLike | keras.Model,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """A model from a ``.keras`` file, a registered name, or a model itself.

    Args:
        source: Path of a ``.keras`` file (``models/NAME.keras`` also finds
            the shipped baseline, see `resolve_model_path`), a name from
            ``kprune.models.available()``, or a ``keras.Model``.
        input_shape: Needed to build a model by name.
        num_classes: Needed to build a model by name.

    Raises:
        ModelFileError: If the file is missing, not a .keras file, or corrupt.
        InvalidArgumentError: If the name is unknown.
    """
    if isinstance(source, keras.Model):
        return source
    text = resolve_model_path(source)
    path = Path(text)
    if path.suffix in (".keras", ".h5") or path.exists():
        if not path.exists():
            raise ModelFileError(
                f"Model file {path} does not exist. Fix: check the path, or write "
                "one with `kprune train --out PATH.keras`."
            )
        if path.suffix != ".keras" or not path.is_file():
            raise ModelFileError(
                f"{path} is not a .keras file. Fix: save the model with "
                "model.save('model.keras') (Keras 3 format)."
            )
        try:
            return keras.models.load_model(path)  # compiled as saved: its loss and metrics count
        except Exception as error:  # Keras raises many types for a bad archive
            raise ModelFileError(
                f"Cannot load {path}: {type(error).__name__}: {_first_line(error)}. "
                "Fix: check that it is a complete Keras 3 .keras file."
            ) from error
    if input_shape is None or num_classes is None:
        raise InvalidArgumentError(f"Building model {text!r} by name needs input_shape and num_classes.")
    return build(text, input_shape, num_classes)


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves ``model`` to ``path`` atomically: a killed save leaves no half file.

    The file holds the architecture and weights only: a compiled model is
    saved without its optimizer state and loss, so that it stays small and
    loads with plain ``keras.models.load_model``.

    Raises:
        InvalidArgumentError: If the path does not end in ``.keras``.
        FileWriteError: If the disk is full or the folder not writable.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise InvalidArgumentError(
            f"`path` must end in .keras (Keras 3 format). Received path={str(path)!r}."
        )
    weight_bytes = sum(math.prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights)
    with replaced_atomically(path, expected_bytes=weight_bytes) as temporary:
        _without_training_state(model).save(temporary)
    return path


def _without_training_state(model: keras.Model) -> keras.Model:
    if not model.compiled:
        return model
    try:  # the same layers and weights in an uncompiled graph; nothing is copied
        if isinstance(model, keras.Sequential):  # one input and output, as flat lists
            inputs, outputs = model.inputs[0], model.outputs[0]
        else:
            inputs, outputs = model.input, model.output
        return keras.Model(inputs, outputs, name=model.name)
    except (AttributeError, IndexError, TypeError, ValueError):  # subclassed: save as is
        return model


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"
