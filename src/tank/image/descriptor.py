"""Content descriptors (image-spec ``descriptor.md``): what a manifest or index says about a blob.

A descriptor read from an untrusted document is checked here, once, for every caller: a non-empty
string media type, a digest :meth:`tank.digest.Digest.parse` accepts (so nothing path-like ever
reaches a file name), and a size that is a non-negative integer (not a float, not a bool).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from tank.digest import Digest
from tank.errors import InvalidDigest, InvalidManifest
from tank.platform import Platform


class PlaceKwargs(TypedDict):
    """The keywords that say where a :class:`~tank.errors.RegistryError` happened."""

    registry: str | None
    repository: str | None
    reference: str | None


@dataclass(frozen=True)
class Where:
    """Where a document came from, for error messages: ``registry/repository:reference``."""

    registry: str | None = None
    repository: str | None = None
    reference: str | None = None

    def kwargs(self) -> PlaceKwargs:
        """The keywords of :class:`~tank.errors.RegistryError` and its subclasses."""
        return PlaceKwargs(
            registry=self.registry, repository=self.repository, reference=self.reference
        )


NOWHERE = Where()


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: the blob or manifest it names, and what is said about it.

    :ivar media_type: the media type of the content.
    :ivar digest: its digest (validated).
    :ivar size: its size in bytes.
    :ivar annotations: the descriptor's annotations (strings).
    :ivar platform: an index entry's platform, normalised (``None`` elsewhere or when absent).
    :ivar artifact_type: an index entry's or referrer's ``artifactType``, if any.
    :ivar urls: ``urls`` (foreign layers), if any.
    """

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()
    #: the descriptor's JSON object as the document holds it (kept for faithful copies)
    json: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_json(
        cls, doc: Any, *, where: str = "the descriptor", place: Where = NOWHERE
    ) -> Descriptor:
        """Parse and check a descriptor object; :class:`~tank.errors.InvalidManifest` naming
        ``where`` (``"layer 3"``, ``"the config descriptor"``) and ``place`` when it is wrong."""
        if not isinstance(doc, dict):
            raise InvalidManifest(f"{where} is not a descriptor object", **place.kwargs())
        media_type, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise InvalidManifest(f"{where} has no mediaType", **place.kwargs())
        if not isinstance(digest, str):
            raise InvalidManifest(f"{where} has no digest", **place.kwargs())
        try:
            parsed = Digest.parse(digest)
        except InvalidDigest as exc:
            raise InvalidManifest(f"{where}: {exc}", **place.kwargs()) from None
        if type(size) is not int or size < 0:
            raise InvalidManifest(f"{where} has an invalid size {size!r}", **place.kwargs())
        artifact_type = doc.get("artifactType")
        urls = doc.get("urls")
        return cls(
            media_type=media_type,
            digest=parsed,
            size=size,
            annotations=_strings(doc.get("annotations")),
            platform=Platform.from_json(doc.get("platform")),
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
            urls=tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else (),
            json=doc,
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as JSON: ``mediaType``, ``digest``, ``size``, and whichever of
        ``annotations``, ``artifactType``, ``platform`` and ``urls`` it has."""
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": str(self.digest), "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            plat = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                plat["variant"] = self.platform.variant
            out["platform"] = plat
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


__all__ = ["NOWHERE", "Descriptor", "PlaceKwargs", "Where"]
