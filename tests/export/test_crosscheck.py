"""scripts.checks.crosscheck (ARM vs x86 records); the commands scripts/checks/check_aarch64.sh builds."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kprune.errors import InvalidArgumentError
from kprune.latency.emulator import cpuinfo_text
from scripts.checks.crosscheck import board_requirements, compare, format_table, main

SCRIPT = Path(__file__).parents[2] / "scripts" / "checks" / "check_aarch64.sh"
THRESHOLDS = {"max_abs_diff": 1e-4, "min_agreement": 0.98}
MANIFEST = {
    "artifacts": {
        "tflite": {"file": "model.tflite", "quantize": "none"},
        "tflite_int8": {"file": "model_int8.tflite", "quantize": "int8"},
    },
    "metrics": {"verification": {"thresholds": THRESHOLDS}},
}
PATHS = [f"test_{k:05d}.png" for k in range(50)]


def record(machine: str, probabilities: dict[str, np.ndarray]) -> dict:
    """A probe record: both programs of each backend saw the same outputs."""
    backends = {}
    for backend, values in probabilities.items():
        classes = values.argmax(-1).tolist()
        backends[backend] = {
            "run_bundle": {
                "paths": PATHS,
                "class_ids": classes,
                "top1_probabilities": values.max(-1).tolist(),
            },
            "rtmaps": {"paths": PATHS, "class_ids": classes, "probabilities": values.tolist()},
        }
    return {"environment": {"machine": machine}, "backends": backends}


@pytest.fixture
def outputs():
    rng = np.random.default_rng(0)
    values = {key: rng.dirichlet(np.ones(10), size=len(PATHS)) for key in MANIFEST["artifacts"]}
    labels = dict(zip(PATHS, rng.integers(0, 10, len(PATHS)).tolist()))
    return values, labels


def swap_top_two(rows: np.ndarray, indices) -> np.ndarray:
    """The same rows with the two largest values swapped in the given rows: another top-1."""
    rows = rows.copy()
    for index in indices:
        first, second = np.argsort(rows[index])[-2:][::-1]
        rows[index, [first, second]] = rows[index, [second, first]]
    return rows


def test_float_file_passes_within_max_abs_diff_and_int8_on_agreement(outputs):
    values, labels = outputs
    arm = {key: value.copy() for key, value in values.items()}
    arm["tflite"][3, 7] += 3e-5
    arm["tflite_int8"] = swap_top_two(values["tflite_int8"], [5])  # 49 of 50 agree

    rows = compare(record("x86_64", values), record("aarch64", arm), labels, MANIFEST)

    by_key = {(row.backend, row.program): row for row in rows}
    truth = np.array([labels[path] for path in PATHS])
    rtmaps = by_key["tflite", "rtmaps"]
    assert rtmaps.max_abs_diff == pytest.approx(np.abs(arm["tflite"] - values["tflite"]).max())
    assert rtmaps.max_abs_diff == pytest.approx(3e-5) and rtmaps.passed
    assert rtmaps.accuracy == np.mean(arm["tflite"].argmax(-1) == truth)
    int8 = by_key["tflite_int8", "run_bundle"]
    assert int8.top1_agreement == 0.98 and int8.passed
    assert int8.accuracy == np.mean(arm["tflite_int8"].argmax(-1) == truth)
    assert int8.reference_accuracy == np.mean(values["tflite_int8"].argmax(-1) == truth)
    assert by_key["tflite", "run_bundle"].note == "top-1 probability only"
    assert len(rows) == 4 and all(row.passed for row in rows)


def test_thresholds_come_from_the_manifest(outputs):
    values, labels = outputs
    arm = {key: value.copy() for key, value in values.items()}
    arm["tflite"][0, 0] += 2e-4
    arm["tflite_int8"] = swap_top_two(values["tflite_int8"], [1, 2])  # 48 of 50 = 96%

    rows = compare(record("x86_64", values), record("aarch64", arm), labels, MANIFEST)

    failed = {(row.backend, row.program) for row in rows if not row.passed}
    assert failed == {
        ("tflite", "rtmaps"),
        ("tflite_int8", "run_bundle"),
        ("tflite_int8", "rtmaps"),
    }
    assert {row.criterion for row in rows} == {"max abs diff ≤ 1e-04", "top-1 agreement ≥ 98%"}
    assert "**FAIL**" in format_table({"cortex-a53": rows}, 50)


def test_a_program_that_failed_is_a_failed_row(outputs):
    values, labels = outputs
    arm = record("aarch64", values)
    arm["backends"]["tflite"]["run_bundle"] = {"error": "Traceback ...\nSegmentation fault"}
    arm["backends"]["tflite_int8"]["rtmaps"]["paths"] = PATHS[::-1]

    rows = compare(record("x86_64", values), arm, labels, MANIFEST)

    notes = {(row.backend, row.program): row.note for row in rows if not row.passed}
    assert notes == {
        ("tflite", "run_bundle"): "aarch64 failed: Segmentation fault",
        ("tflite_int8", "rtmaps"): "x86 and aarch64 saw different images",
    }


def test_a_record_made_on_x86_is_refused(outputs):
    values, labels = outputs
    with pytest.raises(InvalidArgumentError, match="ran on 'x86_64', not aarch64.*binfmt"):
        compare(record("x86_64", values), record("x86_64", values), labels, MANIFEST)


def test_compare_command_exits_1_and_names_what_failed(outputs, tmp_path, capsys):
    values, labels = outputs
    arm = {key: value.copy() for key, value in values.items()}
    arm["tflite"][0, 0] += 1e-3
    (tmp_path / "bundle").mkdir()
    files = {
        "bundle/manifest.json": MANIFEST,
        "labels.json": labels,
        "x86.json": record("x86_64", values),
        "a53.json": record("aarch64", arm),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))

    status = main(
        [
            "compare",
            "--bundle",
            str(tmp_path / "bundle"),
            "--labels",
            str(tmp_path / "labels.json"),
            "--reference",
            str(tmp_path / "x86.json"),
            "--json",
            str(tmp_path / "rows.json"),
            f"cortex-a53={tmp_path / 'a53.json'}",
        ]
    )

    assert status == 1
    assert "cortex-a53 model.tflite rtmaps" in capsys.readouterr().err
    rows = json.loads((tmp_path / "rows.json").read_text())["cortex-a53"]
    top1 = np.abs(arm["tflite"].max(-1) - values["tflite"].max(-1)).max()  # all run_bundle prints
    assert [row["max_abs_diff"] for row in rows][:2] == pytest.approx([top1, 1e-3], rel=1e-6)


def test_cpuinfo_describes_the_emulated_core():
    text = cpuinfo_text("cortex-a72", processors=2)

    assert text.count("processor\t:") == 2
    assert "CPU implementer\t: 0x41" in text and "CPU part\t: 0xd08" in text
    assert "CPU part\t: 0xd03" in cpuinfo_text("cortex-a53")
    with pytest.raises(InvalidArgumentError, match="Unknown core 'max'.*cortex-a53, cortex-a72"):
        cpuinfo_text("max")


def test_board_requirements_follow_the_bundle(tmp_path):
    onnx_only = {"artifacts": {"onnx": {"file": "model.onnx"}}}

    binary = "--only-binary=:all:"
    assert board_requirements(tmp_path, MANIFEST) == [binary, "numpy", "ai-edge-litert"]
    assert board_requirements(tmp_path, onnx_only) == [binary, "numpy", "onnxruntime"]
    (tmp_path / "requirements.txt").write_text("numpy\n")
    assert board_requirements(tmp_path, MANIFEST) == [binary, "-r", "requirements.txt"]


def dry_run(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_script_builds_root_install_and_one_probe_per_core(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    root = tmp_path / "root"

    result = dry_run(
        str(bundle),
        "--dry-run",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--cores",
        "cortex-a53,cortex-a72",
        "--suite",
        "bullseye",
        "--pin",
        "numpy==1.24.4",
    )

    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines() if ": " not in line]
    mmdebstrap = next(c for c in commands if "mmdebstrap" in c)
    assert mmdebstrap[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert "--architectures=arm64" in mmdebstrap and "bullseye" in mmdebstrap
    assert mmdebstrap[mmdebstrap.index("bullseye") + 1] == f"{root}.partial"
    assert ["mv", f"{root}.partial", str(root)] in commands  # complete or not at all
    entered = [c for c in commands if "--enter-root" in c]
    assert all(c[:5] == ["unshare", "--mount", "--propagation", "private", "--"] for c in entered)
    install = next(c for c in entered if "pip" in c)
    assert install[-2:] == ["-c", "/mnt/out/pins.txt"]
    probes = [c for c in entered if "/mnt/kprune/scripts/checks/aarch64_probe.py" in c]
    assert [c[c.index("--enter-root") + 2] for c in probes] == ["cortex-a53", "cortex-a72"]
    assert [c[-1] for c in probes] == ["/mnt/out/cortex-a53.json", "/mnt/out/cortex-a72.json"]
    compare_command = next(c for c in commands if "compare" in c)
    assert compare_command[-2:] == [
        f"cortex-a53={tmp_path}/out/cortex-a53.json",
        f"cortex-a72={tmp_path}/out/cortex-a72.json",
    ]


def test_script_reuses_a_complete_root(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / ".kprune-root-complete").touch()

    result = dry_run(
        str(bundle), "--dry-run", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out")
    )

    assert "arm64 root: reusing" in result.stdout and "mmdebstrap" not in result.stdout
    # the instruction counts of the bundle's files come after the agreement check
    lines = result.stdout.splitlines()
    compare_at = next(i for i, line in enumerate(lines) if line.startswith("crosscheck compare"))
    counts = next(i for i, line in enumerate(lines) if line.startswith("crosscheck counts"))
    assert counts > compare_at and f"--root {tmp_path / 'root'}" in lines[counts]


def test_script_root_only_builds_the_root_and_the_count_venv(tmp_path):
    root = tmp_path / "root"

    result = dry_run("--root-only", "--dry-run", "--root", str(root), "--out", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    timings = re.compile(r": \d+ s$")  # "arm64 root (bookworm): 0 s"
    commands = [shlex.split(line) for line in result.stdout.splitlines() if not timings.search(line)]
    assert any("mmdebstrap" in c for c in commands) and ["mv", f"{root}.partial", str(root)] in commands
    entered = [c for c in commands if "--enter-root" in c]
    install = next(c for c in entered if "pip" in c)
    assert install[install.index("--enter-root") + 7] == "/opt/kprune-count/venv/bin/python"
    assert install[-3:] == ["--only-binary=:all:", "numpy", "ai-edge-litert"]  # the count venv's
    assert not [c for c in entered if "aarch64_probe.py" in " ".join(c)]  # no bundle, no probe
    assert ["touch", f"{root}/opt/kprune-count/venv/.complete"] in commands


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "no bundle given. Fix:"),
        (("--root-only", "/some/bundle"), "--root-only takes no bundle and no --profile. Fix:"),
        (("/nonexistent",), "is not a kprune bundle.*Fix: pass the folder"),
    ],
)
def test_script_names_the_fix(arguments, message):
    result = dry_run(*arguments)

    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr)


# ---------------------------------------------------------------- the board-side profiler

REAL_TABLE = Path(__file__).parents[2] / "docs" / "results" / "latency" / "latency_table.json"


def _compare_with_profiles(tmp_path, outputs, profilers: dict[str, dict]) -> int:
    values, labels = outputs
    (tmp_path / "bundle").mkdir()
    files = {
        "bundle/manifest.json": MANIFEST,
        "labels.json": labels,
        "x86.json": {**record("x86_64", values), "profiler": profilers["x86"]},
        "a53.json": {**record("aarch64", values), "profiler": profilers["a53"]},
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    return main(
        [
            "compare",
            "--bundle",
            str(tmp_path / "bundle"),
            "--labels",
            str(tmp_path / "labels.json"),
            "--reference",
            str(tmp_path / "x86.json"),
            "--json",
            str(tmp_path / "rows.json"),
            f"cortex-a53={tmp_path / 'a53.json'}",
        ]
    )


def test_profiler_tables_are_loaded_and_summarized(outputs, tmp_path, capsys):
    """A real table (the shipped baseline's, x86 FMA3: tile 16) on both sides: the summary
    reads the whole model's measured time from the file and loads the table as prune does."""
    (tmp_path / "x86.latency_table.json").write_bytes(REAL_TABLE.read_bytes())
    (tmp_path / "a53.latency_table.json").write_bytes(REAL_TABLE.read_bytes())
    ran = {"status": "ran", "seconds": 12.0}
    status = _compare_with_profiles(
        tmp_path,
        outputs,
        {
            "x86": {**ran, "table": "x86.latency_table.json"},
            "a53": {**ran, "table": "a53.latency_table.json"},
        },
    )

    assert status == 0
    data = json.loads(REAL_TABLE.read_text())
    whole = data["measured_ms"][next(c["file"] for c in data["calibration"] if c["fraction"] == 1.0)]
    summary = json.loads((tmp_path / "rows.json").read_text())["profiler"]["cortex-a53"]
    assert summary["files"] == len(data["measured_ms"]) and summary["step"] == 16
    assert summary["model_ms"] == pytest.approx(whole)
    assert f"| cortex-a53 | ran | {len(data['measured_ms'])} | 16 | {whole:.3f} / " in capsys.readouterr().out


def test_a_profiler_that_failed_on_arm_fails_the_check(outputs, tmp_path, capsys):
    (tmp_path / "x86.latency_table.json").write_bytes(REAL_TABLE.read_bytes())
    status = _compare_with_profiles(
        tmp_path,
        outputs,
        {
            "x86": {"status": "ran", "table": "x86.latency_table.json", "seconds": 3.0},
            "a53": {"status": "failed", "error": "Traceback …\nImportError: no runtime"},
        },
    )

    assert status == 1
    captured = capsys.readouterr()
    assert "| cortex-a53 | **failed** ImportError: no runtime |" in captured.out
    assert "cortex-a53 profiler (failed)" in captured.err


def test_probe_runs_the_bundles_profiler_on_a_plan(tmp_path):
    """scripts/checks/aarch64_probe.py's run_profiler: the bundle's own kprune_profile.py, in its own
    process, writes a table next to the record that kprune loads."""
    from kprune.export import templates
    from kprune.latency.profile import write_plan
    from kprune.latency.table import LatencyTable
    from scripts.checks import aarch64_probe
    from tests.latency.conftest import make_small_model

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "kprune_profile.py").write_bytes(
        (Path(templates.__file__).parent / "kprune_profile.py").read_bytes()
    )
    plan = write_plan(make_small_model(), tmp_path / "plan", sweep_channels=2)

    result = aarch64_probe.run_profiler(str(bundle), str(tmp_path / "plan"), str(tmp_path / "x86.json"))

    assert result["status"] == "ran" and result["table"] == "x86.latency_table.json", result
    assert set(LatencyTable.load(tmp_path / "x86.latency_table.json").entries) == set(plan["entries"])
    assert aarch64_probe.run_profiler(str(bundle), None, str(tmp_path / "x.json"))["status"] == "not run"
    (bundle / "kprune_profile.py").unlink()
    assert (
        "write it again with kprune bundle"
        in aarch64_probe.run_profiler(str(bundle), str(tmp_path / "plan"), str(tmp_path / "y.json"))["error"]
    )


def test_script_profiles_on_every_machine_with_profile(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (bundle / "kprune_profile.py").touch()

    result = dry_run(
        str(bundle),
        "--dry-run",
        "--root",
        str(tmp_path / "root"),
        "--out",
        str(tmp_path / "out"),
        "--profile",
        "base.keras",
    )

    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines() if ": " not in line]
    plan = next(c for c in commands if "--plan-only" in c)
    assert plan[plan.index("profile") + 1] == "base.keras" and plan[-1] == f"{tmp_path}/out/profile-plan"
    probes = [c for c in commands if any(p.endswith("aarch64_probe.py") for p in c)]
    assert [c[c.index("--profile-plan") + 1] for c in probes] == [
        f"{tmp_path}/out/profile-plan",
        "/mnt/out/profile-plan",
        "/mnt/out/profile-plan",
    ]
    (bundle / "kprune_profile.py").unlink()
    refused = dry_run(str(bundle), "--dry-run", "--root", str(tmp_path / "root"), "--profile", "base.keras")
    assert refused.returncode == 1 and "has no kprune_profile.py" in refused.stderr


def test_counts_without_emulation_say_why_in_one_line_and_do_not_fail(tmp_path, monkeypatch, capsys):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"not read: the emulator is looked for first")
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-aarch64
    assert main(["counts", "--bundle", str(bundle), "--root", str(tmp_path / "no-root")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("Instruction counts not run:") and "Fix:" in out[0]


def test_counts_count_every_tflite_file_of_the_bundle_on_every_core(tmp_path, capsys):
    from tests.latency.test_instructions import MISSING

    if MISSING:
        pytest.skip(f"no aarch64 emulation here: {MISSING}")
    import keras

    from kprune.export.tflite import export_tflite

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(8, 1)(inputs))
    export_tflite(model, bundle / "model.tflite")
    json_path = tmp_path / "counts.json"
    assert main(["counts", "--bundle", str(bundle), "--json", str(json_path)]) == 0
    found = json.loads(json_path.read_text())
    assert set(found) == {"cortex-a53", "cortex-a72"}
    assert all(set(per) == {"model.tflite"} and per["model.tflite"] > 0 for per in found.values())
    assert "| model.tflite |" in capsys.readouterr().out
