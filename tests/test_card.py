"""Model cards: paths, JSON round trip, Markdown content, environment facts."""

import json
import platform
import sys

from kprune import card
from kprune.card import card_paths, command_line, environment, read_card, write_card

CARD = {
    "model": "squeezenet1_1",
    "dataset": "fashion_mnist",
    "test_accuracy": 0.91234567,
    "params": 727626,
    "preprocessing": {"mean": [0.286], "scale": 1 / 255},
    "class_names": ["T-shirt/top", "Trouser"],
    "note": "a|b",
    "command": "kprune train --model squeezenet1_1 --out models/x.keras",
    "environment": {"python": "3.11.7", "libraries": {"keras": "3.15.1", "onnx": None}},
}


def test_card_paths(tmp_path):
    assert card_paths(tmp_path / "x.keras") == (tmp_path / "x.card.json", tmp_path / "x.card.md")
    # A dot in the stem is kept.
    assert card_paths("runs/a.v2.keras")[0].as_posix() == "runs/a.v2.card.json"


def test_round_trip(tmp_path):
    model_path = tmp_path / "model.keras"
    json_path, md_path = write_card(model_path, CARD)
    assert json_path.is_file() and md_path.is_file()
    assert read_card(model_path) == CARD
    assert json.loads(json_path.read_text()) == CARD


def test_read_card_absent(tmp_path):
    assert read_card(tmp_path / "nothing.keras") is None


def test_markdown_contains_command_and_facts(tmp_path):
    _, md_path = write_card(tmp_path / "model.keras", CARD)
    text = md_path.read_text()
    assert text.startswith("# Model card: model.keras\n")
    assert "```\nkprune train --model squeezenet1_1 --out models/x.keras\n```" in text
    assert "| test_accuracy | 0.9123 |" in text
    assert "| params | 727626 |" in text
    assert "| note | a\\|b |" in text  # pipes escaped inside a table cell
    assert "| preprocessing | mean=[0.286], scale=0.0039 |" in text
    assert "| keras | 3.15.1 |" in text and "| onnx | None |" in text
    assert "| command |" not in text and "| environment |" not in text


def test_environment_and_command_line(monkeypatch):
    env = environment()
    assert env["python"] == platform.python_version()
    assert env["libraries"]["keras"].startswith("3.")
    assert set(card.LIBRARIES) == set(env["libraries"])
    monkeypatch.setattr(sys, "argv", ["/usr/bin/kprune", "train", "--out", "my model.keras"])
    assert command_line() == "kprune train --out 'my model.keras'"


def test_markdown_lists_the_commands_of_the_whole_training_chain(tmp_path):
    from kprune.card import write_card

    first = {"command": "kprune train --out a.keras", "test_accuracy": 0.9}
    second = {"command": "kprune train --model a.keras --out b.keras", "trained_from": first}
    _, md_path = write_card(tmp_path / "b.keras", second)
    text = md_path.read_text()
    assert text.index("kprune train --out a.keras") < text.index("kprune train --model a.keras")
    assert "| trained_from |" not in text
