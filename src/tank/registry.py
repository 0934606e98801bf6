"""The OCI Distribution (registry HTTP API v2) client: manifests and blobs.

Stateless with respect to authentication: each call takes the bearer token the caller holds (or
``None``) and, when the registry answers ``401`` with a Bearer challenge, exchanges it at the
challenge's realm for an anonymous pull token, retries once, and hands the token that worked back
(:func:`manifest` returns it; :class:`BlobStream` carries it) so the caller threads it into the next
call. Connections are pooled by a shared :class:`~tank.transport.Transport`.

Everything that comes back is verified before it is returned: a manifest against the digest it was
asked by and against ``Docker-Content-Digest``; a blob against its digest (and size, when given).

Failures worth another try (the network, ``408``, ``429``, ``5xx``, honouring ``Retry-After``) are
retried with exponential backoff and jitter per each call's ``retry=`` policy (see
:mod:`tank.retry`); every retry rebuilds its request on a fresh or idle pooled connection.
:func:`download_blob` resumes a body that broke off with a ``Range`` request.

The positional signatures are frozen; every option is keyword-only.
"""

from __future__ import annotations

import contextlib
import functools
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
from tank.retry import DEFAULT_RETRY, RetryPolicy, call, parse_retry_after
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
        "retry_after": parse_retry_after(response.headers.get("Retry-After")),
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
    tokens: list[str | None],
    *,
    reference: str,
    headers: Mapping[str, str],
    retry: RetryPolicy,
) -> BaseHTTPResponse:
    """Send a request; on ``401`` answer the Bearer challenge anonymously and retry once.

    A second ``401`` is an :class:`AuthError`, except one whose challenge says
    ``error="insufficient_scope"`` and names a scope other than the one just granted (GitLab and
    Docker Hub do so for cross-repository access): that scope is asked for once more.

    ``tokens[0]`` is the token to send; a new one replaces it as soon as it is obtained, so that
    the caller's next try (or next call) reuses it even when this one fails afterwards. One try
    of the request itself (the caller retries the whole exchange); the token endpoint is retried
    here, per ``retry``.
    """
    send = dict(headers)
    if tokens[0]:
        send["Authorization"] = f"Bearer {tokens[0]}"
    response = transport.request_registry(method, registry, path, headers=send)
    if response.status != 401:
        return response

    place = _Place(registry=registry, repository=repository, reference=reference)
    granted: str | None = None
    for round_ in range(2):
        challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
        body, _ = _read_capped(response, MAX_ERROR_BODY)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is None:
            offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges})) or "none"
            raise AuthError(
                f"the registry asks for authentication tank cannot answer anonymously "
                f"(challenge schemes offered: {offered}; only Bearer token exchange is "
                "supported)",
                status=401, errors=_error_details(body), **place,
            )
        scope = bearer.params.get("scope")
        if round_ == 1 and not (
            bearer.params.get("error") == "insufficient_scope" and scope and scope != granted
        ):
            raise AuthError(
                f"the registry refused the token from {bearer.realm} (a second 401)",
                status=401, errors=_error_details(body), **place,
            )
        new = call(
            functools.partial(
                fetch_token, transport, bearer, scopes=[pull_scope(repository)],
                registry=registry, repository=repository,
            ),
            policy=retry, what=f"token from {bearer.realm}",
        )
        granted = scope or pull_scope(repository)
        tokens[0] = new.token
        send["Authorization"] = f"Bearer {new.token}"
        response = transport.request_registry(method, registry, path, headers=send)
        if response.status != 401:
            return response
    body, _ = _read_capped(response, MAX_ERROR_BODY)
    raise AuthError(
        "the registry refused the token for the scope it asked for (a third 401)",
        status=401, errors=_error_details(body), **place,
    )


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
    retry: RetryPolicy | None = None,
) -> tuple[ManifestInfo, str | None]:
    """Fetch the manifest ``registry/repo:reference`` (a tag or a digest).

    Sends ``Accept`` for the OCI index, Docker manifest list, OCI manifest and Docker v2 manifest
    types. On ``401`` the Bearer challenge is answered with an anonymous token and the request
    retried once. Returns the verified manifest and the token that worked (``token`` itself when
    it did, ``None`` when the registry needed none).

    Failures worth another try (the network, ``408``, ``429``, ``5xx``, the token endpoint's
    too) are retried per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`), the request
    rebuilt from scratch each time; see :mod:`tank.retry`.

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
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    info = call(
        lambda: _manifest_once(t, registry, repo, ref, tokens, max_size=max_size, retry=policy),
        policy=policy, what=f"GET {registry}/{repo} manifest {ref}",
    )
    return info, tokens[0]


def _manifest_once(
    t: Transport,
    registry: str,
    repo: str,
    ref: str | Digest,
    tokens: list[str | None],
    *,
    max_size: int,
    retry: RetryPolicy,
) -> ManifestInfo:
    """One try of :func:`manifest`; ``tokens[0]`` is the token in, and the one that worked out."""
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response = _send(
        t, "GET", registry, repo, f"/v2/{repo}/manifests/{ref}", tokens,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT}, retry=retry,
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
    return ManifestInfo(media_type=media_type, digest=header_digest, raw=raw, json=doc)


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
    retry: RetryPolicy | None = None,
) -> tuple[ManifestHead, str | None]:
    """``HEAD`` a manifest with the same ``Accept`` as :func:`manifest`; return what it says.

    Cheap: no body is transferred, and Docker Hub does not count a ``HEAD`` against the pull rate
    limit. The digest is the registry's word only: verify it when the bytes are fetched.
    Retried like :func:`manifest`, per ``retry``.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    ref = _manifest_reference(reference)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    head = call(
        lambda: _manifest_head_once(t, registry, repo, ref, tokens, retry=policy),
        policy=policy, what=f"HEAD {registry}/{repo} manifest {ref}",
    )
    return head, tokens[0]


def _manifest_head_once(
    t: Transport,
    registry: str,
    repo: str,
    ref: str | Digest,
    tokens: list[str | None],
    *,
    retry: RetryPolicy,
) -> ManifestHead:
    """One try of :func:`manifest_head`; ``tokens`` as for :func:`_manifest_once`."""
    place = _Place(registry=registry, repository=repo, reference=str(ref))
    response = _send(
        t, "HEAD", registry, repo, f"/v2/{repo}/manifests/{ref}", tokens,
        reference=str(ref), headers={"Accept": mediatypes.MANIFEST_ACCEPT}, retry=retry,
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
    return ManifestHead(
        digest=digest,
        media_type=mediatypes.strip_parameters(response.headers.get("Content-Type")),
        size=int(length) if length and length.isdigit() else None,
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


def _open_once(
    t: Transport,
    registry: str,
    repo: str,
    want: Digest,
    tokens: list[str | None],
    *,
    offset: int,
    hasher: Hasher | None,
    size: int | None,
    chunk_size: int,
    retry: RetryPolicy,
) -> BlobStream:
    """One try at a blob's response, up to the first body byte; the caller closes the stream.

    ``tokens[0]`` is the token in, and the one that worked out. ``retry`` governs the token
    endpoint only.
    """
    place = _Place(registry=registry, repository=repo, reference=str(want))
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response = _send(
        t, "GET", registry, repo, f"/v2/{repo}/blobs/{want}", tokens,
        reference=str(want), headers=headers, retry=retry,
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
    return BlobStream(
        response, want, state, offset=start, size=size, token=tokens[0], registry=registry,
        repository=repo, chunk_size=chunk_size,
    )


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
    retry: RetryPolicy | None = None,
) -> Iterator[BlobStream]:
    """Open a blob for streaming: ``with open_blob(…) as stream: for chunk in stream: …``.

    Memory stays flat whatever the blob's size. ``size`` (the descriptor's) makes a longer or
    shorter body an error (at most ``size + 1`` bytes are read). ``offset`` asks for the rest of
    the blob with ``Range: bytes=offset-``; then ``hasher`` must carry the hash of the first
    ``offset`` bytes (so the end can still verify the whole blob), and only a ``206`` whose
    ``Content-Range`` starts exactly at ``offset`` is accepted (a ``200`` restarts from 0).
    Requests send ``Accept-Encoding: identity`` and bytes are hashed exactly as they arrive.

    Getting the response is retried per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`)
    until a ``2xx`` whose body is about to stream. The body itself is not: when iteration breaks
    off (a :class:`~tank.errors.TransportError`), resume by opening again with ``offset`` set to
    the bytes kept and ``hasher`` to :attr:`BlobStream.hasher` (:func:`download_blob` does).
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    if offset < 0:
        raise ValueError("offset must be >= 0")
    if offset and (hasher is None or hasher.size != offset or hasher.algorithm != want.algorithm):
        raise ValueError("offset > 0 needs the hasher of the first `offset` bytes of the blob")
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]
    stream = call(
        lambda: _open_once(
            t, registry, repo, want, tokens, offset=offset, hasher=hasher, size=size,
            chunk_size=chunk_size, retry=policy,
        ),
        policy=policy, what=f"GET {registry}/{repo} blob {want}",
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
    retry: RetryPolicy | None = None,
) -> bytes:
    """A whole blob in memory, verified against ``digest`` (and ``size`` when given).

    For configs and other small blobs; stream layers with :func:`open_blob` or
    :func:`download_blob`. A failure worth another try (see :mod:`tank.retry`) fetches the whole
    blob again, per ``retry`` (default :data:`~tank.retry.DEFAULT_RETRY`).
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    tokens = [token]

    def once() -> bytes:
        stream = _open_once(
            t, registry, repo, want, tokens, offset=0, hasher=None, size=size,
            chunk_size=CHUNK_SIZE, retry=policy,
        )
        try:
            return b"".join(stream)
        finally:
            stream.close()

    return call(once, policy=policy, what=f"GET {registry}/{repo} blob {want}")


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
    retry: RetryPolicy | None = None,
) -> int:
    """Stream a blob into ``dest``; return its size.

    ``dest`` appears only once the whole blob has verified: the bytes go to a temporary file
    beside it, which is flushed (and fsynced unless ``fsync=False``) and then renamed. On any
    error the temporary file is removed and ``dest`` is untouched.

    Failures worth another try are retried per ``retry`` (default
    :data:`~tank.retry.DEFAULT_RETRY`; see :mod:`tank.retry`). A body that broke off is resumed
    where it stopped: the retry asks for ``Range: bytes=N-`` (N = the bytes already in the
    temporary file), carrying their hash on; a registry that answers ``200`` instead of ``206``
    sends the whole blob again, and the temporary file starts over.
    """
    registry = _registry(registry)
    repo = _repository(repo)
    want = Digest.parse(digest)
    t = transport or default_transport()
    policy = DEFAULT_RETRY if retry is None else retry
    target = Path(dest)
    tokens = [token]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            # the hash of exactly the bytes in `out` (None: nothing kept, start from 0)
            kept: Hasher | None = None

            def once() -> int:
                nonlocal kept
                offset = out.tell()
                if offset and (
                    kept is None or kept.size != offset or (size is not None and offset >= size)
                ):
                    offset, kept = 0, None  # nothing trustworthy to resume from
                if offset == 0:
                    out.seek(0)
                    out.truncate()
                stream = _open_once(
                    t, registry, repo, want, tokens, offset=offset, hasher=kept, size=size,
                    chunk_size=CHUNK_SIZE, retry=policy,
                )
                try:
                    if stream.offset != offset:  # Range ignored: the whole blob comes again
                        out.seek(0)
                        out.truncate()
                    # from here on `out` holds exactly what the stream's hasher has seen, also
                    # when the body breaks off (it is hashed before it is handed over)
                    kept = stream.hasher
                    write = out.write
                    for chunk in stream:
                        write(chunk)
                    return stream.bytes_received
                finally:
                    stream.close()

            total = call(once, policy=policy, what=f"GET {registry}/{repo} blob {want}")
            if fsync:
                out.flush()
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
