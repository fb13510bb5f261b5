"""``kprune bundle``: a verified deployment folder for NXP BlueBox 2.0 / RTMaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
    JsonOption,
    MaxDiffOption,
    MinAgreementOption,
    OpsetOption,
    OptionalDatasetOption,
    SamplesOption,
    SplitOption,
)


def bundle(
    model: ModelArgument,
    out_dir: Annotated[str, typer.Option("--out", "-o", help="The bundle folder to create.")],
    dataset: OptionalDatasetOption = None,
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also ship model_int8.tflite (full integer).")
    ] = True,
    calibration_samples: CalibrationOption = 300,
    samples: SamplesOption = 500,
    split: SplitOption = "test",
    opset: OpsetOption = None,
    max_diff: MaxDiffOption = 1e-4,
    min_agreement: MinAgreementOption = 0.98,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    data_dir: DataDirOption = None,
    preprocess: PreprocessOption = None,
    as_json: JsonOption = False,
):
    """Write a verified deployment bundle: TFLite, int8 TFLite, ONNX, RTMaps component.

    The folder holds model.tflite, model_int8.tflite, model.onnx, labels.txt,
    manifest.json (preprocessing, quantization, classes, sha256 of every file),
    kprune_runtime.py, run_bundle.py and rtmaps_kprune.py. Every model file is
    verified against Keras first; on failure nothing is written.
    """
    quiet_import()
    with user_errors():
        from kprune.export import write_bundle

        manifest = write_bundle(
            model,
            out_dir,
            dataset=dataset,
            int8=int8,
            calibration_samples=calibration_samples,
            verify_samples=samples,
            split=split,
            opset=opset,
            max_abs_diff=max_diff,
            min_agreement=min_agreement,
            data_dir=data_dir,
            preprocess=preprocess,
            overwrite=force,
            progress=not as_json,
        )
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    folder = Path(out_dir)
    out.print(f"[bold]Bundle {folder}[/]", highlight=False)
    for name in manifest["files"]:
        out.print(f"  {name:<20} {format_count((folder / name).stat().st_size)}B", highlight=False)
    for check in manifest["metrics"]["verification"]["artifacts"]:
        accuracy = "" if check["accuracy"] is None else f", accuracy {check['accuracy']:.4f}"
        out.print(
            f"  verified {check['file']}: max abs diff {check['max_abs_diff']:.2e}, "
            f"top-1 agreement {check['top1_agreement']:.2%}{accuracy}",
            highlight=False,
        )
    out.print(f"Try it: python {folder / 'run_bundle.py'} IMAGE_OR_FOLDER", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle)
