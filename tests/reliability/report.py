"""Turn the figures the reliability suites recorded into docs/reliability.md.

    make figures      # runs the suites, then this script (and the benchmarks page)

or by hand:

    BEARERGUARD_FIGURES=/tmp/figs.jsonl .venv/bin/pytest tests/reliability -q
    .venv/bin/python tests/reliability/report.py /tmp/figs.jsonl

Reads one JSON object per line (`reliability_support.record`; the last line of each case
wins), writes them with the commit and command to docs/figures/reliability.json, and
rewrites the generated blocks of docs/reliability.md (between ``<!-- generated: NAME -->``
and ``<!-- end generated -->``) from that file. Everything else on the page, a trailing
section added by another suite included, is kept as it is. ``--check`` regenerates the
page from the committed JSON in memory and fails if it differs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reliability.md"
FIGURES = ROOT / "docs" / "figures" / "reliability.json"
COMMAND = "make figures"
FIGURES_PATH = Path(
    os.environ.get("BEARERGUARD_FIGURES")
    or Path(tempfile.gettempdir()) / "bearerguard-reliability-figures.jsonl"
)
_SKIP = {"case", "soak", "at", "answers"}
_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _git_commit() -> str:
    from bench.report import git_commit  # the checkout's root is on PYTHONPATH (Makefile)

    return git_commit()


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in sorted(value.items()))
    return str(value)


def collect(lines: list[str]) -> dict[str, Any]:
    """The figures file's content: the cases of one run, with where they came from."""
    cases: dict[str, dict[str, Any]] = {}
    commits: set[str] = set()
    for line in lines:
        if line.strip():
            row = json.loads(line)
            commits.add(row.get("commit") or _git_commit())
            cases[row["case"]] = {k: v for k, v in row.items() if k not in ("case", "at", "commit")}
    return {
        # The commit the suites ran at, as each case recorded it (not the one checked
        # out when this script runs).
        "commit": ", ".join(sorted(commits)) or _git_commit(),
        "command": COMMAND,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()}",
        "cases": dict(sorted(cases.items())),
    }


def figures_table(fig: dict[str, Any]) -> str:
    out = [
        f"Made by `{fig['command']}` at commit `{fig['commit']}` on {fig['date_utc']} UTC "
        f"({fig['machine']}); every figure below is in `docs/figures/reliability.json`.",
        "",
        "| case | figures | mode |",
        "|---|---|---|",
    ]
    for name, row in fig["cases"].items():
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k not in _SKIP)
        out.append(f"| `{name}` | {figures} | {'soak' if row.get('soak') else 'ci'} |")
    return "\n".join(out)


_SIZE_ROWS = [
    ("`bearerguard serve` POST /login, /introspect, /revoke", "serve", ("POST",)),
    ("`bearerguard serve` GET endpoints", "serve", ("GET",)),
    ("Starlette example under uvicorn", "uvicorn-starlette", ("GET",)),
    ("Flask example under gunicorn", "gunicorn-flask", ("GET",)),
]
_SIZE_COLUMNS = ("100KB header", "10MB body", "10MB chunked")


def size_table(fig: dict[str, Any]) -> str:
    """The measured answers of `hostile.size_limits`, one row per server and method."""
    answers: dict[str, str] = fig["cases"].get("hostile.size_limits", {}).get("answers", {})
    if not answers:
        return "Not measured in this run (`test_size_limits_every_endpoint`)."
    out = [
        "| server | " + " | ".join(_SIZE_COLUMNS) + " |",
        "|---|" + "---|" * len(_SIZE_COLUMNS),
    ]
    for label, server, methods in _SIZE_ROWS:
        cells = []
        for what in _SIZE_COLUMNS:
            seen: dict[str, list[str]] = {}
            for key, line in answers.items():
                name, method, path, rest = key.split(" ", 3)
                if name == server and method in methods and rest == what:
                    seen.setdefault(line.removeprefix("HTTP/1.1 "), []).append(path)
            if len(seen) == 1:
                cells.append(f"**{next(iter(seen))}**")
            else:
                cells.append("; ".join(f"{', '.join(p)}: **{s}**" for s, p in seen.items()))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


BLOCKS = {"figures": figures_table, "size-limits": size_table}


def render(page: str, fig: dict[str, Any]) -> str:
    """`page` with each generated block rewritten from `fig`; the rest untouched."""

    def one(m: re.Match[str]) -> str:
        return m.group(1) + BLOCKS[m.group(2)](fig) + "\n" + m.group(4)

    return _BLOCK.sub(one, page)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        fig = json.loads(FIGURES.read_text(encoding="utf-8"))
        page = PAGE.read_text(encoding="utf-8")
        if render(page, fig) != page:
            print(f"{PAGE} differs from {FIGURES}: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    path = Path(argv[1]) if len(argv) > 1 else FIGURES_PATH
    fig = collect(path.read_text(encoding="utf-8").splitlines())
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(fig, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8"), fig), encoding="utf-8")
    print(f"wrote {FIGURES.relative_to(ROOT)} and {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
