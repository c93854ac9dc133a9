"""Which address a request comes from, with proxy trust configured in one place.

Security: ``X-Forwarded-For`` is a header anyone can send. It is read only when the
peer itself is a trusted proxy, and then right to left, skipping trusted hops, so the
answer is the first address that no trusted proxy vouches for. A client cannot move
that answer by prepending forged entries. The RFC 7239 ``Forwarded`` header is not
read at all; configure your proxy to send ``X-Forwarded-For``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from .errors import ConfigurationError

__all__ = ["ClientIPResolver", "learn_address", "normalize_ip"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)
def normalize_ip(text: str) -> str | None:
    """Return the canonical text form of an IP address, or None if `text` is not one.

    IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) become their IPv4 form, so a token
    issued over IPv4 is accepted from the same host over a dual-stack socket.
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if addr.scope_id:
            return None
    return str(addr)


def learn_address(memo: dict[str | None, str | None], peer: str | None) -> str | None:
    """Normalise `peer` (None stays None) into `memo`, a bounded plain dict.

    The cached path reads ``memo[peer]`` on every request (a plain dict hit is the
    cheapest lookup there is) and calls this on a miss.
    """
    ip = None if peer is None else normalize_ip(peer)
    if len(memo) < 4096:
        memo[peer] = ip
    return ip


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(net: _Network) -> _Network:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.1``) as the IPv4 network it means.

    Peer addresses are normalised the same way (`normalize_ip`), so without this such
    a proxy would never match and its ``X-Forwarded-For`` would be silently ignored.
    """
    if not isinstance(net, ipaddress.IPv6Network) or not net.subnet_of(_MAPPED):
        return net
    mapped = net.network_address.ipv4_mapped
    assert mapped is not None
    return ipaddress.IPv4Network((mapped, net.prefixlen - 96))


def _parse_networks(items: Iterable[str]) -> tuple[_Network, ...]:
    nets: list[_Network] = []
    for item in items:
        try:
            net = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError as exc:
            raise ConfigurationError(f"trusted proxy is not an IP or CIDR: {item!r}") from exc
        nets.append(_unmapped(net))
    return tuple(nets)


class ClientIPResolver:
    """Resolve the client address from the peer address and ``X-Forwarded-For``.

    `trusted_proxies` lists IPs or CIDRs (``"10.0.0.0/8"``, ``"127.0.0.1"``). With none,
    the peer address is the client, whatever headers say.
    """

    __slots__ = ("_cache", "_nets")

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        if isinstance(trusted_proxies, str):
            trusted_proxies = [p for p in trusted_proxies.split(",") if p.strip()]
        self._nets = _parse_networks(trusted_proxies)
        self._cache: dict[str, bool] = {}

    @property
    def enabled(self) -> bool:
        """True when some proxy is trusted, so ``X-Forwarded-For`` may be read."""
        return bool(self._nets)

    def is_trusted(self, ip: str) -> bool:
        """Whether the normalised address `ip` is a trusted proxy."""
        hit = self._cache.get(ip)
        if hit is None:
            addr = ipaddress.ip_address(ip)
            hit = any(addr in net for net in self._nets)
            if len(self._cache) < 4096:
                self._cache[ip] = hit
        return hit

    def resolve(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """Return the client's normalised address, or None when it cannot be known.

        None means: no peer address (a Unix socket), or a trusted proxy passed on an
        entry that is not an address. Callers binding tokens to addresses refuse then.
        """
        if peer is None:
            return None
        ip = normalize_ip(peer)
        if ip is None or not self._nets or not forwarded_for or not self.is_trusted(ip):
            return ip
        hops = [h for value in forwarded_for for h in value.split(",")]
        for hop in reversed(hops):
            hop_ip = normalize_ip(hop)
            if hop_ip is None:
                return None
            if not self.is_trusted(hop_ip):
                return hop_ip
            ip = hop_ip
        # Every hop is a trusted proxy: the leftmost one is as far as we can see.
        return ip
