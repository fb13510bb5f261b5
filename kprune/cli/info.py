"""``kprune info``: per-layer filters, parameters, FLOPs and output shapes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import ModelArgument, format_count, out, user_errors


def info(
    model: ModelArgument,
    input_shape: Annotated[
        Optional[str], typer.Option("--input-shape", help="H,W,C when MODEL is a name.")
    ] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", help="When MODEL is a name.")] = 10,
):
    """Print a per-layer table (filters, params, FLOPs, output shape) with totals."""
    with user_errors():
        from kprune.metrics import count_flops, count_params, layer_table
        from kprune.modelio import load_model

        shape = _parse_shape(input_shape) if input_shape else (32, 32, 3)
        network = load_model(model, input_shape=shape, num_classes=num_classes)
        rows = layer_table(network)
        total_params, total_flops = count_params(network), count_flops(network)
    table = Table(title=f"{network.name} — FLOPs: 2 per multiply-accumulate, batch 1")
    for column in ("layer", "class", "filters", "params", "FLOPs", "output shape"):
        table.add_column(column, justify="right" if column in ("filters", "params", "FLOPs") else "left")
    for row in rows:
        table.add_row(
            row.name, row.class_name, "" if row.filters is None else str(row.filters),
            f"{row.params:,}", f"{row.flops:,}", str(row.output_shape),
        )  # fmt: skip
    table.add_section()
    table.add_row("total", "", "", f"{total_params:,}", f"{total_flops:,}", "")
    out.print(table)
    out.print(f"{format_count(total_params)} params, {format_count(total_flops)}FLOPs")


def _parse_shape(text: str) -> tuple[int, ...]:
    from kprune.errors import InvalidArgumentError

    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidArgumentError(
            f"`--input-shape` must be H,W,C such as 32,32,3. Received {text!r}."
        ) from None


def register(app: typer.Typer) -> None:
    app.command("info")(info)
