"""Timings of kprune itself; see scripts/__init__.py."""
