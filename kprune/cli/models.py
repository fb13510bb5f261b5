"""``kprune models``: the model names that ``--model`` and MODEL accept."""

from __future__ import annotations

import typer

from kprune.cli._common import out, quiet_import, user_errors


def models():
    """List the registered model names (SqueezeNet and keras.applications)."""
    quiet_import()
    with user_errors():
        from kprune.models import available

        names = available()
    for name in names:
        out.print(name, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
