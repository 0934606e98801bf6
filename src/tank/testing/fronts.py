"""A recording, fault-injecting HTTP front for the registry, a blob CDN, and a forward proxy.

All are real keep-alive HTTP/1.1 servers on loopback (127.0.0.2 / 127.0.0.3 / 127.0.0.4 by
default), so tests see what a client really sends: methods, paths, headers and TCP connections.
:class:`Front` lives here; :class:`~tank.testing.cdn.CDN` and :class:`~tank.testing.proxy.Proxy`
in their own modules, re-exported here.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import urllib3
from urllib3.util import SKIP_HEADER

from tank.testing.cdn import CDN
from tank.testing.http import (
    _BLOB_PATH,
    _CHUNK,
    HOP_BY_HOP,
    BlobStorage,
    Recorded,
    Response,
    _Handler,
    _RecordingServer,
)
from tank.testing.proxy import Proxy

__all__ = [
    "CDN",
    "Front",
    "MakeCDN",
    "MakeFront",
    "Proxy",
    "Recorded",
    "Response",
]


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
        with front._lock:
            self.path = front._aliases.get(self.path, self.path)
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
        cut = front.cut_upload(rec) if front.cut_upload is not None else None
        if cut is not None and not chunked_in:
            self._cut(headers, cut)
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

    def _cut(self, headers: urllib3.HTTPHeaderDict, keep: int) -> None:
        """Forward only the first ``keep`` bytes of the request body (as a complete request,
        its Content-Range shortened to match), then reset the client's connection unanswered:
        an upload broken off mid-body, with the registry holding what arrived."""
        length = int(self.headers.get("Content-Length") or 0)
        keep = max(0, min(keep, length))
        body = self.rfile.read(keep) if keep else b""
        headers["Content-Length"] = str(len(body))
        start = (self.headers.get("Content-Range") or "").partition("-")[0]
        if start.isdigit():
            if body:
                headers["Content-Range"] = f"{start}-{int(start) + len(body) - 1}"
            else:
                del headers["Content-Range"]
        if body:
            resp = self.front._pool.urlopen(
                self.command, self.front.backend_url + self.path, body=body, headers=headers,
                retries=False, redirect=False,
            )
            resp.release_conn()
            location = resp.headers.get("Location")
            if location:  # the session's URL stays valid, as where sessions are named by UUID
                parts = urlsplit(location)
                with self.front._lock:
                    self.front._aliases[self.path] = parts.path + (
                        f"?{parts.query}" if parts.query else "")
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()

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
            if k.lower() == "location" and front.relative_locations:
                parts = urlsplit(v)
                v = parts.path + (f"?{parts.query}" if parts.query else "")
            if k.lower() == "range" and front.range_prefix and not v.startswith("bytes="):
                v = front.range_prefix + v
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

    Upload hooks: ``cut_upload`` (return a byte count to forward only that much of a request's
    body, as a complete request, then reset the client's connection unanswered: a ``PATCH``
    broken off mid-body; the session's URL the client holds stays valid, as it does on
    registries that name sessions by UUID alone, where distribution's signed ``_state`` would
    refuse it), ``relative_locations`` (``Location`` headers sent as path and query,
    as Docker Hub and Harbor send them), ``range_prefix`` (``"bytes="`` before an upload's
    ``Range: 0-N``, as some registries write it).
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
        self.cut_upload: Callable[[Recorded], int | None] | None = None
        self._aliases: dict[str, str] = {}
        self.relative_locations = False
        self.range_prefix = ""
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
