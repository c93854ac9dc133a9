"""RFC 9728 protected-resource metadata: what a client needs to find our token issuer.

`ResourceMetadata` is the document served at ``/.well-known/oauth-protected-resource``
and the URL that every 401 challenge names in its ``resource_metadata`` parameter
(RFC 9728 §5.1), so a client that was refused learns where to get a token (MCP clients
rely on it). Pure values; the adapters serve `ResourceMetadata.body`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from .errors import ConfigurationError, quote_param

__all__ = ["ResourceMetadata", "WELL_KNOWN", "resource_metadata"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def _url(name: str, value: object) -> httpx.URL:
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except (httpx.InvalidURL, TypeError):
        url = None
    # RFC 9728 §2 / RFC 8707 §2: an absolute URI without a fragment.
    if url is None or url.scheme not in ("http", "https") or not url.host or url.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without a fragment")
    return url


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """RFC 9728 §2 metadata of this resource server.

    `resource` is the API's resource identifier (its URL, the RFC 8707 audience);
    `authorization_servers` the issuers whose tokens it accepts; `scopes_supported`
    the API names; `bearer_methods_supported` how tokens may be sent (RFC 6750 §2).
    """

    resource: str
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    bearer_methods_supported: tuple[str, ...] = ("header",)
    resource_name: str | None = None
    well_known_path: str = field(init=False, default="")
    metadata_url: str = field(init=False, default="")
    body: bytes = field(init=False, default=b"", repr=False)

    def __post_init__(self) -> None:
        url = _url("resource", self.resource)
        for server in self.authorization_servers:
            _url("authorization server", server)
        # RFC 9728 §3.1: the well-known suffix goes between the host and the path; a
        # terminating slash after the host is removed first.
        path = url.path.rstrip("/")
        well_known = WELL_KNOWN + path
        origin = str(url.copy_with(path="/", query=None)).rstrip("/")
        metadata_url = origin + well_known
        quote_param(metadata_url)  # it goes into challenges: printable ASCII only
        doc: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
            "scopes_supported": sorted(self.scopes_supported),
            "bearer_methods_supported": list(self.bearer_methods_supported),
        }
        if self.resource_name:
            doc["resource_name"] = self.resource_name
        object.__setattr__(self, "well_known_path", well_known)
        object.__setattr__(self, "metadata_url", metadata_url)
        object.__setattr__(self, "body", json.dumps(doc, separators=(",", ":")).encode())

    @property
    def paths(self) -> frozenset[str]:
        """The request paths that serve this document (RFC 9728 §3.1, and the bare one)."""
        return frozenset((self.well_known_path, WELL_KNOWN))

    def document(self) -> dict[str, Any]:
        """The metadata as a JSON object."""
        doc: dict[str, Any] = json.loads(self.body)
        return doc


def resource_metadata(
    value: ResourceMetadata | Mapping[str, Any] | str | None,
    *,
    apis: Iterable[str] = (),
    query_token: bool = False,
) -> ResourceMetadata | None:
    """The middleware's `resource_metadata=` option as a `ResourceMetadata`.

    `value` may be one already, a mapping of its fields, or just the resource URL.
    Unset ``scopes_supported`` becomes `apis`, and ``bearer_methods_supported`` says
    ``query`` too when query tokens are on. Raises ConfigurationError for bad values.
    """
    if value is None:
        return None
    if isinstance(value, ResourceMetadata):
        return value
    fields: dict[str, Any] = {"resource": value} if isinstance(value, str) else dict(value)
    if "resource" not in fields:
        raise ConfigurationError("resource_metadata needs a resource URL")
    for name in ("authorization_servers", "scopes_supported", "bearer_methods_supported"):
        if name in fields:
            if isinstance(fields[name], str):
                raise ConfigurationError(f"resource_metadata {name} must be a list")
            fields[name] = tuple(fields[name])
    meta = ResourceMetadata(**fields)
    if "scopes_supported" not in fields:
        meta = replace(meta, scopes_supported=tuple(apis))
    if "bearer_methods_supported" not in fields and query_token:
        meta = replace(meta, bearer_methods_supported=("header", "query"))
    return meta
