"""Images seen without pulling them: :func:`inspect`, :func:`list_tags`, :func:`resolve_digest`.

Every function here talks to the registry only (the cache is neither read nor written), verifies
what it reads (manifests against their digests, configs against the descriptor), and never
prints. Each takes the registry client's ``transport=`` and ``retry=`` keywords.

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

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

from tank import mediatypes
from tank.auth import TokenCache
from tank.auth.credentials import CredentialsArg, resolver
from tank.config import default_transport
from tank.digest import Digest
from tank.errors import (
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    UnsupportedManifest,
)
from tank.platform import Platform, is_attestation, select
from tank.reference import Reference
from tank.reference import parse as parse_reference
from tank.registry import ManifestHead, ManifestInfo, blob, manifest, manifest_head, tag_pages
from tank.retry import RetryPolicy
from tank.transport import Transport

#: a config blob larger than this is refused (real ones are a few kB; Docker's limit is 8 MB)
MAX_CONFIG_SIZE: Final = 8 * 1024 * 1024

_SCHEMA1_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

Kind = Literal["index", "image"]


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
    annotations: dict[str, str] = field(default_factory=dict)

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
    annotations: dict[str, str] = field(default_factory=dict)

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
class Descriptor:
    """A content descriptor: media type, digest and size (the config's, here)."""

    media_type: str
    digest: Digest
    size: int

    def to_json(self) -> dict[str, Any]:
        """The descriptor as JSON."""
        return {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}


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
    :ivar config_descriptor: an image's config descriptor; :ivar config: the config, parsed;
        :ivar config_raw: its bytes, verified.
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

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, parsed."""
        doc: dict[str, Any] = json.loads(self.raw)
        return doc

    def _run(self, key: str) -> Any:
        run = self.config.get("config")
        return run.get(key) if isinstance(run, dict) else None

    @property
    def created(self) -> str | None:
        """The config's ``created`` time (RFC 3339), if any."""
        value = self.config.get("created")
        return value if isinstance(value, str) else None

    @property
    def entrypoint(self) -> list[str] | None:
        """``config.Entrypoint``."""
        return _str_list(self._run("Entrypoint"))

    @property
    def cmd(self) -> list[str] | None:
        """``config.Cmd``."""
        return _str_list(self._run("Cmd"))

    @property
    def env(self) -> list[str]:
        """``config.Env`` (``NAME=value`` strings)."""
        return _str_list(self._run("Env")) or []

    @property
    def user(self) -> str | None:
        """``config.User`` (``None`` when empty: the runtime's default, root)."""
        value = self._run("User")
        return value if isinstance(value, str) and value else None

    @property
    def working_dir(self) -> str | None:
        """``config.WorkingDir`` (``None`` when empty)."""
        value = self._run("WorkingDir")
        return value if isinstance(value, str) and value else None

    @property
    def exposed_ports(self) -> list[str]:
        """``config.ExposedPorts``' keys, such as ``80/tcp``, sorted."""
        value = self._run("ExposedPorts")
        return sorted(str(k) for k in value) if isinstance(value, dict) else []

    @property
    def labels(self) -> dict[str, str]:
        """``config.Labels``."""
        value = self._run("Labels")
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    @property
    def total_size(self) -> int:
        """An image's config plus layers (compressed), or an index's images summed."""
        if self.kind == "index":
            return sum(e.image_size or 0 for e in self.platforms)
        config = self.config_descriptor.size if self.config_descriptor else 0
        return config + sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        """The ``tank inspect --json`` document (keys documented in the README)."""
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
                "config": self.config_descriptor.to_json() if self.config_descriptor else None,
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


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [value]
    return None


class _Place(TypedDict):
    registry: str
    repository: str
    reference: str


def _place(ref: Reference) -> _Place:
    return _Place(
        registry=ref.registry, repository=ref.repository, reference=ref.fetch_reference
    )


def _kind(info: ManifestInfo, ref: Reference) -> Kind:
    """``index`` or ``image``; raise for schema 1 and for what tank cannot read."""
    media_type, doc = info.media_type, info.json
    if media_type in _SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise UnsupportedManifest(
            "Docker schema 1 manifests are not supported (deprecated since 2017)", **_place(ref)
        )
    if mediatypes.is_index(media_type) or (media_type is None and "manifests" in doc):
        return "index"
    if media_type in mediatypes.IMAGE_MANIFEST_TYPES or (media_type is None and "config" in doc):
        return "image"
    raise UnsupportedManifest(f"unsupported manifest media type {media_type!r}", **_place(ref))


def _descriptor(doc: Any, where: str, ref: Reference) -> tuple[str, Digest, int]:
    """(media type, digest, size) of a descriptor, validated."""
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{where} is not a descriptor object", **_place(ref))
    media_type, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where} has no mediaType", **_place(ref))
    try:
        parsed = Digest.parse(digest if isinstance(digest, str) else "")
    except InvalidDigest as exc:
        raise InvalidManifest(f"{where}: {exc}", **_place(ref)) from None
    if type(size) is not int or size < 0:
        raise InvalidManifest(f"{where} has an invalid size {size!r}", **_place(ref))
    return media_type, parsed, size


def _annotations(doc: Any) -> dict[str, str]:
    value = doc.get("annotations") if isinstance(doc, dict) else None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _image_size(doc: dict[str, Any], ref: Reference) -> int | None:
    """Config plus layers of an image manifest; ``None`` for anything else."""
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        return None
    total = _descriptor(doc["config"], "the config descriptor", ref)[2]
    for i, layer in enumerate(doc["layers"], 1):
        total += _descriptor(layer, f"layer {i}", ref)[2]
    return total


class _Session:
    """One reference's registry conversation: the transport, the policy and the token."""

    def __init__(
        self,
        ref: Reference,
        transport: Transport | None,
        retry: RetryPolicy | None,
        credentials: CredentialsArg,
    ) -> None:
        self.ref = ref
        self.transport = transport or default_transport()
        self.retry = retry
        self.token: str | None = None
        self.credentials = resolver(credentials, ref.registry, ref.repository)
        self.token_cache = TokenCache()

    def manifest(self, reference: str) -> ManifestInfo:
        info, self.token = manifest(
            self.ref.registry, self.ref.repository, reference, self.token,
            transport=self.transport, retry=self.retry, credentials=self.credentials,
            token_cache=self.token_cache,
        )
        return info

    def head(self, reference: str) -> ManifestHead:
        head, self.token = manifest_head(
            self.ref.registry, self.ref.repository, reference, self.token,
            transport=self.transport, retry=self.retry, credentials=self.credentials,
            token_cache=self.token_cache,
        )
        return head

    def blob(self, digest: str, size: int) -> bytes:
        return blob(
            self.ref.registry, self.ref.repository, digest, self.token, size=size,
            transport=self.transport, retry=self.retry, credentials=self.credentials,
            token_cache=self.token_cache,
        )


def _parse_ref(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


def _parse_platform(platform: str | Platform | None) -> Platform | None:
    return Platform.parse(platform) if isinstance(platform, str) else platform


def inspect(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    children: bool = False,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
) -> Inspection:
    """Look at an image in its registry without pulling its layers.

    For an index (and no ``platform``): its entries, each with its platform, digest and size,
    and with ``children`` the image size each entry's manifest declares (one more ``GET`` each,
    and on Docker Hub each counts against the pull rate limit). For an
    image, or an index's entry for ``platform``: the manifest, the config (fetched and verified)
    and the layers, with the config history's ``created_by`` where it lines up.

    :param ref: an image reference (``alpine``, ``ghcr.io/o/r:tag``, ``name@sha256:…``).
    :param platform: ``os/arch[/variant]``: from an index, inspect that platform's image.
        Ignored for a single-platform image.
    :param children: read each index entry's manifest for :attr:`IndexEntry.image_size`.
    :param credentials: as for :func:`tank.pull` (``None``: anonymous).
    :raises PlatformNotFound: the index has no image for ``platform`` (its ``available`` lists
        what it offers).
    :raises NotFound: no such repository, tag or digest.
    :raises UnsupportedManifest: a Docker schema 1 manifest, or an unknown media type.
    """
    reference = _parse_ref(ref)
    want = _parse_platform(platform)
    session = _Session(reference, transport, retry, credentials)
    info = session.manifest(reference.fetch_reference)
    kind = _kind(info, reference)
    digest = info.content_digest()
    media_type = info.media_type or (
        mediatypes.OCI_INDEX if kind == "index" else mediatypes.OCI_MANIFEST
    )
    index_digest: Digest | None = None
    if kind == "index":
        if want is None:
            return Inspection(
                reference=reference, kind="index", digest=digest, media_type=media_type,
                size=len(info.raw), raw=info.raw,
                platforms=_entries(session, info.json, reference, children=children),
            )
        entry = select(info.json, want, **_place(reference))
        _, child_digest, child_size = _descriptor(entry, "the index entry", reference)
        index_digest = digest
        info = session.manifest(child_digest)
        if len(info.raw) != child_size:
            raise InvalidManifest(
                f"the index says manifest {child_digest} has {child_size} bytes, it has "
                f"{len(info.raw)}", **_place(reference),
            )
        if _kind(info, reference) != "image":
            raise UnsupportedManifest(
                f"the index entry {child_digest} is itself an index (nested indexes are not "
                "supported)", **_place(reference),
            )
        digest = child_digest
        media_type = info.media_type or entry.get("mediaType") or mediatypes.OCI_MANIFEST
    return _image(session, info, reference, digest, media_type, index_digest)


def _entries(
    session: _Session, index: dict[str, Any], ref: Reference, *, children: bool
) -> tuple[IndexEntry, ...]:
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidManifest("the index has no manifests list", **_place(ref))
    out = []
    for i, entry in enumerate(entries, 1):
        media_type, digest, size = _descriptor(entry, f"index entry {i}", ref)
        image_size: int | None = None
        if children:
            child = session.manifest(digest)
            if len(child.raw) != size:
                raise InvalidManifest(
                    f"the index says manifest {digest} has {size} bytes, it has "
                    f"{len(child.raw)}", **_place(ref),
                )
            image_size = _image_size(child.json, ref)
        out.append(
            IndexEntry(
                platform=Platform.from_json(entry.get("platform")),
                digest=digest,
                media_type=media_type,
                size=size,
                image_size=image_size,
                attestation=is_attestation(entry),
                annotations=_annotations(entry),
            )
        )
    return tuple(out)


def _image(
    session: _Session,
    info: ManifestInfo,
    ref: Reference,
    digest: Digest,
    media_type: str,
    index_digest: Digest | None,
) -> Inspection:
    doc = info.json
    config_type, config_digest, config_size = _descriptor(
        doc.get("config"), "the config descriptor", ref
    )
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidManifest("the image manifest has no layers list", **_place(ref))
    layers = [(_descriptor(d, f"layer {i}", ref), d) for i, d in enumerate(raw_layers, 1)]
    if config_size > MAX_CONFIG_SIZE:
        raise InvalidManifest(
            f"the config {config_digest} declares {config_size} bytes, over the "
            f"{MAX_CONFIG_SIZE}-byte limit", **_place(ref),
        )
    config_raw = session.blob(config_digest, config_size)
    try:
        config = json.loads(config_raw)
    except ValueError as exc:
        raise InvalidManifest(f"the image config is not JSON: {exc}", **_place(ref)) from None
    if not isinstance(config, dict):
        raise InvalidManifest("the image config is not a JSON object", **_place(ref))
    history = config.get("history")
    steps = (
        [h for h in history if isinstance(h, dict) and not h.get("empty_layer")]
        if isinstance(history, list) else []
    )
    lined_up = len(steps) == len(layers)
    return Inspection(
        reference=ref,
        kind="image",
        digest=digest,
        media_type=media_type,
        size=len(info.raw),
        raw=info.raw,
        index_digest=index_digest,
        platform=Platform.from_json(config),
        config_descriptor=Descriptor(config_type, config_digest, config_size),
        config=config,
        config_raw=config_raw,
        layers=tuple(
            LayerInfo(
                digest=d,
                media_type=mt,
                size=size,
                created_by=(
                    str(steps[i]["created_by"])
                    if lined_up and isinstance(steps[i].get("created_by"), str) else None
                ),
                annotations=_annotations(raw),
            )
            for i, ((mt, d, size), raw) in enumerate(layers)
        ),
    )


def resolve_digest(
    ref: str | Reference,
    *,
    platform: str | Platform | None = None,
    transport: Transport | None = None,
    retry: RetryPolicy | None = None,
    credentials: CredentialsArg = None,
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
    session = _Session(reference, transport, retry, credentials)
    if want is None:
        head = session.head(reference.fetch_reference)
        if head.digest is not None:
            if reference.digest is not None and head.digest != reference.digest:
                raise DigestMismatch(
                    reference.digest, head.digest, what="manifest (Docker-Content-Digest)",
                    registry=reference.registry, repository=reference.repository,
                )
            return head.digest
        return session.manifest(reference.fetch_reference).content_digest()
    info = session.manifest(reference.fetch_reference)
    if _kind(info, reference) == "image":
        return info.content_digest()
    entry = select(info.json, want, **_place(reference))
    return _descriptor(entry, "the index entry", reference)[1]


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
) -> list[str]:
    """Every tag of ``repository``, in the registry's order, following ``Link`` to the end.

    :param repository: ``alpine``, ``ghcr.io/owner/repo``, ``localhost:5000/team/app``.
    :param limit: stop after this many tags (no further page is requested).
    :param page_size: ask for pages of this many tags (``?n=``; some registries ignore it).
    :param credentials: as for :func:`tank.pull` (``None``: anonymous).
    :raises NotFound: no such repository.
    """
    ref = parse_repository(repository) if isinstance(repository, str) else repository
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    out: list[str] = []
    if limit == 0:
        return out
    pages = tag_pages(
        ref.registry, ref.repository, n=page_size, transport=transport, retry=retry,
        credentials=resolver(credentials, ref.registry, ref.repository),
    )
    for page, _ in pages:
        out.extend(page)
        if limit is not None and len(out) >= limit:
            pages.close()
            return out[:limit]
    return out


__all__ = [
    "MAX_CONFIG_SIZE",
    "Descriptor",
    "IndexEntry",
    "Inspection",
    "LayerInfo",
    "inspect",
    "list_tags",
    "parse_repository",
    "resolve_digest",
]
