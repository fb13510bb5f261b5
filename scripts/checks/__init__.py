"""CI and checks; see scripts/__init__.py."""
