"""The :class:`Transport`: pooled connections, scheme choice, requests, redirects and errors.

Built on urllib3 (see the README's design section for why): connections are pooled per
(scheme, host, port) and reused across calls and threads, one pool manager per (proxy, TLS
profile). Trust is :mod:`tank.transport.tls`'s, proxies :mod:`tank.transport.proxies`', timeouts
:mod:`tank.transport.timeouts`' and the credential rules :mod:`tank.transport.origins`'. This
module owns:

- **Which scheme.** HTTPS everywhere. A registry on ``localhost``, ``127.0.0.0/8`` or ``[::1]``
  (Docker's convention), or one named in ``insecure_registries``, is first probed with a TLS
  handshake (:func:`~tank.transport.tls.speaks_tls`) and spoken to over plain HTTP only when the
  server does not speak TLS at all; the answer is remembered per registry.
- **Redirects.** Followed by hand (at most :data:`MAX_REDIRECTS` hops, ``http``/``https`` only, a
  3xx without ``Location`` is an error, and never from ``https`` down to ``http``). Credentials
  (``Authorization``, ``Cookie``, ``Proxy-Authorization``) go only to the registry's own origin
  (scheme, host and port all count), never over plain HTTP to a non-loopback host (nor through a
  proxy off this machine), and once dropped on a hop they are never restored on a later one.
- **Errors.** Every network failure becomes a :class:`~tank.errors.TransportError` (certificate
  and handshake failures a :class:`~tank.errors.TLSError`, whose message says how to fix it)
  naming the URL; read timeouts and bodies cut short included, also mid-body. A redirect refused
  by the policy above is one too, marked ``permanent`` so that :mod:`tank.retry` does not try it
  again. This module never retries: every request is one try, and a failed connection is closed,
  never reused.
"""

from __future__ import annotations

import os
import re
import ssl
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import SSLError as _Urllib3SSLError

from tank._version import __version__
from tank.errors import TLSError, TransportError
from tank.transport.deadline import (
    DEADLINE_FACTOR,
    POOL_CLASSES,
    header_deadline,
    headers_timed_out,
    set_body_deadline,
)
from tank.transport.origins import (
    Origin,
    is_loopback,
    may_send_credentials,
    normalize_registry,
    strip_query,
    without_credentials,
)
from tank.transport.proxies import Proxy, bypass_proxy, proxies_from_env
from tank.transport.timeouts import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SPEED_LIMIT,
    DEFAULT_SPEED_TIME,
    SpeedLimit,
    pick_timeout,
)
from tank.transport.tls import (
    HostTLS,
    TLSProfile,
    certs_dirs,
    host_tls,
    quiet_insecure_warning,
    speaks_tls,
    ssl_context,
    tls_hint,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from urllib3 import BaseHTTPResponse

MAX_REDIRECTS: Final = 10
USER_AGENT: Final = f"tank/{__version__}"
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


#: what a request may send: bytes, or chunks of them (an upload streamed from a file)
Body = bytes | Iterable[bytes]


def _redirect_target(url: str, location: str) -> str:
    """``location`` resolved against ``url``; a :class:`~tank.errors.TransportError` (never a
    bare :class:`ValueError`) for one that does not parse (``http://[zz``, a port over 65535)."""
    try:
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
        _ = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise TransportError(
            f"{strip_query(url)}: refusing to follow a redirect to a malformed URL ({exc})",
            url=strip_query(url), permanent=True,
        ) from None
    return target


class Transport:
    """A pool of HTTP connections plus the policies of :mod:`tank.transport`.

    One default instance is shared by the module-level functions of :mod:`tank.registry`; make
    your own to change TLS trust, proxies, timeouts or the registries allowed plain HTTP
    (:meth:`tank.config.Config.transport` makes one from the configuration files).
    Thread-safe.

    :param ca_file: a PEM bundle trusted for every host, in addition to the system store.
    :param insecure_registries: ``host[:port]`` names that may use plain HTTP, or TLS without
        verification (each named exactly, as docker's ``--insecure-registry``).
    :param connect_timeout: seconds to establish a connection (``$TANK_CONNECT_TIMEOUT``, 30;
        0 waits as long as the system does).
    :param read_timeout: seconds any single read may wait for data (``$TANK_READ_TIMEOUT``, 60;
        0: no limit but the low-speed window's).
    :param speed_limit: bytes/s a blob body must sustain (``$TANK_SPEED_LIMIT``, 1024; 0 turns
        the low-speed check off) …
    :param speed_time: … over windows of this many seconds (``$TANK_SPEED_TIME``, 60).
    :param pool_size: connections kept per host.
    :param proxies: ``{"https": url, "http": url, "no": "host,…"}``; ``None`` reads
        ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment, ``{}`` uses none.
    :param certs_dirs: the certs.d roots (default :func:`~tank.transport.tls.certs_dirs`).
    """

    def __init__(
        self,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        insecure_registries: Iterable[str] = (),
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        speed_limit: float | None = None,
        speed_time: float | None = None,
        pool_size: int = 8,
        proxies: Mapping[str, str] | None = None,
        certs_dirs: Iterable[str | os.PathLike[str]] | None = None,
    ) -> None:
        self.ca_file = os.fspath(ca_file) if ca_file is not None else None
        self.insecure_registries = frozenset(normalize_registry(r) for r in insecure_registries)
        connect = pick_timeout("connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT)
        read = pick_timeout("read_timeout", read_timeout, DEFAULT_READ_TIMEOUT)
        limit = pick_timeout("speed_limit", speed_limit, DEFAULT_SPEED_LIMIT)
        window = pick_timeout("speed_time", speed_time, DEFAULT_SPEED_TIME)
        self.connect_timeout, self.read_timeout = connect, read
        #: the low-speed limit on blob bodies, ``None`` when off
        self.speed_limit = SpeedLimit(limit, window) if limit > 0 and window > 0 else None
        # a read that waits longer than the low-speed window is slower than any limit; 0 is
        # "no timeout"
        waits = [read] + ([window] if self.speed_limit is not None else [])
        socket_read = min((w for w in waits if w > 0), default=None)
        self.timeout = urllib3.Timeout(connect=connect or None, read=socket_read)
        #: the overall deadline for response headers and small bodies (tank.transport.deadline)
        self.deadline = DEADLINE_FACTOR * read if read > 0 else None
        self._pool_size = pool_size
        raw = proxies_from_env() if proxies is None else dict(proxies)
        self._proxies = {s: Proxy.parse(raw[s]) for s in ("http", "https") if raw.get(s)}
        self._no_proxy = raw.get("no", "")
        self._certs_roots = None if certs_dirs is None else [Path(p) for p in certs_dirs]
        self._managers: dict[tuple[Proxy | None, TLSProfile | None], urllib3.PoolManager] = {}
        self._contexts: dict[TLSProfile, ssl.SSLContext] = {}
        self._hosts: dict[str, HostTLS] = {}
        self._schemes: dict[tuple[str, bool], str] = {}
        self._lock = threading.Lock()

    # -- per-host settings --------------------------------------------------------------------

    def is_insecure(self, hostport: str, insecure: bool = False) -> bool:
        """Whether ``hostport`` was named an insecure registry (as a whole), or ``insecure``
        says the endpoint being reached is (a configuration entry for a namespace of it)."""
        return insecure or normalize_registry(hostport) in self.insecure_registries

    def proxy_for(self, url: str) -> str | None:
        """The proxy (without credentials) a request to ``url`` goes through, or ``None``."""
        proxy = self._proxy(url)
        return proxy.url if proxy is not None else None

    def _proxy(self, url: str) -> Proxy | None:
        """The proxy for ``url``: none for a host ``NO_PROXY`` exempts, and none for this
        machine's loopback (as Go's HTTP client decides: a proxy elsewhere would otherwise carry
        what is meant for this machine alone, token forms with passwords included)."""
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme.lower())
        if proxy is None or (self._no_proxy and bypass_proxy(parts.netloc, self._no_proxy)):
            return None
        if is_loopback(parts.netloc):
            return None
        return proxy

    def host_tls(self, hostport: str) -> HostTLS:
        """The certs.d entry for ``hostport`` (looked up once, then remembered)."""
        key = hostport.lower()
        with self._lock:
            found = self._hosts.get(key)
        if found is None:
            found = host_tls(key, self._certs_roots)
            with self._lock:
                found = self._hosts.setdefault(key, found)
        return found

    def _profile(self, hostport: str, insecure: bool = False) -> TLSProfile:
        entry = self.host_tls(hostport)
        cas = entry.ca_files if self.ca_file is None else (self.ca_file, *entry.ca_files)
        return TLSProfile(not self.is_insecure(hostport, insecure), cas, entry.client_cert)

    def _context(self, profile: TLSProfile) -> ssl.SSLContext:
        """The SSL context of a profile, built on first use (the system store costs ms)."""
        with self._lock:
            context = self._contexts.get(profile)
            if context is None:
                context = self._contexts[profile] = ssl_context(profile)
            return context

    def _manager(self, url: str, insecure: bool = False) -> urllib3.PoolManager:
        """The pool manager for ``url``: one per (proxy, TLS profile), pooling per host."""
        parts = urlsplit(url)
        proxy = self._proxy(url)
        https = parts.scheme.lower() == "https"
        profile = self._profile(parts.netloc, insecure) if https else None
        key = (proxy, profile)
        if profile is not None and not profile.verify:
            quiet_insecure_warning(parts.hostname or "")
        with self._lock:
            manager = self._managers.get(key)
        if manager is not None:
            return manager
        kw: dict[str, Any] = {}
        if profile is not None:
            kw["ssl_context"] = self._context(profile)
        if proxy is None:
            made = urllib3.PoolManager(
                num_pools=64, maxsize=self._pool_size, block=False, retries=False,
                timeout=self.timeout, **kw,
            )
        else:
            made = urllib3.ProxyManager(
                proxy.url, num_pools=64, maxsize=self._pool_size, block=False, retries=False,
                timeout=self.timeout, proxy_headers=dict(proxy.headers), **kw,
            )
        made.pool_classes_by_scheme = POOL_CLASSES  # headers have a deadline
        with self._lock:
            return self._managers.setdefault(key, made)

    # -- scheme selection ---------------------------------------------------------------------

    def base_url(self, registry: str, *, insecure: bool = False) -> str:
        """``scheme://registry`` as currently known (HTTPS until proven otherwise)."""
        key = (registry, self.is_insecure(registry, insecure))
        with self._lock:
            scheme = self._schemes.get(key, "https")
        return f"{scheme}://{registry}"

    def _scheme_for(self, registry: str, insecure: bool = False) -> str:
        """``https``, or ``http`` for a loopback or insecure registry without TLS (remembered,
        separately for an insecure endpoint: its plain HTTP never serves a secure one)."""
        key = (registry, self.is_insecure(registry, insecure))
        with self._lock:
            known = self._schemes.get(key)
        if known is not None:
            return known
        if not (is_loopback(registry) or key[1]):
            return "https"
        proxy = self._proxy(f"https://{registry}")
        scheme = "https" if speaks_tls(registry, self.connect_timeout or None, proxy) else "http"
        with self._lock:
            return self._schemes.setdefault(key, scheme)

    # -- requests -----------------------------------------------------------------------------

    def request_registry(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        preload: bool = False,
        body: Body | None = None,
        insecure: bool = False,
    ) -> BaseHTTPResponse:
        """Send ``method registry/path``, following redirects; credentials stay on the registry.

        ``headers`` may hold ``Authorization``: it is sent to the registry's own origin only. The
        response is returned whatever its status; with ``preload=False`` the body is left unread
        (read it, then call :func:`release`). A request with a ``body`` (an upload) is not
        redirected (see :meth:`request`). ``insecure`` allows plain HTTP or unverified TLS for
        this registry on this request (its configuration entry says so); never for a redirect
        target.
        """
        base = f"{self._scheme_for(registry, insecure)}://{registry}"
        return self.request(
            method, base + path, headers=headers, credentials_origin=Origin.of(base),
            preload=preload, body=body, insecure_host=registry if insecure else None,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        credentials_origin: Origin | None = None,
        preload: bool = False,
        body: Body | None = None,
        secret_body: bool = False,
        insecure_host: str | None = None,
    ) -> BaseHTTPResponse:
        """Send a request to an absolute URL, following redirects by the policy above.

        Credentials in ``headers`` are sent only while the URL's origin equals
        ``credentials_origin``. A request with a ``body`` (a token endpoint's OAuth2 form, which
        may hold a password) is never redirected: a 3xx answer is returned as it is. A
        ``secret_body`` obeys the rule credential headers obey (only to ``credentials_origin``,
        never in clear text off this machine, never through a proxy off this machine): a
        request that would break it is refused before anything is sent.
        """
        if secret_body and not self._may_send_credentials(url, credentials_origin):
            via = self._proxy(url)
            raise TransportError(
                f"{strip_query(url)}: refusing to send credentials in a request body over plain "
                "HTTP" + (f" through the proxy {via.url}" if via is not None else "")
                + " (credentials go only over HTTPS, or to this machine)",
                url=strip_query(url), permanent=True,
            )
        send: dict[str, str] = {"User-Agent": USER_AGENT}
        send.update(headers or {})
        with_credentials = credentials_origin is not None
        for _hop in range(MAX_REDIRECTS + 1):
            if with_credentials and not self._may_send_credentials(url, credentials_origin):
                with_credentials = False
            out = send if with_credentials else without_credentials(send)
            insecure = insecure_host is not None and (
                urlsplit(url).netloc.lower() == insecure_host.lower()
            )
            response = self._urlopen(method, url, out, preload=preload, body=body,
                                     insecure=insecure)
            # the absolute URL that answered: a 401 is answered only when it is the registry's
            response.url = url
            if response.status not in _REDIRECTS or body is not None:
                return response
            location = response.headers.get("Location")
            release(response)
            if not location:
                raise TransportError(
                    f"{strip_query(url)}: HTTP {response.status} redirect without a Location "
                    "header", url=strip_query(url), permanent=True,
                )
            target = _redirect_target(url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise TransportError(
                    f"{strip_query(url)}: refusing to follow a redirect to a {scheme or 'relative'}"
                    " URL (not http or https)", url=strip_query(url), permanent=True,
                )
            if scheme == "http" and urlsplit(url).scheme.lower() == "https":
                raise TransportError(
                    f"{strip_query(url)}: refusing to follow a redirect from https to plain http "
                    f"({strip_query(target)}): a downgrade", url=strip_query(url), permanent=True,
                )
            if response.status == 303 and method != "HEAD":
                method = "GET"
            url = target
        raise TransportError(
            f"{strip_query(url)}: more than {MAX_REDIRECTS} redirects", url=strip_query(url),
            permanent=True,
        )

    def _may_send_credentials(self, url: str, allowed: Origin | None) -> bool:
        """:func:`may_send_credentials`, and plain HTTP never through a proxy off this machine."""
        if not may_send_credentials(url, allowed):
            return False
        if urlsplit(url).scheme.lower() == "https":
            return True
        proxy = self._proxy(url)
        return proxy is None or is_loopback(urlsplit(proxy.url).netloc)

    def _urlopen(
        self, method: str, url: str, headers: Mapping[str, str], *, preload: bool,
        body: Body | None = None, insecure: bool = False,
    ) -> BaseHTTPResponse:
        shown = strip_query(url)  # a signed URL's query is a secret: never in an error
        manager = self._manager(url, insecure)
        try:
            with header_deadline(self.deadline):
                response = manager.urlopen(
                    method, url, headers=dict(headers), body=body, redirect=False, retries=False,
                    preload_content=preload, decode_content=False, timeout=self.timeout,
                )
        except (_Urllib3Error, OSError) as exc:
            raise self._error(exc, url, shown) from exc
        set_body_deadline(response, self.deadline)
        if response.status == 407:
            release(response)
            proxy = self._proxy(url)
            raise TransportError(
                f"{shown}: the proxy {proxy.url if proxy else ''} asks for credentials (HTTP 407); "
                "give them in the proxy URL (http://user:password@proxy:port)",
                url=shown, permanent=True,
            )
        return response

    def _error(self, exc: BaseException, url: str, shown: str) -> TransportError:
        """The :class:`~tank.errors.TransportError` a failed request becomes."""
        if headers_timed_out():
            return TransportError(
                f"{shown}: the headers were still arriving after {self.deadline:g} s: the "
                "server is too slow (the deadline is a few read timeouts: TANK_READ_TIMEOUT)",
                url=shown,
            )
        if isinstance(exc, _Urllib3SSLError):
            return TLSError(
                f"{shown}: TLS failure: {_reason(exc)}{self._tls_hint(url, exc)}", url=shown
            )
        if isinstance(exc, ProxyError):
            proxy = self._proxy(url)
            via = f" through the proxy {proxy.url}" if proxy is not None else ""
            permanent = re.search(r"\b407\b", _reason(exc)) is not None
            return TransportError(
                f"{shown}: cannot connect{via}: {_reason(exc)}", url=shown, permanent=permanent
            )
        if isinstance(exc, NewConnectionError):
            return TransportError(f"{shown}: cannot connect: {_reason(exc)}", url=shown)
        if isinstance(exc, ConnectTimeoutError):
            return TransportError(
                f"{shown}: cannot connect: timed out after {self.connect_timeout:g} s (connect "
                "timeout: TANK_CONNECT_TIMEOUT, or [timeouts] connect in the config)", url=shown,
            )
        if isinstance(exc, ReadTimeoutError):
            return TransportError(f"{shown}: {self._read_timeout_text()}", url=shown)
        return TransportError(f"{shown}: {_reason(exc)}", url=shown)

    def _read_timeout_text(self) -> str:
        """Why a read timed out, naming the setting that decided how long to wait."""
        waited = self.timeout.read_timeout
        if self.speed_limit is not None and waited != self.read_timeout:
            return (
                f"timed out: no data for {waited:g} s (the low-speed window: TANK_SPEED_TIME, or "
                "[timeouts] speed-time in the config)"
            )
        return (
            f"timed out: no data for {waited:g} s (read timeout: TANK_READ_TIMEOUT, or "
            "[timeouts] read in the config)"
        )

    def _tls_hint(self, url: str, exc: BaseException) -> str:
        """How to fix a TLS failure with ``url``'s host: certs.d, --ca-file, --insecure-registry."""
        hostport = urlsplit(url).netloc.rpartition("@")[2].lower()
        roots = self._certs_roots if self._certs_roots is not None else certs_dirs()
        return tls_hint(hostport, self.host_tls(hostport), roots, _reason(exc))

    def clear(self) -> None:
        """Close every pooled connection; forget which registries speak TLS and what certs.d held.

        SSL contexts are kept (a certs.d folder changed since is read again on next use).
        """
        with self._lock:
            managers = list(self._managers.values())
            self._managers.clear()
            self._schemes.clear()
            self._hosts.clear()
        for manager in managers:
            manager.clear()


def _reason(exc: BaseException) -> str:
    """A short human reason for a urllib3/socket error, without the pool's boilerplate."""
    inner: BaseException = exc
    while True:
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    return _URL_QUERY.sub(r"\1", text)  # no signed URL's query in a message


_URL_QUERY = re.compile(r"(\b(?:https?://|/)[^\s?'\"]*)\?[^\s'\"]*")


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


__all__ = ["MAX_REDIRECTS", "USER_AGENT", "Transport", "discard", "release"]
