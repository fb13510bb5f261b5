"""CIFAR-10 without its optional dependency: one error that names the extra."""

import sys

import pytest
from typer.testing import CliRunner

from kprune.cli import app
from kprune.data import load
from kprune.errors import MissingDependencyError

FIX = "Fix: pip install 'kprune[cifar10]'."


@pytest.fixture
def without_tensorflow_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import` now raises ImportError


def test_loading_names_the_extra(without_tensorflow_datasets, tmp_path):
    with pytest.raises(MissingDependencyError, match="needs tensorflow-datasets") as raised:
        load("cifar10", "test", data_dir=tmp_path, download=False)
    assert str(raised.value).endswith(FIX)
    assert isinstance(raised.value, ImportError)


def test_the_command_line_prints_one_line(without_tensorflow_datasets, tmp_path):
    out = tmp_path / "model.keras"
    result = CliRunner().invoke(
        app, ["train", "--model", "squeezenet1_1", "--dataset", "cifar10", "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0].endswith(FIX)
    assert list(tmp_path.iterdir()) == []  # nothing written
