"""The ``kprune`` command line: one module per command, registered here.

Commands import the library lazily, so ``kprune --help`` answers at once
instead of waiting for TensorFlow to load.
"""

from __future__ import annotations

import os

import typer

from kprune.cli import _common

app = typer.Typer(
    name="kprune",
    help="Structured filter pruning for Keras 3: rank, remove, fine-tune, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from kprune import __version__

        _common.out.print(f"kprune {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks of errors."),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print kprune's version and exit.",
    ),
):
    _common.state.debug = debug
    _common.show_notes()


def _register_commands() -> None:
    from kprune.cli import bench, bundle, export, info, models, profile, prune, rank, report, train, verify
    from kprune.cli import eval as eval_command

    for module in (
        train,
        eval_command,
        info,
        models,
        rank,
        prune,
        report,
        export,
        verify,
        bundle,
        bench,
        profile,
    ):
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app()
