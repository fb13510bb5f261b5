"""What the scripts share: reading and writing JSON files, the generated sections of a Markdown page,
and the pick of the most pruned model within an accuracy budget.

Run the scripts from the repository root as modules (``python -m scripts.experiments.results …``)
so that ``scripts.common`` and ``kprune`` import from this checkout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON (one trailing newline), making the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def signed(points: float) -> str:
    """A change in points as the docs print it: sign always, two decimals, a true minus sign."""
    return f"{points:+.2f}".replace("-", "−")


def change(after: float, before: float) -> str:
    """The change between two accuracies (fractions) in points, as `signed` prints it."""
    return signed(100 * (after - before))


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


def best_within_budget(
    rows: list[dict], budget: float, drop: Callable[[dict], float], prefer: Callable[[dict], Any]
) -> dict | None:
    """The row that ``prefer`` ranks highest among those whose ``drop`` (points of accuracy
    lost) is at most ``budget``; None when no row is within it. Ties go to the first row."""
    within = [row for row in rows if drop(row) <= budget]
    return max(within, key=prefer, default=None)
