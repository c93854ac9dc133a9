"""``python -m bench``: run the benchmark suite and write results + docs/benchmarks.md.

Modes: in-process (always), memory (fresh subprocess), profile of the cached paths and
of the auth service's /login and /introspect, and with ``--loopback`` real servers under
wrk (the guarded apps, and ``bearerguard serve`` over SQLite and Redis against bare
uvicorn). ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from bearerguard import tokens
from bench import apps, checks, harness, plumbing, report, servers


def _start_introspection(env: plumbing.Env) -> servers.Proc | None:
    env.intro_prefix = "bench" + secrets.token_hex(8)
    client = ("bench-rs", secrets.token_urlsafe(24))
    try:
        proc, port = servers.uvicorn(
            "bench.introspection_server:app",
            env={
                "BENCH_ACTIVE_PREFIX": env.intro_prefix,
                "BENCH_INTROSPECT_CLIENT": f"{client[0]}:{client[1]}",
            },
        )
        servers.wait_http(proc, f"http://{servers.HOST}:{port}/stats")
    except Exception as exc:
        env.intro_error = f"introspection server did not start: {exc}"
        return None
    env.intro_url = f"http://{servers.HOST}:{port}/introspect"
    env.intro_client = client
    return proc


def _start_redis(env: plumbing.Env) -> servers.RedisServer | None:
    try:
        server = servers.RedisServer()
    except Exception as exc:
        env.redis_error = f"redis-server unavailable: {exc}"
        return None
    env.redis_url = server.url
    return server


@contextlib.contextmanager
def peers(env: plumbing.Env) -> Iterator[plumbing.Env]:
    """`env` with the throw-away introspection server and redis-server running; both are
    stopped and the temporary directory removed on exit (a server that would not start
    leaves its reason in `env` and its variants unavailable)."""
    intro = _start_introspection(env)
    redis_server = _start_redis(env)
    try:
        yield env
    finally:
        if intro is not None:
            intro.stop()
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(env.tmpdir, ignore_errors=True)


async def _inprocess(env: plumbing.Env, args: argparse.Namespace) -> dict[str, Any]:
    variants = await apps.build_all(env)
    try:
        await harness.verify(variants)
        for v in variants:
            if v.unavailable:
                print(f"  {v.name}: unavailable: {v.unavailable}", file=sys.stderr)
        raw = await harness.run(variants, rounds=args.rounds, target_s=args.target_ms / 1000)
        rows = harness.summarize(variants, raw)
        facts: dict[str, Any] = {}
        for name, fn in (
            ("single_flight", lambda: checks.single_flight(env)),
            ("redis_round_trips", lambda: checks.redis_round_trips(env)),
            ("sqlite_statements", lambda: checks.sqlite_statements(env)),
        ):
            try:
                r = fn()
                facts[name] = await r if asyncio.iscoroutine(r) else r
            except Exception as exc:
                facts[name] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        prof: dict[str, Any] = {}
        from bench import cold

        if not args.no_profile:
            from bench import profile

            print("profiling the cached paths", file=sys.stderr, flush=True)
            prof = await profile.profile(env, n=2_000 if args.quick else 20_000)
            prof["cold"] = await cold.profile(env, n=200 if args.quick else 2_000)
        print("the cold rows alone, several runs", file=sys.stderr, flush=True)
        cold_runs = await cold.repeated(
            env, runs=2 if args.quick else 5, rounds=args.rounds // 2, target_ms=args.target_ms
        )
        return {"rows": rows, "facts": facts, "profile": prof, "cold_runs": cold_runs}
    finally:
        await apps.close_all(variants)


def _memory(n: int, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(n), "cache", *extra],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(servers.ROOT),
    )
    if out.returncode != 0:
        return {"unavailable": out.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _ensure_matplotlib(install: bool) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if install:
            print("bench: installing matplotlib into the venv", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--loopback",
        action="store_true",
        help="also run uvicorn/gunicorn and bearerguard serve under wrk",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--rounds", type=int, default=40, help="interleaved rounds (default 40)")
    p.add_argument("--target-ms", type=float, default=15.0, help="batch length (default 15)")
    p.add_argument("--memory-tokens", type=int, default=100_000)
    p.add_argument("--no-profile", action="store_true", help="skip both cProfile runs")
    p.add_argument("--no-write", action="store_true", help="print JSON, write nothing")
    p.add_argument(
        "--install-missing", action="store_true", help="apt-get wrk / pip matplotlib if absent"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 6)
        args.target_ms = min(args.target_ms, 5.0)
        args.memory_tokens = min(args.memory_tokens, 20_000)
    _ensure_matplotlib(args.install_missing)
    t0 = time.monotonic()
    load_before = os.getloadavg()
    env = plumbing.Env(token=tokens.generate())
    with peers(env):
        print(f"in-process: {args.rounds} rounds", file=sys.stderr, flush=True)
        results: dict[str, Any] = {"inprocess": asyncio.run(_inprocess(env, args))}
    from bench import hotpath

    print("the cached path alone: thread CPU time", file=sys.stderr, flush=True)
    results["hotpath"] = asyncio.run(
        hotpath.run(plumbing.Env(token=tokens.generate()), rounds=30 if args.quick else 200)
    )
    from bench import hashes

    print("the token's SHA-256 with cold caches", file=sys.stderr, flush=True)
    results["hashes"] = hashes.run(200 if args.quick else 2_000)
    print("memory: fresh subprocess", file=sys.stderr, flush=True)
    results["memory"] = _memory(args.memory_tokens)
    results["memory_distinct"] = _memory(args.memory_tokens, "--distinct-ips")
    from bench import jwt_rows

    print("jwt: cold verify vs PyJWT, cached path vs opaque", file=sys.stderr, flush=True)
    try:
        results["jwt"] = jwt_rows.run(rounds=6 if args.quick else 15)
        print(json.dumps(results["jwt"]), file=sys.stderr)
    except Exception as exc:
        results["jwt"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
    from bench import authservice

    auth: dict[str, Any] = {}
    if not args.no_profile:
        print("auth service: in-process profile", file=sys.stderr, flush=True)
        auth["profile"] = authservice.run_profile(500 if args.quick else 2_000)
    if args.loopback:
        from bench import loopback

        print("loopback: uvicorn/gunicorn under load", file=sys.stderr, flush=True)
        try:
            results["loopback"] = loopback.run(
                tokens.generate(),
                seconds=2.0 if args.quick else 4.0,
                reps=1 if args.quick else 3,
                install=args.install_missing,
            )
        except Exception as exc:
            results["loopback"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        print("loopback: the auth service under wrk", file=sys.stderr, flush=True)
        try:
            # Pinned like the uvicorn pairs above (the client off the servers' core: the
            # largest source of spread), and five rounds: unpinned, three rounds of
            # /introspect over Redis at 632c0e9 and at 4836201 gave 0.60 and 0.43.
            auth["loopback"] = authservice.run_loopback(
                seconds=1.0 if args.quick else 3.0,
                reps=1 if args.quick else 5,
                install=args.install_missing,
                pin=loopback.cores() is not None,
            )
        except Exception as exc:
            auth["loopback"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        print("auth service: one worker under wrk, cProfile", file=sys.stderr, flush=True)
        auth["served_profile"] = authservice.served_profile(
            seconds=1.0 if args.quick else 3.0, install=args.install_missing
        )
    results["auth_service"] = auth
    results["run"] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "rounds": args.rounds,
        "target_batch_ms": args.target_ms,
        "quick": args.quick,
        "seconds": round(time.monotonic() - t0, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "token_fingerprint_note": "tokens are random per run and never written",
    }
    results["machine"] = report.machine()
    results["targets"] = report.targets(results)
    if args.no_write:
        print(json.dumps(results, indent=1, default=str))
    else:
        paths = report.write(results)
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
    print(report.console(results))
    return 0
