"""Blob uploads: the upload session of the OCI distribution spec, as real registries answer it.

:func:`upload` puts one blob into a repository; :func:`open_session` (with a cross-repository
mount) and :func:`blob_size` (``HEAD``) are its parts. Rules:

- **The session.** ``POST /v2/NAME/blobs/uploads/`` opens it (``?mount=DIGEST&from=REPO`` asks
  for a mount first: ``201`` means mounted, ``202`` that the registry opened an ordinary session
  instead, which the upload then uses). Every later request goes to the latest ``Location`` the
  registry gave, relative or absolute, with or without a query (a query is kept and
  ``digest=`` appended to it). A ``Location`` on another origin gets no credentials.
- **Small blobs** (up to :data:`MONOLITHIC_MAX` bytes) go up in one ``PUT ?digest=`` with the
  body, right after the ``POST``.
- **Larger blobs** stream in ``PATCH`` requests with ``Content-Range: START-END`` and
  ``Content-Length``: one for the whole rest by default (as docker and skopeo send it, and the
  only kind distribution-based registries can resume), or chunks of ``chunk_size`` bytes, never
  smaller than the ``OCI-Chunk-Min-Length`` the registry announced. ``PUT ?digest=`` closes the
  session. ``202`` and ``201`` (and any ``2xx``) are taken as they come.
- **Resuming.** A ``PATCH`` that fails (a reset, a timeout, a ``5xx``, a ``401`` because the
  token expired or was revoked: the token is renewed first) is resumed from the offset the
  registry reports: ``GET`` on the session answers ``Range: 0-N`` or ``bytes=0-N``. A session
  the registry no longer knows (``404``, ``416``) starts over with a new ``POST``. Failures are
  retried per the retry policy; any progress resets its count.
- **Chunked uploads refused.** A registry that answers a ``PATCH`` with ``405``, ``501`` or
  ``UNSUPPORTED`` gets the whole blob in one ``PUT ?digest=`` (monolithic) on the same session;
  it is remembered for the rest of the process.
- **Verification.** The bytes are hashed as they are read (the digest is computed so when none
  is given; a source that does not hash to the digest given is never committed: the session is
  cancelled and :class:`~tank.errors.DigestMismatch` raised). The registry's
  ``Docker-Content-Digest`` must echo the digest. A source must keep its size.
- **Memory** stays at a chunk (:data:`READ_SIZE`) per upload in flight, whatever the blob's size.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final
from urllib.parse import quote, urljoin, urlsplit

from tank.digest import Digest, Hasher
from tank.errors import (
    DigestMismatch,
    NotFound,
    RegistryError,
    SizeMismatch,
    TankError,
    TransportError,
)
from tank.image import Where
from tank.registry.manifests import header_digest
from tank.registry.writes import check_written
from tank.retry import RetryPolicy, call, is_retryable
from tank.transport import Origin, release

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.session import Authenticator
    from tank.transport.client import Body

#: blobs up to this many bytes go up in one ``POST`` + ``PUT``
MONOLITHIC_MAX: Final = 4 * 1024 * 1024
#: bytes read from the source (and sent) at a time
READ_SIZE: Final = 1024 * 1024
#: statuses (besides the ``UNSUPPORTED`` error code) that say a registry takes no ``PATCH``
_NO_CHUNKS: Final = frozenset({405, 501})
_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)")

#: registries (``host[:port]``) that refused a ``PATCH`` in this process: monolithic from then on
_monolithic_only: set[str] = set()
_monolithic_lock = threading.Lock()

#: what an upload reads: a path, bytes, or a readable binary file
UploadSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


# -- the source -------------------------------------------------------------------------------


class Source:
    """The bytes of one upload, readable at any offset (a resumed ``PATCH`` reads from there).

    A path is opened here; bytes are read in place; a seekable binary file is read from where it
    stands; any other readable is first spooled into a temporary file (and hashed on the way).
    """

    def __init__(self, source: UploadSource) -> None:
        self._close: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._view: memoryview | None = None
        self._file: IO[bytes] | None = None
        self._fd: int | None = None
        self._base = 0
        #: the digest of the bytes, when spooling computed it
        self.spooled: Digest | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._view = memoryview(source).cast("B")
            self.size = len(self._view)
            return
        if isinstance(source, str | os.PathLike):
            f: IO[bytes] = Path(source).open("rb")  # noqa: SIM115 - closed by close()
            self._close = f
            self._attach(f)
            return
        if not hasattr(source, "read"):
            raise TypeError(f"cannot upload a {type(source).__name__}: give a path, bytes or a "
                            "readable binary file")
        seekable = False
        with contextlib.suppress(OSError, ValueError, AttributeError):
            seekable = bool(source.seekable())
        if seekable:
            self._attach(source)
        else:
            self._spool(source)

    def _attach(self, f: IO[bytes]) -> None:
        self._file = f
        self._base = f.tell()
        self.size = f.seek(0, os.SEEK_END) - self._base
        f.seek(self._base)
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            self._fd = f.fileno()

    def _spool(self, source: IO[bytes]) -> None:
        spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._close = spool
        hasher = Hasher()
        while chunk := source.read(READ_SIZE):
            spool.write(chunk)
            hasher.update(chunk)
        spool.flush()
        self.spooled = hasher.digest()
        spool.seek(0)
        self._attach(spool)

    def pread(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer only at the end)."""
        if self._view is not None:
            return self._view[offset : offset + n].tobytes()
        if self._fd is not None:
            return os.pread(self._fd, n, self._base + offset)
        assert self._file is not None
        with self._lock:
            self._file.seek(self._base + offset)
            return self._file.read(n)

    def close(self) -> None:
        """Close what this object opened (a path's file, a spool)."""
        if self._close is not None:
            self._close.close()
            self._close = None


class _Digesting:
    """The hash of the bytes ``[0, hashed)``, fed by position: bytes sent again after a resume
    are not hashed twice, and bytes a registry kept but this run never sent are read."""

    def __init__(self, source: Source, algorithm: str) -> None:
        self.source = source
        self.hasher = Hasher(algorithm)

    def feed(self, offset: int, data: bytes) -> None:
        upto = self.hasher.size
        if offset + len(data) <= upto:
            return
        if offset > upto:
            self.fill(offset)
        self.hasher.update(memoryview(data)[self.hasher.size - offset :])

    def fill(self, end: int) -> None:
        """Hash the bytes from where the hash stands up to ``end``."""
        while self.hasher.size < end:
            chunk = self.source.pread(self.hasher.size, min(READ_SIZE, end - self.hasher.size))
            if not chunk:
                raise SizeMismatch(end, self.hasher.size, what="upload source")
            self.hasher.update(chunk)


# -- requests to a session ---------------------------------------------------------------------


@dataclass
class Session:
    """An open upload session: where it is, how much the registry holds, what it asked for.

    :ivar url: the absolute URL of the session (the latest ``Location``).
    :ivar offset: the bytes the registry holds.
    :ivar min_chunk: ``OCI-Chunk-Min-Length`` (0 when the registry said nothing).
    """

    url: str
    offset: int = 0
    min_chunk: int = 0


def _send(
    auth: Authenticator, method: str, url: str, *, headers: dict[str, str],
    body: Body | None = None, reference: str = "",
) -> BaseHTTPResponse:
    """``method url`` through the session's authentication when ``url`` is the registry's own
    origin (a streamed body answers a ``401`` by renewing the token and returning it); without
    credentials when a ``Location`` points elsewhere."""
    base = auth.transport.base_url(auth.registry)
    if Origin.of(url) == Origin.of(base):
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return auth.send(method, path, reference=reference, headers=headers, body=body)
    return auth.transport.request(method, url, headers=headers, body=body)


def _location(auth: Authenticator, response: BaseHTTPResponse, current: str | None) -> str:
    """The session URL a response names (``Location`` resolved), else ``current``."""
    location = (response.headers.get("Location") or "").strip()
    if not location:
        if current is None:
            raise RegistryError(
                "the registry opened an upload without a Location header",
                status=response.status, **_place(auth).kwargs(),
            )
        return current
    return urljoin(current or auth.transport.base_url(auth.registry) + "/", location)


def _reported_offset(response: BaseHTTPResponse, auth: Authenticator) -> int | None:
    """The bytes a session holds per its ``Range`` (``0-N`` or ``bytes=0-N``), ``None``
    without one. ``0-0`` is taken as nothing held (distribution says so for 0 and 1 bytes)."""
    value = (response.headers.get("Range") or "").strip()
    if not value:
        return None
    match = _RANGE.fullmatch(value)
    if match is None or int(match.group(1)) != 0:
        raise RegistryError(f"the upload session's Range {value[:64]!r} is not 0-N",
                            status=response.status, **_place(auth).kwargs())
    end = int(match.group(2))
    return 0 if end == 0 else end + 1


def _min_chunk(response: BaseHTTPResponse) -> int:
    value = (response.headers.get("OCI-Chunk-Min-Length") or "").strip()
    return int(value) if value.isdigit() else 0


def _place(auth: Authenticator, reference: str = "") -> Where:
    return Where(auth.registry, auth.repository, reference or None)


def open_session(
    auth: Authenticator, *, mount: Digest | None = None, source_repository: str | None = None
) -> Session | None:
    """One try at ``POST /v2/NAME/blobs/uploads/``; ``None`` when a mount was asked for and the
    registry mounted the blob (``201``)."""
    path = f"/v2/{auth.repository}/blobs/uploads/"
    if mount is not None and source_repository is not None:
        path += f"?mount={quote(str(mount), safe=':')}&from={quote(source_repository, safe='/')}"
    response = auth.send("POST", path, reference=str(mount or ""), headers={"Content-Length": "0"},
                         body=b"")
    check_written(response, doing="opening an upload", place=_place(auth, str(mount or "")))
    if response.status == 201 and mount is not None:
        release(response)
        return None
    session = Session(_location(auth, response, None), _reported_offset(response, auth) or 0,
                      _min_chunk(response))
    release(response)
    return session


def session_status(auth: Authenticator, session: Session) -> Session:
    """``GET`` the session: where the registry stands (``NotFound`` when it forgot it)."""
    response = _send(auth, "GET", session.url, headers={})
    if response.status == 401:
        response = _send(auth, "GET", session.url, headers={})
    check_written(response, doing="reading the upload's status", place=_place(auth))
    offset = _reported_offset(response, auth)
    out = Session(_location(auth, response, session.url), offset or 0,
                  _min_chunk(response) or session.min_chunk)
    release(response)
    return out


def cancel_session(auth: Authenticator, session: Session) -> None:
    """``DELETE`` the session, best effort (a registry cleans up forgotten ones anyway)."""
    with contextlib.suppress(TankError):
        release(_send(auth, "DELETE", session.url, headers={}))


def blob_size(auth: Authenticator, digest: Digest) -> int | None:
    """One try at ``HEAD /v2/NAME/blobs/DIGEST``: its size when present, ``None`` when not."""
    response = auth.send("HEAD", f"/v2/{auth.repository}/blobs/{digest}", reference=str(digest))
    if response.status == 404:
        release(response)
        return None
    check_written(response, doing="checking for the blob", place=_place(auth, str(digest)))
    release(response)
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else 0


# -- the upload --------------------------------------------------------------------------------


class _Renewed(Exception):
    """A ``401`` to a streamed request: the token was renewed; resume from the registry's
    offset."""


class _ChunksRefused(Exception):
    """The registry takes no ``PATCH``: send the blob in one ``PUT``."""


@dataclass
class _Upload:
    """One upload's state across tries."""

    auth: Authenticator
    source: Source
    digest: Digest | None
    digesting: _Digesting
    chunk_size: int | None
    verify: bool
    on_bytes: Callable[[int], None] | None
    cancelled: threading.Event | None
    session: Session | None = None
    sent: int = 0  # bytes handed to the network so far, all tries counted

    def body(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes ``[start, end)``, read as they are sent, hashed, counted."""
        pos = start
        while pos < end:
            if self.cancelled is not None and self.cancelled.is_set():
                raise KeyboardInterrupt
            chunk = self.source.pread(pos, min(READ_SIZE, end - pos))
            if not chunk:
                raise SizeMismatch(self.source.size, pos, what="upload source",
                                   digest=self.digest)
            if self.verify or self.digest is None:
                self.digesting.feed(pos, chunk)
            pos += len(chunk)
            self.sent += len(chunk)
            if self.on_bytes is not None:
                self.on_bytes(len(chunk))
            yield chunk

    def patch(self, session: Session, end: int) -> Session:
        """One ``PATCH`` of ``[session.offset, end)``; the session as the registry answers."""
        start = session.offset
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{end - 1}",
            "Content-Length": str(end - start),
        }
        response = _send(self.auth, "PATCH", session.url, headers=headers,
                         body=self.body(start, end), reference=str(self.digest or ""))
        if response.status == 401:
            raise _Renewed
        if response.status in _NO_CHUNKS or (
            400 <= response.status < 500 and b"UNSUPPORTED" in _peek(response)
        ):
            raise _ChunksRefused
        check_written(response, doing="uploading a chunk", place=_place(self.auth))
        offset = _reported_offset(response, self.auth)
        out = Session(_location(self.auth, response, session.url),
                      end if offset is None or (offset == 0 and end == 1) else offset,
                      _min_chunk(response) or session.min_chunk)
        release(response)
        return out

    def put(self, session: Session, digest: Digest, whole: bool) -> None:
        """``PUT ?digest=``: the whole blob (monolithic), or nothing more (closing)."""
        sep = "&" if urlsplit(session.url).query else "?"
        url = f"{session.url}{sep}digest={quote(str(digest), safe=':')}"
        size = self.source.size
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Length": str(size if whole else 0)}
        body: Body = b""
        if whole and size <= MONOLITHIC_MAX:
            body = self.source.pread(0, size)
            self.digesting.feed(0, body)
            _check_digest(self, digest, whole=True)  # before a byte is sent
            self.sent += size
            if self.on_bytes is not None:
                self.on_bytes(size)
        elif whole:
            body = self.body(0, size)
        response = _send(self.auth, "PUT", url, headers=headers, body=body,
                         reference=str(digest))
        if response.status == 401 and not isinstance(body, bytes):
            raise _Renewed
        check_written(response, doing="finishing the upload", place=_place(self.auth,
                                                                           str(digest)))
        echoed = header_digest(response, _place(self.auth, str(digest)))
        release(response)
        if echoed is not None and echoed != digest:
            raise DigestMismatch(digest, echoed, what="uploaded blob (the registry's "
                                 "Docker-Content-Digest)", registry=self.auth.registry,
                                 repository=self.auth.repository)


def _peek(response: BaseHTTPResponse) -> bytes:
    """A small error body, read (the connection released)."""
    from tank.responses import read_capped

    body, _ = read_capped(response, 64 * 1024)
    return body


def _refuses_chunks(registry: str) -> bool:
    with _monolithic_lock:
        return registry in _monolithic_only


def _remember_refusal(registry: str) -> None:
    with _monolithic_lock:
        _monolithic_only.add(registry)


def upload(
    auth: Authenticator,
    source: UploadSource,
    *,
    digest: Digest | None = None,
    size: int | None = None,
    retry: RetryPolicy,
    chunk_size: int | None = None,
    verify: bool = True,
    session: Session | None = None,
    on_bytes: Callable[[int], None] | None = None,
    cancelled: threading.Event | None = None,
) -> tuple[Digest, int]:
    """Upload ``source`` as a blob of ``auth``'s repository; return its digest and size.

    See the module for the rules. ``session`` continues one already open (a mount the registry
    answered with an upload). ``verify=False`` skips hashing when ``digest`` is given and the
    source is known good (a committed cache blob): the registry still checks it.
    """
    src = Source(source)
    try:
        if size is not None and size != src.size:
            raise SizeMismatch(size, src.size, what="upload source", digest=digest)
        if digest is None and src.spooled is not None:
            digest = src.spooled
        algorithm = digest.algorithm if digest is not None else "sha256"
        state = _Upload(auth, src, digest, _Digesting(src, algorithm), chunk_size, verify,
                        on_bytes, cancelled, session)
        final = _run(state, retry)
        return final, src.size
    finally:
        src.close()


def _run(state: _Upload, retry: RetryPolicy) -> Digest:
    """The upload's tries: open, send, resume, close (see the module)."""
    auth, src = state.auth, state.source
    started = time.monotonic()
    failures = 0
    monolithic = src.size <= MONOLITHIC_MAX or _refuses_chunks(auth.registry)
    while True:
        progress = state.sent
        try:
            if state.session is None:
                state.session = call(lambda: open_session(auth), policy=retry,
                                     what=f"POST upload {auth.registry}/{auth.repository}")
                assert state.session is not None
            if monolithic:
                if state.session.offset:
                    raise _Restart
                digest = state.digest or _digest_whole(state)
                state.put(state.session, digest, whole=True)
                _check_digest(state, digest, whole=True)
                return digest
            _send_rest(state)
            digest = _check_digest(state, state.digest, whole=False)
            state.put(state.session, digest, whole=False)
            return digest
        except _ChunksRefused:
            _remember_refusal(auth.registry)
            monolithic = True
            if state.session is not None and state.session.offset:
                cancel_session(auth, state.session)
                state.session = None
            continue
        except (_Renewed, _Restart) as exc:
            if isinstance(exc, _Restart) and state.session is not None:
                cancel_session(auth, state.session)
                state.session = None
            failures = 0 if state.sent > progress else failures + 1
            if failures >= retry.attempts:
                raise RegistryError(
                    "the upload kept failing: " + ("the registry refused the renewed token"
                    if isinstance(exc, _Renewed) else "the session could not be resumed"),
                    **_place(auth).kwargs()) from None
            _recover(state, retry)
        except TankError as exc:
            if not is_retryable(exc):
                if isinstance(exc, DigestMismatch) and state.session is not None:
                    cancel_session(auth, state.session)
                raise
            failures = 0 if state.sent > progress else failures + 1
            if failures >= retry.attempts:
                exc.retried = (failures, time.monotonic() - started)
                raise
            delay = retry.delay(failures, exc)
            if state.cancelled is not None:
                if state.cancelled.wait(delay):
                    raise KeyboardInterrupt from None
            else:
                time.sleep(delay)
            _recover(state, retry)


class _Restart(Exception):
    """The session cannot continue: open a new one."""


def _send_rest(state: _Upload) -> None:
    """``PATCH`` from where the session stands to the end, in one request or in chunks."""
    session = state.session
    assert session is not None
    size = state.source.size
    while session.offset < size:
        step = size - session.offset
        if state.chunk_size is not None:
            step = min(step, max(state.chunk_size, session.min_chunk))
        session = state.patch(session, session.offset + step)
        state.session = session
    if session.offset > size:
        raise SizeMismatch(size, session.offset, what="upload (the registry's offset)",
                           digest=state.digest)


def _digest_whole(state: _Upload) -> Digest:
    """The source's digest, read before a monolithic ``PUT`` (whose URL carries it)."""
    state.digesting.fill(state.source.size)
    return state.digesting.hasher.digest()


def _check_digest(state: _Upload, digest: Digest | None, *, whole: bool) -> Digest:
    """The digest of what was sent, checked against the one given (the session cancelled and
    :class:`~tank.errors.DigestMismatch` raised when they differ)."""
    if digest is not None and not state.verify:
        return digest
    state.digesting.fill(state.source.size)
    actual = state.digesting.hasher.digest()
    if digest is not None and actual != digest:
        if state.session is not None and not whole:
            cancel_session(state.auth, state.session)
        raise DigestMismatch(digest, actual, what="upload source",
                             registry=state.auth.registry, repository=state.auth.repository)
    return actual


def _recover(state: _Upload, retry: RetryPolicy) -> None:
    """After a failure: where does the session stand? A forgotten session means a new one."""
    auth = state.auth
    if state.session is None:
        return
    try:
        state.session = session_status(auth, state.session)
    except NotFound:
        state.session = None
    except RegistryError as exc:
        if exc.status is None or exc.status >= 500 or exc.status == 429:
            raise
        state.session = None  # 416 and the like: the session is beyond repair
    except TransportError:
        pass  # the next try reaches it again (or fails and is counted)


def upload_stream(
    auth: Authenticator,
    chunks: Iterable[bytes],
    *,
    digest: Digest,
    size: int,
    retry: RetryPolicy,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Upload a blob whose bytes arrive once, as ``chunks`` (a copy's download, teed): one
    streamed ``PATCH`` then ``PUT ?digest=`` (one ``PUT`` with the body on a registry that
    refuses chunks). Nothing is resumed or retried once bytes flow: a failure raises, and the
    caller uploads the blob again from a file. The registry checks the digest."""
    session = call(lambda: open_session(auth), policy=retry,
                   what=f"POST upload {auth.registry}/{auth.repository}")
    assert session is not None

    def body() -> Iterator[bytes]:
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            if sent > size:
                raise SizeMismatch(size, sent, what="streamed upload", digest=digest)
            if on_bytes is not None:
                on_bytes(len(chunk))
            yield chunk
        if sent != size:
            raise SizeMismatch(size, sent, what="streamed upload", digest=digest)

    sep = "&" if urlsplit(session.url).query else "?"
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if _refuses_chunks(auth.registry):
        url = f"{session.url}{sep}digest={quote(str(digest), safe=':')}"
        response = _send(auth, "PUT", url, headers=headers, body=body(), reference=str(digest))
        check_written(response, doing="uploading the blob", place=_place(auth, str(digest)))
        release(response)
        return
    headers["Content-Range"] = f"0-{size - 1}"
    response = _send(auth, "PATCH", session.url, headers=headers, body=body(),
                     reference=str(digest))
    if response.status in _NO_CHUNKS:
        _remember_refusal(auth.registry)
    check_written(response, doing="uploading the blob", place=_place(auth, str(digest)))
    session = Session(_location(auth, response, session.url), size)
    release(response)
    state = _Upload(auth, Source(b""), digest, _Digesting(Source(b""), digest.algorithm), None,
                    False, None, None, session)
    call(lambda: state.put(session, digest, whole=False), policy=retry,
         what=f"PUT upload {auth.registry}/{auth.repository}")


def mount_sessions(
    auth_for: Callable[[str], Authenticator], digest: Digest, sources: Sequence[str],
    retry: RetryPolicy,
) -> tuple[bool, Session | None]:
    """Try to mount ``digest`` from each repository in ``sources`` in turn; ``(True, None)``
    once one worked, else ``(False, session)`` with the first upload session a registry opened
    instead (the others cancelled). ``auth_for(repo)`` is the authentication that asks for both
    scopes. A source the token may not read (an :class:`~tank.errors.AuthError`) is passed."""
    from tank.errors import AuthError

    opened: Session | None = None
    for repo in sources:
        auth = auth_for(repo)
        try:
            session = call(
                functools.partial(open_session, auth, mount=digest, source_repository=repo),
                policy=retry, what=f"POST mount {auth.registry}/{auth.repository}",
            )
        except AuthError:
            continue
        if session is None:
            if opened is not None:
                cancel_session(auth, opened)
            return True, None
        if opened is None:
            opened = session
        else:
            cancel_session(auth, session)
    return False, opened


__all__ = [
    "MONOLITHIC_MAX",
    "READ_SIZE",
    "Session",
    "Source",
    "UploadSource",
    "blob_size",
    "cancel_session",
    "mount_sessions",
    "open_session",
    "session_status",
    "upload",
    "upload_stream",
]
