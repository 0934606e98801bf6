"""A blob CDN for the tests: serves a registry's blobs from its storage, with redirect hops and
byte ranges, on loopback."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from tank.testing.http import (
    _CDN_PATH,
    _CHUNK,
    BlobStorage,
    Recorded,
    Response,
    _Handler,
    _RecordingServer,
)


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
