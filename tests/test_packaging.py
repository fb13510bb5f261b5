"""What a wheel holds besides modules: pyproject.toml's package-data patterns
match the files the installed package needs (the default baseline with its
model card, the bundle templates). scripts/checks/check_wheel.sh checks a built wheel."""

from pathlib import Path

import pytest

from kprune import baselines
from kprune.config import QUICKSTART, RunConfig

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kprune"


def package_data_patterns() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["package-data"]["kprune"]


def test_every_package_data_pattern_matches_files():
    for pattern in package_data_patterns():
        assert sorted(PACKAGE.glob(pattern)), f"package-data pattern {pattern!r} matches nothing"


def test_package_data_holds_the_baseline_its_card_and_the_templates():
    shipped = {path for pattern in package_data_patterns() for path in PACKAGE.glob(pattern)}
    stem = baselines.DIRECTORY / Path(baselines.DEFAULT).stem
    needed = [stem.with_suffix(".keras"), stem.with_suffix(".card.json"), stem.with_suffix(".card.md")]
    needed += sorted((PACKAGE / "export" / "templates").glob("*.py"))
    assert [path for path in needed if path not in shipped] == []


def test_the_default_model_is_the_packaged_baseline():
    assert RunConfig().model == QUICKSTART["model"] == baselines.DEFAULT
    assert baselines.packaged_path(baselines.DEFAULT).is_file()
    assert not (ROOT / baselines.DEFAULT).exists()  # one copy in git: the packaged one
