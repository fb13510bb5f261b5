"""A bundle on aarch64 against the same bundle on x86: what scripts/checks/check_aarch64.sh decides with.

The check runs scripts/checks/aarch64_probe.py once on x86 and once per emulated
ARM core (an arm64 Debian root under QEMU); each run writes what the bundle's
programs output on the same real images. This module compares two such
records under the bundle's own thresholds (``manifest.json``,
``metrics.verification.thresholds``): a float32 file fails when any output
differs from x86 by more than ``max_abs_diff``, a quantized one when fewer
than ``min_agreement`` of the images get x86's top-1 class. It also writes
the two inputs the script needs: an aarch64 ``/proc/cpuinfo`` for the
emulated core and the pip arguments a board user is told to run.

Run as ``python -m scripts.checks.crosscheck {prepare,compare} ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kprune.data import fashion_mnist
from kprune.errors import EmulatorError, InvalidArgumentError, KpruneError
from kprune.files import replaced_atomically, write_atomically
from kprune.latency.emulator import cpuinfo_text
from kprune.latency.table import LatencyTable

PROGRAMS = ("run_bundle", "rtmaps")
# What docs/DEPLOY.md ("Install") tells a board user to install, per backend.
DEPLOY_PACKAGES = {
    "tflite": "ai-edge-litert",
    "tflite_int8": "ai-edge-litert",
    "onnx": "onnxruntime",
}
REQUIREMENTS_NAME = "requirements.txt"


@dataclass(frozen=True)
class Comparison:
    """One bundle program and model file on one ARM core, against x86."""

    backend: str
    file: str
    program: str
    max_abs_diff: float | None
    top1_agreement: float | None
    accuracy: float | None
    reference_accuracy: float | None
    criterion: str
    passed: bool
    note: str = ""


def board_requirements(bundle_dir: str | os.PathLike, manifest: dict) -> list[str]:
    """The ``pip install`` arguments a board user runs for this bundle.

    The bundle's own ``requirements.txt`` when it has one; otherwise numpy and
    the runtime of each model file, as docs/DEPLOY.md says, binary wheels only.
    """
    requirements = Path(bundle_dir) / REQUIREMENTS_NAME
    if requirements.is_file():
        return ["--only-binary=:all:", "-r", REQUIREMENTS_NAME]
    artifacts = manifest.get("artifacts", {})
    runtimes = {DEPLOY_PACKAGES[key] for key in artifacts if key in DEPLOY_PACKAGES}
    return ["--only-binary=:all:", "numpy", *sorted(runtimes)]


def compare(reference: dict, candidate: dict, labels: dict[str, int], manifest: dict) -> list[Comparison]:
    """Compares an ARM probe record with the x86 one, per model file and program.

    Args:
        reference: The x86 record written by scripts/checks/aarch64_probe.py.
        candidate: The aarch64 record on the same images.
        labels: Image file name → true class.
        manifest: The bundle's manifest (artifacts, thresholds).

    Returns:
        One `Comparison` per model file and program; a program that failed
        or saw other images is a failed row with a note.

    Raises:
        InvalidArgumentError: If the candidate did not run on aarch64.
    """
    machine = candidate.get("environment", {}).get("machine")
    if machine != "aarch64":
        raise InvalidArgumentError(
            f"The ARM record ran on {machine!r}, not aarch64. Fix: run the probe inside the "
            "arm64 root (binfmt_misc must hand ARM binaries to qemu-aarch64)."
        )
    thresholds = manifest["metrics"]["verification"]["thresholds"]
    rows = []
    for backend, artifact in manifest["artifacts"].items():
        float32 = artifact.get("quantize", "none") in ("none", "float32")
        criterion = (
            f"max abs diff ≤ {thresholds['max_abs_diff']:.0e}"
            if float32
            else f"top-1 agreement ≥ {thresholds['min_agreement']:.0%}"
        )
        for program in PROGRAMS:
            ours = candidate.get("backends", {}).get(backend, {}).get(program)
            theirs = reference.get("backends", {}).get(backend, {}).get(program)
            row = dict(backend=backend, file=artifact["file"], program=program, criterion=criterion)
            problem = _unusable(theirs, ours)
            if problem:
                rows.append(
                    Comparison(
                        **row,
                        max_abs_diff=None,
                        top1_agreement=None,
                        accuracy=None,
                        reference_accuracy=None,
                        passed=False,
                        note=problem,
                    )
                )
                continue
            rows.append(_compare_outputs(row, theirs, ours, labels, thresholds, float32))
    return rows


def _unusable(reference: dict | None, candidate: dict | None) -> str:
    for side, record in (("x86", reference), ("aarch64", candidate)):
        if record is None:
            return f"no {side} result"
        if "error" in record:
            return f"{side} failed: {record['error'].splitlines()[-1]}"
    if reference["paths"] != candidate["paths"]:
        return "x86 and aarch64 saw different images"
    return ""


def _compare_outputs(row, reference, candidate, labels, thresholds, float32) -> Comparison:
    outputs = "probabilities" if "probabilities" in reference else "top1_probabilities"
    difference = np.abs(
        np.asarray(candidate[outputs], np.float64) - np.asarray(reference[outputs], np.float64)
    )
    max_abs_diff = float(difference.max()) if difference.size else 0.0
    ours, theirs = np.asarray(candidate["class_ids"]), np.asarray(reference["class_ids"])
    truth = np.asarray([labels[path] for path in reference["paths"]])
    agreement = float(np.mean(ours == theirs))
    passed = (
        max_abs_diff <= thresholds["max_abs_diff"] if float32 else agreement >= thresholds["min_agreement"]
    )
    note = "" if outputs == "probabilities" else "top-1 probability only"
    return Comparison(
        **row,
        max_abs_diff=max_abs_diff,
        top1_agreement=agreement,
        accuracy=float(np.mean(ours == truth)),
        reference_accuracy=float(np.mean(theirs == truth)),
        passed=passed,
        note=note,
    )


def profiler_summary(record: dict, record_path: str | os.PathLike) -> dict | None:
    """What the bundle's board-side profiler wrote in one probe record (None: not run).

    The table is loaded as ``kprune prune --latency-table`` loads it; under QEMU
    its times say nothing about the board, but it must load, and its fitted
    tile step is that of the kernels the runtime chose on that machine.
    """
    run = record.get("profiler") or {"status": "not run"}
    if run["status"] == "not run":
        return None
    if run["status"] != "ran":
        return {"status": run["status"], "note": str(run.get("error", "")).strip().splitlines()[-1:]}
    try:
        table = LatencyTable.load(Path(record_path).parent / run["table"])
    except KpruneError as error:
        return {"status": "unreadable table", "note": [str(error)]}
    full = next((item for item in table.calibration if item["fraction"] == 1.0), None)
    return {
        "status": "ran",
        "step": table.step,
        "files": len(table.measured),
        "model_ms": None if full is None else table.measured[full["file"]],
        "predicted_ms": None if full is None else table.predict(full["layers"]),
        "seconds": run.get("seconds"),
        "note": [],
    }


def format_profiles(summaries: dict[str, dict]) -> str:
    """A Markdown table of the board-side profiler's runs, one row per machine."""
    lines = [
        "| machine | profiler | files timed | tile step | whole model measured / predicted (ms) | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, summary in summaries.items():
        if summary["status"] != "ran":
            lines.append(f"| {label} | **{summary['status']}** {' '.join(summary['note'])} | – | – | – | – |")
            continue
        whole = (
            "–"
            if summary["model_ms"] is None
            else f"{summary['model_ms']:.3f} / {summary['predicted_ms']:.3f}"
        )
        lines.append(
            f"| {label} | ran | {summary['files']} | {summary['step']} | {whole} | {summary['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def format_table(results: dict[str, list[Comparison]], samples: int) -> str:
    """A Markdown table: one row per core, file and program."""
    lines = [
        "| core | file | program | max abs diff vs x86 | top-1 agreement "
        f"| accuracy ({samples} images) | x86 accuracy | criterion | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for core, rows in results.items():
        for row in rows:
            cells = [
                core,
                f"`{row.file}`",
                row.program,
                "–" if row.max_abs_diff is None else f"{row.max_abs_diff:.2e}",
                "–" if row.top1_agreement is None else f"{row.top1_agreement:.2%}",
                "–" if row.accuracy is None else f"{row.accuracy:.4f}",
                "–" if row.reference_accuracy is None else f"{row.reference_accuracy:.4f}",
                row.criterion,
                ("pass" if row.passed else "**FAIL**") + (f" ({row.note})" if row.note else ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_images(out_dir: str | os.PathLike, samples: int, data_dir: str | None = None) -> int:
    """The first ``samples`` Fashion-MNIST test images as PNG files, and ``labels.json``."""
    from PIL import Image

    arrays, _ = fashion_mnist.load_arrays(data_dir, download=False)
    images, labels = arrays["test"]
    if not 0 < samples <= len(images):
        raise InvalidArgumentError(f"`samples` must be in 1..{len(images)}. Received samples={samples}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {}
    for index in range(samples):
        name = f"test_{index:05d}.png"
        with replaced_atomically(out_dir / name) as temporary:  # keeps .png: the format
            Image.fromarray(images[index].squeeze(-1)).save(temporary)
        names[name] = int(labels[index])
    write_atomically(out_dir / "labels.json", json.dumps(names, indent=0).encode())
    return samples


def _read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidArgumentError(f"Cannot read {path}: {error}.") from error


def _compare_command(arguments) -> int:
    manifest = _read_json(os.path.join(arguments.bundle, "manifest.json"))
    labels = _read_json(arguments.labels)
    reference = _read_json(arguments.reference)
    candidates = {}  # core → (record path, record)
    for pair in arguments.candidates:
        core, _, path = pair.partition("=")
        candidates[core] = (path, _read_json(path))
    results = {core: compare(reference, record, labels, manifest) for core, (_, record) in candidates.items()}
    print(format_table(results, len(labels)))
    rows = {core: [asdict(row) for row in found] for core, found in results.items()}
    failed = [
        f"{core} {row.file} {row.program}"
        for core, found in results.items()
        for row in found
        if not row.passed
    ]
    profiles = {"x86": profiler_summary(reference, arguments.reference)}
    if profiles["x86"] is not None:
        for core, (path, record) in candidates.items():
            profiles[core] = profiler_summary(record, path) or {"status": "not run", "note": []}
        print("\nBoard-side profiler (kprune_profile.py; emulated times say nothing about the board):\n")
        print(format_profiles(profiles))
        failed += [
            f"{label} profiler ({summary['status']})"
            for label, summary in profiles.items()
            if summary["status"] != "ran"
        ]
        rows["profiler"] = profiles
    if arguments.json:
        write_atomically(arguments.json, json.dumps(rows, indent=1).encode())
    if failed:
        print(
            f"Error: aarch64 disagrees with x86 beyond the bundle's thresholds: {'; '.join(failed)}.",
            file=sys.stderr,
        )
        return 1
    return 0


def count_bundle(bundle_dir: str | os.PathLike, cores: list[str], root: str | None = None) -> dict:
    """Executed aarch64 instructions per inference of every .tflite file of the bundle,
    per emulated core ({core: {file name: instructions}}; `kprune.count_instructions`)."""
    from kprune.latency.instructions import count_instructions

    files = sorted(str(path) for path in Path(bundle_dir).glob("*.tflite"))
    if not files:
        raise InvalidArgumentError(f"{bundle_dir} holds no .tflite file to count.")
    found = {}
    for core in cores:
        counted = count_instructions(files, core, root=root)
        found[core] = {Path(path).name: counted[path] for path in files}
    return found


def format_counts(found: dict) -> str:
    cores = list(found)
    names = list(next(iter(found.values()))) if found else []
    lines = [
        "| file | " + " | ".join(f"{core} instructions / inference" for core in cores) + " |",
        "| --- | " + " | ".join("--:" for _ in cores) + " |",
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{found[core][name]:,.0f}" for core in cores) + " |" for name in names
    ]
    return "\n".join(lines)


def _counts_command(arguments) -> int:
    """Prints the bundle's instruction counts; counts are information, so missing emulation is
    said in one line and does not fail the check."""
    try:
        found = count_bundle(arguments.bundle, arguments.cores.split(","), arguments.root)
    except EmulatorError as error:
        print(f"Instruction counts not run: {error}")
        return 0
    print("\nExecuted aarch64 instructions per inference (kprune's QEMU counting; a proxy for cycles):\n")
    print(format_counts(found))
    if arguments.json:
        write_atomically(arguments.json, json.dumps(found, indent=1).encode())
    return 0


def prepare(
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cores: list[str],
    samples: int,
    data_dir: str | None = None,
) -> list[str]:
    """Writes what one check needs: the images, one cpuinfo per core; returns the pip arguments."""
    manifest = _read_json(os.path.join(bundle_dir, "manifest.json"))
    texts = {core: cpuinfo_text(core) for core in cores}  # unknown cores fail before any work
    write_images(Path(out_dir) / "images", samples, data_dir)
    for core, text in texts.items():
        write_atomically(Path(out_dir) / f"cpuinfo-{core}", text.encode())
    return board_requirements(bundle_dir, manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.checks.crosscheck")
    commands = parser.add_subparsers(dest="command", required=True)
    preparation = commands.add_parser(
        "prepare", help="Write real test PNGs and the cores' cpuinfo; print the pip arguments."
    )
    preparation.add_argument("bundle")
    preparation.add_argument("--out", required=True)
    preparation.add_argument("--cores", default="cortex-a53,cortex-a72")
    preparation.add_argument("--samples", type=int, default=500)
    preparation.add_argument("--data-dir")
    core_info = commands.add_parser("cpuinfo", help="Write an aarch64 /proc/cpuinfo for one emulated core.")
    core_info.add_argument("core")
    core_info.add_argument("--out", required=True)
    comparison = commands.add_parser("compare", help="Compare ARM records with the x86 one.")
    comparison.add_argument("--bundle", required=True)
    comparison.add_argument("--labels", required=True)
    comparison.add_argument("--reference", required=True, help="The x86 record.")
    comparison.add_argument("--json", help="Also write the rows here.")
    comparison.add_argument("candidates", nargs="+", metavar="CORE=RECORD")
    counting = commands.add_parser("counts", help="Count the bundle's .tflite files' aarch64 instructions.")
    counting.add_argument("--bundle", required=True)
    counting.add_argument("--cores", default="cortex-a53,cortex-a72")
    counting.add_argument("--root", help="The arm64 root (default: kprune's).")
    counting.add_argument("--json", help="Also write the counts here.")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "prepare":
            cores = arguments.cores.split(",")
            pip_arguments = prepare(
                arguments.bundle, arguments.out, cores, arguments.samples, arguments.data_dir
            )
            print(" ".join(pip_arguments))
            return 0
        if arguments.command == "cpuinfo":
            write_atomically(arguments.out, cpuinfo_text(arguments.core).encode())
            return 0
        if arguments.command == "counts":
            return _counts_command(arguments)
        return _compare_command(arguments)
    except KpruneError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
