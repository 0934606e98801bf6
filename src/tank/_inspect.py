"""Images seen without pulling them: :func:`inspect`, :func:`list_tags`, :func:`resolve_digest`.

Every function here talks to the registry only (the cache is neither read nor written), through a
:class:`~tank.Repository`; it verifies what it reads (manifests against their digests, configs
against the descriptor), parses it with the image model (:mod:`tank.image`: the same rules as a
pull), and never prints. Each takes ``transport=``, ``retry=`` and ``credentials=``.

::

    import tank

    info = tank.inspect("alpine")                       # an index: the platforms it offers
    [(str(p.platform), p.digest) for p in info.platforms]
    image = tank.inspect("alpine", platform="linux/arm64")
    image.digest, image.cmd, image.env, [layer.size for layer in image.layers]

    tank.resolve_digest("alpine")                       # one HEAD, no body
    tank.resolve_digest("alpine", platform="linux/arm64")   # the arm64 child's digest
    tank.list_tags("alpine")                            # every tag, following Link
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tank import _json, mediatypes
from tank._fetch import Endpoints, Source, open_sources
from tank.auth.credentials import CredentialsArg
from tank.config import Config, default_config, default_transport
from tank.digest import Digest
from tank.errors import DigestMismatch, InvalidManifest, InvalidReference, UnsupportedManifest
from tank.image import (
    MAX_CONFIG_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Where,
    parse_manifest,
)
from tank.platform import Platform, is_attestation
from tank.reference import Reference
from tank.reference import parse as parse_reference
from tank.registry import BlobSink, ManifestHead, ManifestInfo
from tank.retry import DEFAULT_RETRY, RetryPolicy
from tank.transport import Transport

Kind = Literal["index", "image"]

#: config media types described as image configs (an artifact's config is shown as a blob only)
_IMAGE_CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})


@dataclass(frozen=True)
class IndexEntry:
    """One entry of an index: a platform's manifest.

    :ivar platform: the entry's ``platform`` (``None`` when it has none).
    :ivar digest: the child manifest's digest; :ivar size: its size in bytes.
    :ivar image_size: the image's config plus layers (compressed, as downloaded), when the child
        manifest was read (``inspect(…, children=True)``); ``None`` otherwise.
    :ivar attestation: whether the entry is an attestation manifest (never a runnable image).
    """

    platform: Platform | None
    digest: Digest
    media_type: str
    size: int
    image_size: int | None
    attestation: bool
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``tank inspect --json`` prints it."""
        return {
            "platform": str(self.platform) if self.platform else None,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "imageSize": self.image_size,
            "attestation": self.attestation,
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class LayerInfo:
    """A layer of an image: its descriptor, and the config history's ``created_by`` for it.

    ``created_by`` is set only where the history lines up with the layers (its entries without
    ``empty_layer`` are exactly as many as the layers); otherwise ``None``.
    """

    digest: Digest
    media_type: str
    size: int
    created_by: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The layer as ``tank inspect --json`` prints it."""
        return {
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "createdBy": self.created_by,
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class Inspection:
    """What :func:`inspect` found: an index with its platforms, or an image with its config.

    :ivar reference: the reference as parsed.
    :ivar kind: ``"index"`` (see :attr:`platforms`) or ``"image"`` (see :attr:`layers` and the
        config properties).
    :ivar digest: the manifest inspected: the index's, or the image's (the chosen platform's
        child when ``platform`` picked one from an index).
    :ivar media_type: its media type; :ivar size: its size in bytes.
    :ivar raw: its bytes exactly as the registry served them (they hash to :attr:`digest`).
    :ivar index_digest: the index the image was chosen from, else ``None``.
    :ivar platforms: an index's entries, attestations included (flagged).
    :ivar platform: an image's platform, from its config.
    :ivar config_descriptor: an image's config descriptor; :ivar config: the config as JSON;
        :ivar config_raw: its bytes, verified; :ivar image_config: the config parsed
        (:class:`~tank.image.ImageConfig`), ``None`` for an artifact's config.
    :ivar layers: an image's layers, in order.
    """

    reference: Reference
    kind: Kind
    digest: Digest
    media_type: str
    size: int
    raw: bytes
    index_digest: Digest | None = None
    platforms: tuple[IndexEntry, ...] = ()
    platform: Platform | None = None
    config_descriptor: Descriptor | None = None
    config: dict[str, Any] = field(default_factory=dict)
    config_raw: bytes | None = None
    layers: tuple[LayerInfo, ...] = ()
    image_config: ImageConfig | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, parsed."""
        doc: dict[str, Any] = _json.loads(self.raw)
        return doc

    @property
    def created(self) -> str | None:
        """The config's ``created`` time (RFC 3339), if any."""
        return self.image_config.created if self.image_config else None

    @property
    def entrypoint(self) -> list[str] | None:
        """``config.Entrypoint``."""
        value = self.image_config.entrypoint if self.image_config else None
        return list(value) if value is not None else None

    @property
    def cmd(self) -> list[str] | None:
        """``config.Cmd``."""
        value = self.image_config.cmd if self.image_config else None
        return list(value) if value is not None else None

    @property
    def env(self) -> list[str]:
        """``config.Env`` (``NAME=value`` strings)."""
        return list(self.image_config.env) if self.image_config else []

    @property
    def user(self) -> str | None:
        """``config.User`` (``None`` when empty: the runtime's default, root)."""
        return (self.image_config.user or None) if self.image_config else None

    @property
    def working_dir(self) -> str | None:
        """``config.WorkingDir`` (``None`` when empty)."""
        return (self.image_config.working_dir or None) if self.image_config else None

    @property
    def exposed_ports(self) -> list[str]:
        """``config.ExposedPorts``' keys, such as ``80/tcp``, sorted."""
        return sorted(self.image_config.exposed_ports) if self.image_config else []

    @property
    def labels(self) -> dict[str, str]:
        """``config.Labels``."""
        return dict(self.image_config.labels) if self.image_config else {}

    @property
    def total_size(self) -> int:
        """An image's config plus layers (compressed), or an index's images summed."""
        if self.kind == "index":
            return sum(e.image_size or 0 for e in self.platforms)
        config = self.config_descriptor.size if self.config_descriptor else 0
        return config + sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        """The ``tank inspect --json`` document (keys documented in docs/commands.md)."""
        out: dict[str, Any] = {
            "reference": str(self.reference),
            "kind": self.kind,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.kind == "index":
            out["platforms"] = [e.to_json() for e in self.platforms]
            return out
        out.update(
            {
                "indexDigest": str(self.index_digest) if self.index_digest else None,
                "platform": str(self.platform) if self.platform else None,
                "created": self.created,
                "config": (
                    _plain(self.config_descriptor) if self.config_descriptor else None
                ),
                "entrypoint": self.entrypoint,
                "cmd": self.cmd,
                "env": self.env,
                "user": self.user,
                "workingDir": self.working_dir,
                "exposedPorts": self.exposed_ports,
                "labels": self.labels,
                "layers": [layer.to_json() for layer in self.layers],
                "totalSize": self.total_size,
            }
        )
        return out


def _plain(d: Descriptor) -> dict[str, Any]:
    return {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}


def _parse_ref(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


def _parse_platform(platform: str | Platform | None) -> Platform | None:
    return Platform.parse(platform) if isinstance(platform, str) else platform


class Reader:
    """The registry conversation of one read command: the endpoints the configuration gives the
    reference (mirrors first, the registry last; ``blocked`` refused before any request), the
    first that answers serving the rest, as a pull does."""

    def __init__(
        self,
        reference: Reference,
        transport: Transport | None,
        retry: RetryPolicy | None,
        credentials: CredentialsArg,
        config: Config | None,
    ) -> None:
        cfg = config if config is not None else default_config()
        policy = retry if retry is not None else DEFAULT_RETRY
        if transport is None:
            transport = config.transport() if config is not None else default_transport()
        sources = open_sources(reference, cfg.endpoints(reference), credentials, transport, policy)
        self.endpoints = Endpoints(sources, policy)
        self.place = Where(reference.registry, reference.repository, reference.fetch_reference)

    def manifest(self, reference: str, *, top: bool = False) -> Manifest | Index:
        """A manifest, verified and parsed by the image model."""

        def one(src: Source, policy: RetryPolicy) -> Manifest | Index:
            info = src.repo.with_retry(policy).manifest(reference)
            return parse_manifest(info.raw, info.media_type, digest=info.digest, place=self.place)

        return self.endpoints.on(one, top=top)

    def head(self, reference: str) -> ManifestHead:
        """``HEAD`` a manifest."""
        return self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).manifest_head(reference), top=True
        )

    def info(self, reference: str) -> ManifestInfo:
        """A manifest as served (its digest always set)."""
        return self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).manifest(reference), top=False
        )

    def blob(self, digest: Digest, size: int) -> bytes:
        """A small blob, verified."""
        return self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).blob(digest, size=size), top=False
        )

    def fetch_blob(self, digest: Digest, sink: BlobSink) -> None:
        """A blob streamed into ``sink``, resumed where it breaks off, verified."""
        self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).fetch_blob(digest, sink), top=True
        )

    def download_blob(self, digest: Digest, dest: str) -> None:
        """A blob into the file ``dest``, which appears only once verified."""
        self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).download_blob(digest, dest),
            top=True,
        )

    def tags(self, *, n: int | None, limit: int | None) -> list[str]:
        """The repository's tags, from the first endpoint that lists them."""
        return self.endpoints.on(
            lambda src, policy: src.repo.with_retry(policy).tags(n=n, limit=limit), top=True
        )


def inspect(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    children: bool = False,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
) -> Inspection:
    """Look at an image in its registry without pulling its layers.

    For an index (and no ``platform``): its entries, each with its platform, digest and size,
    and with ``children`` the image size each entry's manifest declares (one more ``GET`` each,
    and on Docker Hub each counts against the pull rate limit). For an image, or an index's entry
    for ``platform``: the manifest, the config (fetched and verified) and the layers, with the
    config history's ``created_by`` where it lines up.

    :param ref: an image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:…``).
    :param platform: ``os/arch[/variant]``: from an index, inspect that platform's image.
        Ignored for a single-platform image.
    :param children: read each index entry's manifest for :attr:`IndexEntry.image_size`.
    :param credentials: as for :func:`tank.pull` (``None``: anonymous).
    :param config: mirrors, blocked and insecure registries (as for :func:`tank.pull`; default
        the configuration files).
    :raises PlatformNotFound: the index has no image for ``platform`` (its ``available`` lists
        what it offers).
    :raises NotFound: no such repository, tag or digest.
    :raises UnsupportedManifest: a Docker schema 1 manifest, or an unknown media type.
    """
    reference = _parse_ref(ref)
    want = _parse_platform(platform)
    reader = Reader(reference, transport, retry, credentials, config)
    place = reader.place
    doc = reader.manifest(reference.fetch_reference, top=True)
    if isinstance(doc, Manifest):
        return _image(reader, doc, reference, None, place)
    if want is None:
        return Inspection(
            reference=reference, kind="index", digest=doc.digest, media_type=doc.media_type,
            size=doc.size, raw=doc.raw,
            platforms=_entries(reader, doc, children=children, place=place),
        )
    entry = doc.select(want, place=place)
    child = reader.manifest(entry.digest)
    _check_size(entry, child, place)
    if not isinstance(child, Manifest):
        raise UnsupportedManifest(
            f"the index entry {entry.digest} is itself an index (nested indexes are not "
            "supported)", **place.kwargs(),
        )
    return _image(reader, child, reference, doc.digest, place)


def _check_size(entry: Descriptor, child: Manifest | Index, place: Where) -> None:
    if child.size != entry.size:
        raise InvalidManifest(
            f"the index says manifest {entry.digest} has {entry.size} bytes, it has "
            f"{child.size}", **place.kwargs(),
        )


def _entries(
    reader: Reader, index: Index, *, children: bool, place: Where
) -> tuple[IndexEntry, ...]:
    out = []
    for entry in index.manifests:
        image_size: int | None = None
        if children:
            child = reader.manifest(entry.digest)
            _check_size(entry, child, place)
            if isinstance(child, Manifest):
                image_size = child.config.size + sum(layer.size for layer in child.layers)
        out.append(
            IndexEntry(
                platform=entry.platform,
                digest=entry.digest,
                media_type=entry.media_type,
                size=entry.size,
                image_size=image_size,
                attestation=is_attestation(entry.json),
                annotations=dict(entry.annotations),
            )
        )
    return tuple(out)


def _image(
    reader: Reader,
    doc: Manifest,
    ref: Reference,
    index_digest: Digest | None,
    place: Where,
) -> Inspection:
    config = doc.config
    if config.size > MAX_CONFIG_SIZE:
        raise InvalidManifest(
            f"the config {config.digest} declares {config.size} bytes, over the "
            f"{MAX_CONFIG_SIZE}-byte limit", **place.kwargs(),
        )
    config_raw = reader.blob(config.digest, config.size)
    config_doc: dict[str, Any] = {}
    image_config: ImageConfig | None = None
    if config.media_type in _IMAGE_CONFIG_TYPES:
        config_doc = _json.loads_object(
            config_raw, what="the image config",
            error=lambda message: InvalidManifest(message, **place.kwargs()),
        )
        image_config = ImageConfig.from_json(config_doc, require_rootfs=False)
    created_by = (
        image_config.created_by(len(doc.layers)) if image_config else (None,) * len(doc.layers)
    )
    return Inspection(
        reference=ref,
        kind="image",
        digest=doc.digest,
        media_type=doc.media_type,
        size=doc.size,
        raw=doc.raw,
        index_digest=index_digest,
        platform=image_config.platform if image_config else None,
        config_descriptor=config,
        config=config_doc,
        config_raw=config_raw,
        image_config=image_config,
        layers=tuple(
            LayerInfo(
                digest=layer.digest, media_type=layer.media_type, size=layer.size,
                created_by=by, annotations=dict(layer.annotations),
            )
            for layer, by in zip(doc.layers, created_by, strict=True)
        ),
    )


def resolve_digest(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
) -> Digest:
    """The digest ``ref`` names: the index's (or image's), or with ``platform`` the child's.

    Without ``platform`` this is one ``HEAD`` when the registry answers with
    ``Docker-Content-Digest`` (no body is downloaded, and Docker Hub does not count it against
    the rate limit); otherwise the manifest is fetched and hashed. With ``platform`` the
    manifest is fetched (one ``GET``): from an index, the entry for ``platform``; a
    single-platform image is its own answer.

    :raises DigestMismatch: the registry's digest for a digest reference is another one.
    :raises PlatformNotFound: the index has no image for ``platform``.
    """
    reference = _parse_ref(ref)
    want = _parse_platform(platform)
    reader = Reader(reference, transport, retry, credentials, config)
    place = reader.place
    if want is None:
        head = reader.head(reference.fetch_reference)
        if head.digest is not None:
            if reference.digest is not None and head.digest != reference.digest:
                raise DigestMismatch(
                    reference.digest, head.digest, what="manifest (Docker-Content-Digest)",
                    registry=reference.registry, repository=reference.repository,
                )
            return head.digest
        info = reader.info(reference.fetch_reference)
        assert info.digest is not None
        return info.digest
    doc = reader.manifest(reference.fetch_reference, top=True)
    if isinstance(doc, Manifest):
        return doc.digest
    return doc.select(want, place=place).digest


def parse_repository(text: str) -> Reference:
    """A repository name (``alpine``, ``ghcr.io/o/r``), normalised; a tag or digest is refused."""
    if "@" in text or ":" in text.rsplit("/", 1)[-1]:
        raise InvalidReference(text, "name a repository, without a tag or digest")
    return parse_reference(text)


def list_tags(
    repository: str | Reference,
    *,
    limit: int | None = None,
    page_size: int | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
    config: Config | None = None,
) -> list[str]:
    """Every tag of ``repository``, in the registry's order, following ``Link`` to the end.

    :param repository: ``alpine``, ``ghcr.io/owner/repo``, ``localhost:5000/team/app``.
    :param limit: stop after this many tags (no further page is requested).
    :param page_size: ask for pages of this many tags (``?n=``; some registries ignore it).
    :param credentials: as for :func:`tank.pull` (``None``: anonymous).
    :raises NotFound: no such repository.
    """
    ref = parse_repository(repository) if isinstance(repository, str) else repository
    return Reader(ref, transport, retry, credentials, config).tags(n=page_size, limit=limit)


__all__ = [
    "MAX_CONFIG_SIZE",
    "IndexEntry",
    "Inspection",
    "LayerInfo",
    "Reader",
    "inspect",
    "list_tags",
    "parse_repository",
    "resolve_digest",
]
