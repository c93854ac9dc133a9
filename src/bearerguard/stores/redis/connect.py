"""Store URLs and the clients they open: one Redis, Sentinel, or Cluster; TLS on request.

* ``redis://[user:pass@]host[:port][/db]`` and ``rediss://…`` (TLS): one Redis;
* ``redis+sentinel://[user:pass@]host:port[,host:port…]/SERVICE[/DB]``: the primary
  that the Sentinels name for SERVICE, found again after a failover;
* ``redis+cluster://[user:pass@]host:port[,host:port…]``: Redis Cluster (database 0).

``rediss+sentinel://`` and ``rediss+cluster://`` speak TLS to every node (and to the
Sentinels); ``?ssl_ca_certs=/path/ca.pem`` names a private CA for those two forms. The
user and password authenticate to the data nodes, not to Sentinels. A URL may carry a
password: no message here quotes it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.asyncio.sentinel as asentinel
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...errors import ConfigurationError

__all__ = [
    "DRIVER_ERRORS",
    "SCHEMES",
    "Target",
    "async_client",
    "failure",
    "parse_url",
    "sync_client",
]

SCHEMES = (
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_MAX_NODES = 32

# What the client library raises when Redis cannot answer: a cluster client's "no node
# reachable" (RedisClusterException) is not a RedisError.
DRIVER_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


@dataclass(frozen=True, slots=True)
class Target:
    """What a store URL names. `kind` is ``"single"``, ``"sentinel"`` or ``"cluster"``."""

    url: str
    kind: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"


def failure(exc: BaseException) -> str:
    """A client-library error in a few words that quote neither URL nor password.

    Its type name, or, when a server's certificate was refused somewhere in its chain
    of causes, what the verification said and how to name a CA.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the chains are 1 to 3 long: client, cluster, ssl
        if isinstance(seen, ssl.SSLCertVerificationError):
            said = seen.verify_message or "refused"
            return f"TLS certificate verification failed ({said}); name the CA with ?ssl_ca_certs="
        if seen is None:
            break
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _bad(problem: str) -> ConfigurationError:
    # The URL may carry a password: never echo it.
    return ConfigurationError(f"bad Redis store URL: {problem}")


def _node(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise _bad("a node must be host:port")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port_text and not port_text.isdigit()):
        raise _bad("a node must be host:port")
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise _bad("a port must be 1 to 65535")
    return host, port


def parse_url(url: str) -> Target:
    """The `Target` of a store URL (module docstring); ConfigurationError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise _bad("no host name")
        if parts.path not in ("", "/") and not parts.path[1:].isdigit():
            raise _bad("the database must be a number, as in redis://host:6379/0")
        return Target(url, "single", tls=scheme == "rediss")
    if scheme not in SCHEMES:
        raise _bad("the scheme must be one of " + ", ".join(s + "://" for s in SCHEMES))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    kind = scheme.split("+", 1)[1]
    default_port = 26379 if kind == "sentinel" else 6379
    listed = hosts.split(",") if hosts else []
    if not listed or len(listed) > _MAX_NODES:
        raise _bad(f"name 1 to {_MAX_NODES} nodes, as host:port[,host:port…]")
    nodes = tuple(_node(n, default_port) for n in listed)
    query = parse_qs(parts.query, strict_parsing=False)
    if set(query) - {"ssl_ca_certs"} or parts.fragment:
        raise _bad("the only query option is ssl_ca_certs")
    ca_certs = query["ssl_ca_certs"][-1] if "ssl_ca_certs" in query else None
    segments = [s for s in parts.path.split("/") if s]
    service, db = "", 0
    if kind == "sentinel":
        if not 1 <= len(segments) <= 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise _bad("a Sentinel URL ends with /SERVICE or /SERVICE/DB")
        service = unquote(segments[0])
        db = int(segments[1]) if len(segments) == 2 else 0
    elif segments not in ([], ["0"]):
        raise _bad("Redis Cluster has database 0 only")
    return Target(
        url,
        kind,
        nodes=nodes,
        service=service,
        db=db,
        username=username,
        password=password,
        tls=scheme.startswith("rediss"),
        ca_certs=ca_certs,
    )


# The server's certificate is checked, and so is its name, whatever redis-py's default
# (it checks names from 6.0 on; 5.x did not). A rediss:// URL may still say otherwise
# in its query (redis-py's own options).
_VERIFY: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}


def _tls(target: Target) -> dict[str, Any]:
    if not target.tls:
        return {}
    ca = {"ssl_ca_certs": target.ca_certs} if target.ca_certs else {}
    return {"ssl": True, **_VERIFY, **ca}


def _auth(target: Target) -> dict[str, Any]:
    return {"username": target.username, "password": target.password, **_tls(target)}


def _sentinel_options(target: Target, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    # One quick retry per Sentinel, as for the data nodes: redis-py's default backs off
    # for seconds, and /ready must answer while every Sentinel is unreachable.
    return {**options, "retry": retry, **_tls(target)}


class _SentinelPool(redis.sentinel.SentinelConnectionPool):
    """A Sentinel-managed pool that, when disconnected (the client's ``close``), also
    closes its connections to the Sentinels, which redis-py leaves open."""

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        super().disconnect(*args, **kwargs)
        for sentinel in self.sentinel_manager.sentinels:
            sentinel.close()


class _AsyncSentinelPool(asentinel.SentinelConnectionPool):
    """`_SentinelPool` for asyncio (``aclose``)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


def sync_client(target: Target, options: dict[str, Any], *, retry: bool = True) -> Any:
    """A blocking client (`redis.Redis` or `redis.RedisCluster`) for `target`.

    `options` are socket timeouts. With `retry`, a failed call is retried once on a
    fresh connection, at once; a cluster client always is, after reloading its slot
    map (it also follows its redirections).
    """
    once: dict[str, Any] = {"retry": Retry(NoBackoff(), 1)} if retry else {}
    try:
        if target.kind == "single":
            verify: dict[str, Any] = _VERIFY if target.tls else {}
            return redis.Redis.from_url(target.url, **once, **options, **verify)
        if target.kind == "sentinel":
            sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(target.nodes),
                sentinel_kwargs=_sentinel_options(target, options, Retry(NoBackoff(), 1)),
            )
            return sentinels.master_for(  # type: ignore[no-untyped-call]
                target.service,
                db=target.db,
                connection_pool_class=_SentinelPool,
                **once,
                **options,
                **_auth(target),
            )
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in target.nodes]  # type: ignore[no-untyped-call]
        # One quick retry here too (after the slot map is reloaded): redis-py's default
        # backs off for seconds, and a failover must answer 503, not hang the caller.
        return redis.RedisCluster(
            startup_nodes=nodes, retry=Retry(NoBackoff(), 1), **options, **_auth(target)
        )
    except (ValueError, TypeError) as exc:
        raise _bad(type(exc).__name__) from None


def async_client(target: Target, options: dict[str, Any]) -> Any:
    """The asyncio client for `target` (as `sync_client`, for the running loop)."""
    once: dict[str, Any] = {"retry": AsyncRetry(NoBackoff(), 1)}
    if target.kind == "single":
        verify: dict[str, Any] = _VERIFY if target.tls else {}
        return aredis.Redis.from_url(target.url, **once, **options, **verify)
    if target.kind == "sentinel":
        sentinels = asentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            sentinel_kwargs=_sentinel_options(target, options, AsyncRetry(NoBackoff(), 1)),
        )
        return sentinels.master_for(
            target.service,
            db=target.db,
            connection_pool_class=_AsyncSentinelPool,
            **once,
            **options,
            **_auth(target),
        )
    nodes = [acluster.ClusterNode(h, p) for h, p in target.nodes]
    return acluster.RedisCluster(startup_nodes=nodes, **once, **options, **_auth(target))
