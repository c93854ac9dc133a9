"""Every in-process bench variant builds and answers 200 before anything is timed.

The bench marks a variant whose check fails as "unavailable" and carries on, so a
broken bearerguard row once went unnoticed: when the token format landed, the cached
and cold bearerguard rows answered 401 and silently dropped out of the report. This
builds every variant the way ``python -m bench`` does, with the same throw-away
introspection server and redis-server, runs each check once, and fails on any
variant that is unavailable. None is excluded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from bench import apps, harness, plumbing, run

from bearerguard import tokens


@pytest.fixture(scope="module")
def env() -> Iterator[plumbing.Env]:
    with run.peers(plumbing.Env(token=tokens.generate())) as env:
        assert env.intro_error is None and env.redis_error is None, (
            env.intro_error,
            env.redis_error,
        )
        yield env


async def _built_and_checked(env: plumbing.Env) -> dict[str, str | None]:
    variants = await apps.build_all(env)
    try:
        await harness.verify(variants)
        await harness.verify(variants)  # the harness checks again after the timed rounds
        return {v.name: v.unavailable for v in variants}
    finally:
        await apps.close_all(variants)


def test_every_variant_is_available(env: plumbing.Env) -> None:
    outcome = asyncio.run(_built_and_checked(env))
    unavailable = {name: why for name, why in outcome.items() if why is not None}
    assert unavailable == {}
    # The rows the targets are judged on are among them.
    for name in ("bg_asgi", "bg_wsgi", "minimal_asgi", "minimal_wsgi", "bg_cold_redis_asgi"):
        assert name in outcome


def test_the_redis_round_trip_count_sees_the_store_s_sends(env: plumbing.Env) -> None:
    """The "one round trip per cold lookup" fact counts the sends of whichever client
    the store's sync face uses (the lean client on one Redis): never 0, never more."""
    from bench import checks

    facts = checks.redis_round_trips(env, n=20)
    assert facts["round_trips_per_lookup"] == 1.0
    assert facts["server_commands_per_lookup"]["evalsha"] == 1.0


def test_the_cached_path_alone_times_admitted_requests() -> None:
    # bench/hotpath.py judges the cached targets. Its variants wrap an app that does
    # nothing, so a variant that refused would look fast: each must reach the app, and
    # bearerguard's with the request's Identity, before and after the timing.
    from bench import hotpath

    result = asyncio.run(hotpath.run(plumbing.Env(token=tokens.generate()), rounds=3, batch=50))
    assert set(result["us"]) == {
        f"{face}_{name}"
        for face, names in (("asgi", ("noop",)), ("wsgi", ("bare",)))
        for name in (*names, "minimal", "contract", "bearerguard")
    }
    for face in ("asgi", "wsgi"):
        assert hotpath.overhead(result, face, "bearerguard") > 0
        assert result["ratios"][f"{face}_bearerguard"]["low"] > 0


def test_the_cached_path_alone_refuses_to_time_a_refusal() -> None:
    from bench import hotpath

    env = plumbing.Env(token=tokens.generate())
    real = plumbing.issue_token
    # A token issued for another API: bearerguard (api="dns") refuses it with 403.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hotpath, "issue_token", lambda store, token: real(store, token, ("vps",)))
        with pytest.raises(RuntimeError, match="answered instead of the app"):
            asyncio.run(hotpath.run(env, rounds=1, batch=5))


def test_loopback_pins_a_server_and_its_workers() -> None:
    # gunicorn serves from a forked worker: pinning only the master would leave the
    # worker floating, and the loopback ratios would be as noisy as before.
    import os
    import subprocess
    import time

    from bench import loopback, servers

    split = loopback.cores()
    assert split is not None  # this machine has two cores: the bench pins
    server_cpus, _ = split
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        children: list[int] = []
        deadline = time.monotonic() + 5
        while not children and time.monotonic() < deadline:
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        assert children
        servers.pin(parent.pid, server_cpus)
        for pid in (parent.pid, *children):
            assert os.sched_getaffinity(pid) == server_cpus
    finally:
        parent.kill()
        parent.wait()


def test_bearerguard_share_counts_the_middlewares_own_frames_only() -> None:
    # py-spy's raw lines: frames root first, then the sample count. A sample under the
    # app the middleware wraps is the app's; one with no bearerguard frame is not ours.
    from bench.loopback import bearerguard_share

    raw = "\n".join(
        [
            "run (uvicorn/server.py:1);__call__ (bearerguard/asgi.py:120);"
            "cached_identity (bearerguard/flow.py:240) 7",
            "run (uvicorn/server.py:1);__call__ (bearerguard/asgi.py:134);"
            "__call__ (starlette/applications.py:92);whoami (bench/plumbing.py:181) 5",
            "run (uvicorn/server.py:1);handle_events (uvicorn/protocols/http/h11_impl.py:9) 8",
            "",
        ]
    )
    assert bearerguard_share(raw, "starlette/applications.py") == (7, 20)
    assert bearerguard_share(raw) == (7, 20)  # any starlette/flask/werkzeug frame
    assert bearerguard_share(raw, "bench/plumbing.py") == (7, 20)
    assert bearerguard_share(raw, "nothing-matches") == (12, 20)


def test_loopback_sample_reads_a_real_protected_server() -> None:
    # py-spy attaches to a real uvicorn serving the guarded app under load: it took
    # samples, and bearerguard's share of them is small but there.
    from bench import loopback, servers

    from bearerguard import tokens

    token = tokens.generate()
    proc, port = servers.uvicorn(
        "bench.loopback_apps:starlette_guarded", env={"BENCH_TOKEN": token}
    )
    try:
        url = f"http://{servers.HOST}:{port}/whoami"
        servers.wait_http(proc, url)
        wrapped = loopback.WRAPPED["uvicorn_bearerguard"]
        # The httpx client (no wrk in make test) loads the server lightly: sample fast.
        got = loopback.sample(None, url, token, proc.pid, wrapped, seconds=3, rate=1000)
    finally:
        proc.stop()
    assert "unavailable" not in got, got
    assert got["samples"] > 100
    assert 0 < got["share"] < 0.5


def test_the_hash_rows_time_both_implementations_and_name_the_one_used() -> None:
    from bench import hashes

    res = hashes.run(rounds=20)
    assert res["used"] == "python"  # this machine's Python has its own SHA-256
    assert set(res["cold_ns"]) == set(res["hot_ns"]) == {"openssl", "python"}
    assert all(ns > 0 for ns in res["hot_ns"].values())
    table = [line for line in hashes.docs_section(res) if line.startswith("| ")]
    assert table[0].startswith("| implementation") and len(table) == 3
    assert "Python's own implementation (`tokens.sha256`" in "\n".join(hashes.docs_section(res))
    assert hashes.docs_section(None) == [] and hashes.docs_section({}) == []


def test_loopback_loads_a_group_together_and_checks_its_servers() -> None:
    # The loopback ratios compare servers loaded at the same time: their runs overlap,
    # each server's requests and CPU time are its own, and a server that answers the
    # token wrongly is refused before any load.
    from bench import loopback

    from bearerguard import tokens

    token = tokens.generate()
    group = ["uvicorn_starlette", "uvicorn_bearerguard", "uvicorn_contract"]
    procs = loopback.start_servers(group, token, None)
    try:
        urls = {name: loopback.whoami_url(port) for name, (_, port) in procs.items()}
        pids = {name: proc.pid for name, (proc, _) in procs.items()}
        got = loopback.together(None, urls, pids, token, 1.0, 4, None)
    finally:
        for proc, _ in procs.values():
            proc.stop()
    assert set(got) == set(group)
    starts = [part["window"][0] for part in got.values()]
    ends = [part["window"][1] for part in got.values()]
    assert max(starts) < min(ends)  # every run was going at the same time
    for part in got.values():
        assert part["requests"] > 0 and part["non_2xx"] == 0
        assert part["cpu_us"] > 0
    with pytest.raises(RuntimeError, match="HTTP 401 with the token"):
        loopback.start_servers(["uvicorn_bearerguard"], "not-the-token", None)


def test_the_cold_rows_alone_are_timed_in_runs_of_their_own(env: plumbing.Env) -> None:
    """`cold.repeated`: every cold target measured in each run, with its floor beside it."""
    from bench import cold

    result = asyncio.run(cold.repeated(env, runs=2, rounds=2, target_ms=1.0))
    assert result["rounds"] == 2 and len(result["runs"]) == 2
    for one in result["runs"]:
        assert set(one) == {name for name, _ref, _bare in cold.TARGETS}
        for name, split in one.items():
            assert split is not None, name
            # Two tiny rounds: the figures are noise, but each is measured and positive.
            assert split["ratio"] > 0 and split["raw"] > 0 and split["over_bare"] > 0, name
            assert "in_app_floor_ratio" in split, name  # the bare app making the raw call
            assert "contract_floor_ratio" in split, name  # the miss work as one function
    merged = cold.split_of({"cold_runs": result}, "bg_cold_redis_asgi", "raw_evalsha_async")
    assert merged is not None and len(merged["runs"]) == 2


def test_the_contract_miss_floor_makes_the_contract_s_checks() -> None:
    """The floor of the miss work refuses what bearerguard refuses: a token used from
    another address than its own, a malformed header, a token it has cached."""
    from bench.apps import _memory_backend
    from bench.plumbing import ContractMissMiddleware, asgi_call, sha256, starlette_app

    from bearerguard.credentials import MalformedCredentials

    token = tokens.generate()
    backend = _memory_backend(token)  # bound to 127.0.0.1
    table: dict[bytes, object] = {}
    app = ContractMissMiddleware(starlette_app(), backend=backend, api="dns", table=table)
    call, check = asgi_call(app, token)
    assert asyncio.run(check())[0] == 200
    with pytest.raises(RuntimeError, match="not a miss"):
        asyncio.run(call())  # now cached
    table.clear()

    async def from_elsewhere(headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "path": "/whoami", "headers": headers}
        scope["client"] = ("10.0.0.9", 4000)

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        async def send(message: object) -> None:
            pass

        await app(scope, receive, send)

    with pytest.raises(RuntimeError, match="not admitted"):
        asyncio.run(from_elsewhere([(b"authorization", f"Bearer {token}".encode())]))
    with pytest.raises(MalformedCredentials):
        asyncio.run(from_elsewhere([(b"authorization", b"Bearer a b")]))
    app.gone[sha256(token.encode()).digest()] = 0.0  # revoked while the lookup ran (P)
    app.gone_until = time.time() + 60
    table.clear()
    with pytest.raises(RuntimeError, match="revoked"):
        asyncio.run(call())
    assert app.slots.total == 0  # every slot given back
