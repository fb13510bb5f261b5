"""What every command shares: error handling, consoles, option aliases."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape


def _console(stderr: bool = False) -> Console:
    """A console whose tables keep their columns when piped or logged: rich would
    squeeze them into 80 columns (4-character cells) without a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=200 if piped else None)


out = _console()  # results, on stdout
err = _console(stderr=True)  # errors and notes, on stderr


@dataclass
class _State:
    debug: bool = False


state = _State()


def quiet_import(module: str = "tensorflow") -> None:
    """Imports ``module`` with file descriptor 2 (stderr) sent to /dev/null.

    TensorFlow's C++ start-up lines (absl's "All log messages before
    absl::InitializeLog()", oneDNN, CUDA) are written straight to fd 2 at
    import, where TF_CPP_MIN_LOG_LEVEL cannot silence them. Nothing is hidden
    with ``--debug``, or once the module is loaded; stderr is restored before
    an import error propagates, so real errors are still shown.

    Args:
        module: The module to import; TensorFlow by default.

    Example:
        >>> quiet_import()  # first line of a command body, before library imports
    """
    if module in sys.modules:
        return
    sys.stderr.flush()
    try:
        saved_stderr = None if state.debug else os.dup(2)
    except OSError:  # no stderr at all: nothing to quiet
        saved_stderr = None
    if saved_stderr is None:
        importlib.import_module(module)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        importlib.import_module(module)
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


class _NoteHandler(logging.Handler):
    """Library notes (logger ``"kprune"``) as ``Note: ...`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]Note:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


def show_notes() -> None:
    """Prints what the library notes (a folder without test/, raw pixels for a
    model without card) on stderr; idempotent."""
    logger = logging.getLogger("kprune")
    if not any(isinstance(handler, _NoteHandler) for handler in logger.handlers):
        logger.addHandler(_NoteHandler())


@contextlib.contextmanager
def user_errors():
    """Turns a `KpruneError` into one red line on stderr and exit code 1.

    Other exceptions are bugs and keep their traceback. With ``--debug``
    user errors show their traceback too.
    """
    from kprune.errors import KpruneError

    try:
        yield
    except KpruneError as error:
        if state.debug:
            raise
        # escape: a message such as "pip install 'kprune[cifar10]'" is text, not rich markup
        err.print(f"[bold red]Error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    except Exception as error:
        # TensorFlow's own refusals (a file it cannot decode, a shape it cannot take) that no
        # kprune check caught: their first line, not a page of graph internals.
        if state.debug or not _is_tensorflow_error(error):
            raise
        err.print(
            f"[bold red]Error:[/] TensorFlow stopped: {escape(_tensorflow_reason(error))} "
            "Fix: check the data and the model named above; --debug shows the traceback.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None


def _is_tensorflow_error(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def _tensorflow_reason(error: BaseException) -> str:
    """The op error's message without its graph decorations ({{function_node …}},
    [[node …]], [Op:…]), on one line."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\].*", " ", text, flags=re.DOTALL)
    text = re.sub(r"Error in user-defined function .*?Iterator::\S+:\s*", "", text, flags=re.DOTALL)
    reason = " ".join(text.split()) or type(error).__name__
    return reason.rstrip(".") + "."


# Options shared by several commands, defined once.
DatasetOption = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="fashion_mnist, cifar10, folder:PATH (one sub-folder per class) or synthetic.",
    ),
]
DataDirOption = Annotated[
    Optional[str],
    typer.Option("--data-dir", help="Where to look for the dataset first."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Examples per batch.")]
PreprocessOption = Annotated[
    Optional[str],
    typer.Option(
        "--preprocess",
        help="Input transform: raw (float32 pixels 0..255, as Keras' image loaders give), "
        "card (the model card's), dataset (the dataset's mean/std) or scale=S,mean=M,std=D, "
        "e.g. scale=1/255,mean=0.5,std=0.5 (per-channel: mean=0.485:0.456:0.406). "
        "Default: the model card's, else raw.",
    ),
]
StrictDataOption = Annotated[
    bool,
    typer.Option(
        "--strict-data",
        help="Stop on the first file of a folder:PATH dataset that cannot be decoded (not an image, "
        "empty, truncated, unreadable). Default: skip such files and name them in a note.",
    ),
]
LimitOption = Annotated[
    Optional[int],
    typer.Option("--limit", help="Use only the first N examples of each split (quick runs)."),
]
ModelArgument = Annotated[str, typer.Argument(help="A .keras file or a model name such as squeezenet1_1.")]


def format_count(value: float) -> str:
    """1234567 → '1.23 M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:g}"


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 32,32,1`` → (32, 32, 1); the model builder checks the length."""
    if text is None:
        return None
    from kprune.errors import InvalidArgumentError

    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidArgumentError(
            f"`--input-shape` must be H,W,C such as 32,32,3. Received {text!r}."
        ) from None
