"""Every design reference in the code resolves inside the repository.

Comments and docstrings cite rules by id (R1-R11 request contract, G1-G5 cache and
expiry guarantees, H1-H7 hostile traffic) and name pages as ``docs/<page>.md``. The ids
are defined in docs/design.md, as ``**R5**`` items and ``### G3: ...`` headings. The
design document outside the repository (``DESIGN.md``) must not be cited.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
SOURCES = sorted(
    path
    for folder in ("src", "tests", "bench", "examples")
    for path in (ROOT / folder).rglob("*.py")
    if ".venv" not in path.parts
)
RULE = re.compile(r"\b([RGH][1-9][0-9]?)\b")
OUTSIDE = re.compile(r"\bDESIGN\b")  # the shared DESIGN.md, or "DESIGN request contract"
PAGE = re.compile(r"\bdocs/([\w/-]+\.md)\b")


def _defined_rules() -> set[str]:
    text = DESIGN.read_text(encoding="utf-8")
    items = re.findall(r"^- \*\*([R][0-9]+)\*\*", text, re.MULTILINE)
    headings = re.findall(r"^### ([GH][0-9]+): ", text, re.MULTILINE)
    return set(items) | set(headings)


def _citations(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = []
    for path in SOURCES:
        if path == Path(__file__).resolve():
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [(f"{path.relative_to(ROOT)}:{lineno}", m) for m in pattern.findall(line)]
    return found


def test_design_defines_every_rule_family() -> None:
    defined = _defined_rules()
    expected = {f"R{i}" for i in range(1, 12)} | {f"G{i}" for i in range(1, 6)}
    expected |= {f"H{i}" for i in range(1, 8)}
    assert expected <= defined, f"missing from docs/design.md: {sorted(expected - defined)}"


def test_sources_were_found() -> None:
    assert len(SOURCES) > 50
    assert any(where.startswith("src/") for where, _ in _citations(RULE))


def _is_defined(match: str) -> bool:
    return match in _defined_rules()


def _never(match: str) -> bool:
    return False


def _page_exists(match: str) -> bool:
    return (ROOT / "docs" / match).is_file()


@pytest.mark.parametrize(
    ("pattern", "resolves", "fix"),
    [
        (RULE, _is_defined, "define the rule in docs/design.md, or cite an existing id"),
        (OUTSIDE, _never, "cite docs/design.md (its rule ids) instead of DESIGN.md"),
        (PAGE, _page_exists, "point at a page that exists in docs/"),
    ],
    ids=["rule-ids", "no-outside-design", "doc-pages"],
)
def test_references_resolve(
    pattern: re.Pattern[str], resolves: Callable[[str], bool], fix: str
) -> None:
    bad = [f"{where}: {match}" for where, match in _citations(pattern) if not resolves(match)]
    assert not bad, f"{fix}:\n" + "\n".join(bad)


def test_readme_links_resolve() -> None:
    """The README's relative links (into docs/ and elsewhere) lead to files that exist."""
    readmes = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]
    links = [
        (readme, target)
        for readme in readmes
        for target in re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8"))
        if "://" not in target and not target.startswith("#")
    ]
    assert any(target.startswith("docs/") for _, target in links)
    bad = [
        f"{readme.relative_to(ROOT)}: {target}"
        for readme, target in links
        if not (readme.parent / target.split("#", 1)[0]).exists()
    ]
    assert not bad, "broken relative links:\n" + "\n".join(bad)
