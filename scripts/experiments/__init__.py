"""What produces the numbers of docs/RESULTS.md; see scripts/__init__.py."""
