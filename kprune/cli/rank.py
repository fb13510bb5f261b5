"""``kprune rank``: score every filter of a model and show the weakest per layer."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import (
    BatchSizeOption,
    DataDirOption,
    DatasetOption,
    ModelArgument,
    PreprocessOption,
    SeedOption,
    StrictDataOption,
    out,
    quiet_import,
    user_errors,
)


def rank(
    model: ModelArgument,
    criterion: Annotated[
        str,
        typer.Option(
            "--criterion", "-c", help="taylor, l2, combined, apoz, l1, l2_weight, bn_gamma or random."
        ),
    ] = "taylor",
    dataset: DatasetOption = "fashion_mnist",
    split: Annotated[str, typer.Option("--split", help="Split to rank on: train, val or test.")] = "train",
    batches: Annotated[Optional[int], typer.Option("--batches", "-n", help="Batches to average over.")] = 20,
    batch_size: BatchSizeOption = 64,
    normalize: Annotated[str, typer.Option("--normalize", help="l2 (per layer) or none.")] = "l2",
    flops_weight: Annotated[float, typer.Option("--flops-weight", help="λ of the FLOPs penalty.")] = 0.0,
    show: Annotated[int, typer.Option("--show", help="Weakest filters shown per layer.")] = 5,
    out_path: Annotated[Optional[str], typer.Option("--out", "-o", help="Write all scores as JSON.")] = None,
    seed: SeedOption = 0,
    data_dir: DataDirOption = None,
    preprocess: PreprocessOption = None,
    strict_data: StrictDataOption = False,
):
    """Rank the filters of MODEL with a criterion; print the weakest per layer."""
    quiet_import()
    with user_errors():
        from kprune.criteria.registry import get, needs_data
        from kprune.data import choose_preprocessing, load
        from kprune.modelio import load_model
        from kprune.pruning.ranking import rank as rank_filters
        from kprune.pruning.ranking import save_scores, weakest

        get(criterion)  # unknown names fail before the model and data load
        network = load_model(model)
        data = None
        if needs_data(criterion):
            shape = tuple(network.input_shape[1:])
            data = load(
                dataset,
                split,
                input_shape=shape,
                batch_size=batch_size,
                shuffle=False,
                data_dir=data_dir,
                limit=None if batches is None else batches * batch_size,
                preprocessing=choose_preprocessing(preprocess, model, shape).preprocessing,
                strict_data=strict_data,
            )
        scores = rank_filters(
            network,
            data,
            criterion,
            num_batches=batches,
            normalize=normalize,
            flops_weight=flops_weight,
            seed=seed,
            progress=True,
        )
        if out_path:
            save_scores(
                out_path,
                scores,
                model=str(model),
                criterion=criterion,
                dataset=dataset,
                split=split,
                batches=batches,
                batch_size=batch_size,
                normalize=normalize,
                flops_weight=flops_weight,
                seed=seed,
            )
    table = Table(title=f"Weakest filters of {network.name} by {criterion} (higher = more important)")
    table.add_column("layer")
    table.add_column("filters", justify="right")
    table.add_column(f"weakest {show} (index: score)")
    for name, lowest in weakest(scores, show).items():
        table.add_row(name, str(len(scores[name])), "  ".join(f"{i}: {s:.3g}" for i, s in lowest))
    out.print(table)
    if out_path:
        out.print(f"Scores of {sum(len(v) for v in scores.values())} filters written to {out_path}")


def register(app: typer.Typer) -> None:
    app.command("rank")(rank)
