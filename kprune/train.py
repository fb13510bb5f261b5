"""`train_and_save()`: what ``kprune train`` does — train a model on a dataset,
evaluate it once on the test split, save it with its model card."""

from __future__ import annotations

import time
from dataclasses import asdict

import keras

from kprune.card import command_line, environment, read_card, write_card
from kprune.data import dataset_info, load
from kprune.metrics import count_flops, count_params
from kprune.determinism import deterministic, seed_everything
from kprune.errors import InvalidArgumentError
from kprune.modelio import load_model, resolve_model_path, save_model
from kprune.models import build
from kprune.training_setup import TrainingSetup, TrainSettings


def train_and_save(
    model: str | keras.Model,
    dataset: str,
    out: str,
    *,
    epochs: float = 30,
    batch_size: int = 128,
    settings: TrainSettings | None = None,
    augment: bool = True,
    seed: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
    model_options: dict | None = None,
    input_shape: tuple[int, int, int] | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Trains a model on a dataset, saves it and its model card; returns the card.

    The model is a ``.keras`` path, a registered name (built for the
    dataset's image shape — or for ``input_shape`` (height, width, channels),
    the images resized and their channels converted — and classes) or a
    ``keras.Model``. Validation data
    is the held-out part of train; the test split is evaluated once, at the end.
    """
    with deterministic():
        return _train_and_save(model, dataset, out, epochs, batch_size, settings, augment, seed,
                               data_dir, limit, model_options, input_shape, progress, command)  # fmt: skip


def _train_and_save(model, dataset, out, epochs, batch_size, settings, augment, seed, data_dir,
                    limit, model_options, input_shape, progress, command) -> dict:  # fmt: skip
    started = time.time()
    seed_everything(seed)
    info = dataset_info(dataset, data_dir=data_dir)
    source_card = None
    by_name = isinstance(model, str) and not model.endswith(".keras")
    if input_shape is not None and not by_name:
        raise InvalidArgumentError(
            f"input_shape (--input-shape) applies to a model built by name; {_label(model)} has its own input "
            "shape, and the images are resized to it. Fix: leave input_shape out."
        )
    if by_name:
        shape = tuple(input_shape or info.image_shape)
        network = build(model, shape, info.num_classes, **(model_options or {}))
    else:
        network = load_model(model)
        if isinstance(model, str):  # a saved model continues its history: keep its card
            source_card = read_card(resolve_model_path(model))
    input_shape = tuple(network.input_shape[1:])
    common = dict(input_shape=input_shape, data_dir=data_dir, seed=seed, limit=limit)
    train_split = load(dataset, "train", batch_size=batch_size, augment=augment, **common)
    val_split = load(dataset, "val", batch_size=256, **common)
    test_split = load(dataset, "test", batch_size=256, **common)
    settings = settings or TrainSettings()
    setup = TrainingSetup(settings)
    history = setup.fit(network, train_split, val_split, epochs=epochs, progress=progress)
    test = setup.evaluate(network, test_split)
    save_model(network, out)
    card = {
        "model": network.name,
        "architecture": model if isinstance(model, str) else network.name,
        "dataset": dataset,
        "data_source": info.source,
        "train_examples": train_split.num_examples,
        "val_examples": val_split.num_examples,
        "test_examples": test_split.num_examples,
        "input_shape": list(input_shape),
        "preprocessing": train_split.preprocessing.to_dict(),
        "class_names": list(info.class_names),
        "epochs": epochs,
        "batch_size": batch_size,
        "augment": augment,
        "training": asdict(settings),
        "seed": seed,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "params": count_params(network),
        "flops": count_flops(network),
        "wall_time_s": round(time.time() - started, 1),
        "command": command or command_line(),
        **({"trained_from": {k: v for k, v in source_card.items() if k != "environment"}}
           if source_card else {}),
        "environment": environment(),
    }
    write_card(out, card)
    return card


def _label(model) -> str:
    return model if isinstance(model, str) else f"the model {model.name!r}"
