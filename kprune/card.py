"""Model cards and run metadata: what was run, on what, with which libraries."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

from kprune.files import write_atomically

LIBRARIES = (
    "kprune",
    "tensorflow",
    "keras",
    "numpy",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "tensorflow-datasets",
)


def environment() -> dict:
    """Python, platform, CPU count and the versions of the libraries that matter."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "libraries": versions,
    }


def command_line(context=None) -> str:
    """The command that reproduces this run, as a shell would run it.

    Args:
        context: The ``typer.Context`` of a kprune command. The command is then
            rebuilt from its parsed values: ``kprune COMMAND``, its arguments
            and every option that differs from its default — the same however
            it was invoked. Without one: ``sys.argv``.
    """
    if context is not None:
        return shlex.join(["kprune", *_command_words(context)])
    program = Path(sys.argv[0]).name if sys.argv else "python"
    return shlex.join([program, *sys.argv[1:]])


def _command_words(context) -> list[str]:
    words = [context.info_name]
    for param in context.command.params:
        value = context.params.get(param.name)
        if param.param_type_name == "argument":
            words.extend(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            continue
        if value is None or value == param.default or param.name == "help":
            continue
        if getattr(param, "is_flag", False):
            names = param.opts if value else param.secondary_opts
            if names:
                words.append(max(names, key=len))
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        words += [max(param.opts, key=len), text]
    return words


def card_paths(model_path: str | os.PathLike) -> tuple[Path, Path]:
    """``x.keras`` → ``(x.card.json, x.card.md)``."""
    path = Path(model_path)
    # Path.stem, not with_suffix: "run.v2.keras" must keep its ".v2".
    stem = path.stem if path.suffix == ".keras" else path.name
    return path.with_name(f"{stem}.card.json"), path.with_name(f"{stem}.card.md")


def write_card(model_path: str | os.PathLike, card: dict) -> tuple[Path, Path]:
    """Writes the card beside the model, as JSON and as Markdown."""
    json_path, md_path = card_paths(model_path)
    write_atomically(json_path, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
    write_atomically(md_path, _markdown(Path(model_path).name, card).encode())
    return json_path, md_path


def read_card(model_path: str | os.PathLike) -> dict | None:
    """The JSON card beside a model, or None."""
    json_path, _ = card_paths(model_path)
    return json.loads(json_path.read_text()) if json_path.is_file() else None


def _markdown(title: str, card: dict) -> str:
    lines = [f"# Model card: {title}", ""]
    commands, source = [], card
    while source:  # earliest command first: a model trained from a saved one
        if source.get("command"):
            commands.insert(0, source["command"])
        source = source.get("trained_from")
    if commands:
        lines += ["Reproduce with:", "", "```", *commands, "```", ""]
    lines += ["| fact | value |", "| --- | --- |"]
    for key, value in card.items():
        if key in ("command", "environment", "trained_from"):
            continue
        lines.append(f"| {key} | {_cell(value)} |")
    env = card.get("environment")
    if env:
        lines += ["", "## Environment", "", "| | |", "| --- | --- |"]
        for key, value in env.items():
            if key == "libraries":
                for library, version in value.items():
                    lines.append(f"| {library} | {version} |")
            else:
                lines.append(f"| {key} | {value} |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|")
