"""``kprune bench``: latency of Keras, TFLite (XNNPACK) and ONNX Runtime, models alternating; or
executed aarch64 instructions of the TFLite files under QEMU (``--device``)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import out, quiet_import, user_errors
from kprune.cli._deploy import CalibrationOption, JsonOption, split_list


def bench(
    models: Annotated[
        list[str],
        typer.Argument(help=".keras files; the first is the baseline (e.g. the original)."),
    ],
    runtimes: Annotated[str, typer.Option("--runtimes", help="keras, tflite, onnx.")] = "keras,tflite,onnx",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Images per inference.")] = "1,32",
    threads: Annotated[
        str, typer.Option("--threads", help="TFLite / ONNX Runtime threads; 'all' = every core.")
    ] = "1,all",
    precisions: Annotated[
        str,
        typer.Option(
            "--precisions",
            help="TFLite files to time: fp32, fp16, int8 (fp32 is the baseline and required). "
            "Keras and ONNX are always fp32.",
        ),
    ] = "fp32",
    calibration: Annotated[
        Optional[str],
        typer.Option(
            "--calibration",
            help="int8 calibration: a dataset (fashion_mnist, cifar10, folder:PATH), "
            "preprocessed as each model's card says, or an .npz like kprune export's --data. "
            "Default: random inputs (latency right, accuracy meaningless).",
        ),
    ] = None,
    calibration_samples: CalibrationOption = 300,
    keep_files: Annotated[
        Optional[str],
        typer.Option("--keep-files", help="Keep the timed .tflite/.onnx files in this folder."),
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per model first.")] = 10,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per model.")] = 50,
    output: Annotated[
        Optional[str], typer.Option("--output", help="Also write the JSON result to this file.")
    ] = None,
    as_json: JsonOption = False,
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device",
            help="qemu:cortex-a53 or qemu:cortex-a72: count executed aarch64 instructions per "
            "inference of each model's TFLite files under QEMU instead of timing (1 thread, "
            "batch 1; --runtimes, --threads, --batch-sizes, --warmup and --repeats do not apply).",
        ),
    ] = None,
    inferences: Annotated[
        int, typer.Option("--inferences", help="With --device: inferences counted per file.")
    ] = 20,
):
    """Measure latency and throughput; print speed-ups next to FLOPs ratios.

    With --device qemu:cortex-a53 (or qemu:cortex-a72), count each TFLite
    file's executed aarch64 instructions per inference under QEMU instead.

    Reports median and p90 latency and throughput for every model, runtime,
    thread count and batch size, the models alternating in one run, and each
    model's speed-up over the first next to its FLOPs ratio (the ideal).
    With --precisions fp32,fp16,int8 the TFLite runtime also times each
    model's fp16 and int8 files, and every file's speed-up over the first
    model's fp32 file is printed too.
    """
    quiet_import()
    with user_errors():
        from kprune.bench import benchmark, count_benchmark

        if device is not None:
            report = count_benchmark(
                models,
                device=device,
                precisions=split_list(precisions),
                calibration_samples=calibration_samples,
                files_dir=keep_files,
                inferences=inferences,
                **_calibration_source(calibration),
            )
            _write_report(report.to_dict(), output, as_json)
            if not as_json:
                _print_counts(report)
            return
        report = benchmark(
            models,
            runtimes=split_list(runtimes),
            batch_sizes=_integers(batch_sizes, "--batch-sizes"),
            threads=_integers(threads.replace("all", "0"), "--threads"),
            precisions=split_list(precisions),
            calibration_samples=calibration_samples,
            files_dir=keep_files,
            warmup=warmup,
            repeats=repeats,
            progress=not as_json,
            **_calibration_source(calibration),
        )
    _write_report(report.to_dict(), output, as_json)
    if not as_json:
        _print_table(report)


def _write_report(result: dict, output: str | None, as_json: bool) -> None:
    if output:
        with user_errors():
            from kprune.files import write_atomically

            write_atomically(output, (json.dumps(result, indent=2) + "\n").encode())
    if as_json:
        typer.echo(json.dumps(result, indent=2))


def _print_counts(report) -> None:
    """One row per model and precision: instructions per inference, and how many times
    fewer than the first model's fp32 file."""
    base = report.models[0].label
    ratios = {(row["model"], row["precision"]): row for row in report.ratios()}
    flops = {model.label: model.flops for model in report.models}
    table = Table(
        title=f"Executed aarch64 instructions per inference, {report.settings['device']} "
        f"(QEMU, TFLite, 1 thread, batch 1)",
        caption=f"fewer than {base}'s fp32 file; ideal of pruning alone = FLOPs ratio. "
        "Instructions are a proxy for the core's cycles, not milliseconds.",
    )
    for column in ("model", "precision", "instructions", "fewer than fp32 baseline", "FLOPs ratio"):
        table.add_column(column, justify="left" if column in ("model", "precision") else "right")
    for count in report.counts:
        row = ratios.get((count.model, count.precision))
        table.add_row(
            count.model,
            count.precision,
            f"{count.instructions:,.0f}",
            "1.00×" if row is None else f"{row['fewer_than_fp32']:.2f}×",
            f"{flops[base] / flops[count.model]:.2f}×" if flops[count.model] else "",
        )
    out.print(table)
    if "calibration" in report.settings:
        out.print(f"int8 calibration: {report.settings['calibration']}", highlight=False)


def _calibration_source(calibration: str | None) -> dict:
    if calibration is None:
        return {}
    if calibration.endswith(".npz"):
        return {"calibration_data": calibration}
    return {"calibration_dataset": calibration}


def _print_table(report) -> None:
    """One row per configuration and precision; per model "median / p90 ms" over
    images per second, then the speed-ups."""
    labels = [model.label for model in report.models]
    base = labels[0]
    quantized = report.settings["precisions"] != ["fp32"]
    speedups = {
        (row["model"], row["precision"], row["runtime"], row["threads"], row["batch"]): row
        for row in report.speedups()
    }
    caption = f"median / p90 ms, images per second; speed-up over {base} "
    caption += (
        f"at the same precision (ideal = FLOPs ratio); fp32 baseline: {base}'s fp32 file"
        if quantized
        else "(ideal = FLOPs ratio)"
    )
    table = Table(
        title=f"Latency ({report.settings['repeats']} runs per model, models alternating)",
        caption=caption,
    )
    keys = ("runtime", *(("precision",) if quantized else ()), "threads", "batch")
    for column in keys:
        table.add_column(column, justify="right" if column in ("threads", "batch") else "left")
    for label in labels:
        table.add_column(label, justify="right", overflow="fold")
    for label in labels[1:]:
        table.add_column(f"{label} speed-up (ideal)", justify="right", overflow="fold")
    if quantized:
        for label in labels:
            table.add_column(f"{label} over fp32 baseline", justify="right", overflow="fold")
    rows: dict[tuple, dict] = {}
    for m in report.measurements:
        rows.setdefault((m.runtime, m.precision, m.threads, m.batch), {})[m.model] = m
    for (runtime, precision, threads, batch), by_model in rows.items():
        cells = [
            runtime,
            *([precision] if quantized else []),
            "TF" if threads is None else str(threads),
            str(batch),
        ]
        for label in labels:
            m = by_model[label]
            cells.append(f"{m.median_ms:.3g} / {m.p90_ms:.3g}\n{m.throughput:,.0f}/s")
        key = (precision, runtime, threads, batch)
        for label in labels[1:]:
            cells.append(_speedup(speedups.get((label, *key))))
        if quantized:
            for label in labels:
                row = speedups.get((label, *key))
                cells.append("" if row is None else f"{row['speedup_over_fp32']:.2f}×")
        table.add_row(*cells)
    out.print(table)
    sizes: dict[str, list[str]] = {}
    for file in report.files:
        sizes.setdefault(file["model"], []).append(
            f"{file['runtime']} {file['precision']} {file['size_bytes'] / 1e6:.3g} MB"
        )
    for model in report.models:
        files = f"; {', '.join(sizes[model.label])}" if model.label in sizes else ""
        out.print(
            f"{model.label}: {model.params:,} params, {model.flops:,} FLOPs (2 per MAC){files}",
            highlight=False,
        )
    if "calibration" in report.settings:
        out.print(f"int8 calibration: {report.settings['calibration']}", highlight=False)


def _speedup(row: dict | None) -> str:
    if row is None or row["speedup"] is None:
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
