"""Turn the figures the reliability suites recorded into the table of docs/reliability.md.

    BEARERGUARD_FIGURES=/tmp/figs.jsonl .venv/bin/pytest tests/reliability -q
    .venv/bin/python tests/reliability/report.py /tmp/figs.jsonl

Reads one JSON object per line (`reliability_support.record`); the last line of each
case wins. Prints a Markdown table on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

FIGURES_PATH = Path(
    os.environ.get("BEARERGUARD_FIGURES")
    or Path(tempfile.gettempdir()) / "bearerguard-reliability-figures.jsonl"
)
_SKIP = {"case", "soak", "at", "answers"}


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
    return str(value)


def table(lines: list[str]) -> str:
    cases: dict[str, dict[str, object]] = {}
    for line in lines:
        if line.strip():
            row = json.loads(line)
            cases[row["case"]] = row
    out = ["| case | figures | mode |", "|---|---|---|"]
    for name in sorted(cases):
        row = cases[name]
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k not in _SKIP)
        out.append(f"| `{name}` | {figures} | {'soak' if row.get('soak') else 'ci'} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else FIGURES_PATH
    print(table(path.read_text(encoding="utf-8").splitlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
