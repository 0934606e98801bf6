"""Image manifests and indexes, parsed from untrusted bytes: every rule about them in one place.

:func:`parse_manifest` turns the bytes a registry (or the cache, or a layout) served into a
:class:`Manifest` or an :class:`Index`, or raises one clear error naming the image:

- :class:`~tank.errors.ManifestTooLarge` above :data:`MAX_MANIFEST_SIZE` (the distribution
  server's own limit);
- :class:`~tank.errors.InvalidManifest` for bytes that are not one JSON object (invalid JSON, not
  UTF-8, duplicate keys — the bytes a digest covers and the structure used must not differ —,
  nesting deeper than :data:`tank._json.MAX_DEPTH`), a document that is both an index and an image
  manifest, a body ``mediaType`` that contradicts the ``Content-Type``, a descriptor that is not
  one (see :mod:`tank.image.descriptor`), more than :data:`MAX_LAYERS` layers or
  :data:`MAX_INDEX_ENTRIES` index entries;
- :class:`~tank.errors.UnsupportedManifest` for Docker schema 1 (by media type or
  ``schemaVersion``), a ``schemaVersion`` other than 2, and media types tank does not read.

The objects keep the bytes they were parsed from (:attr:`Manifest.raw`): a digest is always the
hash of those bytes, never of re-serialised JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tank import _json, mediatypes
from tank.digest import Digest, compute
from tank.errors import InvalidManifest, ManifestTooLarge, UnsupportedManifest
from tank.image.descriptor import NOWHERE, Descriptor, Where
from tank.platform import Platform, select

#: manifests larger than this are refused (the distribution server's own limit)
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024
#: more layers than this in one manifest is refused (real images have tens; overlay stops at 128)
MAX_LAYERS: Final = 10_000
#: more entries than this in one index is refused
MAX_INDEX_ENTRIES: Final = 10_000

SCHEMA1_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
#: OCI 1.1's short-lived artifact manifest (withdrawn before the release; read by nobody now)
_ARTIFACT_MANIFEST: Final = "application/vnd.oci.artifact.manifest.v1+json"


def _annotations(doc: Mapping[str, Any]) -> dict[str, str]:
    value = doc.get("annotations")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _optional_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class _Document:
    raw: bytes = field(repr=False)
    media_type: str
    digest: Digest
    annotations: Mapping[str, str] = field(hash=False)
    artifact_type: str | None
    subject: Descriptor | None
    json: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def size(self) -> int:
        """The document's size in bytes."""
        return len(self.raw)

    def descriptor(self, **extra: Any) -> Descriptor:
        """A descriptor naming this document (``extra``: platform, annotations, …)."""
        return Descriptor(self.media_type, self.digest, len(self.raw), **extra)


@dataclass(frozen=True)
class Manifest(_Document):
    """An image manifest (OCI or Docker v2), artifacts included.

    :ivar raw: the bytes exactly as served; :ivar digest: their digest.
    :ivar media_type: the manifest's media type (OCI's when the document names none).
    :ivar config: the config descriptor; :ivar layers: the layer descriptors, in order.
    :ivar annotations: the manifest's annotations; :ivar artifact_type: ``artifactType``, if any;
        :ivar subject: the ``subject`` descriptor (OCI 1.1 referrers), if any.
    :ivar json: the parsed document (read-only by convention: never re-serialise it).
    """

    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def kind(self) -> str:
        """``"image"``."""
        return "image"

    @property
    def is_docker(self) -> bool:
        """Whether this is a Docker v2 manifest (layouts hold them converted to OCI)."""
        return self.media_type == mediatypes.DOCKER_MANIFEST


@dataclass(frozen=True)
class Index(_Document):
    """An OCI image index or a Docker manifest list.

    :ivar manifests: its entries, each a :class:`~tank.image.Descriptor` with its ``platform``.
    """

    manifests: tuple[Descriptor, ...]

    @property
    def kind(self) -> str:
        """``"index"``."""
        return "index"

    def select(self, want: Platform, *, place: Where = NOWHERE) -> Descriptor:
        """The entry for ``want`` (attestations never chosen); containerd's rules, see
        :func:`tank.platform.select`. :class:`~tank.errors.PlatformNotFound` lists the offers."""
        chosen = select(dict(self.json), want, **place.kwargs())
        entries = self.json.get("manifests") or ()
        for entry, descriptor in zip(entries, self.manifests, strict=False):
            if entry is chosen:
                return descriptor
        raise AssertionError("select() returned an entry the index does not hold")


def kind_of(media_type: str | None, doc: Mapping[str, Any], place: Where = NOWHERE) -> str:
    """``"index"`` or ``"image"`` for a parsed document; raise for schema 1 and unknown kinds."""
    version = doc.get("schemaVersion")
    if media_type in SCHEMA1_TYPES or version == 1:
        raise UnsupportedManifest(
            "Docker schema 1 manifests are not supported (deprecated since 2017; ask the "
            "image's publisher for a schema 2 or OCI image)", **place.kwargs(),
        )
    if version is not None and (type(version) is not int or version != 2):
        raise UnsupportedManifest(
            f"unsupported manifest schemaVersion {str(version)[:20]!r} (tank reads version 2)",
            **place.kwargs(),
        )
    if media_type in mediatypes.INDEX_TYPES or (media_type is None and "manifests" in doc):
        return "index"
    if media_type in mediatypes.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc):
        return "image"
    if media_type == _ARTIFACT_MANIFEST:
        raise UnsupportedManifest(
            f"the OCI artifact manifest type {media_type} was withdrawn before OCI 1.1; tank reads "
            "artifacts stored as image manifests with an artifactType", **place.kwargs(),
        )
    raise UnsupportedManifest(
        f"unsupported manifest media type {str(media_type)[:200]!r}", **place.kwargs()
    )


def load_json(raw: bytes, *, place: Where = NOWHERE, what: str = "manifest") -> dict[str, Any]:
    """``raw`` as one JSON object, read strictly (see :mod:`tank._json`); else
    :class:`~tank.errors.InvalidManifest` naming ``what`` and ``place``."""
    return _json.loads_object(
        raw, what=what, error=lambda message: InvalidManifest(message, **place.kwargs())
    )


def media_type_of(
    doc: Mapping[str, Any], content_type: str | None, place: Where = NOWHERE
) -> str | None:
    """The document's media type: the ``Content-Type`` (parameters dropped) when it names a
    manifest type, else the body's ``mediaType``; ``None`` when neither says. A body type that
    contradicts a manifest ``Content-Type`` is refused."""
    header_type = mediatypes.strip_parameters(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise InvalidManifest("manifest 'mediaType' is not a string", **place.kwargs())
    known = set(mediatypes.MANIFEST_TYPES)
    if header_type in known and body_type in known and header_type != body_type:
        raise InvalidManifest(
            f"Content-Type {header_type} contradicts the manifest's mediaType {body_type}",
            **place.kwargs(),
        )
    if header_type in known or not body_type:
        return header_type
    return body_type


def check_document(
    raw: bytes,
    content_type: str | None = None,
    *,
    place: Where = NOWHERE,
    max_size: int = MAX_MANIFEST_SIZE,
) -> tuple[str | None, dict[str, Any]]:
    """The first checks of :func:`parse_manifest`: size, JSON, ambiguity, media type.
    Returns ``(media type or None, document)``."""
    if len(raw) > max_size:
        raise ManifestTooLarge(
            f"manifest of {len(raw)} bytes is over the {max_size}-byte limit", **place.kwargs()
        )
    doc = load_json(raw, place=place)
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise InvalidManifest(
            "manifest is ambiguous: it has both 'manifests' and 'layers'/'config'",
            **place.kwargs(),
        )
    return media_type_of(doc, content_type, place), doc


def parse_manifest(
    raw: bytes,
    content_type: str | None = None,
    *,
    digest: Digest | None = None,
    place: Where = NOWHERE,
) -> Manifest | Index:
    """Parse manifest bytes into a :class:`Manifest` or :class:`Index` (see the module's rules).

    :param raw: the bytes exactly as served.
    :param content_type: the ``Content-Type`` they were served with, if known; else the body's
        ``mediaType`` decides (and the document's shape when it has none).
    :param digest: their digest when the caller has verified it already (else computed, sha256).
    :param place: where they came from, for error messages.
    """
    media_type, doc = check_document(raw, content_type, place=place)
    kind = kind_of(media_type, doc, place)
    own = digest if digest is not None else compute(raw)
    subject = doc.get("subject")
    common: dict[str, Any] = {
        "raw": raw,
        "digest": own,
        "annotations": _annotations(doc),
        "artifact_type": _optional_str(doc, "artifactType"),
        "subject": (
            None if subject is None
            else Descriptor.from_json(subject, where="the subject descriptor", place=place)
        ),
        "json": doc,
    }
    if kind == "index":
        return Index(
            media_type=media_type or mediatypes.OCI_INDEX,  # an index without one is OCI
            manifests=_descriptors(doc, "manifests", MAX_INDEX_ENTRIES, place),
            **common,
        )
    config = Descriptor.from_json(doc.get("config"), where="the config descriptor", place=place)
    if media_type is None:  # as containers/image guesses it: by the config's type
        docker = config.media_type == mediatypes.DOCKER_CONFIG
        media_type = mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST
    return Manifest(
        media_type=media_type,
        config=config,
        layers=_descriptors(doc, "layers", MAX_LAYERS, place),
        **common,
    )


def _descriptors(
    doc: Mapping[str, Any], key: str, limit: int, place: Where
) -> tuple[Descriptor, ...]:
    entries = doc.get(key)
    what = "index" if key == "manifests" else "image manifest"
    if not isinstance(entries, list):
        raise InvalidManifest(f"the {what} has no {key} list", **place.kwargs())
    if len(entries) > limit:
        raise InvalidManifest(
            f"the {what} lists {len(entries)} {key} (tank's limit is {limit})", **place.kwargs()
        )
    label = "index entry" if key == "manifests" else "layer"
    return tuple(
        Descriptor.from_json(entry, where=f"{label} {i}", place=place)
        for i, entry in enumerate(entries, 1)
    )


__all__ = [
    "MAX_INDEX_ENTRIES",
    "MAX_LAYERS",
    "MAX_MANIFEST_SIZE",
    "SCHEMA1_TYPES",
    "Index",
    "Manifest",
    "check_document",
    "kind_of",
    "load_json",
    "media_type_of",
    "parse_manifest",
]
