"""What a deployment needs besides the weights: task, preprocessing, classes, examples.

`bundle_task` says whether a bundle's model is a classifier or gives raw
outputs; `model_context` finds its preprocessing, class names and dataset
(from ``--preprocess``, the model card, the dataset); `bundle_examples` gives
the examples that calibrate and verify its files: the user's own, or a
named dataset's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from kprune.card import read_card
from kprune.data import Preprocessing, choose_preprocessing, dataset_info, load
from kprune.errors import InvalidArgumentError
from kprune.export.artifact import image_input_shape, model_tensors
from kprune.export.examples import collect_inputs

TASKS = ("classifier", "raw")


@dataclass(frozen=True)
class ModelContext:
    """What a deployment needs to know besides the weights.

    Attributes:
        preprocessing: ``Preprocessing.to_dict()`` of the model's input transform.
        class_names: One name per output class; empty for a raw-output model.
        dataset: Dataset name for calibration and verification, or None.
        card: The model card beside the ``.keras`` file, or None.
    """

    preprocessing: dict
    class_names: list[str]
    dataset: str | None
    card: dict | None


def bundle_task(network: keras.Model, task: str | None = None) -> str:
    """What a bundle of ``network`` is: ``"classifier"`` or ``"raw"`` (see `kprune.export.bundle`).

    Without ``task``: a classifier when the model has one output shaped
    (batch, classes) with at least two classes, else raw. A one-output
    regressor of shape (batch, K) needs ``task="raw"``.

    Raises:
        InvalidArgumentError: On an unknown task, or ``"classifier"`` for a
            model whose outputs are not one (batch, classes) tensor.
    """
    shapes = [tuple(tensor.shape) for tensor in network.outputs]
    classifier_shaped = len(shapes) == 1 and len(shapes[0]) == 2 and (shapes[0][1] or 0) >= 2
    if task is None:
        return "classifier" if classifier_shaped else "raw"
    if task not in TASKS:
        raise InvalidArgumentError(f"`task` must be one of {TASKS}. Received task={task!r}.")
    if task == "classifier" and not classifier_shaped:
        raise InvalidArgumentError(
            f"`task` is classifier, but model {network.name!r} has output shapes "
            f"{', '.join(map(str, shapes))}, not one (batch, classes). Fix: --task raw "
            "(task='raw'), whose run_bundle.py writes every output as .npy."
        )
    return task


def model_context(
    network: keras.Model,
    model_path: Path | None,
    dataset: str | None = None,
    data_dir: str | None = None,
    preprocess: str | Preprocessing | None = None,
    task: str = "classifier",
) -> ModelContext:
    """Preprocessing, classes and dataset of a model, for its deployment.

    Preprocessing follows `choose_preprocessing`: ``preprocess`` when given,
    else the model card's, else raw pixels (0..255, as Keras' loaders give).
    Classes and dataset come from the card, else from ``dataset``; a raw-output
    model (``task="raw"``) has no classes.

    Raises:
        InvalidArgumentError: If the preprocessing does not fit the model, is
            ``dataset`` without a dataset, or the classes do not match the
            model's outputs.
    """
    card = read_card(model_path) if model_path is not None else None
    dataset = dataset or (card or {}).get("dataset")
    input_shape = image_input_shape(network, any_outputs=task == "raw")
    chosen = choose_preprocessing(preprocess, model_path, input_shape)
    class_names = (card or {}).get("class_names") if task == "classifier" else []
    info = None
    if dataset is not None and (class_names is None or chosen.preprocessing == "dataset"):
        info = dataset_info(dataset, data_dir=data_dir)
        class_names = class_names if class_names is not None else list(info.class_names)
    if chosen.preprocessing == "dataset":
        if info is None:
            raise InvalidArgumentError(
                "`preprocess` is dataset, but no dataset is known (no model card names one). "
                "Fix: pass --dataset (fashion_mnist, cifar10 or folder:PATH)."
            )
        preprocessing = info.preprocessing(input_shape).to_dict()
    else:
        preprocessing = chosen.preprocessing.to_dict()
    if task == "raw":
        return ModelContext(preprocessing, [], dataset, card)
    num_classes = int(network.outputs[0].shape[-1])
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    if len(class_names) != num_classes:
        raise InvalidArgumentError(
            f"The model has {num_classes} outputs but {len(class_names)} class names "
            f"({dataset or 'model card'}). Fix: pass the dataset the model was trained on."
        )
    return ModelContext(preprocessing, list(class_names), dataset, card)


def bundle_examples(
    network: keras.Model,
    context: ModelContext,
    *,
    data: Any,
    calibration_data: Any,
    int8: bool,
    verify_samples: int,
    calibration_samples: int,
    split: str,
    data_dir: str | None,
) -> tuple[Any, Any]:
    """Verification and calibration examples of a bundle (calibration None without int8).

    The user's (``data``, ``calibration_data``, which defaults to ``data``) are
    read and checked against the model's input here, before any export; what
    they leave open comes from ``context.dataset``: ``split`` for verification,
    train for calibration, preprocessed as ``context`` says.

    Raises:
        InvalidArgumentError: If examples are needed and neither the user nor a
            dataset gives them, or the user's do not fit the model's input.
    """
    calibration_data = calibration_data if calibration_data is not None else data
    if (data is None or (int8 and calibration_data is None)) and context.dataset is None:
        raise InvalidArgumentError(
            "A bundle is verified on real images, and int8 is calibrated on them, but no "
            "dataset is known. Fix: pass --dataset (fashion_mnist, cifar10 or folder:PATH), "
            "or your own preprocessed model inputs: --data FILE.npz, data=images in Python."
        )
    tensors = model_tensors(network)
    common = dict(
        input_shape=image_input_shape(network, any_outputs=True),
        data_dir=data_dir,
        shuffle=False,
        batch_size=64,
        preprocessing=Preprocessing.from_dict(context.preprocessing),
    )
    if data is not None:
        inputs, labels = collect_inputs(data, tensors, verify_samples, "data")
        verification = inputs[0] if labels is None else (inputs[0], labels)
    else:
        verification = load(context.dataset, split, limit=verify_samples, **common)
    if not int8:
        return verification, None
    if calibration_data is not None:
        inputs, _ = collect_inputs(calibration_data, tensors, calibration_samples, "calibration_data")
        return verification, inputs[0]
    return verification, load(context.dataset, "train", limit=calibration_samples, **common)
