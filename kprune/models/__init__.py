"""Model builders and the name → builder registry used by the CLI."""

from kprune.models.registry import available, build, register
from kprune.models.squeezenet import squeezenet

__all__ = ["available", "build", "register", "squeezenet"]
