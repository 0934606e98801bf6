"""One pooled HTTP client for registries, their CDNs and their token endpoints.

Built on urllib3 (see the README's design section for why): connections are pooled per
(scheme, host, port) and reused across calls and threads. This module owns the transport policies
in one place:

- **Which scheme.** HTTPS everywhere. A registry on ``localhost``, ``127.0.0.0/8`` or ``[::1]``
  (Docker's convention), or one named in ``insecure_registries``, is first probed with a TLS
  handshake and spoken to over plain HTTP only when the server does not speak TLS at all; the
  answer is remembered per registry.
- **Trust.** HTTPS is verified against the system store, plus ``ca_file``, plus the per-host CA
  bundles of docker's ``certs.d`` convention (:func:`certs_dirs`): ``HOST[:PORT]/*.crt`` are
  trusted for that host, and ``*.cert`` with its ``*.key`` (``client.cert``/``client.key``) is
  the client certificate presented to it (mTLS). A certificate error is an error, never a reason
  to fall back to plain HTTP; only a registry named in ``insecure_registries`` is spoken to over
  TLS without verification. Trust stores are loaded on first HTTPS use.
- **Proxies.** ``HTTPS_PROXY``/``HTTP_PROXY`` (lower case wins) per scheme, ``NO_PROXY``
  bypassing hosts by domain suffix, ``host:port``, IP or CIDR, or ``*`` for all, as
  :mod:`urllib.request` reads them; HTTPS goes through a ``CONNECT`` tunnel, plain HTTP is
  forwarded. ``user:password@`` in a proxy URL becomes ``Proxy-Authorization`` for the proxy
  alone, and never appears in an error.
- **Redirects.** Followed by hand (at most :data:`MAX_REDIRECTS` hops, ``http``/``https`` only, a
  3xx without ``Location`` is an error, and never from ``https`` down to ``http``). Credentials
  (``Authorization``, ``Cookie``, ``Proxy-Authorization``) go only to the registry's own origin
  (scheme, host and port all count), never over plain HTTP to a non-loopback host (nor through a
  proxy off this machine), and once dropped on a hop they are never restored on a later one.
- **Timeouts.** ``connect_timeout`` to establish a connection, ``read_timeout`` for any single
  read, and a low-speed limit (:class:`SpeedLimit`, curl's ``--speed-limit``/``--speed-time``)
  on blob bodies: slower than ``speed_limit`` bytes/s for ``speed_time`` seconds is an error.
  Each comes from its keyword argument, else its environment variable (:data:`TIMEOUT_ENV`),
  else the default. A stalled server is an error, never a hang; no fixed deadline ever cuts a
  slow but healthy transfer.
- **Errors.** Every network failure becomes a :class:`~tank.errors.TransportError` (certificate
  and handshake failures a :class:`~tank.errors.TLSError`, whose message says how to fix it)
  naming the URL; read timeouts and bodies cut short included, also mid-body. A redirect refused
  by the policy above is one too, marked ``permanent`` so that :mod:`tank.retry` does not try it
  again. This module never retries: every request is one try, and a failed connection is closed,
  never reused.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    InsecureRequestWarning,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import SSLError as _Urllib3SSLError

from tank._version import __version__
from tank.errors import ConfigError, TLSError, TransportError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from urllib3 import BaseHTTPResponse

MAX_REDIRECTS: Final = 10
USER_AGENT: Final = f"tank/{__version__}"
#: headers that carry credentials; they never follow a redirect to another origin
SENSITIVE_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
#: defaults: seconds to connect, seconds a read may wait, and the low-speed limit (bytes/s
#: sustained over seconds)
DEFAULT_CONNECT_TIMEOUT: Final = 30.0
DEFAULT_READ_TIMEOUT: Final = 60.0
DEFAULT_SPEED_LIMIT: Final = 1024.0
DEFAULT_SPEED_TIME: Final = 60.0
#: the environment variable behind each timeout keyword
TIMEOUT_ENV: Final = {
    "connect_timeout": "TANK_CONNECT_TIMEOUT",
    "read_timeout": "TANK_READ_TIMEOUT",
    "speed_limit": "TANK_SPEED_LIMIT",
    "speed_time": "TANK_SPEED_TIME",
}
#: overrides the certs.d roots (``os.pathsep``-separated); see :func:`certs_dirs`
CERTS_D_ENV: Final = "TANK_CERTS_D"
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
# OpenSSL's words for "the server wants a client certificate"
_CLIENT_CERT_WANTED = re.compile(
    r"CERTIFICATE_REQUIRED|certificate required|BAD_CERTIFICATE|bad certificate|"
    r"HANDSHAKE_FAILURE|handshake failure",
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


# -- timeouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedLimit:
    """Fail a transfer slower than ``bytes_per_second`` sustained over ``seconds``.

    curl's ``--speed-limit``/``--speed-time``: throughput is measured over consecutive windows of
    ``seconds``; a window whose average is under the limit is an error. A slow but steady link
    above the limit is never cut off, however long the transfer takes.
    """

    bytes_per_second: float
    seconds: float

    def monitor(self) -> SpeedMonitor:
        """A fresh monitor for one transfer; its clock starts now."""
        return SpeedMonitor(self)


class SpeedMonitor:
    """Counts one transfer's bytes against a :class:`SpeedLimit`; see :meth:`update`."""

    __slots__ = ("_bytes", "_start", "limit")

    def __init__(self, limit: SpeedLimit) -> None:
        self.limit = limit
        self._start = time.monotonic()
        self._bytes = 0

    def update(self, amount: int) -> None:
        """Count ``amount`` more bytes; raise :class:`TransportError` when the window was slow."""
        self._bytes += amount
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < self.limit.seconds:
            return
        if self._bytes < self.limit.bytes_per_second * elapsed:
            rate = self._bytes / elapsed
            raise TransportError(
                f"the transfer was slower than the low-speed limit of "
                f"{self.limit.bytes_per_second:g} bytes/s for {elapsed:.1f} s ({rate:.0f} "
                f"bytes/s; set TANK_SPEED_LIMIT/TANK_SPEED_TIME to change it)"
            )
        self._start, self._bytes = now, 0


def timeout_from_env(keyword: str) -> float | None:
    """The value of the environment variable behind ``keyword`` (see :data:`TIMEOUT_ENV`).

    ``None`` when unset or empty; a :class:`~tank.errors.ConfigError` when it is not a number
    >= 0.
    """
    name = TIMEOUT_ENV[keyword]
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    return check_timeout(text, where=f"${name}")


def check_timeout(value: object, *, where: str) -> float:
    """``value`` as a finite float >= 0, or a :class:`~tank.errors.ConfigError` naming ``where``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (number >= 0 and number != float("inf")):
        raise ConfigError(f"{where} = {value!r}: expected a number of seconds (or bytes/s) >= 0")
    return number


# -- certs.d ----------------------------------------------------------------------------------


def certs_dirs() -> list[Path]:
    """The roots searched for ``HOST[:PORT]/`` trust folders, first match wins.

    ``$TANK_CERTS_D`` (``os.pathsep``-separated) replaces the defaults:
    ``$XDG_CONFIG_HOME/tank/certs.d`` (``~/.config/tank/certs.d``),
    ``$XDG_CONFIG_HOME/containers/certs.d``, ``/etc/containers/certs.d`` and
    ``/etc/docker/certs.d``.
    """
    override = os.environ.get(CERTS_D_ENV)
    if override is not None:
        return [Path(p) for p in override.split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [
        Path(config, "tank", "certs.d"),
        Path(config, "containers", "certs.d"),
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    ]


@dataclass(frozen=True)
class HostTLS:
    """What ``certs.d`` says about one ``HOST[:PORT]``.

    :ivar directory: the folder found, or ``None``.
    :ivar ca_files: its ``*.crt`` files, trusted for this host on top of the system store.
    :ivar client_cert: its first ``*.cert`` and the ``*.key`` of the same name.
    """

    directory: Path | None = None
    ca_files: tuple[str, ...] = ()
    client_cert: tuple[str, str] | None = None


def host_tls(hostport: str, roots: Iterable[Path] | None = None) -> HostTLS:
    """Look ``hostport`` up in the certs.d ``roots`` (default :func:`certs_dirs`).

    As docker does: ``*.crt`` are CA certificates; each ``NAME.cert`` needs ``NAME.key`` (and
    each ``NAME.key`` its ``NAME.cert``), else a :class:`~tank.errors.ConfigError`.
    """
    for root in certs_dirs() if roots is None else roots:
        folder = root / hostport.lower()
        if not folder.is_dir():
            continue
        try:
            names = sorted(p.name for p in folder.iterdir())
        except OSError as exc:
            raise ConfigError(f"cannot read {folder}: {exc.strerror or exc}") from exc
        cas = tuple(str(folder / n) for n in names if n.endswith(".crt"))
        pairs: list[tuple[str, str]] = []
        for n in names:
            stem, _, ext = n.rpartition(".")
            if ext == "cert":
                if f"{stem}.key" not in names:
                    raise ConfigError(f"{folder / n}: missing the client key {stem}.key beside it")
                pairs.append((str(folder / n), str(folder / f"{stem}.key")))
            elif ext == "key" and f"{stem}.cert" not in names:
                raise ConfigError(f"{folder / n}: missing the client certificate {stem}.cert")
        return HostTLS(folder, cas, pairs[0] if pairs else None)
    return HostTLS()


@dataclass(frozen=True)
class _TLSProfile:
    """Everything an SSL context depends on; contexts are cached per profile."""

    verify: bool
    ca_files: tuple[str, ...]
    client_cert: tuple[str, str] | None


# -- proxies ----------------------------------------------------------------------------------


def proxies_from_env() -> dict[str, str]:
    """``{"https": url, "http": url, "no": "a,b"}`` from the environment, as urllib reads it.

    ``https_proxy``, ``http_proxy`` and ``no_proxy`` in any case, the lower-case spelling
    winning (an empty one unsets); under CGI (``REQUEST_METHOD`` set) upper-case ``HTTP_PROXY``
    is ignored, since a client can set it with a ``Proxy:`` header (CVE-2016-1000110).
    (:func:`urllib.request.getproxies_environment`, without importing urllib.request.)
    """
    out: dict[str, str] = {}
    for name, value in os.environ.items():
        key = name.lower()
        if value and key in ("https_proxy", "http_proxy", "no_proxy"):
            out[key[:-6]] = value
    if "REQUEST_METHOD" in os.environ:
        out.pop("http", None)
    for name, value in os.environ.items():
        if name in ("https_proxy", "http_proxy", "no_proxy"):
            if value:
                out[name[:-6]] = value
            else:
                out.pop(name[:-6], None)
    return out


def bypass_proxy(hostport: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY``-style ``no_proxy`` exempts ``hostport``.

    Entries are comma-separated: ``*`` (everything), a domain and its subdomains (a leading dot
    is ignored), ``host:port``, an IP address or a CIDR block (``10.0.0.0/8``).
    """
    parts = urlsplit(f"//{hostport}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = entry.lstrip("."), ""
        if name.startswith("["):  # [v6] or [v6]:port
            name, _, rest = name[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif name.count(":") == 1:  # host:port (a bare v6 address has more colons)
            name, entry_port = name.split(":")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


@dataclass(frozen=True)
class _Proxy:
    """A proxy URL without its credentials, and the header carrying them."""

    url: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, value: str) -> _Proxy:
        text = value.strip()
        if "://" not in text:
            text = "http://" + text  # curl's reading of "proxy:3128"
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            shown = f"{scheme}://{parts.hostname or ''}"
            raise ConfigError(
                f"unsupported proxy {shown!r}: tank speaks to http:// and https:// proxies"
            )
        netloc = parts.netloc.rpartition("@")[2]
        headers: tuple[tuple[str, str], ...] = ()
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode()).decode()
            headers = (("Proxy-Authorization", f"Basic {token}"),)
        return cls(f"{scheme}://{netloc}", headers)


# -- the transport ----------------------------------------------------------------------------


class Transport:
    """A pool of HTTP connections plus the policies above.

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
    :param certs_dirs: the certs.d roots (default :func:`certs_dirs`).
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
        def pick(keyword: str, given: float | None, default: float) -> float:
            if given is not None:
                return check_timeout(given, where=keyword)
            from_env = timeout_from_env(keyword)
            return default if from_env is None else from_env

        self.ca_file = os.fspath(ca_file) if ca_file is not None else None
        self.insecure_registries = frozenset(normalize_registry(r) for r in insecure_registries)
        connect = pick("connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT)
        read = pick("read_timeout", read_timeout, DEFAULT_READ_TIMEOUT)
        limit = pick("speed_limit", speed_limit, DEFAULT_SPEED_LIMIT)
        window = pick("speed_time", speed_time, DEFAULT_SPEED_TIME)
        self.connect_timeout, self.read_timeout = connect, read
        #: the low-speed limit on blob bodies, ``None`` when off
        self.speed_limit = SpeedLimit(limit, window) if limit > 0 and window > 0 else None
        # a read that waits longer than the low-speed window is slower than any limit; 0 is
        # "no timeout"
        waits = [read] + ([window] if self.speed_limit is not None else [])
        socket_read = min((w for w in waits if w > 0), default=None)
        self.timeout = urllib3.Timeout(connect=connect or None, read=socket_read)
        self._pool_size = pool_size
        raw = proxies_from_env() if proxies is None else dict(proxies)
        self._proxies = {s: _Proxy.parse(raw[s]) for s in ("http", "https") if raw.get(s)}
        self._no_proxy = raw.get("no", "")
        self._certs_roots = None if certs_dirs is None else [Path(p) for p in certs_dirs]
        self._managers: dict[tuple[_Proxy | None, _TLSProfile | None], urllib3.PoolManager] = {}
        self._contexts: dict[_TLSProfile, ssl.SSLContext] = {}
        self._hosts: dict[str, HostTLS] = {}
        self._schemes: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- per-host settings --------------------------------------------------------------------

    def is_insecure(self, hostport: str) -> bool:
        """Whether ``hostport`` was named an insecure registry."""
        return normalize_registry(hostport) in self.insecure_registries

    def proxy_for(self, url: str) -> str | None:
        """The proxy (without credentials) a request to ``url`` goes through, or ``None``."""
        proxy = self._proxy(url)
        return proxy.url if proxy is not None else None

    def _proxy(self, url: str) -> _Proxy | None:
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme.lower())
        if proxy is None or (self._no_proxy and bypass_proxy(parts.netloc, self._no_proxy)):
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

    def _profile(self, hostport: str) -> _TLSProfile:
        entry = self.host_tls(hostport)
        cas = entry.ca_files if self.ca_file is None else (self.ca_file, *entry.ca_files)
        return _TLSProfile(not self.is_insecure(hostport), cas, entry.client_cert)

    def _context(self, profile: _TLSProfile) -> ssl.SSLContext:
        """The SSL context of a profile, built on first use (the system store costs ms)."""
        with self._lock:
            context = self._contexts.get(profile)
            if context is not None:
                return context
            context = ssl.create_default_context()
            if not profile.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            for ca in profile.ca_files:
                try:
                    context.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"cannot load the CA certificates in {ca}: {exc}") from exc
            if profile.client_cert is not None:
                cert, key = profile.client_cert
                try:
                    context.load_cert_chain(cert, key)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        f"cannot load the client certificate {cert} with {key}: {exc}"
                    ) from exc
            self._contexts[profile] = context
            return context

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pool manager for ``url``: one per (proxy, TLS profile), pooling per host."""
        parts = urlsplit(url)
        proxy = self._proxy(url)
        profile = self._profile(parts.netloc) if parts.scheme.lower() == "https" else None
        key = (proxy, profile)
        with self._lock:
            manager = self._managers.get(key)
        if manager is not None:
            return manager
        kw: dict[str, Any] = {}
        if profile is not None:
            kw["ssl_context"] = self._context(profile)
            if not profile.verify:
                _quiet_insecure_warning(parts.hostname or "")
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
        with self._lock:
            return self._managers.setdefault(key, made)

    # -- scheme selection ---------------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        """``scheme://registry`` as currently known (HTTPS until proven otherwise)."""
        with self._lock:
            scheme = self._schemes.get(registry, "https")
        return f"{scheme}://{registry}"

    def _scheme_for(self, registry: str) -> str:
        """``https``, or ``http`` for a loopback or insecure registry without TLS (remembered)."""
        with self._lock:
            known = self._schemes.get(registry)
        if known is not None:
            return known
        if not (is_loopback(registry) or self.is_insecure(registry)):
            return "https"
        proxy = self._proxy(f"https://{registry}")
        scheme = "https" if _speaks_tls(registry, self.connect_timeout or None, proxy) else "http"
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
        body: bytes | None = None,
    ) -> BaseHTTPResponse:
        """Send a request to an absolute URL, following redirects by the policy above.

        Credentials in ``headers`` are sent only while the URL's origin equals
        ``credentials_origin``. A request with a ``body`` (a token endpoint's OAuth2 form, which
        may hold a password) is never redirected: a 3xx answer is returned as it is.
        """
        send: dict[str, str] = {"User-Agent": USER_AGENT}
        send.update(headers or {})
        with_credentials = credentials_origin is not None
        for _hop in range(MAX_REDIRECTS + 1):
            if with_credentials and not self._may_send_credentials(url, credentials_origin):
                with_credentials = False
            out = send if with_credentials else _without_credentials(send)
            response = self._urlopen(method, url, out, preload=preload, body=body)
            if response.status not in _REDIRECTS or body is not None:
                return response
            location = response.headers.get("Location")
            release(response)
            if not location:
                raise TransportError(
                    f"{url}: HTTP {response.status} redirect without a Location header", url=url,
                    permanent=True,
                )
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise TransportError(
                    f"{url}: refusing to follow a redirect to {location!r} (not http or https)",
                    url=url, permanent=True,
                )
            if scheme == "http" and urlsplit(url).scheme.lower() == "https":
                raise TransportError(
                    f"{url}: refusing to follow a redirect from https to plain http "
                    f"({_strip_query(target)}): a downgrade", url=url, permanent=True,
                )
            if response.status == 303 and method != "HEAD":
                method = "GET"
            url = target
        raise TransportError(
            f"{url}: more than {MAX_REDIRECTS} redirects", url=url, permanent=True
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
        body: bytes | None = None,
    ) -> BaseHTTPResponse:
        manager = self._manager(url)
        try:
            response = manager.urlopen(
                method,
                url,
                headers=dict(headers),
                body=body,
                redirect=False,
                retries=False,
                preload_content=preload,
                decode_content=False,
                timeout=self.timeout,
            )
        except _Urllib3SSLError as exc:
            raise TLSError(f"{url}: TLS failure: {_reason(exc)}{self._tls_hint(url, exc)}",
                           url=url) from exc
        except ProxyError as exc:
            proxy = self._proxy(url)
            via = f" through the proxy {proxy.url}" if proxy is not None else ""
            permanent = re.search(r"\b407\b", _reason(exc)) is not None
            raise TransportError(
                f"{url}: cannot connect{via}: {_reason(exc)}", url=url, permanent=permanent
            ) from exc
        except NewConnectionError as exc:
            raise TransportError(f"{url}: cannot connect: {_reason(exc)}", url=url) from exc
        except ConnectTimeoutError as exc:
            raise TransportError(
                f"{url}: cannot connect: timed out after {self.connect_timeout:g} s (connect "
                "timeout: TANK_CONNECT_TIMEOUT, or [timeouts] connect in the config)", url=url,
            ) from exc
        except ReadTimeoutError as exc:
            raise TransportError(f"{url}: {self._read_timeout_text()}", url=url) from exc
        except (_Urllib3Error, OSError) as exc:
            raise TransportError(f"{url}: {_reason(exc)}", url=url) from exc
        if response.status == 407:
            release(response)
            proxy = self._proxy(url)
            raise TransportError(
                f"{url}: the proxy {proxy.url if proxy else ''} asks for credentials (HTTP 407); "
                "give them in the proxy URL (http://user:password@proxy:port)",
                url=url, permanent=True,
            )
        return response

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
        where = roots[0] / hostport if roots else Path("certs.d") / hostport
        entry = self.host_tls(hostport)
        text = _reason(exc)
        if any(reason in text for reason in _NOT_TLS_REASONS):
            return (
                f". The server does not seem to speak TLS; if {hostport} is a plain-HTTP "
                f"registry, name it with --insecure-registry {hostport}"
            )
        if _CLIENT_CERT_WANTED.search(text) and "verify failed" not in text:
            if entry.client_cert is not None:
                return (
                    f". The registry refused the client certificate {entry.client_cert[0]} "
                    "(is it signed by a CA the registry trusts, and still valid?)"
                )
            return (
                f". The registry may want a client certificate: put client.cert and "
                f"client.key in {entry.directory or where}/"
            )
        return (
            f". To trust the registry's certificate authority, put its certificate in "
            f"{where}/ca.crt (or /etc/docker/certs.d/{hostport}/ca.crt), or pass --ca-file FILE "
            f"(Transport(ca_file=…)); --insecure-registry {hostport} skips verification "
            "(only on a network you trust)"
        )

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


def normalize_registry(name: str) -> str:
    """``host[:port]`` as the insecure list and certs.d compare it: lower case, no scheme."""
    text = name.strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.rstrip("/")


_quieted: set[str] = set()
_quiet_lock = threading.Lock()


def _quiet_insecure_warning(host: str) -> None:
    """Silence urllib3's unverified-HTTPS warning for a host named insecure on purpose."""
    with _quiet_lock:
        if host in _quieted:
            return
        _quieted.add(host)
        warnings.filterwarnings(
            "ignore", category=InsecureRequestWarning,
            message=rf"Unverified HTTPS request is being made to host '{re.escape(host)}'",
        )


def _strip_query(url: str) -> str:
    """A URL without its query (CDN signatures stay out of messages)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _speaks_tls(registry: str, timeout: float | None, proxy: _Proxy | None = None) -> bool:
    """Whether the server at ``registry`` (loopback or insecure) answers a TLS handshake.

    Only the handshake is attempted, with no certificate check: its one purpose is telling a
    plain-HTTP server from a TLS one. Real requests then verify certificates as everywhere else,
    so a TLS server with a bad certificate fails there, and is never downgraded. A server that
    cannot be reached counts as TLS, so the real request reports the real error. Through an
    ``http://`` proxy the handshake goes through a ``CONNECT`` tunnel.
    """
    parts = urlsplit(f"//{registry}")
    host, port = parts.hostname or "localhost", parts.port or 443
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    if proxy is not None and not proxy.url.startswith("http://"):
        return True  # an https proxy: assume TLS, the real request says otherwise
    try:
        if proxy is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            sock = _connect_tunnel(proxy, registry, timeout)
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


def _connect_tunnel(proxy: _Proxy, target: str, timeout: float | None) -> socket.socket:
    """A socket to ``target`` through an ``http://`` proxy's ``CONNECT`` (OSError on failure)."""
    parts = urlsplit(proxy.url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout)
    try:
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        lines += [f"{k}: {v}" for k, v in proxy.headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(1)  # byte by byte: nothing past the header may be consumed
            if not data or len(head) > 16384:
                raise OSError("the proxy closed the CONNECT tunnel")
            head += data
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or not status[1].startswith(b"2"):
            raise OSError(f"the proxy refused CONNECT: {head.splitlines()[0]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


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


__all__ = [
    "CERTS_D_ENV",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SPEED_LIMIT",
    "DEFAULT_SPEED_TIME",
    "MAX_REDIRECTS",
    "TIMEOUT_ENV",
    "HostTLS",
    "Origin",
    "SpeedLimit",
    "SpeedMonitor",
    "Transport",
    "bypass_proxy",
    "certs_dirs",
    "check_timeout",
    "discard",
    "host_tls",
    "is_loopback",
    "may_send_credentials",
    "normalize_registry",
    "proxies_from_env",
    "release",
    "timeout_from_env",
]
