"""``kprune export / verify / bundle / bench``: files written, exit codes, one-line errors."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

import kprune
from kprune.card import write_card
from kprune.cli import app
from tests.export.conftest import make_position_cnn, synthetic

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A trained 16×16×3 CNN saved with a model card naming the synthetic dataset."""
    keras.utils.set_random_seed(0)
    model = make_position_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(synthetic("train").dataset.shuffle(640, seed=0), epochs=4, shuffle=False, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "cnn.keras"
    kprune.save_model(model, path)
    train = synthetic("train")
    write_card(
        path,
        {
            "dataset": "synthetic",
            "preprocessing": train.preprocessing.to_dict(),
            "class_names": list(train.info.class_names),
        },
    )
    return path


@pytest.fixture(scope="module")
def export_dir(model_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    result = runner.invoke(
        app,
        [
            "export",
            str(model_file),
            "--format",
            "tflite,onnx",
            "--quantize",
            "none,int8",
            "--out",
            str(folder),
            "--samples",
            "160",
            "--calibration-samples",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def test_export_writes_verified_files_and_a_report(export_dir):
    names = {path.name for path in export_dir.iterdir()}
    report = json.loads((export_dir / "cnn.export.json").read_text())

    assert names == {"cnn.tflite", "cnn_int8.tflite", "cnn.onnx", "cnn.export.json"}
    assert [a["quantize"] for a in report["artifacts"]] == ["none", "int8", "none"]
    for artifact in report["artifacts"]:
        assert not [op for op in artifact["ops"] if op.startswith("Flex")]
    assert report["verification"]["passed"]
    checks = {check["file"]: check for check in report["verification"]["artifacts"]}
    assert checks["cnn.tflite"]["max_abs_diff"] <= 1e-4
    assert checks["cnn.onnx"]["max_abs_diff"] <= 1e-4
    assert checks["cnn_int8.tflite"]["top1_agreement"] >= 0.98


def test_export_json_output_lists_ops(model_file, tmp_path):
    result = runner.invoke(
        app,
        [
            "export",
            str(model_file),
            "-f",
            "tflite",
            "-q",
            "float16,dynamic",
            "-o",
            str(tmp_path),
            "-n",
            "32",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    artifacts = json.loads(result.stdout)["artifacts"]
    assert [a["file"] for a in artifacts] == ["cnn_float16.tflite", "cnn_dynamic.tflite"]
    assert all(a["ops"]["CONV_2D"] == 2 for a in artifacts)


def test_verify_passes_on_the_exported_files(model_file, export_dir):
    result = runner.invoke(
        app,
        [
            "verify",
            str(model_file),
            str(export_dir / "cnn.tflite"),
            str(export_dir / "cnn_int8.tflite"),
            str(export_dir / "cnn.onnx"),
            "--samples",
            "160",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "cnn_int8.tflite" in result.stdout and "FAILED" not in result.stdout


def test_verify_fails_with_exit_1_when_a_threshold_is_violated(model_file, export_dir):
    result = runner.invoke(
        app,
        [
            "verify",
            str(model_file),
            str(export_dir / "cnn.onnx"),
            "--max-diff",
            "1e-30",
            "-n",
            "32",
        ],
    )

    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "Error:" in result.stderr and "cnn.onnx" in result.stderr


def test_verify_fails_with_exit_1_on_a_tampered_file(model_file, export_dir, tmp_path):
    tampered = tmp_path / "cnn.tflite"
    content = bytearray((export_dir / "cnn.tflite").read_bytes())
    model = keras.models.load_model(model_file)
    bias = model.get_layer("classifier").bias.numpy().astype("<f4").tobytes()
    offset = bytes(content).index(bias)
    content[offset : offset + 4] = b"\x00\x00\x80\x40"  # first bias value := 4.0
    tampered.write_bytes(bytes(content))

    result = runner.invoke(app, ["verify", str(model_file), str(tampered), "-n", "64", "--json"])

    assert result.exit_code == 1
    assert json.loads(result.stdout)["passed"] is False
    assert "cnn.tflite (fp32)" in result.stderr


def test_bundle_then_verify_the_bundle_and_catch_a_modified_file(model_file, tmp_path):
    bundle = tmp_path / "bundle"
    result = runner.invoke(
        app,
        [
            "bundle",
            str(model_file),
            "--out",
            str(bundle),
            "--samples",
            "64",
            "--calibration-samples",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "run_bundle.py" in result.stdout and (bundle / "rtmaps_kprune.py").is_file()

    assert runner.invoke(app, ["verify", str(model_file), str(bundle), "-n", "64"]).exit_code == 0
    again = runner.invoke(app, ["bundle", str(model_file), "--out", str(bundle)])
    assert again.exit_code == 1 and "--force" in again.stderr
    (bundle / "labels.txt").write_text("tampered\n")
    tampered = runner.invoke(app, ["verify", str(model_file), str(bundle), "-n", "64"])
    assert tampered.exit_code == 1 and "labels.txt was modified" in tampered.stderr


def test_bench_prints_json_for_scripts(model_file, tmp_path):
    output = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            str(model_file),
            str(model_file),
            "--runtimes",
            "tflite,onnx",
            "--batch-sizes",
            "1",
            "--threads",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--json",
            "--output",
            str(output),
        ],
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads(output.read_text())
    assert len(report["measurements"]) == 4
    assert {row["flops_ratio"] for row in report["speedups"]} == {1.0}


def test_bench_table(model_file):
    result = runner.invoke(
        app,
        [
            "bench",
            str(model_file),
            "--runtimes",
            "keras",
            "--batch-sizes",
            "1,2",
            "--repeats",
            "2",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "median / p90 ms" in result.stdout and "ideal = FLOPs ratio" in result.stdout


def test_bench_table_with_int8_over_the_fp32_baseline(model_file, tmp_path):
    result = runner.invoke(
        app,
        [
            "bench",
            str(model_file),
            str(model_file),
            "--runtimes",
            "tflite",
            "--batch-sizes",
            "1",
            "--threads",
            "1",
            "--precisions",
            "fp32,int8",
            "--calibration",
            "synthetic",
            "--calibration-samples",
            "32",
            "--warmup",
            "0",
            "--repeats",
            "2",
            "--keep-files",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the table wraps at the runner's 80 columns
    assert "│ int8 │" in text and "fp32 baseline: cnn's fp32 file" in text
    assert "int8 calibration: synthetic (train split, 32 examples" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0.tflite",
        "0_int8.tflite",
        "1.tflite",
        "1_int8.tflite",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["export", "missing.keras", "--out", "x"], "does not exist"),
        (["export", "{model}", "--out", "{tmp}", "--quantize", "int4"], "quantize"),
        (["export", "{model}", "--out", "{tmp}", "--format", "coreml"], "formats"),
        (["bench", "{model}", "--threads", "one"], "--threads"),
        (["bench", "{model}", "--runtimes", "onnx", "--precisions", "fp32,int8"], "no tflite"),
        (["verify", "{model}", "{tmp}"], "not a kprune bundle"),
    ],
)
def test_user_errors_are_one_line_with_exit_1(model_file, tmp_path, arguments, message):
    arguments = [a.format(model=model_file, tmp=tmp_path) for a in arguments]

    result = runner.invoke(app, arguments)

    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_export_without_card_or_dataset_names_the_fix(tmp_path):
    model = make_position_cnn()
    kprune.save_model(model, tmp_path / "bare.keras")

    result = runner.invoke(app, ["export", str(tmp_path / "bare.keras"), "--out", str(tmp_path)])

    assert result.exit_code == 1 and "--dataset" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.keras"]


def test_export_that_fails_verification_leaves_nothing(model_file, tmp_path):
    out = tmp_path / "out"

    result = runner.invoke(
        app,
        [
            "export",
            str(model_file),
            "-f",
            "onnx",
            "-o",
            str(out),
            "-n",
            "16",
            "--max-diff",
            "1e-30",
        ],
    )

    assert result.exit_code == 1 and "disagree" in result.stderr
    assert not out.exists()


def test_verify_a_bundle_of_a_model_without_card_uses_the_bundle_dataset(model_file, tmp_path):
    bare = tmp_path / "bare.keras"
    bare.write_bytes(model_file.read_bytes())  # same model, no card beside it
    bundle = tmp_path / "bundle"
    made = runner.invoke(
        app, ["bundle", str(bare), "-o", str(bundle), "-d", "synthetic", "--no-int8", "-n", "32"]
    )
    assert made.exit_code == 0, made.output

    result = runner.invoke(app, ["verify", str(bare), str(bundle), "-n", "32", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 32


def test_series_model_exports_with_data_file_and_bundle_refuses_it(tmp_path):
    from tests.export.test_any_model import random_inputs, series_classifier

    model = series_classifier()
    kprune.save_model(model, tmp_path / "series.keras")
    (series,) = random_inputs(model, count=24)
    np.savez(tmp_path / "examples.npz", series=series)

    exported = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "series.keras"),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "onnx",
            "--data",
            str(tmp_path / "examples.npz"),
            "--samples",
            "24",
        ],
    )
    bundled = runner.invoke(
        app,
        [
            "bundle",
            str(tmp_path / "series.keras"),
            "--out",
            str(tmp_path / "bundle"),
            "--dataset",
            "synthetic",
        ],
    )

    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "out" / "series.onnx").is_file()
    assert bundled.exit_code == 1 and "Traceback" not in bundled.output
    message = " ".join(bundled.stderr.split())
    assert "`kprune bundle` supports image models only" in message
    assert "Fix: use `kprune export`" in message
    assert not (tmp_path / "bundle").exists()


def test_bundle_of_a_detector_takes_a_data_file_and_without_one_names_the_fix(tmp_path):
    from tests.export.test_raw_bundle import canvases, model_inputs, tiny_detector

    kprune.save_model(tiny_detector(), tmp_path / "detector.keras")
    np.savez(tmp_path / "canvases.npz", canvas=model_inputs(canvases(32, seed=0)))
    command = ["bundle", str(tmp_path / "detector.keras"), "--preprocess", "scale=1/255", "--no-int8"]

    out = tmp_path / ("a_long_folder_name_" * 5)  # the printed command stays one line however long
    bundled = runner.invoke(
        app, [*command, "--out", str(out), "--data", str(tmp_path / "canvases.npz"), "-n", "32"]
    )
    refused = runner.invoke(app, [*command, "--out", str(tmp_path / "refused")])

    assert bundled.exit_code == 0, bundled.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "raw" and [o["name"] for o in manifest["outputs"]] == ["boxes", "objectness"]
    assert manifest["metrics"]["verification"]["samples"] == 32
    assert f"python {out / 'run_bundle.py'} IMAGE_OR_FOLDER --out OUTPUTS/" in bundled.stdout
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    message = " ".join(refused.stderr.split())
    assert "no dataset is known" in message and "--data FILE.npz" in message
    assert not (tmp_path / "refused").exists()
