"""Render the hostile-traffic rows (``attacks.*``) into docs/figures/hostile.json and the
"Hostile traffic" section at the end of docs/reliability.md.

    BEARERGUARD_FIGURES=/tmp/hostile.jsonl .venv/bin/pytest -q tests/reliability/test_rel_attacks.py
    .venv/bin/python tests/reliability/hostile_report.py /tmp/hostile.jsonl

Reads the JSON lines `reliability_support.record` wrote (the last line of each case
wins), names the commit (``-dirty`` when src/ or tests/ have changes not committed:
run it right after the tests, on committed code) and the command, writes the figures
file, and replaces the section (everything from its heading to the end of the page:
it is the page's last section) or appends it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
FIGURES = ROOT / "docs" / "figures" / "hostile.json"
HEADING = "## Hostile traffic"
# `make figures` runs the reliability suites (test_rel_attacks.py among them), then this.
COMMAND = "make figures"

# case -> (attack, target); the rest of a row comes from its figures.
ROWS = {
    "attacks.junk_then_flood": (
        "junk tokens, then a flood",
        "new tokens 100 % 200, breaker closed",
    ),
    "attacks.throttle": ("wrong secrets (throttle)", "0 holder lockouts, wrong guesses slowed"),
    "attacks.keep_alive.introspection": (
        "keep-alive (introspection)",
        "expires ≤ expires_in + touch after last use",
    ),
    "attacks.keep_alive.sqlite-store": (
        "keep-alive (SQLite store)",
        "expires ≤ expires_in + touch after last use",
    ),
    "attacks.refresh_starvation.introspection": (
        "refresh starvation (introspection)",
        "never lapses while in use",
    ),
    "attacks.refresh_starvation.sqlite-store": (
        "refresh starvation (SQLite store)",
        "never lapses while in use",
    ),
    "attacks.log_injection": ("log injection", "0 forged lines"),
    "attacks.stored_files": ("stored files", "mode 0600"),
}


NOTES = [
    "Reading the rows: the attacker's 503s in the flood are the fair-share rule at work",
    "(once half of the 16 lookup slots are busy, an address holding a quarter of them gets",
    "503 for new lookups); its 401s are junk looked up and found unknown, each a 200",
    '`{"active": false}` from `/introspect` now that the body limit fits any token, so the',
    "breaker never counts them. On this shared 2-core machine the flood does not keep all",
    "16 slots busy for long, so the holders' 100 % here would also hold without the rule;",
    "the rule itself is shown by `tests/adapters/test_hostile_adapters.py::"
    "test_a_spray_from_one_address_cannot_starve_the_holder` (64 lookups held open from",
    "one address: 8 admitted, 56 refused, the holder's new token 200). Keep-alive: the",
    "resource servers send `client_ip`/check the address in the store, so the attacker's",
    "lookups extend nothing and the token lapses `expires_in` after the holder's last use.",
    "Refresh starvation: refusals no longer move the cache entry's refresh time, and an",
    "attacker's lookup makes the holder's next hit refresh at once.",
]


def _sent(row: dict[str, Any]) -> str:
    parts = [str(row["attack"])]
    if "sent" in row:
        parts.append(f"{row['sent']} requests")
    if "connections" in row:
        parts.append(f"{row['connections']} connection(s)")
    if "seconds" in row:
        parts.append(f"{row['seconds']} s")
    if "attacker_statuses" in row:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(row["attacker_statuses"].items()))
        parts.append(f"attacker got {statuses}")
    return "; ".join(parts)


def _saw(case: str, row: dict[str, Any]) -> str:
    if case == "attacks.junk_then_flood":
        return (
            f"{row['holder_new_tokens']} new tokens, {row['holder_200_pct']} % 200 "
            f"(slowest {row['holder_slowest_s']} s); breaker {'/'.join(row['breaker'])}"
        )
    if case == "attacks.throttle":
        return (
            f"{row['holder_logins_and_uses']} logins + uses through the attacked resource "
            f"server key, {row['holder_lockouts']} lockouts"
        )
    if case.startswith("attacks.keep_alive."):
        return (
            f"token expired {row['expired_after_last_use_s']} s after the holder's last use "
            f"(expires_in {row['expires_in_s']} s, touch {row['touch_s']} s)"
        )
    if case.startswith("attacks.refresh_starvation."):
        return (
            f"{row['holder_200']}/{row['holder_requests']} requests 200 over "
            f"{row['seconds']} s ({row['seconds'] / row['expires_in_s']:.1f} x expires_in), "
            f"{row['lapses']} lapses"
        )
    if case == "attacks.log_injection":
        return f"{row['refusal_lines']} refusal lines, {row['forged_lines']} forged lines"
    if case == "attacks.stored_files":
        return f"{row['files']} files (db, -wal, -shm), modes {', '.join(row['modes'])}"
    return json.dumps(row)


def section(rows: dict[str, dict[str, Any]], commit: str) -> str:
    soak = any(r.get("soak") for r in rows.values())
    out = [
        HEADING,
        "",
        "Attacks from 127.0.0.3 on a real `bearerguard serve` (SQLite, `--token-ttl 3`) and",
        "resource servers under uvicorn (one introspecting, one reading the store), while",
        'token holders work from 127.0.0.2 (docs/design.md, "Hostile traffic", H1-H7). Mode:',
        (
            "soak (`make soak`)."
            if soak
            else "ci (`make test`: short runs; the flood lasts 4 s instead of 10 s)."
        ),
        f"Commit `{commit}`, produced by:",
        "",
        *("    " + line for line in COMMAND.splitlines()),
        "",
        f"Figures: `docs/figures/{FIGURES.name}`. Tests: `tests/reliability/test_rel_attacks.py`.",
        "",
        "| attack | what was sent | what the holders saw | target |",
        "|---|---|---|---|",
    ]
    for case, (name, target) in ROWS.items():
        row = rows.get(case)
        if row is not None:
            out.append(f"| {name} | {_sent(row)} | {_saw(case, row)} | {target} |")
    out += ["", *NOTES]
    return "\n".join(out) + "\n"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("/tmp/hostile.jsonl")
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["case"] in ROWS:
                rows[row["case"]] = row
    commit = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--", "src", "tests", "pyproject.toml"):
        commit += "-dirty"  # code not committed: the page would name the wrong commit
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {"commit": commit, "command": COMMAND, "rows": [rows[c] for c in ROWS if c in rows]},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    text = DOC.read_text(encoding="utf-8")
    at = text.find("\n" + HEADING + "\n")
    body = text[: at + 1] if at >= 0 else text.rstrip("\n") + "\n\n"
    DOC.write_text(body + section(rows, commit), encoding="utf-8")
    print(f"wrote {FIGURES.relative_to(ROOT)} and the section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
