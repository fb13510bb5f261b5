"""What ``kprune export`` and ``kprune verify`` do: several files, verified, into a folder.

`export_model` writes every requested format and precision into a staging
folder, verifies them all against Keras on real images, and only then moves
them into the output folder; a failed verification leaves nothing behind.
`verify_files` checks files (or whole bundles) written earlier.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras

from kprune.data import Preprocessing, Split, load
from kprune.errors import InvalidArgumentError
from kprune.export.artifact import (
    QUANTIZE_MODES,
    ExportedArtifact,
    image_input_shape,
    model_tensors,
    progress_steps,
    resolve_model,
)
from kprune.export.bundle import bundle_artifacts, check_bundle
from kprune.export.context import bundle_task, model_context
from kprune.export.onnx import export_onnx
from kprune.export.tflite import DEFAULT_REPRESENTATIVE_SAMPLES, export_tflite
from kprune.export.verify import (
    DEFAULT_MAX_ABS_DIFF,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_SAMPLES,
    VerificationReport,
    verify_export,
)
from kprune.files import named_write_errors, write_atomically

FORMATS = ("tflite", "onnx")
_NAMED_DATASET = "Verification and calibration on a named dataset (--dataset)"
_OWN_DATA = (
    "pass your own examples shaped like the model's inputs (--data FILE.npz, "
    "data=... in Python), or --no-verify without int8"
)


@dataclass(frozen=True)
class ExportResult:
    """The files `export_model` wrote, their verification, and the report file."""

    artifacts: tuple[ExportedArtifact, ...]
    verification: VerificationReport | None
    report_path: Path

    def to_dict(self) -> dict:
        return {
            "artifacts": [artifact.to_dict() for artifact in self.artifacts],
            "verification": None if self.verification is None else self.verification.to_dict(),
        }


def export_model(
    model: str | os.PathLike | keras.Model,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = ("none",),
    dataset: str | None = None,
    verify: bool = True,
    samples: int = DEFAULT_SAMPLES,
    split: str = "test",
    calibration_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES,
    int8_io: bool = False,
    opset: int | None = None,
    allow_flex_ops: bool = False,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    data_dir: str | None = None,
    data: Any = None,
    calibration_data: Any = None,
    preprocess: str | Preprocessing | None = None,
    progress: bool = False,
) -> ExportResult:
    """Exports a model to TFLite (one file per precision) and ONNX, verified.

    Files are named after the model: ``NAME.tflite`` (float32),
    ``NAME_float16.tflite``, ``NAME_dynamic.tflite``, ``NAME_int8.tflite``,
    ``NAME.onnx``, and ``NAME.export.json`` holds operators, sizes and the
    verification.

    Args:
        model: A ``.keras`` file or a ``keras.Model``.
        out_dir: Folder for the files (created if needed).
        formats: Any of ``"tflite"``, ``"onnx"``.
        quantize: TFLite precisions, any of `QUANTIZE_MODES`.
        dataset: Real images for int8 calibration (train split) and
            verification (``split``); defaults to the model card's dataset.
        verify: Verify every file with its runtime before keeping it.
        samples, split, max_abs_diff, min_agreement: See `verify_export`.
        calibration_samples: Train images that calibrate int8.
        int8_io, allow_flex_ops: See `export_tflite`.
        opset: See `export_onnx`.
        data_dir: Where to look for the dataset first.
        data: Your own examples for verification instead of a named dataset,
            in any form `verify_export` takes (arrays, a list or dict of arrays
            for several inputs, ``(x, y)``, a ``tf.data.Dataset``, an ``.npz``
            path); needed for models that are not image classifiers.
        calibration_data: Your own examples for int8 calibration; defaults
            to ``data``.
        preprocess: The input transform of a named dataset's calibration and
            verification images (see `choose_preprocessing`): default the
            model card's, else raw pixels 0..255.
        progress: Show progress.

    Raises:
        InvalidArgumentError: On an unknown format or precision, or when
            examples are needed and none are known.
        VerificationError: If a file disagrees with Keras; nothing is written.
    """
    formats, quantize = _check_choices(formats, quantize)
    network, model_path = resolve_model(model)
    model_tensors(network)  # refuses what cannot be exported before any work
    calibration_data = calibration_data if calibration_data is not None else data
    needs_verification_data = verify and data is None
    needs_calibration_data = "int8" in quantize and calibration_data is None
    calibration, verification_data = calibration_data, data
    source = (network, model_path, dataset, data_dir, preprocess)
    fix = "--data FILE.npz, or --no-verify without int8"
    if needs_calibration_data:
        calibration = named_examples(*source, "train", calibration_samples, fix)
    if needs_verification_data:
        verification_data = named_examples(*source, split, samples, fix)

    stem = model_path.stem if model_path is not None else network.name
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    with named_write_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=out_dir))
    steps = len(quantize) * ("tflite" in formats) + ("onnx" in formats) + verify
    try:
        with progress_steps(progress, steps, "export") as step:
            artifacts = []
            if "tflite" in formats:
                for mode in quantize:
                    name = f"{stem}.tflite" if mode == "none" else f"{stem}_{mode}.tflite"
                    artifacts.append(
                        export_tflite(
                            network,
                            staging / name,
                            mode,
                            calibration,
                            num_samples=calibration_samples,
                            int8_io=int8_io and mode == "int8",
                            allow_flex_ops=allow_flex_ops,
                        )
                    )
                    step(name)
            if "onnx" in formats:
                artifacts.append(export_onnx(network, staging / f"{stem}.onnx", opset=opset))
                step(f"{stem}.onnx")
            report = None
            if verify:
                report = verify_export(
                    network,
                    artifacts,
                    verification_data,
                    samples=samples,
                    max_abs_diff=max_abs_diff,
                    min_agreement=min_agreement,
                )
                step("verified")
        with named_write_errors(out_dir):
            moved = tuple(_move(artifact, out_dir) for artifact in artifacts)
        result = ExportResult(moved, report, out_dir / f"{stem}.export.json")
        write_atomically(result.report_path, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:  # leave no empty folder behind either
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return result


def verify_files(
    model: str | os.PathLike | keras.Model,
    paths: Sequence[str | os.PathLike],
    *,
    dataset: str | None = None,
    split: str = "test",
    samples: int = DEFAULT_SAMPLES,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    data_dir: str | None = None,
    data: Any = None,
    preprocess: str | Preprocessing | None = None,
    progress: bool = False,
) -> VerificationReport:
    """Verifies ``.tflite`` / ``.onnx`` files or bundle folders against a model.

    A bundle folder is first checked file by file against the sha256 in its
    manifest, then each of its model files is verified. The dataset defaults
    to the model card's, else the one a bundle was verified on; the
    preprocessing to ``preprocess``, else a bundle's manifest, else the rule
    of `choose_preprocessing` (the model card's, else raw pixels). ``data``
    (your own examples, as `verify_export` takes them) replaces the dataset,
    and is needed for models that are not image classifiers. Never raises for
    a failed threshold: see ``report.passed`` and ``report.raise_for_failures()``.

    Raises:
        VerificationError: If a bundle file was modified, or a file's shapes
            are not the model's.
        InvalidArgumentError: If no examples are known.
    """
    network, model_path = resolve_model(model)
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            manifest = check_bundle(path)
            files.extend(bundle_artifacts(path, manifest))
            # A bundle remembers the dataset it was verified on.
            verified = manifest.get("metrics", {}).get("verification", {})
            dataset = dataset or verified.get("dataset")
            if preprocess is None and "preprocessing" in manifest:
                # What the bundle does on the board is what its files are checked with.
                preprocess = Preprocessing.from_dict(manifest["preprocessing"])
        else:
            files.append(path)
    if data is None:
        data = named_examples(
            network, model_path, dataset, data_dir, preprocess, split, samples, "--data FILE.npz"
        )
    return verify_export(
        network,
        files,
        data,
        samples=samples,
        max_abs_diff=max_abs_diff,
        min_agreement=min_agreement,
        raise_on_failure=False,
        progress=progress,
    )


def named_examples(network, model_path, dataset, data_dir, preprocess, split, limit, fix) -> Split:
    """``limit`` examples of a split of a named dataset (by default the model card's),
    preprocessed as the model expects (see `kprune.data.choose_preprocessing`)."""
    input_shape = image_input_shape(network, _NAMED_DATASET, _OWN_DATA, any_outputs=True)
    context = model_context(network, model_path, dataset, data_dir, preprocess, bundle_task(network))
    if context.dataset is None:
        raise InvalidArgumentError(
            "Verification and int8 calibration need real examples, but no dataset is known "
            "(no model card names one). Fix: pass --dataset (fashion_mnist, cifar10 or "
            f"folder:PATH), or {fix}."
        )
    return load(
        context.dataset,
        split,
        input_shape=input_shape,
        batch_size=64,
        limit=limit,
        shuffle=False,
        data_dir=data_dir,
        preprocessing=Preprocessing.from_dict(context.preprocessing),
    )


def _check_choices(formats: Sequence[str], quantize: Sequence[str]) -> tuple[list, list]:
    formats, quantize = list(dict.fromkeys(formats)), list(dict.fromkeys(quantize))
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise InvalidArgumentError(
            f"`formats` must be a non-empty choice of {FORMATS}. Received formats={formats}."
        )
    unknown = [mode for mode in quantize if mode not in QUANTIZE_MODES]
    if unknown or not quantize:
        raise InvalidArgumentError(
            f"`quantize` must be a non-empty choice of {QUANTIZE_MODES}. Received quantize={quantize}."
        )
    return formats, quantize


def _move(artifact: ExportedArtifact, out_dir: Path) -> ExportedArtifact:
    from dataclasses import replace

    target = out_dir / artifact.path.name
    os.replace(artifact.path, target)
    return replace(artifact, path=target)
