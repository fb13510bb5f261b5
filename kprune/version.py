"""The version of kprune (read by pyproject.toml and written into bundles)."""

__version__ = "0.1.0"
