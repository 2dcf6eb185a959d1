"""The README and docs/*.md: every relative link resolves (anchors too), and the README keeps the learner's order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages other changes of issue 24 write; a link to one may point nowhere until that change is merged.
WRITTEN_ELSEWHERE = {ROOT / "docs" / "editor.md"}  # the editor set-up (the editor-tools change)

_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[^\S\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[^\S\n]+(.+?)[^\S\n]*#*[^\S\n]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (a `[x](y)` inside code is not a link)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, -1, -2 ..."""
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):  # a code span in a heading is part of it
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """Each relative link of `text` (a page at `page`) whose file or anchor does not exist, as 'target: why'."""
    problems = []
    for _, target in _LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... not a file
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:  # an anchor on this page
            if anchor not in anchors(text):
                problems.append(f"{target}: no heading with the anchor #{anchor} in {page.relative_to(ROOT)}")
            continue
        resolved = (page.parent / path_part).resolve()
        if not resolved.exists():
            if resolved not in WRITTEN_ELSEWHERE:
                problems.append(f"{target}: no such file ({resolved.relative_to(ROOT)})")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


def links(text: str) -> list[str]:
    return [target for _, target in _LINK.findall(prose(text))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_with_its_anchor(page: Path) -> None:
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


def test_the_checker_finds_a_missing_file_a_missing_anchor_and_ignores_code() -> None:
    page = ROOT / "docs" / "page.md"
    text = (
        "# Title\n\n## Two words\n\n[a](scripts.md) [b](nowhere.md) [c](#two-words) [d](#three)\n"
        "[e](verdicts.md#a-busy-machine) [f](verdicts.md#a-quiet-machine) [g](https://example.org/x)\n"
        "`[h](in-a-span.md)`\n\n```\n[i](in-a-fence.md)\n```\n"
    )
    assert broken_links(page, text) == [
        "nowhere.md: no such file (docs/nowhere.md)",
        "#three: no heading with the anchor #three in docs/page.md",
        "verdicts.md#a-quiet-machine: no heading with the anchor #a-quiet-machine in docs/verdicts.md",
    ]
    assert anchors("## `--set` and a [link](x.md)\n## Set up\n## Set up\n") == {
        "--set-and-a-link",
        "set-up",
        "set-up-1",
    }


def test_the_readme_is_in_the_learners_order_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", prose(readme), re.MULTILINE)
    assert sections == ["Set up", "From your log to a spec", "Run", "Reading a report", "How it works", "More"]
    first_block = _FENCE.search(readme)
    assert first_block is not None
    assert [line.split()[:2] for line in first_block.group(0).splitlines()[1:3]] == [["make", "run"], ["make", "test"]]
    assert "specs/day5.yaml" in links(readme) and "specs/day6-quick.yaml" in links(readme)
    linked = {target.partition("#")[0] for target in links(readme)}
    pages = {f"docs/{p.name}" for p in PAGES[1:]} | {"docs/editor.md"}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"
