"""``kprune eval``: loss and accuracy of a model on a dataset split."""

from __future__ import annotations

from typing import Annotated

import typer

from kprune.cli._common import (
    BatchSizeOption,
    DataDirOption,
    DatasetOption,
    LimitOption,
    ModelArgument,
    PreprocessOption,
    StrictDataOption,
    out,
    quiet_import,
    user_errors,
)


def evaluate(
    model: ModelArgument,
    dataset: DatasetOption = "fashion_mnist",
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    batch_size: BatchSizeOption = 256,
    data_dir: DataDirOption = None,
    limit: LimitOption = None,
    preprocess: PreprocessOption = None,
    strict_data: StrictDataOption = False,
):
    """Evaluate a .keras model: top-1 accuracy and loss on a dataset split.

    Inputs are preprocessed as the model's kprune card says, else left as raw
    pixels 0..255 like Keras' image loaders give them; --preprocess overrides.
    """
    quiet_import()
    with user_errors():
        from kprune.data import choose_preprocessing, load
        from kprune.modelio import load_model
        from kprune.training.setup import TrainingSetup

        network = load_model(model)
        shape = tuple(network.input_shape[1:])
        chosen = choose_preprocessing(preprocess, model, shape)
        data = load(
            dataset,
            split,
            input_shape=shape,
            batch_size=batch_size,
            data_dir=data_dir,
            limit=limit,
            preprocessing=chosen.preprocessing,
            strict_data=strict_data,
        )
        setup = TrainingSetup()
        setup.check(network, data, what=split)  # one line on mismatched data, not TensorFlow's
        result = setup.evaluate(network, data, progress=True)
    out.print(
        f"{model} on {dataset} {split} ({result['examples']} images): "
        f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}",
        soft_wrap=True,  # one line however long the path: scripts parse it
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
