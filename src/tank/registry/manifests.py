"""Manifests over the wire: ``GET`` and ``HEAD`` on ``/v2/NAME/manifests/REFERENCE``, verified.

A manifest is refused unless its bytes hash to the digest it was asked by and to the registry's
``Docker-Content-Digest`` (when sent); it is capped at
:data:`~tank.image.MAX_MANIFEST_SIZE` without being read whole, and checked by
:func:`tank.image.manifest.check_document` (JSON, duplicate keys, ambiguity, media type).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tank import mediatypes
from tank.digest import Digest, Hasher
from tank.errors import (
    DigestMismatch,
    InvalidDigest,
    ManifestTooLarge,
    RegistryError,
    TransportError,
)
from tank.image import Index, Manifest, Where, parse_manifest
from tank.image.manifest import MAX_MANIFEST_SIZE, check_document
from tank.responses import raise_for_status
from tank.transport import discard, release
from tank.transport.deadline import read_small

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

    from tank.auth.session import Authenticator


@dataclass(frozen=True)
class ManifestInfo:
    """A fetched, verified manifest.

    :ivar media_type: the ``Content-Type`` without parameters, else the body's ``mediaType``.
    :ivar digest: the ``Docker-Content-Digest`` header (verified against ``raw``), ``None`` when
        the registry omitted it (from :func:`tank.registry.manifest`; a
        :meth:`tank.Repository.manifest` always sets it); :meth:`content_digest` computes it.
    :ivar raw: the bytes exactly as served (their digest is the manifest's digest).
    :ivar json: ``raw`` parsed (a JSON object; duplicate keys are refused).
    """

    media_type: str | None
    digest: Digest | None
    raw: bytes = field(repr=False)
    json: dict[str, Any] = field(repr=False)

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

    @functools.cached_property
    def document(self) -> Manifest | Index:
        """The manifest as tank's image model (:func:`tank.image.parse_manifest`): raises for
        schema 1, unknown media types and malformed descriptors."""
        return parse_manifest(self.raw, self.media_type, digest=self.content_digest())


@dataclass(frozen=True)
class ManifestHead:
    """What a ``HEAD`` on a manifest tells without its body.

    :ivar digest: ``Docker-Content-Digest`` (``None`` when the registry omitted it: fall back to
        a ``GET``, which computes it).
    :ivar media_type: ``Content-Type`` without parameters.
    :ivar size: ``Content-Length``.
    """

    digest: Digest | None
    media_type: str | None
    size: int | None


def parse_manifest_bytes(
    raw: bytes,
    content_type: str | None,
    *,
    registry: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Check manifest bytes; return (media type, JSON object) or raise
    :class:`~tank.errors.InvalidManifest` (see :func:`tank.image.manifest.check_document`)."""
    return check_document(raw, content_type, place=Where(registry, repository, reference))


def header_digest(response: BaseHTTPResponse, place: Where) -> Digest | None:
    """The ``Docker-Content-Digest`` header, validated; ``None`` when the registry omitted it.

    Only the registry's word: the caller checks it against the bytes it fetches.
    """
    header = (response.headers.get("Docker-Content-Digest") or "").strip()
    if not header:
        return None
    try:
        return Digest.parse(header)
    except InvalidDigest as exc:
        raise RegistryError(
            f"invalid Docker-Content-Digest header: {exc.reason}", **place.kwargs()
        ) from None


def _read_manifest(response: BaseHTTPResponse, max_size: int, place: Where) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        discard(response)
        raise ManifestTooLarge(
            f"manifest of {declared} bytes is over the {max_size}-byte limit", **place.kwargs()
        )
    try:
        raw = read_small(response, max_size + 1)
    except Exception as exc:
        discard(response)
        raise TransportError(
            f"{place.registry}/{place.repository}: reading the manifest failed: {exc}"
        ) from exc
    if len(raw) > max_size:
        discard(response)
        raise ManifestTooLarge(f"manifest is over the {max_size}-byte limit", **place.kwargs())
    release(response)
    return raw


def get_manifest(
    auth: Authenticator, ref: str | Digest, *, max_size: int = MAX_MANIFEST_SIZE
) -> ManifestInfo:
    """One try at ``GET /v2/NAME/manifests/REF``, verified (see the module)."""
    place = Where(auth.registry, auth.repository, str(ref))
    response = auth.send(
        "GET", f"/v2/{auth.repository}/manifests/{ref}", reference=str(ref),
        headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    raise_for_status(response, what="manifest", **place.kwargs())
    raw = _read_manifest(response, max_size, place)
    claimed = header_digest(response, place)
    for expected, source in ((ref, "the digest asked for"), (claimed, "the header")):
        if isinstance(expected, Digest):
            h = expected.hasher()
            h.update(raw)
            actual = h.digest()
            if actual != expected:
                raise DigestMismatch(
                    expected, actual, what=f"manifest ({source})", registry=auth.registry,
                    repository=auth.repository,
                )
    media_type, doc = check_document(
        raw, response.headers.get("Content-Type"), place=place, max_size=max_size
    )
    return ManifestInfo(media_type=media_type, digest=claimed, raw=raw, json=doc)


def head_manifest(auth: Authenticator, ref: str | Digest) -> ManifestHead:
    """One try at ``HEAD /v2/NAME/manifests/REF`` with the same ``Accept`` as a ``GET``."""
    place = Where(auth.registry, auth.repository, str(ref))
    response = auth.send(
        "HEAD", f"/v2/{auth.repository}/manifests/{ref}", reference=str(ref),
        headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    raise_for_status(response, what="manifest", **place.kwargs())
    release(response)
    length = response.headers.get("Content-Length")
    return ManifestHead(
        digest=header_digest(response, place),
        media_type=mediatypes.strip_parameters(response.headers.get("Content-Type")),
        size=int(length) if length and length.isdigit() else None,
    )


__all__ = [
    "ManifestHead",
    "ManifestInfo",
    "get_manifest",
    "head_manifest",
    "header_digest",
    "parse_manifest_bytes",
]
