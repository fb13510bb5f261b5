"""``kprune train``: train a model on a dataset, save it with its model card."""

from __future__ import annotations

from typing import Annotated

import typer

from kprune.cli._common import (
    BatchSizeOption,
    DataDirOption,
    DatasetOption,
    LimitOption,
    SeedOption,
    StrictDataOption,
    format_count,
    out,
    parse_input_shape,
    quiet_import,
    user_errors,
)


def train(
    ctx: typer.Context,
    out_path: Annotated[str, typer.Option("--out", "-o", help="Where to write the .keras file.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A model name (see `kprune models`) or a .keras file.")
    ] = "squeezenet1_1",
    dataset: DatasetOption = "fashion_mnist",
    epochs: Annotated[float, typer.Option("--epochs", help="Training epochs.")] = 30,
    batch_size: BatchSizeOption = 128,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd, adam or adamw.")] = "adamw",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="Decoupled weight decay.")] = 0.05,
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs")] = 1.0,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing")] = 0.0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random shifts and flips.")] = True,
    batch_norm: Annotated[bool, typer.Option("--batch-norm", help="SqueezeNet with BatchNorm.")] = False,
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape",
            help="H,W,C to build the named model for; the images are resized and "
            "their channels converted (e.g. 32,32,1: mobilenet_v2 needs at least 32x32).",
        ),
    ] = None,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    limit: LimitOption = None,
    strict_data: StrictDataOption = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed training of --out from its last finished epoch "
            "(its backup folder, OUT.training/); starts afresh if there is none.",
        ),
    ] = False,
):
    """Train a model (by name or .keras file) and write it with a model card."""
    quiet_import()
    with user_errors():
        from kprune.card import command_line
        from kprune.training.train import TrainSettings, train_and_save

        settings = TrainSettings(
            optimizer=optimizer,
            learning_rate=lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
        )
        options = {"batch_norm": True} if batch_norm else None
        card = train_and_save(
            model,
            dataset,
            out_path,
            epochs=epochs,
            batch_size=batch_size,
            settings=settings,
            augment=augment,
            seed=seed,
            data_dir=data_dir,
            limit=limit,
            model_options=options,
            input_shape=parse_input_shape(input_shape),
            command=command_line(ctx),
            resume=resume,
            strict_data=strict_data,
        )
    out.print(
        f"Saved {out_path}: test accuracy {card['test_accuracy']:.4f} on "
        f"{card['test_examples']} {dataset} test images, {format_count(card['params'])} "
        f"params, {format_count(card['flops'])}FLOPs, {card['wall_time_s']:.0f} s.",
        soft_wrap=True,  # one line however long the path: scripts parse it
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
