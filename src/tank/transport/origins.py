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

from tank.errors import TransportError

if TYPE_CHECKING:
    from collections.abc import Mapping

#: headers that carry credentials; they never follow a redirect to another origin
SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name``, ``name:port``, ``[v6]``, ``[v6]:port``, or a bare IPv6
    address such as ``::1``) names this machine's loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        hostname = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
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
        """The origin of an absolute ``http``/``https`` URL; a
        :class:`~tank.errors.TransportError` (never a bare :class:`ValueError`) for a URL that
        does not parse (``http://[zz``, a port over 65535)."""
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            port = parts.port or (443 if scheme == "https" else 80)
            host = (parts.hostname or "").lower()
        except ValueError as exc:
            raise TransportError(
                f"malformed URL {strip_query(url)[:200]!r}: {exc}", url=strip_query(url),
                permanent=True,
            ) from None
        return cls(scheme, host, port)


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
    """A URL without its query, fragment and user info (CDN signatures and credentials stay out
    of messages); what cannot be parsed is cut at the first ``?``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
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
