"""Griffe extension: render the two reStructuredText idioms our docstrings use.

The docstrings follow the style of werkzeug and httpx: prose with ``literal`` spans,
``Usage::`` before an indented example, and an occasional simple table between ``====``
borders. mkdocstrings renders docstrings as Markdown, where ``::`` would be shown as is
and a table would run together into one paragraph. This extension rewrites just those
two idioms when the docs are built; the source keeps its plain-text form, which reads
well in ``help()`` and in an editor.

- A line ending in ``::`` ends in ``:`` instead (a line that is only ``::`` goes away);
  the indented block after it is a Markdown code block already.
- A simple table (from its first ``=== ===`` border to the border that ends it, the one
  followed by a blank line) is fenced as preformatted text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_BORDER = re.compile(r"^\s*=+( +=+)+\s*$")


def _fence_tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not (
            _BORDER.match(lines[end]) and (end + 1 == len(lines) or not lines[end + 1].strip())
        ):
            end += 1
        if end == len(lines):  # no closing border: leave the text alone
            out.append(lines[i])
            i += 1
            continue
        out += ["```text", *lines[i : end + 1], "```"]
        i = end + 1
    return out


def rst_to_markdown(text: str) -> str:
    """Return `text` with ``::`` literal markers and simple tables made Markdown."""
    lines = []
    for line in text.splitlines():
        if line.strip() == "::":
            continue
        lines.append(line[:-1] if line.rstrip().endswith("::") else line)
    return "\n".join(_fence_tables(lines))


class RstIdioms(griffe.Extension):
    """Rewrite each docstring once, when griffe loads the object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
