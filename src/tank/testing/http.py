"""The HTTP plumbing shared by the test servers: recorded requests, a keep-alive threaded
server that counts connections, and a handler base with paced and corruptible bodies."""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, cast

from tank.testing._closing import Closing, stop_server

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

#: a scripted answer: (status, headers, body)
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
        if not self._closed:
            self._closed = True
            with self._lock:
                live = list(self._live)
            for sock in live:  # wake the handlers blocked on idle keep-alive connections
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            stop_server(self._server, self._thread)

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
