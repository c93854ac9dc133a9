"""Request logic, written once for both adapters, with no I/O.

`Guard.begin(facts)` decides a request, or hands back a `Pending` when the cache
cannot answer: the adapter asks the backend its `lookup` and gives the answer
(`TokenInfo | None`, or the `BackendUnavailable` raised) to `Guard.settle`, which
decides. `Guard.authenticate(facts)` is the same as a generator that yields the
`Lookup`. Either way the result is `Allow` or `Deny`. Adapters wait, time out and run
refreshes; they make no decision of their own.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from . import resource as _resource
from .cache import Entry, TokenCache
from .clientip import ClientIPResolver, learn_address
from .credentials import (
    BEARER_PREFIXES,
    DEFAULT_MAX_TOKEN_LENGTH,
    MalformedCredentials,
    extract_token,
)
from .errors import BackendUnavailable, Challenge, ConfigurationError, log_safe, quote_param
from .metrics import Metrics
from .policy import (
    MISSING,
    NOT_OURS,
    UNAVAILABLE,
    Rules,
    admit,
    audience_names,
    decide,
    insufficient_scope,
    public_matcher,
)
from .resource import ResourceMetadata
from .tokens import Identity, TokenInfo, fingerprint, is_well_formed, sha256, token_key

__all__ = [
    "Allow",
    "Decision",
    "Deny",
    "Guard",
    "Lookup",
    "Pending",
    "RequestFacts",
]

logger = logging.getLogger("bearerguard")

TOKEN_FORMATS = ("bearerguard",)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the core needs to know about a request, gathered by an adapter."""

    path: str
    authorization: tuple[str, ...] = ()
    query_tokens: tuple[str, ...] = ()
    peer: str | None = None
    forwarded_for: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the backend about a token (`key`, its digest, keys caches and single-flight).

    `client_ip` is the address of the request that asks (None: unknown, or addresses
    do not matter because `ip_binding` is off). Backends that take it extend the token
    at the source only when it is the token's own address (H4). The adapters key
    single-flight by (key, client_ip), so a request from another address never leads
    the lookup of the holder's request: the holder's use always counts.
    """

    token: str = field(repr=False)
    key: bytes
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    """Let the request through; `identity` is None on a public path.

    `follow_up`, when set, is a background lookup the adapter should start (once per
    token) and report through `Guard.refreshed`: the touch that keeps a cached token
    alive at the source.
    """

    identity: Identity | None
    follow_up: Lookup | None = None


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the request with `challenge`; the rest is context for logs and hooks."""

    challenge: Challenge
    key_id: str | None = None
    client_ip: str | None = None
    fingerprint: str | None = None


Decision = Allow | Deny
PUBLIC = Allow(None)


class Pending:
    """A request that waits for the backend (`Guard.begin`); `Guard.settle` ends it.

    `lookup` is what to ask; the rest is what the decision needs once the answer is
    in: the request, the API it needs, the cached entry if any (served stale when the
    backend is down and ``stale_if_error`` allows), the client address and the
    token's fingerprint.
    """

    __slots__ = ("api", "client_ip", "entry", "facts", "fp", "lookup")

    def __init__(
        self,
        lookup: Lookup,
        facts: RequestFacts,
        api: str | None,
        entry: Entry | None,
        client_ip: str | None,
        fp: str,
    ) -> None:
        self.lookup = lookup
        self.facts = facts
        self.api = api
        self.entry = entry
        self.client_ip = client_ip
        self.fp = fp


class Guard:
    """The configured core: settings, cache and client-address rules.

    Options (keyword-only, shared by `BearerGuardMiddleware` and `WSGIBearerGuard`):

    - `api`: the API every protected request needs (None: any valid token will do).
    - `public_paths`: paths that pass unchecked; an entry ending in ``*`` is a prefix.
    - `trusted_proxies`: IPs/CIDRs whose ``X-Forwarded-For`` is believed.
    - `realm`: the ``realm`` of every challenge.
    - `query_token`: accept RFC 6750 §2.3 ``access_token`` in the query string (off;
      URIs end up in logs). `websocket_query_token`: the same for WebSockets only.
    - `ip_binding`: refuse tokens used from another address than they were issued to.
    - `audience`: this resource's name(s) (RFC 8707); a token whose audience names
      other resources only is refused with 401. `require_audience`: refuse tokens that
      name no audience at all too (a JWT from `JWTBackend` always names one).
    - `resource_metadata`: RFC 9728 metadata (a `ResourceMetadata`, a mapping of its
      fields, or the resource URL); served at ``/.well-known/oauth-protected-resource``
      and named in the ``resource_metadata`` parameter of every 401 challenge.
    - `cache_ttl`, `cache_maxsize`, `negative_cache_ttl`, `negative_cache_maxsize`,
      `touch_interval`, `stale_if_error`: see `TokenCache`.
    - `max_token_length`: longer tokens are refused with 400 before any lookup.
    - `token_format`: ``"bearerguard"`` refuses, with 401 ``invalid_token`` and no
      backend call, any token that is not shaped like one from ``bearerguard serve``
      (``bgt_`` + 43 characters + checksum, `bearerguard.tokens.is_well_formed`).
      None accepts any b64token. The middlewares turn it on for a backend that says its
      tokens have that format (`StoreBackend`) unless the option is given.
    - `retry_after`: seconds in the ``Retry-After`` of a 503.
    - `clock`: wall-clock seconds, injectable for tests.
    - `metrics`: a `bearerguard.metrics.Metrics` to count into (None: count nothing).
    - `on_decision(facts, decision)`: an audit hook, called after each decision, outside
      any lock; an exception in it is logged and ignored. Setting it turns off the
      adapters' cached fast path, since that path builds no `RequestFacts`.
    """

    def __init__(
        self,
        *,
        api: str | None = None,
        public_paths: Iterable[str] = (),
        trusted_proxies: Iterable[str] = (),
        realm: str = "api",
        query_token: bool = False,
        websocket_query_token: bool = False,
        ip_binding: bool = True,
        audience: str | Iterable[str] | None = None,
        require_audience: bool = False,
        resource_metadata: ResourceMetadata | Mapping[str, Any] | str | None = None,
        cache_ttl: float = 10.0,
        cache_maxsize: int = 100_000,
        negative_cache_ttl: float = 5.0,
        negative_cache_maxsize: int = 10_000,
        touch_interval: float = 5.0,
        stale_if_error: float = 0.0,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        token_format: str | None = None,
        retry_after: int = 5,
        clock: Callable[[], float] = time.time,
        cache: TokenCache | None = None,
        metrics: Metrics | None = None,
        on_decision: Callable[[RequestFacts, Decision], None] | None = None,
    ) -> None:
        quote_param(realm)  # fails at construction on a realm we cannot quote
        if api is not None:
            quote_param(api)
        if max_token_length < 1:
            raise ConfigurationError("max_token_length must be at least 1")
        if retry_after < 0 or not math.isfinite(retry_after):
            raise ConfigurationError("retry_after must be a non-negative number")
        if token_format is not None and token_format not in TOKEN_FORMATS:
            raise ConfigurationError(f"token_format must be None or one of {TOKEN_FORMATS}")
        self.api = api
        self.realm = realm
        self.query_token = query_token
        self.websocket_query_token = websocket_query_token or query_token
        self.ip_binding = ip_binding
        self.audience = audience_names(audience)
        if require_audience and self.audience is None:
            raise ConfigurationError("require_audience needs audience=")
        self.require_audience = require_audience
        self.resource = _resource.resource_metadata(
            resource_metadata,
            apis=() if api is None else (api,),
            query_token=query_token,
        )
        self._metadata_url = None if self.resource is None else self.resource.metadata_url
        self.max_token_length = max_token_length
        self.token_format = token_format
        self.clock = clock
        self.is_public = public_matcher(public_paths)
        self.resolver = ClientIPResolver(trusted_proxies)
        self.cache = cache or TokenCache(
            maxsize=cache_maxsize,
            ttl=cache_ttl,
            touch_interval=touch_interval,
            negative_maxsize=negative_cache_maxsize,
            negative_ttl=negative_cache_ttl,
            stale_if_error=stale_if_error,
            clock=clock,
        )
        self.metrics = metrics
        self.on_decision = on_decision
        # With query tokens, "two methods at once" needs the query string, and an audit
        # hook needs RequestFacts: both take the full flow, never `cached_identity`.
        self.fast_path = not query_token and on_decision is None
        # The adapters call `begin` and `settle` themselves unless a subclass wraps
        # `authenticate` (TracedGuard's span): then they drive that generator.
        self.stepwise = type(self).authenticate is Guard.authenticate
        self._proxied = self.resolver.enabled
        self._rules = Rules(ip_binding, self.audience, require_audience)
        self._aud, self._req_aud = self.audience, require_audience  # one attribute each
        self._address: dict[str | None, str | None] = {}
        self._peek = self.cache.peek
        self.unavailable = replace(UNAVAILABLE, retry_after=int(retry_after))

    def cached_identity(
        self, authorization: bytes, peer: str | None, forwarded: bool = False
    ) -> Identity | None:
        """The common case in one step, for the adapters' cached path.

        `authorization` is the request's only ``Authorization`` value, `peer` the peer
        address, `forwarded` whether an ``X-Forwarded-For`` header came along. Returns
        the Identity when the token is fresh in the cache and `policy.admit` admits it
        for the guard's own `api`: exactly what `authenticate` would allow without
        asking the backend. Returns None in every other case (refusals, misses, refresh
        due, proxies to resolve, a query token or an audit hook configured), and the
        caller then runs `authenticate`. It never refuses; tests check the two agree.
        """
        if not self.fast_path or not authorization.startswith(BEARER_PREFIXES):
            return None
        key = sha256(authorization[7:]).digest()
        entry = self._peek(key)
        if entry is None:
            return None
        now = self.clock()
        # refresh_at <= fresh_until <= the token's expiry, so a hit before refresh_at is
        # fresh and needs no touch yet.
        if now >= entry.refresh_at or (forwarded and self._proxied):
            return None
        try:
            client_ip = self._address[peer]  # a plain dict: the fastest lookup there is
        except KeyError:
            client_ip = learn_address(self._address, peer)
        info = entry.info
        if admit(info, client_ip, self.api, now, self.ip_binding, self._aud, self._req_aud):
            return None
        ident = entry.identity
        if ident is None or ident.client_ip != client_ip:
            ident = entry.identity = Identity(
                info.key_id, info.apis, client_ip, info, fingerprint(key)
            )
        if self.metrics is not None:
            self.metrics.hot_hits += 1
        return ident

    def authenticate(
        self, facts: RequestFacts, api: str | None = None
    ) -> Generator[Lookup, TokenInfo | None, Decision]:
        """Decide one request; `api` overrides the guard's own requirement.

        The generator form of `begin` and `settle`: it yields the `Lookup` of a miss
        and takes the answer (or a thrown `BackendUnavailable`).
        """
        step = self.begin(facts, api)
        if isinstance(step, Pending):
            try:
                answer: TokenInfo | BackendUnavailable | None = yield step.lookup
            except BackendUnavailable as exc:
                answer = exc
            return self.settle(step, answer)
        return step

    def begin(self, facts: RequestFacts, api: str | None = None) -> Decision | Pending:
        """Decide one request, or say which lookup it waits for (a `Pending`).

        A decision is final (and observed: counted, logged, hooked). A `Pending` goes
        to the backend as its `lookup`, and its answer (`TokenInfo`, None, or the
        `BackendUnavailable` raised instead) to `settle`. The adapters drive these two
        directly (`bearerguard._drive`); `authenticate` is the same as a generator.
        """
        step = self._begin(facts, api)
        if not isinstance(step, Pending):
            self._observe(facts, step)
        return step

    def settle(self, pending: Pending, answer: object) -> Decision:
        """The decision for `pending`, given the backend's answer (or its failure)."""
        decision = self._settle(pending, answer)
        self._observe(pending.facts, decision)
        return decision

    def _observe(self, facts: RequestFacts, decision: Decision) -> None:
        metrics = self.metrics
        if isinstance(decision, Deny):
            ch = decision.challenge
            if metrics is not None:
                metrics.requests[str(ch.status)] += 1
            if logger.isEnabledFor(logging.INFO):
                client_ip = decision.client_ip
                if client_ip is None:
                    client_ip = self.resolver.resolve(facts.peer, facts.forwarded_for)
                # One line per refusal; a fingerprint, never the token.
                logger.info(
                    "refused %d %s: %s path=%s key_id=%s client_ip=%s token=%s",
                    ch.status,
                    ch.error or "no_credentials",
                    ch.description or "no bearer credentials",
                    log_safe(facts.path),
                    log_safe(decision.key_id or "-"),
                    client_ip or "-",
                    decision.fingerprint or "-",
                )
        elif metrics is not None:
            metrics.requests["public" if decision.identity is None else "allowed"] += 1
        if self.on_decision is not None:
            try:
                self.on_decision(facts, decision)
            except Exception:
                logger.exception("on_decision hook failed")

    def _begin(self, facts: RequestFacts, api: str | None) -> Decision | Pending:
        if self.is_public(facts.path):
            return PUBLIC
        try:
            token = extract_token(
                facts.authorization, facts.query_tokens, max_length=self.max_token_length
            )
        except MalformedCredentials as exc:
            return Deny(Challenge(400, "invalid_request", str(exc)))
        if token is None:
            return Deny(MISSING)
        if self.token_format is not None and not is_well_formed(token):
            return Deny(NOT_OURS)
        key = token_key(token)
        fp = fingerprint(key)
        client_ip = self.resolver.resolve(facts.peer, facts.forwarded_for)
        entry, negative = self.cache.get(key)
        now = self.clock()
        metrics = self.metrics
        info: TokenInfo | None
        if entry is not None and now < entry.fresh_until:
            info = entry.info
            if metrics is not None:
                metrics.cache_hits += 1
        elif negative:
            info = None
            if metrics is not None:
                metrics.negative_hits += 1
        else:
            if metrics is not None:
                metrics.cache_misses += 1
            asker = client_ip if self.ip_binding else None
            return Pending(Lookup(token, key, asker), facts, api, entry, client_ip, fp)
        verdict = self._verdict(info, client_ip, api, now, fp)
        if isinstance(verdict, Deny):
            # The entry's refresh bookkeeping is left alone, so requests that are
            # refused for their address cannot consume or delay the holder's refresh (H4).
            return verdict
        if entry is None or now < entry.refresh_at:
            return Allow(verdict)
        # Ask once per touch interval: until the refresh lands (or if it fails), hits
        # keep taking the cached path and do not ask again at once. Never past
        # fresh_until: the cached path relies on refresh_at <= it.
        entry.refresh_at = min(now + self.cache.touch_for(verdict.token), entry.fresh_until)
        return Allow(verdict, Lookup(token, key, client_ip if self.ip_binding else None))

    def _settle(self, p: Pending, answer: object) -> Decision:
        lk = p.lookup
        info: TokenInfo | None
        if isinstance(answer, BackendUnavailable):
            entry = p.entry
            if entry is None or self.clock() >= entry.stale_until:
                logger.warning("backend unavailable, refusing token %s: %s", p.fp, answer)
                return Deny(self.unavailable, fingerprint=p.fp)
            logger.warning(
                "backend unavailable, serving token %s from stale cache: %s", p.fp, answer
            )
            if self.metrics is not None:
                self.metrics.stale_served += 1
            info = entry.info
        else:
            accepted = self._accept(lk.key, answer, lk.client_ip)
            if accepted is BAD_ANSWER:
                return Deny(self.unavailable, fingerprint=p.fp)
            info = accepted
        verdict = self._verdict(info, p.client_ip, p.api, self.clock(), p.fp)
        return verdict if isinstance(verdict, Deny) else Allow(verdict)

    def _verdict(
        self, info: TokenInfo | None, client_ip: str | None, api: str | None, now: float, fp: str
    ) -> Identity | Deny:
        """The rules applied to what is known of the token (None: unknown)."""
        verdict = decide(info, client_ip, api or self.api, now, self._rules, fp)
        if isinstance(verdict, Challenge):
            return Deny(verdict, info.key_id if info else None, client_ip, fp)
        return verdict

    def _accept(
        self, key: bytes, answer: object, asker: str | None
    ) -> TokenInfo | BadAnswer | None:
        if answer is not None and not isinstance(answer, TokenInfo):
            logger.warning(
                "backend answered %s for token %s, not TokenInfo or None",
                type(answer).__name__,
                fingerprint(key),
            )
            return BAD_ANSWER
        return self.cache.record(key, answer, asker)

    def refreshed(self, key: bytes, answer: object, asker: str | None = None) -> None:
        """Record the outcome of a background refresh (a value or an exception).

        `asker` is the refresh `Lookup`'s client_ip.
        """
        failed = isinstance(answer, BaseException)
        if self.metrics is not None:
            self.metrics.refreshes += 1
            self.metrics.refresh_failures += failed
        if failed:
            logger.warning("background refresh of token %s failed: %s", fingerprint(key), answer)
            return
        if answer is None or isinstance(answer, TokenInfo):
            self.cache.record(key, answer, asker)

    def challenge_headers(self, challenge: Challenge) -> list[tuple[str, str]]:
        """The response headers of a refusal; a 401 names the RFC 9728 metadata."""
        url = self._metadata_url if challenge.status == 401 else None
        return challenge.to_headers(self.realm, resource_metadata=url)

    def check_api(self, identity: Identity, api: str) -> Challenge | None:
        """For per-route requirements: the challenge if `identity` lacks `api`."""
        return None if api in identity.apis else insufficient_scope(api)


class BadAnswer(enum.Enum):
    """A backend answered neither `TokenInfo` nor None: fail closed (503), cache nothing."""

    BAD_ANSWER = "bad answer"


BAD_ANSWER: Final = BadAnswer.BAD_ANSWER
