"""The load model of docs/scaling.md, checked against a measured run.

``python -m bench.scaling [--tokens 2000] [--servers 4] [--rate 300] [--seconds 60]
[--touch 10] [--out bench/results/scaling.json]``

One redis-server, one ``bearerguard serve --store redis://…`` (1 worker), `servers`
resource-server processes (`bench.scaling_app`: bearerguard over introspection at the
service, ``cache_ttl`` three times the touch interval) and `tokens` tokens from /login. Each
token is routed to one resource server (token i to server i mod N: sticky routing, as
a load balancer hashing the Authorization header does). The driver sends `rate`
requests a second, evenly paced, each with a token drawn at random, so each token sees
Poisson-like arrivals at r = rate / tokens. After a warm-up of two touch intervals, it
counts for `seconds`:

* requests sent and their statuses (every one must be 200);
* /introspect calls the service answered (its ``/metrics`` counter);
* Redis commands (INFO commandstats), and the Redis and service CPU time per call.

The model (docs/scaling.md): a token used at Poisson rate r in one process is looked up
once per touch interval τ plus the wait for the next request, so at r / (1 + r τ) per
second; the service makes one Redis EVALSHA per call, plus one HGETALL per caller key
and worker and second (the key cache). The result file holds the prediction beside the
count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import servers
from bench.authservice import _basic, _create_key, _serve

OUT = Path(__file__).resolve().parent / "results" / "scaling.json"


def predict(tokens: int, rate: float, touch: float, servers_n: int, sticky: bool) -> float:
    """Introspection calls a second for `tokens` tokens used `rate` times a second in all.

    Sticky: each token's requests reach one process; spread: all `servers_n` equally.
    """
    r = rate / tokens
    per_process = r if sticky else r / servers_n
    processes = 1 if sticky else servers_n
    return tokens * processes * per_process / (1 + per_process * touch)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commandstats(client: redis.Redis) -> dict[str, dict[str, float]]:
    raw: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v for k, v in raw.items()}


def _introspections(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bearerguard_service_introspections_total{")
    )


async def _drive(
    ports: list[int], tokens: list[str], rate: float, seconds: float, conns: int = 8
) -> dict[str, int]:
    """Paced GET /whoami: `rate` a second for `seconds`; token i goes to ports[i % N]."""
    statuses: dict[str, int] = {}
    queues = [asyncio.Queue[str]() for _ in ports]

    async def worker(port: int, queue: asyncio.Queue[str]) -> None:
        reader, writer = await asyncio.open_connection(servers.HOST, port)
        while True:
            token = await queue.get()
            head = f"GET /whoami HTTP/1.1\r\nHost: rs\r\nAuthorization: Bearer {token}\r\n"
            writer.write(head.encode() + b"\r\n")
            answer = await reader.readuntil(b"\r\n\r\n")
            status = answer.split(b" ", 2)[1].decode()
            length = 0
            for line in answer.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            queue.task_done()

    tasks = [
        asyncio.create_task(worker(port, q))
        for port, q in zip(ports, queues, strict=True)
        for _ in range(conns)
    ]
    rng = random.Random(15)
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        due = int((now - start) * rate)
        while sent < due:
            i = rng.randrange(len(tokens))
            queues[i % len(ports)].put_nowait(tokens[i])
            sent += 1
        await asyncio.sleep(0.002)
    await asyncio.wait_for(asyncio.gather(*(q.join() for q in queues)), 60)
    for t in tasks:
        t.cancel()
    return statuses


def run(
    tokens_n: int = 2000,
    servers_n: int = 4,
    rate: float = 300.0,
    seconds: float = 60.0,
    touch: float = 10.0,
) -> dict[str, Any]:
    procs: list[servers.Proc] = []
    load_before = os.getloadavg()
    redis_server = servers.RedisServer()
    try:
        url = redis_server.url
        key_id, secret = _create_key(url)
        svc, port = _serve(url, ["--log-level", "warning"])
        procs.append(svc)
        base = f"http://{servers.HOST}:{port}"
        servers.wait_http(svc, base + "/health")
        with httpx.Client(trust_env=False, timeout=10) as client:
            tokens = [
                client.post(
                    base + "/login",
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": _basic(key_id, secret)},
                ).json()["access_token"]
                for _ in range(tokens_n)
            ]
        env = {
            "SCALING_INTROSPECTION_URL": base + "/introspect",
            "SCALING_CLIENT_ID": key_id,
            "SCALING_CLIENT_SECRET": secret,
            "SCALING_CACHE_TTL": str(3 * touch),
            "SCALING_TOUCH_INTERVAL": str(touch),
        }
        ports = []
        for _ in range(servers_n):
            proc, rs_port = servers.uvicorn("bench.scaling_app:app", env=env)
            procs.append(proc)
            servers.wait_http(proc, f"http://{servers.HOST}:{rs_port}/whoami")
            ports.append(rs_port)
        client_r = redis.Redis.from_url(url)
        # Warm-up: every token fetched once and into its steady refresh rhythm.
        asyncio.run(_drive(ports, tokens, rate, 2 * touch))
        calls0, stats0 = _introspections(base), _commandstats(client_r)
        cpu0 = {
            "redis": _cpu_seconds(redis_server.proc.proc.pid),
            "service": _cpu_seconds(svc.proc.pid),
        }
        t0 = time.monotonic()
        statuses = asyncio.run(_drive(ports, tokens, rate, seconds))
        elapsed = time.monotonic() - t0
        calls1, stats1 = _introspections(base), _commandstats(client_r)
        cpu1 = {
            "redis": _cpu_seconds(redis_server.proc.proc.pid),
            "service": _cpu_seconds(svc.proc.pid),
        }
        client_r.close()
    finally:
        for p in procs:
            p.stop()
        redis_server.stop()
    sent = sum(statuses.values())
    measured_rate = sent / elapsed
    calls = (calls1 - calls0) / elapsed
    ops = {
        name: (s["calls"] - stats0.get(name, {}).get("calls", 0)) / elapsed
        for name, s in stats1.items()
        if s["calls"] - stats0.get(name, {}).get("calls", 0) > 0
    }
    predicted = predict(tokens_n, measured_rate, touch, servers_n, sticky=True)
    return {
        "command": "python -m bench.scaling " + " ".join(sys.argv[1:]),
        "tokens": tokens_n,
        "resource_servers": servers_n,
        "touch_interval_s": touch,
        "cache_ttl_s": 3 * touch,
        "routing": "sticky (token i to resource server i mod N)",
        "seconds": round(elapsed, 1),
        "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "requests_per_s": round(measured_rate, 1),
        "per_token_rate": measured_rate / tokens_n,
        "statuses": statuses,
        "predicted_introspections_per_s": round(predicted, 1),
        "counted_introspections_per_s": round(calls, 1),
        # One EVALSHA per call, running GET, PEXPIRE and PTTL (INFO commandstats counts
        # those too), plus the key cache: one HGETALL per caller key, worker and second.
        "predicted_redis_round_trips_per_s": round(predicted + 1.0, 1),
        "predicted_redis_commands_per_s": round(4 * predicted + 1.0, 1),
        "counted_redis_ops_per_s": {k: round(v, 1) for k, v in sorted(ops.items())},
        "counted_redis_commands_per_s": round(sum(ops.values()), 1),
        "redis_usec_per_evalsha": stats1.get("evalsha", {}).get("usec_per_call"),
        "redis_cpu_us_per_op": round(
            (cpu1["redis"] - cpu0["redis"]) / max(1.0, sum(ops.values()) * elapsed) * 1e6, 1
        ),
        "service_cpu_us_per_introspection": round(
            (cpu1["service"] - cpu0["service"]) / max(1.0, calls * elapsed) * 1e6, 1
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling")
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=300.0, help="requests a second in all")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--touch", type=float, default=10.0, help="touch interval (s)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    result = run(args.tokens, args.servers, args.rate, args.seconds, args.touch)
    result["git_commit"] = _commit()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def _commit() -> str:
    from bench.report import git_commit

    return git_commit()


if __name__ == "__main__":
    raise SystemExit(main())
