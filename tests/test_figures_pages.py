"""docs/reliability.md: its generated blocks are exactly what the committed figures make.

`make figures` re-runs the reliability suites and rewrites the blocks; this test fails
when the page was edited by hand or the figures file changed without the page.
"""

from __future__ import annotations

import json

import report  # tests/reliability/report.py


def test_reliability_page_matches_the_committed_figures() -> None:
    fig = json.loads(report.FIGURES.read_text(encoding="utf-8"))
    page = report.PAGE.read_text(encoding="utf-8")
    assert "<!-- generated: figures -->" in page
    assert "<!-- generated: size-limits -->" in page
    assert report.render(page, fig) == page


def test_page_names_the_commit_and_command_of_its_figures() -> None:
    fig = json.loads(report.FIGURES.read_text(encoding="utf-8"))
    page = report.PAGE.read_text(encoding="utf-8")
    assert f"Made by `{fig['command']}` at commit `{fig['commit']}`" in page
    assert "+uncommitted" not in fig["commit"]


def test_every_case_and_size_answer_is_on_the_page() -> None:
    fig = json.loads(report.FIGURES.read_text(encoding="utf-8"))
    page = report.PAGE.read_text(encoding="utf-8")
    for name in fig["cases"]:
        assert f"| `{name}` |" in page
    for line in fig["cases"]["hostile.size_limits"]["answers"].values():
        assert line.removeprefix("HTTP/1.1 ") in page


def test_a_trailing_section_survives_regeneration() -> None:
    fig = json.loads(report.FIGURES.read_text(encoding="utf-8"))
    page = report.PAGE.read_text(encoding="utf-8") + "\n## Hostile traffic\n\nkept 1 2 3\n"
    assert report.render(page, fig).endswith("\n## Hostile traffic\n\nkept 1 2 3\n")
