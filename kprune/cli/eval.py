"""``kprune eval``: loss and accuracy of a model on a dataset split."""

from __future__ import annotations

from typing import Annotated

import typer

from kprune.cli._common import (
    BatchSizeOption, DataDirOption, DatasetOption, LimitOption, ModelArgument, out,
    quiet_import, user_errors,
)  # fmt: skip


def evaluate(
    model: ModelArgument,
    dataset: DatasetOption = "fashion_mnist",
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    batch_size: BatchSizeOption = 256,
    data_dir: DataDirOption = None,
    limit: LimitOption = None,
):
    """Evaluate a .keras model: top-1 accuracy and loss on a dataset split."""
    quiet_import()
    with user_errors():
        from kprune.data import load
        from kprune.modelio import load_model
        from kprune.training_setup import TrainingSetup

        network = load_model(model)
        data = load(
            dataset, split, input_shape=tuple(network.input_shape[1:]),
            batch_size=batch_size, data_dir=data_dir, limit=limit,
        )  # fmt: skip
        result = TrainingSetup().evaluate(network, data, progress=True)
    out.print(
        f"{model} on {dataset} {split} ({result['examples']} images): "
        f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}",
        soft_wrap=True,  # one line however long the path: scripts parse it
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
