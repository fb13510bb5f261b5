"""``kprune verify``: run exported files with their runtimes and compare them with Keras."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kprune.cli._common import (
    DataDirOption,
    ModelArgument,
    PreprocessOption,
    quiet_import,
    user_errors,
)
from kprune.cli._deploy import (
    DataFileOption,
    JsonOption,
    MaxDiffOption,
    MinAgreementOption,
    OptionalDatasetOption,
    SamplesOption,
    SplitOption,
    print_verification,
)


def verify(
    model: ModelArgument,
    files: Annotated[
        list[str],
        typer.Argument(help=".tflite / .onnx files, or bundle folders (their sha256 are checked too)."),
    ],
    dataset: OptionalDatasetOption = None,
    data: DataFileOption = None,
    split: SplitOption = "test",
    samples: SamplesOption = 500,
    max_diff: MaxDiffOption = 1e-4,
    min_agreement: MinAgreementOption = 0.98,
    data_dir: DataDirOption = None,
    preprocess: PreprocessOption = None,
    as_json: JsonOption = False,
):
    """Verify exported files against the .keras model; exit 1 when one fails.

    Float32 files fail when any output differs from Keras by more than
    --max-diff; quantized ones when fewer than --min-agreement of the images
    get Keras' top-1 class.
    """
    quiet_import()
    with user_errors():
        from kprune.export import verify_files

        report = verify_files(
            model,
            files,
            dataset=dataset,
            split=split,
            samples=samples,
            max_abs_diff=max_diff,
            min_agreement=min_agreement,
            data_dir=data_dir,
            data=data,
            preprocess=preprocess,
            progress=not as_json,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_verification(report)
    with user_errors():
        report.raise_for_failures()


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
