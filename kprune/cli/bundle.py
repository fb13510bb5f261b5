"""``kprune bundle``: a verified deployment folder for NXP BlueBox 2.0 / RTMaps."""

from __future__ import annotations

import json
from pathlib import Path
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
    data: DataFileOption = None,
    calibration_data: Annotated[
        Optional[str],
        typer.Option("--calibration-data", help="An .npz like --data for int8; default --data."),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option(
            "--task",
            help="classifier or raw (every output written as .npy by run_bundle.py). "
            "Default: classifier for one (batch, classes) output, else raw.",
        ),
    ] = None,
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
    verified against Keras first; on failure nothing is written. Models with
    other outputs (a detector) make raw-output bundles (--task raw): no labels,
    run_bundle.py --out writes every output as .npy, the RTMaps component refuses them.
    """
    quiet_import()
    with user_errors():
        from kprune.export import write_bundle

        manifest = write_bundle(
            model,
            out_dir,
            dataset=dataset,
            data=data,
            calibration_data=calibration_data,
            task=task,
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
        parts = [f"max abs diff {check['max_abs_diff']:.2e}"]
        if check["top1_agreement"] is not None:
            parts.append(f"top-1 agreement {check['top1_agreement']:.2%}")
        if check.get("relative_error") is not None:
            parts.append(f"relative error {check['relative_error']:.2%}")
        if check["accuracy"] is not None:
            parts.append(f"accuracy {check['accuracy']:.4f}")
        out.print(f"  verified {check['file']}: {', '.join(parts)}", highlight=False)
    raw = " --out OUTPUTS/" if manifest.get("task") == "raw" else ""
    out.print(  # one line however long the path, so that it can be copied as a command
        f"Try it: python {folder / 'run_bundle.py'} IMAGE_OR_FOLDER{raw}", highlight=False, soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle)
