"""One pooled HTTP client for registries, their CDNs and their token endpoints.

Built on urllib3 (see the README's design section for why): connections are pooled per
(scheme, host, port) and reused across calls and threads. This module owns the transport policies
in one place:

- **Which scheme.** HTTPS everywhere. A registry on ``localhost``, ``127.0.0.0/8`` or ``[::1]``
  (Docker's convention) is first probed with a TLS handshake and spoken to over plain HTTP only
  when the server does not speak TLS at all; the answer is remembered per registry. HTTPS is
  verified as anywhere else: a certificate error is an error, never a reason to fall back.
  Registries the caller names in ``insecure_registries`` use plain HTTP. The trust store is
  loaded on first HTTPS use.
- **Redirects.** Followed by hand (at most :data:`MAX_REDIRECTS` hops, ``http``/``https`` only, a
  3xx without ``Location`` is an error). Credentials (``Authorization``, ``Cookie``,
  ``Proxy-Authorization``) go only to the registry's own origin (scheme, host and port all count),
  never over plain HTTP to a non-loopback host, and once dropped on a hop they are never restored
  on a later one.
- **Errors.** Every network failure becomes a :class:`~tank.errors.TransportError` (certificate
  and handshake failures a :class:`~tank.errors.TLSError`) naming the URL; read timeouts and
  bodies cut short included, also mid-body. A redirect refused by the policy above is one too,
  marked ``permanent`` so that :mod:`tank.retry` does not try it again. This module never
  retries: every request is one try, and a failed connection is closed, never reused.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import SSLError as _Urllib3SSLError

from tank import __version__
from tank.errors import TLSError, TransportError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from urllib3 import BaseHTTPResponse

MAX_REDIRECTS: Final = 10
USER_AGENT: Final = f"tank/{__version__}"
#: headers that carry credentials; they never follow a redirect to another origin
SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# OpenSSL's reasons when the peer answered a ClientHello with something that is not TLS.
_NOT_TLS_REASONS: Final = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "UNEXPECTED_EOF_WHILE_READING",
    }
)


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


class Transport:
    """A pool of HTTP connections plus the policies above.

    One default instance is shared by the module-level functions of :mod:`tank.registry`; make
    your own to change TLS trust, timeouts or the registries allowed plain HTTP. Thread-safe.

    :param ca_file: a PEM bundle trusted in addition to the system store.
    :param insecure_registries: ``host[:port]`` names spoken to over plain HTTP.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds any single read may wait for data.
    :param pool_size: connections kept per host.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        insecure_registries: Iterable[str] = (),
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        pool_size: int = 8,
    ) -> None:
        self.ca_file = ca_file
        self.insecure_registries = frozenset(insecure_registries)
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._connect_timeout = connect_timeout
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=self.timeout,
        )
        self._tls_ready = False
        self._schemes: dict[str, str] = {}
        self._lock = threading.Lock()

    def _ensure_tls(self) -> None:
        """Load the trust store on first HTTPS use (it costs tens of ms; plain HTTP never pays)."""
        if self._tls_ready:
            return
        with self._lock:
            if not self._tls_ready:
                context = ssl.create_default_context()
                if self.ca_file:
                    context.load_verify_locations(cafile=self.ca_file)
                self._pool.connection_pool_kw["ssl_context"] = context
                self._tls_ready = True

    # -- scheme selection ---------------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        """``scheme://registry`` as currently known (HTTPS until proven otherwise)."""
        if registry in self.insecure_registries:
            return f"http://{registry}"
        with self._lock:
            scheme = self._schemes.get(registry, "https")
        return f"{scheme}://{registry}"

    def _scheme_for(self, registry: str) -> str:
        """``https``, or ``http`` for a loopback registry that does not speak TLS (remembered)."""
        if registry in self.insecure_registries:
            return "http"
        with self._lock:
            known = self._schemes.get(registry)
        if known is not None:
            return known
        if not is_loopback(registry):
            return "https"
        scheme = "https" if _speaks_tls(registry, self._connect_timeout) else "http"
        with self._lock:
            return self._schemes.setdefault(registry, scheme)

    # -- requests -----------------------------------------------------------------------------

    def request_registry(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        preload: bool = False,
    ) -> BaseHTTPResponse:
        """Send ``method registry/path``, following redirects; credentials stay on the registry.

        ``headers`` may hold ``Authorization``: it is sent to the registry's own origin only. The
        response is returned whatever its status; with ``preload=False`` the body is left unread
        (read it, then call :func:`release`).
        """
        base = f"{self._scheme_for(registry)}://{registry}"
        return self.request(
            method, base + path, headers=headers, credentials_origin=Origin.of(base),
            preload=preload,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        credentials_origin: Origin | None = None,
        preload: bool = False,
    ) -> BaseHTTPResponse:
        """Send a request to an absolute URL, following redirects by the policy above.

        Credentials in ``headers`` are sent only while the URL's origin equals
        ``credentials_origin``.
        """
        send: dict[str, str] = {"User-Agent": USER_AGENT}
        send.update(headers or {})
        with_credentials = credentials_origin is not None
        for _hop in range(MAX_REDIRECTS + 1):
            if with_credentials and not may_send_credentials(url, credentials_origin):
                with_credentials = False
            out = send if with_credentials else _without_credentials(send)
            response = self._urlopen(method, url, out, preload=preload)
            if response.status not in _REDIRECTS:
                return response
            location = response.headers.get("Location")
            release(response)
            if not location:
                raise TransportError(
                    f"{url}: HTTP {response.status} redirect without a Location header", url=url,
                    permanent=True,
                )
            target = urljoin(url, location)
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise TransportError(
                    f"{url}: refusing to follow a redirect to {location!r} (not http or https)",
                    url=url, permanent=True,
                )
            if response.status == 303 and method != "HEAD":
                method = "GET"
            url = target
        raise TransportError(
            f"{url}: more than {MAX_REDIRECTS} redirects", url=url, permanent=True
        )

    def _urlopen(
        self, method: str, url: str, headers: Mapping[str, str], *, preload: bool
    ) -> BaseHTTPResponse:
        if url[:6].lower() == "https:":
            self._ensure_tls()
        try:
            return self._pool.urlopen(
                method,
                url,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=preload,
                decode_content=False,
                timeout=self.timeout,
            )
        except _Urllib3SSLError as exc:
            raise TLSError(f"{url}: TLS failure: {_reason(exc)}", url=url) from exc
        except NewConnectionError as exc:
            raise TransportError(f"{url}: cannot connect: {_reason(exc)}", url=url) from exc
        except (_Urllib3Error, OSError) as exc:
            raise TransportError(f"{url}: {_reason(exc)}", url=url) from exc

    def clear(self) -> None:
        """Close every pooled connection and forget which loopback registries speak TLS."""
        self._pool.clear()
        with self._lock:
            self._schemes.clear()


def _speaks_tls(registry: str, timeout: float) -> bool:
    """Whether the server at ``registry`` (loopback) answers a TLS handshake.

    Only the handshake is attempted, with no certificate check: its one purpose is telling a
    plain-HTTP server from a TLS one. Real requests then verify certificates as everywhere else,
    so a TLS server with a bad certificate fails there, and is never downgraded. A server that
    cannot be reached counts as TLS, so the real request reports the real error.
    """
    parts = urlsplit(f"//{registry}")
    host, port = parts.hostname or "localhost", parts.port or 443
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return True
    try:
        with probe.wrap_socket(sock, server_hostname=host):
            return True
    except ssl.SSLError as exc:
        return not (exc.reason in _NOT_TLS_REASONS or isinstance(exc, ssl.SSLEOFError))
    except (ConnectionError, TimeoutError):
        return False
    finally:
        sock.close()


def _without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}


def _reason(exc: BaseException) -> str:
    """A short human reason for a urllib3/socket error, without the pool's boilerplate."""
    inner: BaseException = exc
    while True:
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    return text


def release(response: BaseHTTPResponse) -> None:
    """Return a response's connection to the pool (reading what little is left), or close it."""
    try:
        response.drain_conn()
        response.release_conn()
    except (_Urllib3Error, OSError):
        response.close()


def discard(response: BaseHTTPResponse) -> None:
    """Close a response whose body was not read to the end: its connection is not reused."""
    response.close()
    conn = getattr(response, "connection", None)
    if conn is not None:
        conn.close()
    response.release_conn()


_default: Transport | None = None
_default_lock = threading.Lock()


def default_transport() -> Transport:
    """The process-wide transport used when a caller passes none."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Transport()
        return _default


__all__ = [
    "MAX_REDIRECTS",
    "Origin",
    "Transport",
    "default_transport",
    "discard",
    "is_loopback",
    "may_send_credentials",
    "release",
]
