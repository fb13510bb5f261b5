"""``kprune profile``: measure a model's per-layer latency table on a real runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import out, quiet_import, user_errors


def profile(
    model: Annotated[str, typer.Argument(help="A .keras file.")],
    runtime: Annotated[
        str, typer.Option("--runtime", help="tflite (XNNPACK) or onnx (ONNX Runtime).")
    ] = "tflite",
    threads: Annotated[int, typer.Option("--threads", help="Inference threads.")] = 1,
    quantize: Annotated[
        str, typer.Option("--quantize", help="TFLite precision: none, float16 or int8.")
    ] = "none",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per file.")] = 50,
    output: Annotated[
        str, typer.Option("--out", "-o", help="Where to write the table (JSON).")
    ] = "latency_table.json",
    plan_only: Annotated[
        Optional[str],
        typer.Option(
            "--plan-only",
            help="Only write the files to time into this folder, for the board's kprune_profile.py.",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure again even if a table is cached.")
    ] = False,
    sweep_channels: Annotated[
        int, typer.Option("--sweep-channels", help="Sweep output channels 1..N to find the tile step.")
    ] = 64,
    seconds: Annotated[
        float,
        typer.Option(
            "--seconds",
            help="Time the whole plan again and again for at least this long (2 to 20 times); each file keeps its fastest time.",
        ),
    ] = 30.0,
):
    """Measure per-layer latency as a function of channel counts; write the table.

    Times single-layer models over a grid of channel counts, a fine sweep of
    output channels (which shows the kernels' tile step) and the whole model,
    on the real runtime of this machine. Pass the table to
    `kprune prune --latency-table`, or predict with kprune.predict_latency.
    With --plan-only, writes the files for measuring on the board instead.
    """
    quiet_import()
    with user_errors():
        from kprune.latency.profile import profile as measure
        from kprune.latency.profile import write_plan
        from kprune.modelio import load_model

        network = load_model(model)
        if plan_only:
            plan = write_plan(
                network,
                plan_only,
                runtime=runtime,
                quantize=quantize,
                progress=True,
                sweep_channels=sweep_channels,
            )
            files = sum(len(group) for group in plan["groups"])
            out.print(
                f"Wrote {files} files and plan.json to {plan_only}/. On the board: "
                f"python3 kprune_profile.py {plan_only} --threads {threads} --out latency_table.json"
            )
            return
        table = measure(
            network,
            runtime=runtime,
            threads=threads,
            quantize=quantize,
            repeats=repeats,
            use_cache=not no_cache,
            progress=True,
            sweep_channels=sweep_channels,
            seconds=seconds,
        )
        table.save(output)
    _print_table(table, Path(output))


def _print_table(table, path: Path) -> None:
    summary = table.summary()
    view = Table(
        title=f"Latency table of {summary['model']} — {summary['runtime']}, "
        f"{summary['threads']} thread(s), {summary['quantize']}"
    )
    for column in ("layer configuration", "layers", "kind", "full channels", "ms at full"):
        view.add_column(
            column, justify="left" if column in ("layer configuration", "layers", "kind") else "right"
        )
    for key, entry in table.entries.items():
        cin, cout = entry.full
        view.add_row(
            key,
            ", ".join(entry.layers[:3]) + (" …" if len(entry.layers) > 3 else ""),
            entry.kind,
            f"{cin}→{cout}" if entry.kind == "matrix" else str(cin),
            f"{float(table.layer_ms(key, cin, cout)):.4f}",
        )
    out.print(view)
    full = [item for item in table.calibration if item["fraction"] == 1.0]
    measured = f"{table.data['measured_ms'][full[0]['file']]:.3f} ms measured, " if full else ""
    out.print(
        f"Whole model: {measured}{table.predict(full[0]['layers']) if full else float('nan'):.3f} ms predicted. "
        f"Channel tile step: {summary['step']}. Machine: {summary['machine']}. Wrote {path}.",
        highlight=False,
    )
    if table.traffic > 0:
        out.print(
            f"Weight traffic: {summary['traffic_ms_per_mweight']:.3f} ms per million weights beyond the "
            f"{summary['resident_mweights']:.2f} M the caches hold (fitted on the calibration models).",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
