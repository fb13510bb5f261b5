"""``kprune info``: per-layer filters, parameters, FLOPs and output shapes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import ModelArgument, format_count, out, quiet_import, user_errors


def info(
    model: ModelArgument,
    input_shape: Annotated[
        Optional[str], typer.Option("--input-shape", help="H,W,C when MODEL is a name.")
    ] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", help="When MODEL is a name.")] = 10,
):
    """Print a per-layer table (filters, params, FLOPs, output shape) with totals."""
    quiet_import()
    with user_errors():
        from kprune.metrics import count_flops, count_params, layer_table
        from kprune.modelio import load_model

        shape = _parse_shape(input_shape) if input_shape else (32, 32, 3)
        network = load_model(model, input_shape=shape, num_classes=num_classes)
        rows = layer_table(network)
        total_params, total_flops = count_params(network), count_flops(network)
    headers = ("layer", "class", "filters", "params", "FLOPs", "output shape")
    cells = [
        (
            row.name, row.class_name, "" if row.filters is None else str(row.filters),
            f"{row.params:,}", f"{row.flops:,}", _shape_text(row.output_shape),
        )
        for row in rows
    ]  # fmt: skip
    total = ("total", "", "", f"{total_params:,}", f"{total_flops:,}", "")
    # Layer names (what pruning specs are written with) and numbers are never cut
    # short; only the class column may be, and the table may be wider than 80.
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, total)]
    widths[1] = min(widths[1], 12)
    table = Table(title=f"{network.name} — FLOPs: 2 per multiply-accumulate, batch 1")
    for header, width in zip(headers, widths):
        justify = "right" if header in ("filters", "params", "FLOPs") else "left"
        table.add_column(header, justify=justify, min_width=width, max_width=width, no_wrap=True)
    for row_cells in cells:
        table.add_row(*row_cells)
    table.add_section()
    table.add_row(*total)
    out.print(table, width=max(out.width, sum(widths) + 3 * len(widths) + 1), crop=False)
    out.print(f"{format_count(total_params)} params, {format_count(total_flops)}FLOPs")


def _shape_text(shape: tuple) -> str:
    """(None, 32, 32, 64) → '32×32×64': one example, as the FLOPs are."""
    return "×".join(str(size) for size in shape[1:]) if shape else ""


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
