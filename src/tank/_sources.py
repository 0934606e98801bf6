"""Where a copy reads an image: a registry, an OCI layout, an OCI archive, or a docker-archive.

:func:`parse_location` reads what a user writes (skopeo's transports): ``docker://REF`` or a bare
reference, ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:REF]``. An
:class:`ImageSource` then gives the copy the same three things whatever it reads from: the top
manifest (:meth:`~ImageSource.top`), an index entry's manifest (:meth:`~ImageSource.child`), and
each blob as a file (:meth:`~ImageSource.blob_file`), said to be verified or not.

Invariants:

- Everything read is verified: a manifest against its digest (and the size its descriptor
  gives) before it is parsed, through the image model's rules (:mod:`tank.image`); a blob read
  from the registry or an archive goes through the cache (verified at commit); a blob read from a
  layout is handed out unverified, and whoever reads it hashes it (an upload does).
- A layout or an archive is untrusted input: files are opened without following a symlink at
  their own name, only names built from validated digests are opened, the JSON files are capped,
  and archives are read with tank's own tar reader (:mod:`tank.layers.tar`), streaming.
- A docker-archive is pushed as skopeo pushes it: each layer gzip-compressed (deterministically:
  no name, mtime 0, so a second push finds every blob present), the config byte for byte (its
  ``diff_ids`` still match), a Docker v2 schema 2 manifest. Each layer's uncompressed bytes are
  checked against its ``diff_id``.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tank import _json, mediatypes
from tank._fetch import Fetcher
from tank._fs import atomic_file
from tank.digest import Digest, Hasher
from tank.errors import (
    ArchiveError,
    DigestMismatch,
    InvalidReference,
    LayoutError,
    SizeMismatch,
    UnsupportedManifest,
)
from tank.image import Descriptor, Index, Manifest, Where, parse_manifest
from tank.image.manifest import MAX_MANIFEST_SIZE
from tank.reference import Reference
from tank.reference import parse as parse_reference
from tank.store import Store

if TYPE_CHECKING:
    from tank.layers.tar import LayerReader

#: the annotation a layout's index.json names its images by (tank.outputs.layout's)
REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"
#: a layout's ``index.json`` or an archive's ``manifest.json`` larger than this is refused
MAX_INDEX: Final = 16 * 1024 * 1024
#: an archive's JSON files (configs, manifest.json) are kept in memory up to this size
MAX_JSON_MEMBER: Final = 16 * 1024 * 1024
_READ: Final = 1024 * 1024
_NOFOLLOW: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC

Document = Manifest | Index


# -- locations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """One side of a copy, as written: ``kind`` is ``registry``, ``oci``, ``oci-archive`` or
    ``docker-archive``; ``reference`` the parsed registry reference; ``path`` and ``name`` (the
    tag or reference inside a layout or archive, ``None`` when none was written) the rest."""

    kind: str
    text: str
    reference: Reference | None = None
    path: Path | None = None
    name: str | None = None

    @property
    def is_registry(self) -> bool:
        """Whether this names an image in a registry."""
        return self.kind == "registry"

    def __str__(self) -> str:
        return self.text


def parse_location(text: str) -> Location:
    """Parse ``docker://REF`` (or a bare REF), ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or
    ``docker-archive:FILE[:REF]``; :class:`~tank.errors.InvalidReference` when it is none."""
    if not isinstance(text, str) or not text:
        raise InvalidReference(str(text), "an image location is empty")
    if text.startswith("docker://"):
        return Location("registry", text, reference=parse_reference(text[len("docker://"):]))
    from tank.outputs.layout import LayoutTarget  # lazily: a registry copy needs none of it

    if text.startswith("oci:"):
        target = LayoutTarget.parse(text)
        return Location("oci", text, path=target.path, name=target.tag)
    if text.startswith("oci-archive:"):
        target = LayoutTarget.parse("oci:" + text[len("oci-archive:"):])
        return Location("oci-archive", text, path=target.path, name=target.tag)
    if text.startswith("docker-archive:"):
        from tank.outputs.archive import ArchiveTarget

        archive = ArchiveTarget.parse(text)
        return Location("docker-archive", text, path=archive.path, name=archive.ref)
    if text.startswith(("dir:", "containers-storage:", "docker-daemon:")):
        raise InvalidReference(text, "tank copies registries (docker://), oci:, oci-archive: "
                                     "and docker-archive:")
    return Location("registry", text, reference=parse_reference(text))


# -- sources -----------------------------------------------------------------------------------


class ImageSource:
    """What a copy reads (see the module). Subclasses fill in the three methods."""

    #: ``(registry, repository)`` when the source is a registry's repository (mounts, memory)
    remote: tuple[str, str] | None = None
    #: the tag the image was read by, when there is one (a default name for the destination)
    tag: str | None = None

    def __init__(self, store: Store, place: Where) -> None:
        self.store = store
        self.place = place

    def top(self) -> Document:
        """The manifest or index the location names."""
        raise NotImplementedError

    def child(self, entry: Descriptor) -> Manifest:
        """The image manifest an index entry names (a nested index is refused)."""
        doc = self._document(entry)
        if not isinstance(doc, Manifest):
            raise UnsupportedManifest(
                f"the index entry {entry.digest} is itself an index (nested indexes are not "
                "supported)", **self.place.kwargs(),
            )
        return doc

    def _document(self, entry: Descriptor) -> Document:
        raise NotImplementedError

    def blob_file(self, desc: Descriptor, what: str) -> tuple[Path, bool]:
        """A file holding the blob, and whether it is verified (a committed cache blob)."""
        return self.to_cache(desc, what), True

    def to_cache(self, desc: Descriptor, what: str) -> Path:
        """The blob committed to the cache (verified); its path there."""
        raise NotImplementedError


class RegistrySource(ImageSource):
    """A registry's repository, through a :class:`~tank._fetch.Fetcher` (mirrors, the cache,
    resumed downloads)."""

    def __init__(self, fetcher: Fetcher) -> None:
        super().__init__(fetcher.store, fetcher.place)
        self.fetcher = fetcher
        ref = fetcher.ref
        self.remote = (fetcher.upstream.repo.registry, fetcher.upstream.repo.name)
        self.tag = ref.tag

    def top(self) -> Document:
        return self.fetcher.resolve_top()

    def child(self, entry: Descriptor) -> Manifest:
        return self.fetcher.child(entry)

    def to_cache(self, desc: Descriptor, what: str) -> Path:
        self.fetcher.fetch_blob(desc, what)
        return self.store.blob_path(desc.digest)


def _read_regular(path: Path, cap: int, what: str, error: type[Exception]) -> bytes:
    """A regular file (never through a symlink at its name), at most ``cap`` bytes."""
    try:
        fd = os.open(path, _NOFOLLOW)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: {what} is not a regular file")
        data = b""
        while len(data) <= cap and (chunk := os.read(fd, _READ)):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > cap:
        raise error(f"{path}: {what} is larger than {cap} bytes")
    return data


def _entries(raw: bytes, what: str, error: type[Exception]) -> list[Descriptor]:
    """The entries of an ``index.json`` (``what`` names it in errors)."""
    index = _json.loads_object(raw, what=what, error=error)
    raw_entries = index.get("manifests")
    if not isinstance(raw_entries, list):
        raise error(f"{what}: 'manifests' is not a list")
    return [Descriptor.from_json(e, where="an index.json entry") for e in raw_entries]


def _pick(entries: list[Descriptor], name: str | None, where: str, error: type[Exception]
          ) -> Descriptor:
    """The index.json entry named ``name`` (the only entry when no name is given)."""
    names = [e.annotations.get(REF_NAME_ANNOTATION) for e in entries]
    if name is None:
        if len(entries) == 1:
            return entries[0]
        shown = ", ".join(sorted(n for n in names if n)) or "none named"
        raise error(f"{where} holds {len(entries)} images ({shown}): name one ({where}:NAME)")
    for entry, entry_name in zip(entries, names, strict=True):
        if entry_name == name:
            return entry
    shown = ", ".join(sorted(n for n in names if n)) or "none named"
    raise error(f"{where} has no image named {name!r} (it has: {shown})")


class LayoutSource(ImageSource):
    """An OCI image layout (``oci:DIR[:TAG]``); blobs read in place, unverified (an upload
    hashes them; a local destination imports them into the cache, verified)."""

    def __init__(self, store: Store, root: Path, name: str | None) -> None:
        super().__init__(store, Where(None, str(root), name))
        self.root = root
        self.tag = name
        oci_layout = _read_regular(root / "oci-layout", 64 * 1024, "oci-layout", LayoutError)
        version = _json.loads_object(oci_layout, what=f"{root}/oci-layout",
                                     error=LayoutError).get("imageLayoutVersion")
        if not isinstance(version, str) or version.split(".")[0] != "1":
            raise LayoutError(f"{root}: unsupported imageLayoutVersion {version!r}")
        self.entries = _entries(
            _read_regular(root / "index.json", MAX_INDEX, "index.json", LayoutError),
            f"{root}/index.json", LayoutError,
        )
        self.entry = _pick(self.entries, name, f"the layout {root}", LayoutError)

    def _blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def _document(self, entry: Descriptor) -> Document:
        if entry.size > MAX_MANIFEST_SIZE:
            raise LayoutError(f"{self.root}: manifest {entry.digest} is over the size limit")
        raw = _read_regular(self._blob_path(entry.digest), entry.size, f"manifest "
                            f"{entry.digest}", LayoutError)
        _check(raw, entry)
        return parse_manifest(raw, entry.media_type, digest=entry.digest, place=self.place)

    def top(self) -> Document:
        return self._document(self.entry)

    def blob_file(self, desc: Descriptor, what: str) -> tuple[Path, bool]:
        path = self._blob_path(desc.digest)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise LayoutError(f"{path}: the {what} {desc.digest} is missing from the layout "
                              f"({exc.strerror})") from None
        if not stat.S_ISREG(st.st_mode):
            raise LayoutError(f"{path}: the {what} {desc.digest} is not a regular file")
        if st.st_size != desc.size:
            raise SizeMismatch(desc.size, st.st_size, what=what, digest=desc.digest)
        return path, False

    def to_cache(self, desc: Descriptor, what: str) -> Path:
        path, _ = self.blob_file(desc, what)
        return _import_file(self.store, path, desc)


def _check(raw: bytes, entry: Descriptor) -> None:
    if len(raw) != entry.size:
        raise SizeMismatch(entry.size, len(raw), what="manifest", digest=entry.digest)
    hasher = entry.digest.hasher()
    hasher.update(raw)
    hasher.verify(entry.digest, what="manifest")


def _import_file(store: Store, path: Path, desc: Descriptor) -> Path:
    """Copy the file at ``path`` into the cache as ``desc``'s blob, verified."""
    with store.writer(desc.digest, desc.size, resume=False) as writer:
        if writer is not None:
            hasher = desc.digest.hasher()
            fd = os.open(path, _NOFOLLOW)
            try:
                while chunk := os.read(fd, _READ):
                    hasher.update(chunk)
                    writer.write(chunk)
            finally:
                os.close(fd)
            writer.commit(hasher)
    return store.blob_path(desc.digest)


# -- archives ----------------------------------------------------------------------------------


def _members(path: Path, on_file: Callable[[str, LayerReader, int], None],
             on_link: Callable[[str, str], None] | None = None) -> None:
    """Walk the tar at ``path``: ``on_file(name, reader, size)`` for each regular file (its
    name normalised, ``a/./b`` → ``a/b``), ``on_link(name, target)`` for symlinks."""
    from tank.layers.tar import REGULAR_TYPES, LayerReader, split_name

    try:
        f = path.open("rb")
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot open the archive: {exc.strerror}") from None
    with f:
        reader = LayerReader(lambda: f.read(_READ), digest=f"archive {path.name}",
                             source=str(path), max_layer_bytes=1 << 46, max_entries=1_000_000)
        for entry in reader:
            name = "/".join(split_name(entry.name, "archive member"))
            if entry.kind in REGULAR_TYPES:
                on_file(name, reader, entry.size)
            elif entry.kind == b"2" and on_link is not None:
                on_link(name, entry.linkname)


def _small(reader: LayerReader, size: int, name: str, archive: Path) -> bytes:
    if size > MAX_JSON_MEMBER:
        raise ArchiveError(f"{archive}: {name} is larger than {MAX_JSON_MEMBER} bytes")
    return b"".join(reader.chunks())


class OciArchiveSource(LayoutSource):
    """An OCI archive (``oci-archive:FILE[:TAG]``: an OCI layout in one tar, as skopeo writes
    it). Read once, streaming: every blob goes into the cache, verified by its name."""

    def __init__(self, store: Store, archive: Path, name: str | None) -> None:
        ImageSource.__init__(self, store, Where(None, str(archive), name))
        self.root = archive
        self.tag = name
        files: dict[str, bytes] = {}

        def on_file(member: str, reader: LayerReader, size: int) -> None:
            parts = member.split("/")
            if member in ("index.json", "oci-layout"):
                files[member] = _small(reader, size, member, archive)
            elif len(parts) == 3 and parts[0] == "blobs":
                try:
                    digest = Digest.parse(f"{parts[1]}:{parts[2]}")
                except ValueError:
                    return
                with store.writer(digest, size, resume=False) as writer:
                    if writer is None:
                        return
                    hasher = digest.hasher()
                    for chunk in reader.chunks():
                        hasher.update(chunk)
                        writer.write(chunk)
                    writer.commit(hasher)

        _members(archive, on_file)
        if "index.json" not in files:
            raise ArchiveError(f"{archive}: not an OCI archive (no index.json)")
        self.entries = _entries(files["index.json"], f"{archive}:index.json", ArchiveError)
        self.entry = _pick(self.entries, name, f"the archive {archive}", ArchiveError)

    def _document(self, entry: Descriptor) -> Document:
        raw = self.store.read_blob(entry.digest, max_size=MAX_MANIFEST_SIZE)
        _check(raw, entry)
        return parse_manifest(raw, entry.media_type, digest=entry.digest, place=self.place)

    def blob_file(self, desc: Descriptor, what: str) -> tuple[Path, bool]:
        return self.to_cache(desc, what), True

    def to_cache(self, desc: Descriptor, what: str) -> Path:
        if not self.store.has_blob(desc.digest, desc.size):
            raise ArchiveError(f"{self.root}: the {what} {desc.digest} is not in the archive")
        return self.store.blob_path(desc.digest)


@dataclass
class _Layer:
    diff_id: Digest
    digest: Digest
    size: int


class DockerArchiveSource(ImageSource):
    """A docker-archive (``docker save``'s tar; ``docker-archive:FILE[:REF]``), pushed as skopeo
    pushes it (see the module). One pass over the tar: the JSON files are kept (capped), every
    other file is gzip-compressed into the cache as it is read, and hashed uncompressed."""

    def __init__(self, store: Store, archive: Path, name: str | None) -> None:
        super().__init__(store, Where(None, str(archive), name))
        self.archive = archive
        files: dict[str, bytes] = {}
        layers: dict[str, _Layer] = {}
        links: dict[str, str] = {}

        def on_file(member: str, reader: LayerReader, size: int) -> None:
            if member.endswith(".json") or member == "repositories":
                files[member] = _small(reader, size, member, archive)
            else:
                layers[member] = _compress_into(store, reader)

        def on_link(member: str, target: str) -> None:
            links[member] = target

        _members(archive, on_file, on_link)
        if "manifest.json" not in files:
            raise ArchiveError(f"{archive}: not a docker-archive (no manifest.json)")
        self._build(files, layers, links, name)

    def _resolve(self, member: str, links: dict[str, str]) -> str:
        from tank.layers.tar import split_name

        for _ in range(16):
            target = links.get(member)
            if target is None:
                return member
            base = member.rsplit("/", 1)[0] if "/" in member else ""
            joined = f"{base}/{target}" if base and not target.startswith("/") else target
            member = "/".join(split_name(joined, "archive link"))
        raise ArchiveError(f"{self.archive}: links in the archive do not end ({member})")

    def _build(self, files: dict[str, bytes], layers: dict[str, _Layer],
               links: dict[str, str], name: str | None) -> None:
        archive = self.archive
        try:
            listing = _json.loads(files["manifest.json"])
        except ValueError as exc:
            raise ArchiveError(f"{archive}: manifest.json is not valid JSON: {exc}") from None
        if not isinstance(listing, list) or not listing or not all(
            isinstance(i, dict) for i in listing
        ):
            raise ArchiveError(f"{archive}: manifest.json is not a list of images")
        chosen = _choose_image(listing, name, archive)
        config_name = self._resolve(str(chosen.get("Config", "")), links)
        config_raw = files.get(config_name)
        if config_raw is None:
            raise ArchiveError(f"{archive}: the config {config_name!r} is not in the archive")
        config = _json.loads_object(config_raw, what=f"{archive}:{config_name}",
                                    error=ArchiveError)
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        names = chosen.get("Layers")
        if not isinstance(names, list) or not isinstance(diff_ids, list) or len(names) != len(
            diff_ids
        ):
            raise ArchiveError(f"{archive}: the config's rootfs.diff_ids do not list one entry "
                               "per layer of manifest.json")
        descriptors = []
        for layer_name, diff_id in zip(names, diff_ids, strict=True):
            member = self._resolve(str(layer_name), links)
            layer = layers.get(member)
            if layer is None:
                raise ArchiveError(f"{archive}: the layer {member!r} is not in the archive")
            if str(layer.diff_id) != diff_id:
                raise DigestMismatch(str(diff_id), layer.diff_id,
                                     what=f"layer {member} (its diff_id)")
            descriptors.append({"mediaType": mediatypes.DOCKER_LAYER_GZIP,
                                "size": layer.size, "digest": str(layer.digest)})
        config_digest = Hasher()
        config_digest.update(config_raw)
        self.store.put_bytes(config_digest.digest(), config_raw)
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": {"mediaType": mediatypes.DOCKER_CONFIG, "size": len(config_raw),
                       "digest": str(config_digest.digest())},
            "layers": descriptors,
        }
        raw = json.dumps(doc, indent=3).encode()
        digest = Hasher()
        digest.update(raw)
        self.store.put_bytes(digest.digest(), raw)
        self.manifest = parse_manifest(raw, mediatypes.DOCKER_MANIFEST, digest=digest.digest(),
                                       place=self.place)
        tags = chosen.get("RepoTags")
        first = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None
        self.tag = parse_reference(first).tag if first else None

    def top(self) -> Document:
        return self.manifest

    def _document(self, entry: Descriptor) -> Document:
        raise UnsupportedManifest("a docker-archive holds no index", **self.place.kwargs())

    def to_cache(self, desc: Descriptor, what: str) -> Path:
        return self.store.blob_path(desc.digest)


def _choose_image(listing: list[dict[str, Any]], name: str | None, archive: Path
                  ) -> dict[str, Any]:
    """The manifest.json entry whose ``RepoTags`` has ``name`` (normalised), else the only one."""
    if name is None:
        if len(listing) > 1:
            raise ArchiveError(f"{archive} holds {len(listing)} images: name one "
                               "(docker-archive:FILE:REF)")
        return listing[0]
    want = parse_reference(name)
    for item in listing:
        for tag in item.get("RepoTags") or []:
            try:
                ref = parse_reference(str(tag))
            except InvalidReference:
                continue
            if (ref.registry, ref.repository, ref.tag) == (want.registry, want.repository,
                                                          want.tag or "latest"):
                return item
    raise ArchiveError(f"{archive} has no image tagged {name!r}")


def _compress_into(store: Store, reader: LayerReader) -> _Layer:
    """Gzip a member's bytes (deterministically) into the cache; its diff_id, digest, size."""
    store.private_dir("ingest")
    spool = store.root / "ingest" / f"archive-{os.getpid()}-{id(reader)}.gz"
    diff = Hasher()
    packed = Hasher()
    size = 0
    with atomic_file(spool, durable=False) as out:
        # a gzip member with no name and mtime 0: the same bytes for the same tar, every time
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        crc, length = 0, 0
        out.write(header)
        packed.update(header)
        size += len(header)
        for chunk in reader.chunks():
            diff.update(chunk)
            crc = zlib.crc32(chunk, crc)
            length += len(chunk)
            data = comp.compress(chunk)
            if data:
                out.write(data)
                packed.update(data)
                size += len(data)
        tail = comp.flush() + crc.to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(
            4, "little")
        out.write(tail)
        packed.update(tail)
        size += len(tail)
    digest = packed.digest()
    try:
        _import_file(store, spool, Descriptor(mediatypes.DOCKER_LAYER_GZIP, digest, size))
    finally:
        spool.unlink(missing_ok=True)
    return _Layer(diff.digest(), digest, size)


def open_source(location: Location, store: Store, fetcher: Fetcher | None = None
                ) -> ImageSource:
    """The :class:`ImageSource` for a local ``location`` (a registry's needs ``fetcher``)."""
    if location.is_registry:
        assert fetcher is not None
        return RegistrySource(fetcher)
    assert location.path is not None
    if location.kind == "oci":
        return LayoutSource(store, location.path, location.name)
    if location.kind == "oci-archive":
        return OciArchiveSource(store, location.path, location.name)
    return DockerArchiveSource(store, location.path, location.name)


__all__ = [
    "DockerArchiveSource",
    "ImageSource",
    "LayoutSource",
    "Location",
    "OciArchiveSource",
    "RegistrySource",
    "open_source",
    "parse_location",
]
