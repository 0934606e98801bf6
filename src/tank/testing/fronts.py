"""A recording, fault-injecting HTTP front for the registry, a blob CDN, and a forward proxy.

All are real keep-alive HTTP/1.1 servers on loopback (127.0.0.2 / 127.0.0.3 / 127.0.0.4 by
default), so tests see what a client really sends: methods, paths, headers and TCP connections.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import secrets
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import urllib3
from urllib3.util import SKIP_HEADER

from tank.testing._closing import Closing

__all__ = [
    "CDN",
    "Front",
    "MakeCDN",
    "MakeFront",
    "Proxy",
    "Recorded",
    "Response",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_CHUNK = 256 * 1024
_BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9+._-]+:[a-fA-F0-9]+)$")
_CDN_PATH = re.compile(r"^(?:/hop/(?P<hop>\d+))?/blobs/(?P<digest>[a-z0-9+._-]+:[a-fA-F0-9]+)$")

Response = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Recorded:
    """One request as received: header names are lower case."""

    method: str
    path: str
    headers: dict[str, str]
    connection_id: int


def _paced(chunk: bytes, rate: float | None) -> Iterator[bytes]:
    """``chunk`` whole, or with a rate cap in slices small enough (~1/50 s each) to pace."""
    if rate is None:
        yield chunk
        return
    step = max(4096, int(rate / 50))
    for start in range(0, len(chunk), step):
        yield chunk[start : start + step]


class BlobStorage(Protocol):
    """What the CDN needs from a registry: where a blob's file is."""

    def blob_path(self, digest: str) -> Path:
        """The file holding ``digest``."""
        ...


# -- shared server machinery -----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        addr: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        owner: _RecordingServer,
        ssl_ctx: ssl.SSLContext | None,
    ) -> None:
        self.owner = owner
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_ctx is not None:
            # Handshake later, in the connection's own thread.
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # resets, broken pipes, TLS failures
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Keep-alive handler that records every request with its connection id."""

    protocol_version = "HTTP/1.1"
    conn_id: int

    @property
    def owner(self) -> _RecordingServer:
        return cast(_Server, self.server).owner

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()
        self.conn_id = self.owner._connection_opened(self.request)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._connection_closed(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def record(self) -> Recorded:
        rec = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self.conn_id,
        )
        self.owner._record(rec)
        return rec

    def read_body(self) -> bytes:
        """Read the whole request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_simple(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """Send a complete response (no body for HEAD)."""
        self.send_response_only(status)
        lower = {k.lower() for k in headers}
        for k, v in headers.items():
            self.send_header(k, v)
        if "content-length" not in lower:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_stream(
        self, chunks: Iterable[bytes], length: int | None, flip: bool, rate: float | None = None
    ) -> None:
        """Write body chunks (re-chunked when ``length`` is None), flipping one byte if asked;
        with ``rate``, no faster than that many bytes per second."""
        flip_at = (length // 2 if length else 0) if flip else -1
        offset = 0
        started = time.monotonic()
        for chunk in chunks:
            if not chunk:
                continue
            if 0 <= flip_at - offset < len(chunk):
                i = flip_at - offset
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
            for part in _paced(chunk, rate):
                if rate is not None:
                    ahead = started + offset / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                offset += len(part)
                if length is None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")


class _RecordingServer(Closing):
    """Thread, socket bookkeeping and request records shared by Front and CDN."""

    scheme: str

    def __init__(
        self,
        handler: type[_Handler],
        host: str,
        tls: tuple[str | Path, str | Path] | None,
        name: str,
    ) -> None:
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._live: set[socket.socket] = set()
        ctx: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.scheme = "https" if ctx else "http"
        self._server = _Server((host, 0), handler, self, ctx)
        self.host = f"{host}:{self._server.server_address[1]}"
        self.url = f"{self.scheme}://{self.host}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=name, daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """How many distinct TCP connections carried at least one request."""
        with self._lock:
            return len({r.connection_id for r in self._requests})

    def reset(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        """Stop serving and close every socket, idle keep-alive ones included."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)

    def _connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._live.add(sock)
            return next(self._ids)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)


# -- Front -----------------------------------------------------------------------------------


class _BodyReader:
    """Reads exactly ``length`` bytes of a request body, for streaming uploads."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.left = length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data: bytes = self._rfile.read(n)
        self.left -= len(data)
        if not data:
            self.left = 0
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class _FrontHandler(_Handler):
    @property
    def front(self) -> Front:
        return cast(Front, self.owner)

    def _forward_headers(self) -> urllib3.HTTPHeaderDict:
        listed = {
            t.strip().lower() for t in self.headers.get("Connection", "").split(",") if t.strip()
        }
        out = urllib3.HTTPHeaderDict()
        for k, v in self.headers.items():
            # "Expect: 100-continue" was already answered by BaseHTTPRequestHandler.
            if k.lower() not in HOP_BY_HOP and k.lower() not in listed and k.lower() != "expect":
                out.add(k, v)
        for name in ("User-Agent", "Accept-Encoding"):
            if name not in out:
                out[name] = SKIP_HEADER
        return out

    def _maybe_redirect(self, rec: Recorded, headers: urllib3.HTTPHeaderDict) -> bool:
        base = self.front.redirect_blobs
        if base is None or self.command != "GET":
            return False
        m = _BLOB_PATH.match(urlsplit(self.path).path)
        if m is None:
            return False
        try:
            head = self.front._pool.urlopen(
                "HEAD",
                self.front.backend_url + self.path,
                headers=headers,
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError:
            return False
        if head.status != 200:
            return False  # forward the GET itself: the client sees the real 401/404
        location = f"{base.rstrip('/')}/blobs/{m['digest']}?sig={secrets.token_hex(8)}"
        self.send_simple(307, {"Location": location}, b"")
        return True

    def _handle(self) -> None:
        rec = self.record()
        front = self.front
        respond = front.respond
        override = respond(rec) if respond is not None else None
        chunked_in = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        headers = self._forward_headers()
        body: Any
        reader: _BodyReader | None = None
        if override is not None:
            self.read_body()
            self.send_simple(*override)
            return
        if chunked_in:
            body = self.read_body()
            headers["Content-Length"] = str(len(body))
        elif int(self.headers.get("Content-Length") or 0) > 0:
            reader = body = _BodyReader(self.rfile, int(self.headers["Content-Length"]))
        else:
            body = None
        if reader is None and self._maybe_redirect(rec, headers):
            return
        try:
            resp = front._pool.urlopen(
                self.command,
                front.backend_url + self.path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as e:
            if reader is not None:
                reader.drain()
            self.send_simple(502, {"Content-Type": "text/plain"}, f"front: {e}\n".encode())
            return
        if reader is not None:
            reader.drain()
        done = False
        try:
            self._relay(rec, resp)
            done = True
        finally:
            if done:
                resp.release_conn()
            else:
                resp.close()

    def _relay(self, rec: Recorded, resp: urllib3.BaseHTTPResponse) -> None:
        front = self.front
        strip = {h.lower() for h in front.strip_headers}
        self.send_response_only(resp.status)
        chunked = "chunked" in resp.headers.get("Transfer-Encoding", "").lower()
        length_header = resp.headers.get("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        for k, v in resp.headers.items():
            if k.lower() in HOP_BY_HOP or k.lower() in strip:
                continue
            self.send_header(k, v)
        if no_body:
            self.end_headers()
            return
        corrupt = front.corrupt
        flip = bool(corrupt is not None and corrupt(rec))
        rate = front.rate
        if length_header is not None and not chunked:
            self.end_headers()
            self.send_stream(
                resp.stream(_CHUNK, decode_content=False), int(length_header), flip, rate
            )
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.send_stream(resp.stream(_CHUNK, decode_content=False), None, flip, rate)
        else:  # read-until-close body: buffer it and give it a length
            data = resp.read(decode_content=False)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.send_stream([data], len(data), flip, rate)

    do_GET = _handle
    do_HEAD = _handle
    do_PUT = _handle
    do_POST = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_OPTIONS = _handle


class Front(_RecordingServer):
    """Forward everything to ``backend_url``, recording requests; hooks inject faults.

    Hooks (settable attributes): ``strip_headers`` (response headers to drop), ``corrupt``
    (flip one body byte when it returns True), ``redirect_blobs`` (a CDN base URL: blob GETs
    that the backend would serve are answered 307 to it), ``respond`` (a full override),
    ``rate`` (a cap in bytes per second on each response body, so on each connection, as a slow
    link would give; ``None``: as fast as loopback goes).
    """

    def __init__(
        self,
        backend_url: str,
        *,
        host: str = "127.0.0.2",
        tls: tuple[str | Path, str | Path] | None = None,
        backend_ca: str | Path | None = None,
    ) -> None:
        """Start serving on a free port of ``host``."""
        self.backend_url = backend_url.rstrip("/")
        self.strip_headers: set[str] = set()
        self.corrupt: Callable[[Recorded], bool] | None = None
        self.redirect_blobs: str | None = None
        self.respond: Callable[[Recorded], Response | None] | None = None
        self.rate: float | None = None
        kw: dict[str, Any] = {}
        if backend_ca is not None:
            kw["ca_certs"] = str(backend_ca)
        self._pool = urllib3.PoolManager(
            maxsize=32, retries=False, timeout=urllib3.Timeout(connect=10, read=300), **kw
        )
        super().__init__(_FrontHandler, host, tls, "tank-test-front")

    def close(self) -> None:
        """Stop serving and close backend connections."""
        super().close()
        self._pool.clear()


# -- CDN -------------------------------------------------------------------------------------


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as (start, end inclusive); None if unsatisfiable."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", value.strip())
    if m is None or (not m[1] and not m[2]):
        return None
    if not m[1]:
        n = int(m[2])
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
    start = int(m[1])
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    return (start, end) if start <= end else None


def _file_chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        while length > 0:
            data = f.read(min(_CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


class _CDNHandler(_Handler):
    @property
    def cdn(self) -> CDN:
        return cast(CDN, self.owner)

    def _handle(self) -> None:
        rec = self.record()
        cdn = self.cdn
        self.read_body()
        respond = cdn.respond
        override = respond(rec) if respond is not None else None
        if override is not None:
            self.send_simple(*override)
            return
        split = urlsplit(self.path)
        m = _CDN_PATH.match(split.path)
        if m is None or self.command not in ("GET", "HEAD"):
            self.send_simple(404, {"Content-Type": "text/plain"}, b"not found\n")
            return
        hop = int(m["hop"] or 0)
        if hop < cdn.hops:
            target = f"/hop/{hop + 1}/blobs/{m['digest']}"
            if split.query:
                target += "?" + split.query
            if not cdn.relative_hops:
                target = cdn.url + target
            self.send_simple(302, {"Location": target}, b"")
            return
        path = cdn.storage.blob_path(m["digest"])
        try:
            size = path.stat().st_size
        except OSError:
            self.send_simple(404, {"Content-Type": "text/plain"}, b"blob not found\n")
            return
        status, start, length = 200, 0, size
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if "range" in rec.headers:
            rng = _parse_range(rec.headers["range"], size)
            if rng is None:
                headers["Content-Range"] = f"bytes */{size}"
                self.send_simple(416, headers, b"")
                return
            status, start, length = 206, rng[0], rng[1] - rng[0] + 1
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
        self.send_response_only(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "GET":
            corrupt = cdn.corrupt
            flip = bool(corrupt is not None and corrupt(rec))
            self.send_stream(_file_chunks(path, start, length), length, flip)

    do_GET = _handle
    do_HEAD = _handle
    do_PUT = _handle
    do_POST = _handle
    do_DELETE = _handle


class CDN(_RecordingServer):
    """Serve ``GET/HEAD /blobs/<digest>`` from a LocalRegistry's storage files.

    ``hops=n`` makes ``/blobs/...`` answer 302 through ``/hop/1`` ... ``/hop/n`` first
    (absolute Locations, or relative ones with ``relative_hops``). Single byte ranges work.
    """

    def __init__(
        self,
        storage: BlobStorage,
        *,
        host: str = "127.0.0.3",
        hops: int = 0,
        relative_hops: bool = False,
        tls: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        """Start serving on a free port of ``host``."""
        self.storage = storage
        self.hops = hops
        self.relative_hops = relative_hops
        self.corrupt: Callable[[Recorded], bool] | None = None
        self.respond: Callable[[Recorded], Response | None] | None = None
        super().__init__(_CDNHandler, host, tls, "tank-test-cdn")


# -- Proxy -----------------------------------------------------------------------------------


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


class MakeFront(Protocol):
    """The ``make_front`` fixture."""

    def __call__(
        self,
        backend_url: str,
        *,
        host: str = ...,
        tls: tuple[str | Path, str | Path] | None = ...,
        backend_ca: str | Path | None = ...,
    ) -> Front:
        """Start a Front closed at teardown."""
        ...


class MakeCDN(Protocol):
    """The ``make_cdn`` fixture."""

    def __call__(
        self,
        storage: BlobStorage,
        *,
        host: str = ...,
        hops: int = ...,
        relative_hops: bool = ...,
        tls: tuple[str | Path, str | Path] | None = ...,
    ) -> CDN:
        """Start a CDN closed at teardown."""
        ...
