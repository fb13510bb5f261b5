"""``kprune export``: TFLite (fp32 / float16 / dynamic / int8) and ONNX, verified."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from kprune.cli._common import (
    DataDirOption,
    ModelArgument,
    PreprocessOption,
    format_count,
    out,
    quiet_import,
    user_errors,
)
from kprune.cli._deploy import (
    CalibrationOption,
    DataFileOption,
    Int8IoOption,
    JsonOption,
    MaxDiffOption,
    MinAgreementOption,
    OpsetOption,
    OptionalDatasetOption,
    SamplesOption,
    SplitOption,
    format_ops,
    print_verification,
    split_list,
)


def export(
    model: ModelArgument,
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Folder for the exported files.")],
    formats: Annotated[str, typer.Option("--format", "-f", help="tflite, onnx or both.")] = "tflite,onnx",
    quantize: Annotated[
        str,
        typer.Option("--quantize", "-q", help="TFLite precisions: none, float16, dynamic, int8."),
    ] = "none",
    dataset: OptionalDatasetOption = None,
    data: DataFileOption = None,
    calibration_data: Annotated[
        Optional[str],
        typer.Option("--calibration-data", help="An .npz like --data for int8; default --data."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run every file with its runtime first.")
    ] = True,
    samples: SamplesOption = 500,
    split: SplitOption = "test",
    calibration_samples: CalibrationOption = 300,
    int8_io: Int8IoOption = False,
    opset: OpsetOption = None,
    allow_flex_ops: Annotated[
        bool,
        typer.Option("--allow-flex-ops", help="Allow TensorFlow (Flex) ops; embedded runtimes lack them."),
    ] = False,
    max_diff: MaxDiffOption = 1e-4,
    min_agreement: MinAgreementOption = 0.98,
    data_dir: DataDirOption = None,
    preprocess: PreprocessOption = None,
    as_json: JsonOption = False,
):
    """Export a .keras model to TFLite and ONNX, verified against Keras on real examples.

    Any model whose inputs have fixed sizes exports: images, time series, volumes,
    several inputs and outputs. Named datasets (--dataset) hold images; for other
    models pass your own examples with --data FILE.npz.
    """
    quiet_import()
    with user_errors():
        from kprune.export import export_model

        result = export_model(
            model,
            out_dir,
            formats=split_list(formats),
            quantize=split_list(quantize),
            dataset=dataset,
            verify=verify,
            samples=samples,
            split=split,
            calibration_samples=calibration_samples,
            int8_io=int8_io,
            opset=opset,
            allow_flex_ops=allow_flex_ops,
            max_abs_diff=max_diff,
            min_agreement=min_agreement,
            data_dir=data_dir,
            data=data,
            calibration_data=calibration_data,
            preprocess=preprocess,
            progress=not as_json,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for artifact in result.artifacts:
        out.print(
            f"[bold]{artifact.path}[/] ({format_count(artifact.size_bytes)}B): {format_ops(artifact.ops)}",
            highlight=False,
        )
    if result.verification is not None:
        print_verification(result.verification)
    out.print(f"Report: {result.report_path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
