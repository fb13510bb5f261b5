"""``kprune report``: redraw the plots of runs and overlay several runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import out, quiet_import, user_errors


def report(
    run_dirs: Annotated[list[str], typer.Argument(help="Run dirs of `kprune prune`.")],
    overlay_path: Annotated[
        Optional[str], typer.Option("--out", "-o", help="Overlay plot of all runs (PNG).")
    ] = None,
):
    """Redraw each run's plots; with several runs, overlay their accuracy curves."""
    quiet_import()
    with user_errors():
        from kprune.pruning.report import draw, monitor_name, monitored, overlay, read_report

        reports = {run_dir: read_report(run_dir) for run_dir in run_dirs}
        drawn = [path for run_dir in run_dirs for path in draw(run_dir)]
        if len(run_dirs) > 1 or overlay_path:
            target = overlay_path or str(Path(run_dirs[0]).parent / "overlay.png")
            drawn.append(overlay(run_dirs, target))
    table = Table(title="Pruning runs")
    for column in (
        "run",
        "criterion",
        "steps",
        "params removed",
        "FLOPs removed",
        "val (monitor)",
        "test acc",
        "stopped",
    ):
        table.add_column(column)
    for run_dir, data in reports.items():
        last = data["steps"][-1]
        test = data.get("test_after", {}).get("accuracy")
        table.add_row(
            str(run_dir),
            data["criterion"],
            str(last["step"]),
            f"{100 * last['params_removed']:.1f}%",
            f"{100 * last['flops_removed']:.1f}%",
            f"{100 * monitored(last):.2f} ({monitor_name(data)})",
            "-" if test is None else f"{100 * test:.2f}%",
            str(data.get("stop_reason")),
        )
    out.print(table)
    for path in drawn:
        out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
