"""Checks what a built sdist and wheel hold; exits 1 naming what is missing.

The wheel must hold the package's data files (the default baseline with its
model card, the bundle templates); the sdist must hold every tracked file that
the package and the tests need (kprune/, tests/, configs/, models/, scripts/,
docs/), so that the suite runs from an unpacked sdist.

Usage: python -m scripts.checks.check_dist dist/kprune-X.tar.gz dist/kprune-X-py3-none-any.whl
(scripts/checks/check_wheel.sh runs it on the files it builds.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEEL_NEEDS = (
    "kprune/baselines/squeezenet1_1_fmnist_sgd.keras",
    "kprune/baselines/squeezenet1_1_fmnist_sgd.card.json",
    "kprune/baselines/squeezenet1_1_fmnist_sgd.card.md",
    "kprune/export/templates/kprune_runtime.py",
    "kprune/export/templates/run_bundle.py",
    "kprune/export/templates/rtmaps_kprune.py",
    "kprune/export/templates/kprune_images.py",
    "kprune/export/templates/kprune_profile.py",
)
SDIST_FOLDERS = ("kprune", "tests", "configs", "models", "scripts", "docs")
SDIST_FILES = ("README.md", "pyproject.toml", "MANIFEST.in")


def tracked_files() -> list[str]:
    """The files git tracks in the folders the sdist must hold (empty outside a git checkout)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "--", *SDIST_FOLDERS, *SDIST_FILES],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return []
    return [line for line in listing.stdout.splitlines() if (ROOT / line).is_file()]


def sdist_members(path: Path) -> set[str]:
    with tarfile.open(path) as archive:  # kprune-0.1.0/tests/... → tests/...
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def wheel_members(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path)
    parser.add_argument("wheel", type=Path)
    arguments = parser.parse_args()

    problems = []
    wheel = wheel_members(arguments.wheel)
    problems += [f"the wheel lacks {name}" for name in WHEEL_NEEDS if name not in wheel]
    expected = tracked_files() or [*WHEEL_NEEDS, *SDIST_FILES, "tests/conftest.py", "configs/quickstart.yaml"]
    sdist = sdist_members(arguments.sdist)
    problems += [f"the sdist lacks {name}" for name in expected if name not in sdist]
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if problems:
        print("check_dist: fix pyproject.toml's package-data or MANIFEST.in.", file=sys.stderr)
        return 1
    for path, count in ((arguments.sdist, len(sdist)), (arguments.wheel, len(wheel))):
        print(f"check_dist: {path.name}: {path.stat().st_size / 1e6:.2f} MB, {count} files, complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
