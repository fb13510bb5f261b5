"""``kprune info``: per-layer filters, parameters, FLOPs and output shapes;
with ``--groups``, the channel groups that pruning acts on."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import ModelArgument, format_count, out, parse_input_shape, quiet_import, user_errors


def info(
    model: ModelArgument,
    input_shape: Annotated[
        Optional[str], typer.Option("--input-shape", help="H,W,C when MODEL is a name.")
    ] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", help="When MODEL is a name.")] = 10,
    groups: Annotated[
        bool,
        typer.Option(
            "--groups",
            help="Print the channel groups instead: coupled producers, who consumes their "
            "channels (index spans), and what freezes a group.",
        ),
    ] = False,
    unsupported: Annotated[
        str,
        typer.Option(
            "--unsupported",
            help="With --groups, layers kprune has no handler for: 'error' lists them and "
            "stops, 'freeze' keeps their channels.",
        ),
    ] = "error",
):
    """Print a per-layer table (filters, params, FLOPs, output shape) with totals,
    or with --groups the channel groups that pruning removes channels from."""
    quiet_import()
    with user_errors():
        from kprune.graph import analyze
        from kprune.metrics import count_flops, count_params, layer_table
        from kprune.modelio import load_model

        shape = parse_input_shape(input_shape) if input_shape else (32, 32, 3)
        network = load_model(model, input_shape=shape, num_classes=num_classes)
        if groups:
            _print_groups(analyze(network, unsupported=unsupported))
            return
        rows = layer_table(network)
        total_params, total_flops = count_params(network), count_flops(network)
    headers = ("layer", "class", "filters", "params", "FLOPs", "output shape")
    cells = [
        (
            row.name,
            row.class_name,
            "" if row.filters is None else str(row.filters),
            f"{row.params:,}",
            f"{row.flops:,}",
            _shape_text(row.output_shape),
        )
        for row in rows
    ]
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


def _print_groups(graph) -> None:
    """One row per channel group, one line per layer: a layer name is never cut."""
    from rich.markup import escape

    headers = ("group", "channels", "prunable", "producers", "passes / joins", "consumers [span]")
    rows = []
    for group in graph.groups:
        via = [
            f"{m.layer} [{m.span()}]" if m.role in ("concat", "flatten") else m.layer
            for m in group.members
            if m.role in ("merge", "concat", "flatten")
        ]
        consumers = [f"{m.layer} [{m.span()}]" for m in group.members if m.role == "consumer"]
        state = "yes" if group.prunable else "no: frozen by " + "; ".join(group.frozen_by)
        rows.append(
            [
                [str(group.index)],
                [str(group.channels)],
                [state],
                list(group.producers),
                list(dict.fromkeys(via)),
                consumers,
            ]
        )
    widths = [
        max([len(header), *(len(entry) for row in rows for entry in row[index])])
        for index, header in enumerate(headers)
    ]
    widths[2] = min(widths[2], 40)  # reasons wrap between words
    table = Table(title=f"{graph.model.name}: channel groups", show_lines=True)
    for index, (header, width) in enumerate(zip(headers, widths)):
        table.add_column(
            escape(header), justify="right" if index < 2 else "left", min_width=width, overflow="fold"
        )
    for row in rows:
        table.add_row(*(escape("\n".join(entries)) for entries in row))
    needed = sum(widths) + 3 * len(widths) + 1
    out.print(table, width=max(out.width, needed), crop=False)
    prunable = sum(group.prunable for group in graph.groups)
    out.print(
        f"{len(graph.groups)} channel groups, {prunable} prunable "
        f"({len(graph.prunable_layers())} prunable layers)"
    )


def _shape_text(shape: tuple) -> str:
    """(None, 32, 32, 64) → '32×32×64': one example, as the FLOPs are."""
    return "×".join(str(size) for size in shape[1:]) if shape else ""


def register(app: typer.Typer) -> None:
    app.command("info")(info)
