"""``kprune profile``: measure a model's per-layer latency table on a real runtime, or count
its aarch64 instructions under QEMU."""

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
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device",
            help="qemu:cortex-a53 or qemu:cortex-a72: count executed aarch64 instructions per "
            "inference under QEMU instead of timing here (TFLite, 1 thread; the table's unit is "
            "instructions). Needs qemu-user and the arm64 root (docs/LATENCY.md).",
        ),
    ] = None,
    inferences: Annotated[
        int, typer.Option("--inferences", help="With --device: inferences counted per file.")
    ] = 20,
):
    """Measure per-layer latency as a function of channel counts; write the table.

    Times single-layer models over a grid of channel counts, a fine sweep of
    output channels (which shows the kernels' tile step) and the whole model,
    on the real runtime of this machine. Pass the table to
    `kprune prune --latency-table`, or predict with kprune.predict_latency.
    With --plan-only, writes the files for measuring on the board instead.
    With --device qemu:CORE, counts the instructions those files execute on an
    emulated Cortex-A53 or A72 (a proxy for the board's cycles, not its ms).
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
            device=device,
            inferences=inferences,
        )
        table.save(output)
    _print_table(table, Path(output))


def _print_table(table, path: Path) -> None:
    summary = table.summary()
    unit = table.unit
    where = table.environment.get("device", f"{summary['threads']} thread(s)")
    view = Table(
        title=f"Latency table of {summary['model']} — {summary['runtime']}, {where}, {summary['quantize']}"
    )
    for column in ("layer configuration", "layers", "kind", "full channels", f"{unit} at full"):
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
            _amount(float(table.layer_ms(key, cin, cout)), unit, digits=4),
        )
    out.print(view)
    full = [item for item in table.calibration if item["fraction"] == 1.0]
    measured = f"{_amount(table.measured[full[0]['file']], unit)} {unit} measured, " if full else ""
    predicted = _amount(table.predict(full[0]["layers"]), unit) if full else "nan"
    out.print(
        f"Whole model: {measured}{predicted} {unit} predicted. "
        f"Channel tile step: {summary['step']}. Machine: {summary['machine']}. Wrote {path}.",
        highlight=False,
    )
    if unit == "instructions":
        out.print(
            "Executed aarch64 instructions per inference under QEMU: a proxy for the core's cycles, "
            "not milliseconds (docs/LATENCY.md).",
            highlight=False,
        )
    if table.traffic > 0:
        out.print(
            f"Weight traffic: {summary[f'traffic_{unit}_per_mweight']:.3f} {unit} per million weights beyond the "
            f"{summary['resident_mweights']:.2f} M the caches hold (fitted on the calibration models).",
            highlight=False,
        )


def _amount(value: float, unit: str, digits: int = 3) -> str:
    return f"{value:,.0f}" if unit == "instructions" else f"{value:.{digits}f}"


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
