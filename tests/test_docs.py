"""The Markdown pages: every relative link in README.md and docs/*.md reaches an existing file
and, when it names one, an existing heading; the README stays a short page for users whose test
command is the one CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose_lines(page: Path):
    """(line number, line) of ``page`` outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


def github_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page``: lower case, punctuation dropped,
    spaces to hyphens, ``-1``, ``-2`` … appended to repeats."""
    anchors, repeats = set(), {}
    for _, line in _prose_lines(page):
        heading = re.match(r"#{1,6} (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            repeats[slug] = repeats.get(slug, -1) + 1
            anchors.add(slug if repeats[slug] == 0 else f"{slug}-{repeats[slug]}")
    return anchors


def test_anchors_follow_github_rules(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n## 1. Measure: `kprune profile`\n## Notes\n## Notes\n```\n# not a heading\n```\n"
    )
    assert github_anchors(page) == {"title", "1-measure-kprune-profile", "notes", "notes-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page):
    broken = []
    for number, line in _prose_lines(page):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):  # not links inside code
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, …
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path) if path else page
            if not destination.exists():
                broken.append(f"{page.name}:{number}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in github_anchors(destination):
                broken.append(f"{page.name}:{number}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_short_and_runs_the_ci_test_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci_commands and all(command in readme.splitlines() for command in ci_commands)
    # scripts/bench_defaults.py --report writes its short table between these markers.
    assert readme.count("<!-- defaults:start -->") == 1 and readme.count("<!-- defaults:end -->") == 1
