"""A forward proxy for the tests (CONNECT tunnels and absolute-URI forwarding) that counts
what it carries and resolves test host names to loopback addresses only."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

import urllib3
from urllib3.util import SKIP_HEADER

from tank.testing.http import HOP_BY_HOP, Recorded, _Handler, _RecordingServer


def _pipe(a: socket.socket, b: socket.socket, idle: float, count: Callable[[int], None]) -> None:
    """Copy bytes both ways until either side closes or ``idle`` seconds pass, counting them."""
    socks = [a, b]
    while True:
        readable, _, broken = select.select(socks, [], socks, idle)
        if broken or not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                (b if sock is a else a).sendall(data)
            except OSError:
                return
            count(len(data))


class _ProxyHandler(_Handler):
    @property
    def proxy(self) -> Proxy:
        return cast(Proxy, self.owner)

    def _allowed(self) -> bool:
        """Check Proxy-Authorization when the proxy wants credentials (else answer 407)."""
        want = self.proxy.auth
        if want is None:
            return True
        expected = urllib3.make_headers(proxy_basic_auth=f"{want[0]}:{want[1]}")
        if self.headers.get("Proxy-Authorization") == expected["proxy-authorization"]:
            return True
        self.send_simple(407, {"Proxy-Authenticate": 'Basic realm="tank-test-proxy"'}, b"")
        return False

    def _target(self, host: str) -> str | None:
        """The loopback address ``host`` maps to; None (after a 403/502) when it may not go."""
        address = self.proxy.hosts.get(host.lower(), host)
        try:
            infos = socket.getaddrinfo(address, None, socket.AF_INET)
        except OSError:
            self.send_simple(502, {"Content-Type": "text/plain"}, b"proxy: cannot resolve\n")
            return None
        ip = str(infos[0][4][0])
        if not ip.startswith("127."):
            self.send_simple(403, {"Content-Type": "text/plain"}, b"proxy: loopback only\n")
            return None
        return ip

    def do_CONNECT(self) -> None:
        self.record()
        if not self._allowed():
            return
        host, _, port = self.path.rpartition(":")
        ip = self._target(host.strip("[]"))
        if ip is None:
            return
        try:
            upstream = socket.create_connection((ip, int(port)), timeout=10)
        except (OSError, ValueError):
            self.send_simple(502, {"Content-Type": "text/plain"}, b"proxy: cannot connect\n")
            return
        self.send_response_only(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        with upstream:
            _pipe(self.connection, upstream, 60, self.proxy._tunnelled)
        self.close_connection = True

    def _forward(self) -> None:
        self.record()
        if not self._allowed():
            self.read_body()
            return
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self.read_body()
            self.send_simple(400, {"Content-Type": "text/plain"}, b"proxy: absolute URI only\n")
            return
        body = self.read_body() or None
        ip = self._target(parts.hostname)
        if ip is None:
            return
        headers = urllib3.HTTPHeaderDict()
        for k, v in self.headers.items():
            if k.lower() not in HOP_BY_HOP:
                headers.add(k, v)
        for name in ("User-Agent", "Accept-Encoding"):
            if name not in headers:
                headers[name] = SKIP_HEADER
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            resp = self.proxy._pool.urlopen(
                self.command, f"http://{ip}:{parts.port or 80}{path}", body=body,
                headers=headers, retries=False, redirect=False, preload_content=True,
                decode_content=False, assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as e:
            self.send_simple(502, {"Content-Type": "text/plain"}, f"proxy: {e}\n".encode())
            return
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        out["Content-Length"] = str(len(resp.data))
        self.send_simple(resp.status, out, resp.data)

    do_GET = _forward
    do_HEAD = _forward
    do_PUT = _forward
    do_POST = _forward
    do_PATCH = _forward
    do_DELETE = _forward


class Proxy(_RecordingServer):
    """A forward HTTP proxy: ``CONNECT`` tunnels and absolute-URI forwarding, recording both.

    ``hosts`` maps names to loopback addresses (the proxy resolves them, as a real proxy resolves
    names its clients cannot), so a test can name a registry ``registry.test`` that only the
    proxy can reach. Targets must be in 127.0.0.0/8. ``auth=(user, password)`` makes every
    request without that ``Proxy-Authorization`` a ``407``. ``requests`` holds each ``CONNECT``
    (``path`` = ``host:port``) and each forwarded request (``path`` = the absolute URI).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.4",
        hosts: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """Start serving on a free port of ``host``."""
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}
        self.auth = auth
        self.tunnelled_bytes = 0
        self._pool = urllib3.PoolManager(
            maxsize=32, retries=False, timeout=urllib3.Timeout(connect=10, read=300)
        )
        super().__init__(_ProxyHandler, host, None, "tank-test-proxy")

    @property
    def tunnels(self) -> list[Recorded]:
        """The ``CONNECT`` requests received."""
        return [r for r in self.requests if r.method == "CONNECT"]

    @property
    def forwarded(self) -> list[Recorded]:
        """The plain-HTTP requests forwarded (absolute URIs)."""
        return [r for r in self.requests if r.method != "CONNECT"]

    def _tunnelled(self, amount: int) -> None:
        with self._lock:
            self.tunnelled_bytes += amount

    def close(self) -> None:
        """Stop serving, end the tunnels and close upstream connections."""
        super().close()
        self._pool.clear()


# -- fixture factory types -------------------------------------------------------------------
