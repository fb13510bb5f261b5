"""``kprune bench``: latency of Keras, TFLite (XNNPACK) and ONNX Runtime, models alternating."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import out, quiet_import, user_errors
from kprune.cli._deploy import JsonOption, split_list


def bench(
    models: Annotated[
        list[str],
        typer.Argument(help=".keras files; the first is the baseline (e.g. the original)."),
    ],
    runtimes: Annotated[
        str, typer.Option("--runtimes", help="keras, tflite, onnx.")
    ] = "keras,tflite,onnx",
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Images per inference.")
    ] = "1,32",
    threads: Annotated[
        str, typer.Option("--threads", help="TFLite / ONNX Runtime threads; 'all' = every core.")
    ] = "1,all",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per model first.")] = 10,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per model.")] = 50,
    output: Annotated[
        Optional[str], typer.Option("--output", help="Also write the JSON result to this file.")
    ] = None,
    as_json: JsonOption = False,
):
    """Measure latency and throughput; print speed-ups next to FLOPs ratios.

    Reports median and p90 latency and throughput for every model, runtime,
    thread count and batch size, the models alternating in one run, and each
    model's speed-up over the first next to its FLOPs ratio (the ideal).
    """
    quiet_import()
    with user_errors():
        from kprune.bench import benchmark

        report = benchmark(
            models, runtimes=split_list(runtimes),
            batch_sizes=_integers(batch_sizes, "--batch-sizes"),
            threads=_integers(threads.replace("all", "0"), "--threads"), warmup=warmup,
            repeats=repeats, progress=not as_json,
        )  # fmt: skip
    result = report.to_dict()
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_table(report)


def _print_table(report) -> None:
    """One row per configuration; per model "median / p90 ms" over images per second."""
    labels = [model.label for model in report.models]
    base = labels[0]
    speedups = {
        (row["model"], row["runtime"], row["threads"], row["batch"]): row
        for row in report.speedups()
    }
    table = Table(
        title=f"Latency ({report.settings['repeats']} runs per model, models alternating)",
        caption=f"median / p90 ms, images per second; speed-up over {base} "
        "(ideal = FLOPs ratio)",
    )
    for column in ("runtime", "threads", "batch"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for label in labels:
        table.add_column(label, justify="right")
    for label in labels[1:]:
        table.add_column(f"{label} speed-up (ideal)", justify="right")
    rows: dict[tuple, dict] = {}
    for m in report.measurements:
        rows.setdefault((m.runtime, m.threads, m.batch), {})[m.model] = m
    for (runtime, threads, batch), by_model in rows.items():
        cells = [runtime, "TF" if threads is None else str(threads), str(batch)]
        for label in labels:
            m = by_model[label]
            cells.append(f"{m.median_ms:.3g} / {m.p90_ms:.3g}\n{m.throughput:,.0f}/s")
        for label in labels[1:]:
            cells.append(_speedup(speedups.get((label, runtime, threads, batch))))
        table.add_row(*cells)
    out.print(table)
    for model in report.models:
        out.print(
            f"{model.label}: {model.params:,} params, {model.flops:,} FLOPs (2 per MAC)",
            highlight=False,
        )


def _speedup(row: dict | None) -> str:
    if row is None:
        return ""
    ideal = "" if row["flops_ratio"] is None else f" ({row['flops_ratio']:.2f}×)"
    return f"{row['speedup']:.2f}×{ideal}"


def _integers(text: str, option: str) -> list[int]:
    from kprune.errors import InvalidArgumentError

    try:
        return [int(part) for part in split_list(text)]
    except ValueError:
        raise InvalidArgumentError(
            f"`{option}` must be comma-separated integers. Received {text!r}."
        ) from None


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
