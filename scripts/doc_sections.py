"""Generated sections of a Markdown page, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(doc: Path, name: str, heading: str, text: str) -> None:
    """Puts ``text`` between the markers of ``name`` in ``doc``; a page without them gets
    them at its end, under ``## heading``."""
    start, end = markers(name)
    page = doc.read_text()
    if start not in page:
        page = page.rstrip() + f"\n\n## {heading}\n\n{start}\n{end}\n"
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")
