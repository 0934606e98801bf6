"""Origins: where credentials may go, and the URL helpers that decide it.

- **Credentials** (``Authorization``, ``Cookie``, ``Proxy-Authorization``:
  :data:`SENSITIVE_HEADERS`) go only to the registry's own origin (scheme, host and port all
  count: :class:`Origin`), and never over plain HTTP to a host off this machine
  (:func:`is_loopback`: ``localhost``, ``127.0.0.0/8``, ``[::1]``).
- **Registry names** compare as :func:`normalize_registry` writes them: ``host[:port]``, lower
  case, without a scheme (the insecure list and certs.d alike).
- **Messages** show URLs through :func:`strip_query`: CDN signatures in the query, and user
  information, stay out of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping

#: headers that carry credentials; they never follow a redirect to another origin
SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name``, ``name:port``, ``[v6]:port``) names this machine's loopback."""
    hostname = urlsplit(f"//{host}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Origin:
    """scheme, host and port: what must be equal for credentials to be sent on."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute ``http``/``https`` URL."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, (parts.hostname or "").lower(), port)


def may_send_credentials(url: str, allowed: Origin | None) -> bool:
    """Credentials go only to ``allowed`` itself, and never in clear text off this machine."""
    if allowed is None:
        return False
    origin = Origin.of(url)
    if origin != allowed:
        return False
    return origin.scheme == "https" or is_loopback(origin.host)


def without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` without the :data:`SENSITIVE_HEADERS` (compared case-insensitively)."""
    return {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}


def normalize_registry(name: str) -> str:
    """``host[:port]`` as the insecure list and certs.d compare it: lower case, no scheme."""
    text = name.strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.rstrip("/")


def strip_query(url: str) -> str:
    """A URL without its query (CDN signatures stay out of messages)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


__all__ = [
    "SENSITIVE_HEADERS",
    "Origin",
    "is_loopback",
    "may_send_credentials",
    "normalize_registry",
    "strip_query",
    "without_credentials",
]
