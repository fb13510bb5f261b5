"""The deployment bundles in models/: written by one command, checked against the package.

Each bundle folder is what ``kprune bundle MODEL --out BUNDLE --force`` writes for the
model beside it (defaults: fp32 + int8 TFLite and ONNX, verified on 500 test images).
Its board-side programs are copies of ``kprune/export/templates/*.py``; nothing else
keeps them in step, so ``--check`` (and tests/test_shipped_bundles.py in the suite)
fails when a copy differs from the package's template, when one is missing, or when the
manifest's list of files does not match the folder.

    python -m scripts.checks.shipped_bundles            # write every bundle again
    python -m scripts.checks.shipped_bundles models/squeezenet1_1_fmnist_latency_bundle
    python -m scripts.checks.shipped_bundles --check    # exit 1 naming each stale file

Writing a bundle again re-exports and re-verifies its model files (about a minute, and
Fashion-MNIST must be installed), so the check does not: it covers the program copies and
the manifest (its list of files and their sha256). On this 2-core x86 machine a bundle
written again had byte-identical model files; only the manifest's ``created`` differed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from importlib import resources
from pathlib import Path

from scripts.common import load_json

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m scripts.checks.shipped_bundles"
BUNDLES = {  # bundle folder (relative to the repository root): the model it is written from
    "models/squeezenet1_1_fmnist_pruned_bundle": "models/squeezenet1_1_fmnist_pruned.keras",
    "models/squeezenet1_1_fmnist_latency_bundle": "models/squeezenet1_1_fmnist_latency.keras",
    "models/squeezenet1_1_fmnist_int8_bundle": "models/squeezenet1_1_fmnist_int8.keras",
    "models/detector_fmnist_bundle": "models/detector_fmnist.keras",
}
# Bundles whose examples are not a named dataset: the script that made them writes them again.
OWN_COMMANDS = {
    "models/detector_fmnist_bundle": ["python", "-m", "scripts.experiments.detector", "--ship"],
}
TEMPLATES = "kprune.export.templates"


def bundle_command(bundle: str) -> list[str]:
    return OWN_COMMANDS.get(bundle) or ["kprune", "bundle", BUNDLES[bundle], "--out", bundle, "--force"]


def write_bundle(bundle: str) -> None:
    """Writes ``bundle`` again from its model (replacing the folder), as `kprune bundle` does."""
    command = bundle_command(bundle)
    print("$ " + " ".join(command), flush=True)
    # this interpreter's kprune (or script), whichever `kprune` is first on PATH
    start = (
        [sys.executable, *command[1:]]
        if command[0] == "python"
        else [sys.executable, "-c", "from kprune.cli import main; main()", *command[1:]]
    )
    subprocess.run(start, cwd=ROOT, check=True)


def templates() -> dict[str, bytes]:
    """{file name: bytes} of the board-side programs the package ships."""
    folder = resources.files(TEMPLATES)
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.name.endswith(".py") and entry.name != "__init__.py"
    }


def stale_files(bundle: str, root: Path = ROOT) -> list[str]:
    """One line per file of ``bundle`` that is out of step, each with the command that refreshes it."""
    folder = root / bundle
    fix = f"Fix: {COMMAND} {bundle}  (runs `{' '.join(bundle_command(bundle))}`)"
    problems = []
    for name, program in sorted(templates().items()):
        copy = folder / name
        if not copy.is_file():
            problems.append(
                f"{bundle}/{name} is missing (kprune/export/templates/{name} is not in the bundle). {fix}"
            )
        elif copy.read_bytes() != program:
            problems.append(f"{bundle}/{name} differs from kprune/export/templates/{name}. {fix}")
    listed = load_json(folder / "manifest.json")["files"]
    present = {path.name for path in folder.iterdir() if path.is_file() and path.name != "manifest.json"}
    for name in sorted(present - listed.keys()):
        problems.append(f"{bundle}/{name} is not in the manifest's list of files. {fix}")
    for name in sorted(listed.keys() - present):
        problems.append(f"{bundle}/{name} is in the manifest's list of files but not in the folder. {fix}")
    for name in sorted(listed.keys() & present):
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != listed[name]:
            problems.append(f"{bundle}/{name} does not match its sha256 in the manifest. {fix}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", metavar="BUNDLE", help=f"default: all of {', '.join(BUNDLES)}")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale file")
    args = parser.parse_args()
    args.bundles = [bundle.rstrip("/") for bundle in args.bundles] or list(BUNDLES)
    unknown = [bundle for bundle in args.bundles if bundle not in BUNDLES]
    if unknown:
        parser.error(f"unknown bundle {', '.join(unknown)}; the shipped ones are {', '.join(BUNDLES)}.")
    if args.check:
        problems = [line for bundle in args.bundles for line in stale_files(bundle)]
        print("\n".join(problems) or f"{len(args.bundles)} bundles match the package's templates.")
        sys.exit(1 if problems else 0)
    for bundle in args.bundles:
        write_bundle(bundle)


if __name__ == "__main__":
    main()
