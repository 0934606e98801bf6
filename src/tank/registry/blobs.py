"""Blobs over the wire: streamed, hashed on the way, verified at the end, resumed when cut off.

:class:`BlobStream` is the hot path (the README's design section measures it): ``read1()`` hands
over whatever the socket has, up to :data:`CHUNK_SIZE`; once a blob is larger than one chunk,
SHA-256 runs in a background thread fed by a bounded queue (:class:`~tank.digest.PipelinedHasher`),
so socket, disk and hashing overlap. At most ``size + 1`` bytes are ever read of a blob whose size
is known.

:func:`fetch_into` is the one resumable, verifying download loop every caller uses (the pull's
cache writer, :func:`tank.registry.download_blob`, ``tank blob``): a body that breaks off is resumed
with ``Range: bytes=N-`` from the last byte the :class:`BlobSink` kept, carrying the hash on; a
registry that answers ``200`` instead sends the whole blob again and the sink starts over.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from tank._cancel import aborting
from tank.digest import Digest, Hasher, PipelinedHasher
from tank.errors import RegistryError, SizeMismatch, TankError, TransportError
from tank.image import Where
from tank.responses import raise_for_status
from tank.retry import DEFAULT_RETRY, RetryPolicy, is_retryable
from tank.transport import discard, release

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.session import Authenticator
    from tank.transport import SpeedLimit

#: bytes asked of the socket per read on the blob path
CHUNK_SIZE: Final = 1024 * 1024

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class BlobStream:
    """A blob's bytes as they arrive, hashed on the way; iterate it once.

    The bytes are unverified until iteration ends: the end raises
    :class:`~tank.errors.DigestMismatch` (or :class:`~tank.errors.SizeMismatch`) when they are
    wrong, and sets :attr:`verified`. With ``offset`` the registry is asked for the rest of the
    blob; when it ignores ``Range`` and sends all of it, :attr:`offset` is 0 and hashing starts
    over: the caller must then discard what it had.

    :ivar offset: where the bytes being streamed start in the blob.
    :ivar total: the blob's full size when known (from ``size``, ``Content-Range`` or
        ``Content-Length``).
    :ivar token: the token that worked, for the caller to thread on.
    :ivar speed_limit: the transport's low-speed limit: a body slower than it is a
        :class:`~tank.errors.TransportError` (``None``: no limit).
    """

    def __init__(
        self,
        response: BaseHTTPResponse,
        digest: Digest,
        hasher: Hasher,
        *,
        offset: int,
        size: int | None,
        token: str | None,
        registry: str,
        repository: str,
        chunk_size: int,
        speed_limit: SpeedLimit | None = None,
    ) -> None:
        self.speed_limit = speed_limit
        self._response = response
        self.digest = digest
        self._hasher = hasher
        self.offset = offset
        self.size = size
        self.token = token
        self.registry = registry
        self.repository = repository
        self.chunk_size = chunk_size
        self.verified = False
        self._started = False
        self._received = hasher.size
        self.total = size
        if self.total is None:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                self.total = offset + int(length)

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a BlobStream can be iterated only once")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        response, size = self._response, self.size
        # read1: whatever the socket has (up to a chunk), so a stall loses nothing received
        read = response.read1
        chunk_size = self.chunk_size
        place = {"registry": self.registry, "repository": self.repository}
        received = self._hasher.size  # bytes of the blob seen so far, counting from its start
        hashing: PipelinedHasher | None = None
        update: Callable[[bytes], None] = self._hasher.update
        # the low-speed limit (tank.transport.SpeedLimit): its clock starts with the first read
        speed = self.speed_limit.monitor() if self.speed_limit is not None else None
        try:
            while True:
                want = chunk_size
                if size is not None:  # never read more than size + 1 bytes
                    want = max(1, min(chunk_size, size + 1 - received))
                data = read(want, decode_content=False)
                if not data:
                    break
                if speed is not None:
                    speed.update(len(data))
                received += len(data)
                self._received = received
                if size is not None and received > size:
                    raise SizeMismatch(size, received, what="blob", digest=self.digest, **place)
                if hashing is None and received - self.offset > chunk_size:
                    # more than one chunk: hash in a thread, overlapping the socket and the disk
                    hashing = PipelinedHasher(self._hasher)
                    update = hashing.update
                update(data)
                yield data
        except (SizeMismatch, GeneratorExit):
            discard(response)
            raise
        except Exception as exc:
            discard(response)
            raise TransportError(
                f"{self.registry}/{self.repository}@{self.digest}: the blob download broke off "
                f"after {received - self.offset} bytes: {exc}"
            ) from exc
        finally:
            if hashing is not None:
                hashing.finish()
        release(response)
        if size is not None and received < size:
            # the body ended early (a Content-Length that promised too little, a proxy that cut
            # it): like any truncation, resumed from here; the registry's answer to the Range
            # (or the digest) then decides
            raise TransportError(
                f"{self.registry}/{self.repository}@{self.digest}: the body ended after "
                f"{received} of the {size} bytes the descriptor declares"
            )
        self._hasher.verify(self.digest, what="blob", **place)
        self.verified = True

    def abort(self) -> None:
        """Stop the download from another thread: a read blocked on the socket returns at once
        (and iteration raises :class:`~tank.errors.TransportError`)."""
        with contextlib.suppress(Exception):
            self._response.shutdown()

    def close(self) -> None:
        """Give the connection back (or close it when the body was not read to the end)."""
        if not self.verified:
            discard(self._response)

    @property
    def hasher(self) -> Hasher:
        """The hash state of the blob's bytes so far (complete once iteration has ended)."""
        return self._hasher

    @property
    def bytes_received(self) -> int:
        """How many bytes of the blob (counting from its start) have arrived so far."""
        return self._received


def open_stream(
    auth: Authenticator,
    want: Digest,
    *,
    offset: int = 0,
    hasher: Hasher | None = None,
    size: int | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> BlobStream:
    """One try at a blob's response, up to the first body byte; the caller closes the stream.

    With ``offset``, asks ``Range: bytes=offset-`` and ``hasher`` must hold the hash of the first
    ``offset`` bytes; only a ``206`` whose ``Content-Range`` starts there is taken as the rest (a
    ``200`` restarts from 0: :attr:`BlobStream.offset` says which).
    """
    registry, repo = auth.registry, auth.repository
    place = Where(registry, repo, str(want)).kwargs()
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = auth.send(
        "GET", f"/v2/{repo}/blobs/{want}", reference=str(want), headers=headers
    )
    if offset and size is not None and response.status == 416:
        # nothing from ``offset`` on: the blob really is only ``offset`` bytes long
        discard(response)
        raise SizeMismatch(size, offset, what="blob", digest=want, registry=registry,
                           repository=repo)
    raise_for_status(response, what="blob", **place)
    state = hasher if hasher is not None else want.hasher()
    start = 0
    if offset and response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            discard(response)
            raise RegistryError(
                f"asked for bytes from {offset} but the registry answered Content-Range "
                f"{response.headers.get('Content-Range')!r}", status=206, **place,
            )
        start = offset
    elif offset:
        state = want.hasher()  # the registry ignored Range: the whole blob comes again
    return BlobStream(
        response, want, state, offset=start, size=size, token=auth.token, registry=registry,
        repository=repo, chunk_size=chunk_size, speed_limit=auth.transport.speed_limit,
    )


class BlobSink(Protocol):
    """Where :func:`fetch_into` puts a blob's bytes: it keeps them in order, and can start over."""

    @property
    def written(self) -> int:
        """How many bytes of the blob (from its start) it holds."""
        ...

    def write(self, data: bytes) -> None:
        """Append ``data``."""

    def restart(self) -> None:
        """Discard everything held (the next byte written is the blob's first)."""


def fetch_into(
    auth: Authenticator,
    digest: Digest,
    sink: BlobSink,
    *,
    size: int | None = None,
    prefix: Hasher | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    chunk_size: int = CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
    on_restart: Callable[[int], None] | None = None,
    cancelled: threading.Event | None = None,
) -> Hasher:
    """Stream blob ``digest`` into ``sink`` from where it stands; return the hash of all of it.

    ``prefix`` is the hash of the ``sink.written`` bytes the sink already holds (an interrupted
    download's); without it they are discarded. A retryable failure (see :mod:`tank.retry`) mid-body
    resumes with ``Range`` from the last byte written, after the policy's backoff; a registry that
    answers ``200`` instead of ``206`` sends the blob again from 0 (``on_restart(bytes_dropped)``
    is called, and the sink restarted). ``on_bytes(n)`` follows the bytes written. ``cancelled``,
    when set, stops the download at the next chunk with :class:`KeyboardInterrupt` (what the sink
    holds stays, for a later resume). The blob is verified (digest, and ``size`` when given)
    before this returns.
    """
    started = time.monotonic()
    hasher = prefix.copy() if sink.written and prefix is not None else None
    if hasher is not None and hasher.size != sink.written:
        hasher = None
    if hasher is not None and size is not None and sink.written >= size:
        if sink.written == size and hasher.digest() == digest:
            return hasher  # an earlier run received every byte but stopped before committing
        hasher = None
    attempt = 1
    while True:
        if cancelled is not None and cancelled.is_set():
            raise KeyboardInterrupt
        offset = sink.written if hasher is not None else 0
        if offset == 0 and sink.written:
            if on_restart is not None:
                on_restart(sink.written)
            sink.restart()
        stream: BlobStream | None = None
        try:
            stream = open_stream(
                auth, digest, offset=offset, hasher=hasher, size=size, chunk_size=chunk_size
            )
            try:
                with aborting(cancelled, stream.abort):
                    return _drain(stream, sink, offset, on_bytes, on_restart, cancelled)
            finally:
                stream.close()
        except TankError as exc:
            if cancelled is not None and cancelled.is_set():
                raise KeyboardInterrupt from None  # aborted on purpose: not a network failure
            if not is_retryable(exc):
                raise  # untouched, as tank.retry.call leaves it
            if attempt >= retry.attempts:
                if attempt > 1:
                    exc.retried = (attempt, time.monotonic() - started)
                raise
            delay = retry.delay(attempt, exc)
            attempt += 1
            # continue from what arrived: the stream's hash covers exactly what was written
            if stream is not None and stream.hasher.size == sink.written:
                hasher = stream.hasher.copy()
            if cancelled is not None:
                if cancelled.wait(delay):
                    raise KeyboardInterrupt from None
            else:
                time.sleep(delay)


def _drain(
    stream: BlobStream,
    sink: BlobSink,
    offset: int,
    on_bytes: Callable[[int], None] | None,
    on_restart: Callable[[int], None] | None,
    cancelled: threading.Event | None,
) -> Hasher:
    if stream.offset != offset:  # the registry ignored Range: the whole blob comes again
        if on_restart is not None:
            on_restart(offset)
        sink.restart()
    write = sink.write
    for chunk in stream:
        if cancelled is not None and cancelled.is_set():
            raise KeyboardInterrupt
        write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return stream.hasher


__all__ = ["CHUNK_SIZE", "BlobSink", "BlobStream", "fetch_into", "open_stream"]
