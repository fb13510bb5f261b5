"""report.json, history.json and the PNG plots of a pruning run.

Plots: validation accuracy against the share of parameters removed; filters
per layer before and after (does pruning take mostly mid/high layers, as the
thesis observed?); a timeline of the steps. `overlay()` draws several runs
(e.g. one per criterion) on one figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from kprune.errors import InvalidArgumentError
from kprune.files import replaced_atomically
from kprune.metrics import count_flops, count_params
from kprune.pruning.checkpoint import write_json_atomically

REPORT = "report.json"
HISTORY = "history.json"
PLOTS = ("accuracy_vs_params.png", "filters_per_layer.png", "timeline.png")


def step_record(
    model,
    removal: dict,
    metrics: dict,
    seconds: float,
    step: int,
    initial: dict,
    started: float,
    monitor: str = "accuracy",
) -> dict:
    """One entry of report.json's ``steps``: the model's size and validation
    metrics after a pruning step (``removal``: {producer: removed indices});
    ``val_monitor`` is the value of the metric the accuracy budget watches."""
    params, flops = count_params(model), count_flops(model)
    filters = {
        layer.name: layer.filters
        for layer in model.layers
        if isinstance(getattr(layer, "filters", None), int)
    }
    filters.update(
        {layer.name: layer.units for layer in model.layers if isinstance(getattr(layer, "units", None), int)}
    )
    # attention heads, named as the dependency graph names their producer
    filters.update(
        {
            f"{layer.name}/heads": layer.num_heads
            for layer in model.layers
            if isinstance(getattr(layer, "num_heads", None), int)
        }
    )
    return {
        "step": step,
        "removed": {name: len(indices) for name, indices in removal.items()},
        "params": params,
        "flops": flops,
        "params_removed": 1 - params / initial["params"],
        "flops_removed": 1 - flops / initial["flops"],
        "filters": filters,
        "val_accuracy": metrics.get("accuracy"),
        "val_loss": metrics.get("loss"),
        "monitor": monitor,
        "val_monitor": metrics[monitor],
        "val_metrics": {key: value for key, value in metrics.items() if key != "examples"},
        "seconds": round(seconds, 2),
        "elapsed": round(time.time() - started, 2),
    }


def monitored(record: dict) -> float:
    """The value of the metric the run's budget watched (reports before
    ``val_monitor`` existed watched accuracy)."""
    return record.get("val_monitor", record.get("val_accuracy"))


def monitor_name(report: dict) -> str:
    return report["steps"][0].get("monitor", "accuracy")


def write_run_files(run_dir: str | Path, report: dict, history, plots: bool = False) -> None:
    """Writes report.json and history.json (atomically), and the plots if asked."""
    run_dir = Path(run_dir)
    write_json_atomically(run_dir / REPORT, report)
    write_json_atomically(run_dir / HISTORY, history.to_dict())
    if plots:
        draw(run_dir)


def read_report(run_dir: str | Path) -> dict:
    """The report.json of a run.

    Raises:
        InvalidArgumentError: If the folder holds no report.json.
    """
    path = Path(run_dir) / REPORT
    if not path.is_file():
        raise InvalidArgumentError(
            f"{run_dir} holds no {REPORT}. Fix: give the run dir of a `kprune prune` run."
        )
    return json.loads(path.read_text())


def draw(run_dir: str | Path) -> list[Path]:
    """(Re)draws the three plots of one run into its folder; returns their paths."""
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    plt = _pyplot()
    paths = []
    for name, painter in zip(PLOTS, (_accuracy, _filters, _timeline)):
        figure = painter(plt, report, run_dir.name)
        paths.append(_save_figure(plt, figure, run_dir / name))
    return paths


def overlay(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Accuracy vs. parameters removed of several runs on one figure."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run_dir in run_dirs:
        report = read_report(run_dir)
        steps = [r for r in report["steps"] if not r.get("rolled_back") and not r.get("phase")]
        label = f"{report['criterion']} ({Path(run_dir).name})"
        line = axes.plot(
            [100 * r["params_removed"] for r in steps],
            [100 * monitored(r) for r in steps],
            marker=".",
            label=label,
        )
        final = [r for r in report["steps"] if r.get("phase") == "final"]
        if final:
            axes.scatter(
                [100 * final[-1]["params_removed"]],
                [100 * monitored(final[-1])],
                marker="*",
                s=120,
                color=line[0].get_color(),
            )
    axes.set_xlabel("parameters removed (%)")
    axes.set_ylabel(f"validation {monitor_name(report)} (×100)")
    axes.set_title("Accuracy while pruning (★ the final model)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save_figure(plt, figure, Path(out))


def _save_figure(plt, figure, path: Path) -> Path:
    try:
        with replaced_atomically(path) as temporary:  # the temporary keeps .png: the format
            figure.savefig(temporary, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _accuracy(plt, report: dict, title: str):
    figure, axes = plt.subplots(figsize=(7, 4.5))
    kept = [r for r in report["steps"] if not r.get("rolled_back") and not r.get("phase")]
    axes.plot(
        [100 * r["params_removed"] for r in kept],
        [100 * monitored(r) for r in kept],
        marker=".",
        label="after each step's fine-tune",
    )
    rolled = [r for r in report["steps"] if r.get("rolled_back")]
    if rolled:
        axes.scatter(
            [100 * r["params_removed"] for r in rolled],
            [100 * monitored(r) for r in rolled],
            marker="x",
            color="red",
            label="rolled back (over budget)",
        )
    final = [r for r in report["steps"] if r.get("phase") == "final"]
    if final:
        axes.scatter(
            [100 * final[-1]["params_removed"]],
            [100 * monitored(final[-1])],
            marker="*",
            s=150,
            color="green",
            label="final model (after the final fine-tune, if any)",
        )
    axes.set_xlabel("parameters removed (%)")
    axes.set_ylabel(f"validation {monitor_name(report)} (×100)")
    axes.set_title(f"{title}: {report['criterion']}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def _filters(plt, report: dict, title: str):
    before = report["steps"][0]["filters"]
    after = report["steps"][-1]["filters"]
    names = [name for name in before if before[name] != after.get(name, before[name]) or name in after]
    figure, axes = plt.subplots(figsize=(max(7, 0.3 * len(names)), 4.5))
    positions = range(len(names))
    axes.bar(positions, [before[n] for n in names], color="lightgray", label="before")
    axes.bar(positions, [after.get(n, 0) for n in names], color="tab:blue", label="after")
    axes.set_xticks(list(positions), names, rotation=90, fontsize=7)
    axes.set_ylabel("filters")
    removed = sum(before.values()) - sum(after.values())
    axes.set_title(f"{title}: filters per layer ({removed} removed, input → output left to right)")
    axes.legend(fontsize=8)
    return figure


def _timeline(plt, report: dict, title: str):
    steps = [r for r in report["steps"] if r["step"] > 0 or r.get("phase")]
    figure, axes = plt.subplots(figsize=(7, 4))
    labels = [("final" if r.get("phase") else str(r["step"])) for r in steps]
    colors = ["red" if r.get("rolled_back") else "tab:blue" for r in steps]
    axes.bar(range(len(steps)), [r["seconds"] for r in steps], color=colors)
    axes.set_xticks(range(len(steps)), labels, fontsize=7)
    axes.set_xlabel("step")
    axes.set_ylabel("seconds (rank + remove + fine-tune + evaluate)")
    axes.set_title(f"{title}: {report.get('wall_time_s', 0):.0f} s in all")
    return figure
