"""The OCI Distribution (registry HTTP API v2) client: manifests and blobs.

Stateless with respect to authentication: each call takes the bearer token the caller holds (or
``None``) and, when the registry answers ``401`` with a Bearer challenge, exchanges it at the
challenge's realm for an anonymous pull token, retries once, and hands the token that worked back
(:func:`manifest` returns it; :class:`BlobStream` carries it) so the caller threads it into the next
call. Connections are pooled by a shared :class:`~tank.transport.Transport`.

Everything that comes back is verified before it is returned: a manifest against the digest it was
asked by and against ``Docker-Content-Digest``; a blob against its digest (and size, when given).

The positional signatures are frozen; every option is keyword-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

from tank import mediatypes
from tank.auth import fetch_token, parse_challenges, pull_scope
from tank.digest import Digest, Hasher, PipelinedHasher
from tank.errors import (
    AuthError,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    ManifestTooLarge,
    NotFound,
    RegistryError,
    RegistryErrorDetail,
    SizeMismatch,
    TransportError,
)
from tank.reference import _DOMAIN, _PATH, _TAG, DOCKER_HUB_API
from tank.transport import Transport, default_transport, discard, release

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from urllib3 import BaseHTTPResponse

#: manifests larger than this are refused (the distribution server's own limit)
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024
#: an error body is read up to this many bytes
MAX_ERROR_BODY: Final = 64 * 1024
#: bytes asked of the socket per read on the blob path
CHUNK_SIZE: Final = 1024 * 1024

_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Place(TypedDict):
    """What an error names: where the thing being fetched lives."""

    registry: str
    repository: str
    reference: str


class _BlobPlace(TypedDict):
    registry: str
    repository: str


# -- argument checks: nothing from the caller reaches a URL unvalidated ------------------------


def _registry(registry: str) -> str:
    if registry in _HUB_ALIASES:
        return DOCKER_HUB_API
    if not isinstance(registry, str) or not _DOMAIN.fullmatch(registry):
        raise InvalidReference(str(registry), "invalid registry host (expected host[:port])")
    return registry


def _repository(repository: str) -> str:
    if not isinstance(repository, str) or not _PATH.fullmatch(repository):
        raise InvalidReference(str(repository), "invalid repository name")
    return repository


def _manifest_reference(reference: str) -> str | Digest:
    if isinstance(reference, str) and ":" in reference:
        try:
            return Digest.parse(reference)
        except InvalidDigest as exc:
            raise InvalidReference(reference, exc.reason) from None
    if not isinstance(reference, str) or not _TAG.fullmatch(reference):
        raise InvalidReference(str(reference), "invalid tag")
    return reference


# -- responses ----------------------------------------------------------------------------------


def _read_capped(response: BaseHTTPResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body, and whether that was all of it (connection released)."""
    try:
        data = response.read(cap + 1, decode_content=True)
    except Exception:
        discard(response)
        return b"", False
    if len(data) > cap:
        discard(response)
        return data[:cap], False
    release(response)
    return data, True


def _error_details(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    try:
        doc = json.loads(body)
    except ValueError:
        return ()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ()
    out = []
    for entry in errors[:20]:
        if isinstance(entry, dict):
            code = str(entry.get("code", "UNKNOWN"))[:200]
            message = str(entry.get("message", ""))[:500]
            out.append(RegistryErrorDetail(code, message, entry.get("detail")))
    return tuple(out)


def _raise_for_status(
    response: BaseHTTPResponse,
    *,
    what: str,
    registry: str,
    repository: str,
    reference: str,
) -> None:
    """Raise the error that fits a non-2xx answer (its body read, capped, and released)."""
    status = response.status
    if 200 <= status < 300:
        return
    body, _ = _read_capped(response, MAX_ERROR_BODY)
    errors = _error_details(body)
    kwargs: dict[str, Any] = {
        "registry": registry, "repository": repository, "reference": reference,
        "status": status, "errors": errors,
    }
    if status == 404:
        raise NotFound(f"{what} not found", **kwargs)
    if status in (401, 403):
        raise AuthError(f"access to the {what} denied", **kwargs)
    text = "" if errors else body[:200].decode("utf-8", "replace").strip()
    raise RegistryError(f"fetching the {what} failed" + (f": {text}" if text else ""), **kwargs)


def _send(
    transport: Transport,
    method: str,
    registry: str,
    repository: str,
    path: str,
    token: str | None,
    *,
    reference: str,
    headers: Mapping[str, str],
) -> tuple[BaseHTTPResponse, str | None]:
    """Send a request; on ``401`` answer the Bearer challenge anonymously and retry once."""
    send = dict(headers)
    if token:
        send["Authorization"] = f"Bearer {token}"
    response = transport.request_registry(method, registry, path, headers=send)
    if response.status != 401:
        return response, token

    challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
    body, _ = _read_capped(response, MAX_ERROR_BODY)
    place = _Place(registry=registry, repository=repository, reference=reference)
    bearer = next((c for c in challenges if c.scheme == "bearer"), None)
    if bearer is None:
        offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges})) or "none"
        raise AuthError(
            f"the registry asks for authentication tank cannot answer anonymously "
            f"(challenge schemes offered: {offered}; only Bearer token exchange is supported)",
            status=401, errors=_error_details(body), **place,
        )
    new = fetch_token(
        transport, bearer, scopes=[pull_scope(repository)], registry=registry,
        repository=repository,
    )
    send["Authorization"] = f"Bearer {new.token}"
    response = transport.request_registry(method, registry, path, headers=send)
    if response.status == 401:
        body, _ = _read_capped(response, MAX_ERROR_BODY)
        raise AuthError(
            f"the registry refused the token from {bearer.realm} (a second 401)",
            status=401, errors=_error_details(body), **place,
        )
    return response, new.token


# -- manifests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestInfo:
    """A fetched, verified manifest.

    :ivar media_type: the ``Content-Type`` without parameters, else the body's ``mediaType``.
    :ivar digest: the ``Docker-Content-Digest`` header (verified against ``raw``), ``None`` when
        the registry omitted it; :meth:`content_digest` computes it.
    :ivar raw: the bytes exactly as served (their digest is the manifest's digest).
    :ivar json: ``raw`` parsed (a JSON object; duplicate keys are refused).
    """

    media_type: str | None
    digest: Digest | None
    raw: bytes
    json: dict[str, Any]

    def content_digest(self, algorithm: str = "sha256") -> Digest:
        """The digest of :attr:`raw` (equal to :attr:`digest` when the registry sent one)."""
        if self.digest is not None and self.digest.algorithm == algorithm:
            return self.digest
        h = Hasher(algorithm)
        h.update(self.raw)
        return h.digest()

    @property
    def is_index(self) -> bool:
        """Whether this is an OCI index or a Docker manifest list."""
        return mediatypes.is_index(self.media_type)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_manifest(
    raw: bytes,
    content_type: str | None,
    *,
    registry: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Parse manifest bytes; return (media type, JSON object). Raise :class:`InvalidManifest`.

    Refused: invalid JSON, duplicate keys (the bytes verified and the structure used must not
    differ), a non-object, a document that is both an index and an image manifest, and a body
    ``mediaType`` that contradicts a manifest ``Content-Type``.
    """
    def bad(message: str) -> InvalidManifest:
        return InvalidManifest(
            message, registry=registry, repository=repository, reference=reference
        )

    try:
        doc = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise bad(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise bad("manifest is not a JSON object")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise bad("manifest is ambiguous: it has both 'manifests' and 'layers'/'config'")
    header_type = mediatypes.strip_parameters(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise bad("manifest 'mediaType' is not a string")
    known = set(mediatypes.MANIFEST_TYPES)
    if header_type in known and body_type in known and header_type != body_type:
        raise bad(f"Content-Type {header_type} contradicts the manifest's mediaType {body_type}")
    media_type = header_type
    if (media_type is None or media_type not in known) and body_type:
        media_type = body_type
    return media_type, doc


def manifest(
    registry: str,
    repo: str,
    reference: str,
    token: str | None = None,
    *,
    transport: Transport | None = None,
    max_size: int = MAX_MANIFEST_SIZE,
) -> tuple[ManifestInfo, str | None]:
    """Fetch the manifest ``registry/repo:reference`` (a tag or a digest).

    Sends ``Accept`` for the OCI index, Docker manifest list, OCI manifest and Docker v2 manifest
    types. On ``401`` the Bearer challenge is answered with an anonymous token and the request
    retried once. Returns the verified manifest and the token that worked (``token`` itself when
    it did, ``None`` when the registry needed none).

    :raises NotFound: the registry has no such manifest (``errors`` holds its error codes).
    :raises AuthError: a second ``401``, a non-Bearer challenge or a token endpoint failure.
    :raises DigestMismatch: the bytes do not hash to the digest asked for, or to
        ``Docker-Content-Digest``.
    :raises ManifestTooLarge: over ``max_size`` bytes (refused without reading it whole).
    :raises InvalidManifest: not a JSON object tank can trust.
    :raises TransportError: the network failed.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    ref = _manifest_reference(reference)
    t = transport or default_transport()
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response, token = _send(
        t, "GET", registry, repo, f"/v2/{repo}/manifests/{ref}", token,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    _raise_for_status(response, what="manifest", **place)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        discard(response)
        raise ManifestTooLarge(
            f"manifest of {declared} bytes is over the {max_size}-byte limit", **place
        )
    try:
        raw = response.read(max_size + 1, decode_content=True)
    except Exception as exc:
        discard(response)
        raise TransportError(f"{registry}/{repo}: reading the manifest failed: {exc}") from exc
    if len(raw) > max_size:
        discard(response)
        raise ManifestTooLarge(f"manifest is over the {max_size}-byte limit", **place)
    release(response)

    header = response.headers.get("Docker-Content-Digest")
    header_digest: Digest | None = None
    if header:
        try:
            header_digest = Digest.parse(header.strip())
        except InvalidDigest as exc:
            raise RegistryError(
                f"invalid Docker-Content-Digest header: {exc.reason}", **place
            ) from None
    for expected, source in ((ref, "the digest asked for"), (header_digest, "the header")):
        if isinstance(expected, Digest):
            h = expected.hasher()
            h.update(raw)
            actual = h.digest()
            if actual != expected:
                raise DigestMismatch(
                    expected, actual, what=f"manifest ({source})", registry=registry,
                    repository=repo,
                )
    media_type, doc = parse_manifest(raw, response.headers.get("Content-Type"), **place)
    return ManifestInfo(media_type=media_type, digest=header_digest, raw=raw, json=doc), token


@dataclass(frozen=True)
class ManifestHead:
    """What a ``HEAD`` on a manifest tells without its body.

    :ivar digest: ``Docker-Content-Digest`` (``None`` when the registry omitted it: fall back to
        :func:`manifest`, which computes it).
    :ivar media_type: ``Content-Type`` without parameters.
    :ivar size: ``Content-Length``.
    """

    digest: Digest | None
    media_type: str | None
    size: int | None


def manifest_head(
    registry: str,
    repo: str,
    reference: str,
    token: str | None = None,
    *,
    transport: Transport | None = None,
) -> tuple[ManifestHead, str | None]:
    """``HEAD`` a manifest with the same ``Accept`` as :func:`manifest`; return what it says.

    Cheap: no body is transferred, and Docker Hub does not count a ``HEAD`` against the pull rate
    limit. The digest is the registry's word only: verify it when the bytes are fetched.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    ref = _manifest_reference(reference)
    t = transport or default_transport()
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response, token = _send(
        t, "HEAD", registry, repo, f"/v2/{repo}/manifests/{ref}", token,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    _raise_for_status(response, what="manifest", **place)
    release(response)
    header = (response.headers.get("Docker-Content-Digest") or "").strip()
    digest: Digest | None = None
    if header:
        try:
            digest = Digest.parse(header)
        except InvalidDigest as exc:
            raise RegistryError(
                f"invalid Docker-Content-Digest header: {exc.reason}", **place
            ) from None
    length = response.headers.get("Content-Length")
    return (
        ManifestHead(
            digest=digest,
            media_type=mediatypes.strip_parameters(response.headers.get("Content-Type")),
            size=int(length) if length and length.isdigit() else None,
        ),
        token,
    )


# -- blobs --------------------------------------------------------------------------------------


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
    ) -> None:
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
        place = _BlobPlace(registry=self.registry, repository=self.repository)
        received = self._hasher.size  # bytes of the blob seen so far, counting from its start
        hashing: PipelinedHasher | None = None
        update: Callable[[bytes], None] = self._hasher.update
        try:
            while True:
                want = chunk_size
                if size is not None:  # never read more than size + 1 bytes
                    want = max(1, min(chunk_size, size + 1 - received))
                data = read(want, decode_content=False)
                if not data:
                    break
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
        if size is not None and received != size:
            raise SizeMismatch(size, received, what="blob", digest=self.digest, **place)
        self._hasher.verify(self.digest, what="blob", **place)
        self.verified = True

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


@contextlib.contextmanager
def open_blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None = None,
    *,
    offset: int = 0,
    hasher: Hasher | None = None,
    size: int | None = None,
    transport: Transport | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[BlobStream]:
    """Open a blob for streaming: ``with open_blob(…) as stream: for chunk in stream: …``.

    Memory stays flat whatever the blob's size. ``size`` (the descriptor's) makes a longer or
    shorter body an error (at most ``size + 1`` bytes are read). ``offset`` asks for the rest of
    the blob with ``Range: bytes=offset-``; then ``hasher`` must carry the hash of the first
    ``offset`` bytes (so the end can still verify the whole blob), and only a ``206`` whose
    ``Content-Range`` starts exactly at ``offset`` is accepted (a ``200`` restarts from 0).
    Requests send ``Accept-Encoding: identity`` and bytes are hashed exactly as they arrive.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    if offset < 0:
        raise ValueError("offset must be >= 0")
    if offset and (hasher is None or hasher.size != offset or hasher.algorithm != want.algorithm):
        raise ValueError("offset > 0 needs the hasher of the first `offset` bytes of the blob")
    t = transport or default_transport()
    place = _Place(registry=registry, repository=repo, reference=str(want))
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response, token = _send(
        t, "GET", registry, repo, f"/v2/{repo}/blobs/{want}", token,
        reference=str(want), headers=headers,
    )
    _raise_for_status(response, what="blob", **place)
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
    stream = BlobStream(
        response, want, state, offset=start, size=size, token=token, registry=registry,
        repository=repo, chunk_size=chunk_size,
    )
    try:
        yield stream
    finally:
        stream.close()


def blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None = None,
    *,
    size: int | None = None,
    transport: Transport | None = None,
) -> bytes:
    """A whole blob in memory, verified against ``digest`` (and ``size`` when given).

    For configs and other small blobs; stream layers with :func:`open_blob` or
    :func:`download_blob`.
    """
    with open_blob(registry, repo, digest, token, size=size, transport=transport) as stream:
        return b"".join(stream)


def download_blob(
    registry: str,
    repo: str,
    digest: str,
    token: str | None,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    fsync: bool = True,
    transport: Transport | None = None,
) -> int:
    """Stream a blob into ``dest``; return its size.

    ``dest`` appears only once the whole blob has verified: the bytes go to a temporary file
    beside it, which is flushed (and fsynced unless ``fsync=False``) and then renamed. On any
    error the temporary file is removed and ``dest`` is untouched.
    """
    target = Path(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            with open_blob(
                registry, repo, digest, token, size=size, transport=transport
            ) as stream:
                write = out.write
                for chunk in stream:
                    write(chunk)
                total = stream.bytes_received
            if fsync:
                os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if fsync:
        _fsync_dir(target.parent)
    return total


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "CHUNK_SIZE",
    "MAX_MANIFEST_SIZE",
    "BlobStream",
    "ManifestHead",
    "ManifestInfo",
    "blob",
    "download_blob",
    "manifest",
    "manifest_head",
    "open_blob",
    "parse_manifest",
]
