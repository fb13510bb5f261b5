"""Options and printing shared by the deployment commands: export, verify, bundle, bench."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from kprune.cli._common import out

OptionalDatasetOption = Annotated[
    Optional[str],
    typer.Option(
        "--dataset",
        "-d",
        help="Real images for int8 calibration and verification: fashion_mnist, cifar10, "
        "folder:PATH or synthetic. Default: the dataset named in the model card.",
    ),
]
DataFileOption = Annotated[
    Optional[str],
    typer.Option(
        "--data",
        help="Your own examples instead of --dataset, for any model (time series, several "
        "inputs): an .npz with one array per input name (or 'x') and optional labels 'y'.",
    ),
]
SamplesOption = Annotated[int, typer.Option("--samples", "-n", help="Images of --split to verify on.")]
SplitOption = Annotated[str, typer.Option("--split", help="Split to verify on and report accuracy for.")]
MaxDiffOption = Annotated[
    float,
    typer.Option("--max-diff", help="Largest |file − Keras| allowed for float32 files."),
]
MinAgreementOption = Annotated[
    float,
    typer.Option("--min-agreement", help="Smallest top-1 agreement with Keras allowed for quantized files."),
]
CalibrationOption = Annotated[
    int,
    typer.Option("--calibration-samples", help="Train images that calibrate int8 quantization."),
]
OpsetOption = Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: tf2onnx's, 15).")]
Int8IoOption = Annotated[
    bool, typer.Option("--int8-io", help="int8 files take int8 inputs and give int8 outputs.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout, for scripts.")]


def split_list(text: str) -> list[str]:
    """'tflite, onnx' → ['tflite', 'onnx']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def print_verification(report) -> None:
    """A table of every verified file, then Keras' own accuracy."""
    table = Table(title=f"Verification on {report.samples} examples")
    names = [check.artifact.path.name for check in report.checks]
    table.add_column("file", no_wrap=True, min_width=max(map(len, names), default=4))
    relative = any(check.relative_error is not None for check in report.checks)
    columns = ("max abs diff", "top-1 agreement", *(("relative error",) if relative else ()))
    for column in (*columns, "accuracy"):
        table.add_column(column, justify="right")
    table.add_column("check")
    for check in report.checks:
        artifact = check.artifact
        precision = "fp32" if artifact.quantize == "none" else artifact.quantize
        cells = [f"{artifact.path.name}\n[dim]{precision}[/]", f"{check.max_abs_diff:.1e}"]
        cells.append("" if check.top1_agreement is None else f"{check.top1_agreement:.1%}")
        if relative:
            cells.append("" if check.relative_error is None else f"{check.relative_error:.2%}")
        cells.append("" if check.accuracy is None else f"{check.accuracy:.4f}")
        cells.append("[green]ok[/]" if check.passed else "[bold red]FAILED[/]")
        table.add_row(*cells)
    out.print(table)
    for check in report.failures():
        out.print(f"FAILED {check.artifact.path.name}: needs {check.criterion}", highlight=False)
    if report.keras_accuracy is not None:
        out.print(f"Keras accuracy on the same examples: {report.keras_accuracy:.4f}")


def format_ops(ops: dict[str, int]) -> str:
    return ", ".join(f"{name}×{count}" for name, count in ops.items())
