"""Write pulled images as docker-archive tars: what ``docker load`` and skopeo's
``docker-archive:`` read.

The archive is the ``docker save`` format with ``manifest.json`` (Docker 1.10 through 24)::

    manifest.json               [{"Config": "<config-hex>.json",
                                  "RepoTags": ["alpine:latest"],
                                  "Layers": ["<diff-id-hex>/layer.tar", …]}]
    repositories                {"alpine": {"latest": "<diff-id-hex of the top layer>"}}
    <config-hex>.json           the image config, byte for byte (so the image ID is unchanged)
    <diff-id-hex>/layer.tar     each layer as an uncompressed tar, named by its diff_id

Why this layout:

- Every reader goes by ``manifest.json``. moby's ``tarexport`` loader (``docker load``) opens
  ``Config`` and each ``Layers`` path, checks that there are as many layers as
  ``rootfs.diff_ids`` and that each layer's diff_id matches, and tags ``RepoTags``; its loader of
  the older, manifest-less format is gone. containerd's importer (``docker load`` with the
  containerd image store) and containers/image's ``docker-archive:`` reader (skopeo, podman)
  also read only ``manifest.json`` and the files it names.
- ``<id>/layer.tar`` is the layout that ``docker save`` wrote up to Docker 24 and that tools
  reading the tar by hand expect: docker-squash broke when Docker 25 moved layers to
  ``blobs/sha256/`` (goldmann/docker-squash#236). skopeo writes ``<diff-id-hex>.tar`` at the top
  instead, with legacy ``<id>/layer.tar`` symlinks. tank names the directory by the diff_id, so
  a layer that appears twice in an image is stored once and listed twice.
- ``repositories`` is the pre-1.10 tag file. Docker still writes it and some readers still want
  it (Mesos' local puller, containers/skopeo#425). Its value is the top layer's directory, as
  Docker 25 writes it. tank does not write the legacy per-layer ``json`` and ``VERSION`` files:
  nothing that reads ``manifest.json`` opens them.
- ``RepoTags`` use Docker's familiar spelling (``alpine:latest``, ``user/app:v1``,
  ``registry:5000/team/app:v1``), as ``docker save`` writes them; every reader normalises them
  (skopeo writes the full ``docker.io/library/alpine:latest`` instead).

Layers are stored uncompressed, whatever the registry sent: that is what the format means, and
``docker load`` computes each layer's diff_id from what it reads. Each layer blob is decompressed
straight into the archive (:func:`~tank.layers.compression.open_layer`: gzip, zstd, plain),
hashed as it goes, and checked against its diff_id; its tar header is written once its size is
known, by seeking back over a placeholder, so nothing is staged in a second file and memory stays
flat.
A diff_id listed twice is stored once; if the second listing is a different blob (the same tar
compressed another way), that blob is still decompressed and checked, so every layer given is
verified.

The tar is deterministic: members in a fixed order, mtime 0, uid and gid 0, no user or group
names, mode 0644 (directories 0755). It is written to a temporary file beside the destination,
fsynced and renamed into place only when complete: the destination never holds a partial
archive, and a failure (a diff_id mismatch, a corrupt layer) leaves an existing file untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from tank._fs import atomic_file, foreign_owner
from tank.digest import Digest, Hasher, PipelinedHasher
from tank.errors import ArchiveError, DigestMismatch, InvalidReference
from tank.layers.compression import CHUNK, diff_id_of, layer_compression, open_layer
from tank.reference import DOCKER_HUB, Reference
from tank.reference import parse as parse_reference

PREFIX: Final = "docker-archive:"

_BLOCK: Final = tarfile.BLOCKSIZE
_USTAR_MAX_SIZE: Final = 8**11 - 1  # a ustar size field holds 11 octal digits
_FILE_MODE: Final = 0o644
_DIR_MODE: Final = 0o755


@dataclass(frozen=True)
class ArchiveTarget:
    """Where to write an image: ``docker-archive:FILE[:REF]``, as skopeo spells it.

    ``ref`` is the image's name in the archive (its ``RepoTags`` entry) as written, or ``None``
    when the spec names none; the caller picks the default.
    """

    path: Path
    ref: str | None

    @classmethod
    def parse(cls, spec: str) -> ArchiveTarget:
        """Parse ``docker-archive:FILE[:REF]``; raise :class:`~tank.errors.InvalidReference`.

        FILE runs to the first ``:`` after the prefix, as in skopeo (its docker-archive
        transport splits there too, so FILE cannot contain a ``:``). The rest is REF, an image
        reference with a tag (``name``, ``name:tag``, ``host:port/path:tag``; no tag means
        ``latest``) and no digest: an archive names images by tag. A trailing ``:`` alone names
        no reference.

        >>> ArchiveTarget.parse("docker-archive:/tmp/a.tar:localhost:5000/app:v1")
        ArchiveTarget(path=PosixPath('/tmp/a.tar'), ref='localhost:5000/app:v1')
        """
        if not isinstance(spec, str) or not spec.startswith(PREFIX):
            raise InvalidReference(
                str(spec), "a docker-archive target is docker-archive:FILE[:REF]"
            )
        file, _, ref = spec[len(PREFIX) :].partition(":")
        if not file:
            raise InvalidReference(spec, "the archive file is empty (docker-archive:FILE[:REF])")
        if "\0" in file:
            raise InvalidReference(spec, "the archive file contains a NUL byte")
        if not ref:
            return cls(Path(file), None)
        try:
            parsed = parse_reference(ref)
        except InvalidReference as exc:
            raise InvalidReference(spec, exc.reason) from None
        if parsed.digest is not None:
            raise InvalidReference(
                spec, "a docker-archive names an image by tag, not by digest (use NAME:TAG)"
            )
        return cls(Path(file), ref)

    @property
    def reference(self) -> Reference | None:
        """``ref`` parsed (with the default tag ``latest``), or ``None``."""
        return None if self.ref is None else parse_reference(self.ref)

    def __str__(self) -> str:
        """The spec back: ``docker-archive:FILE`` or ``docker-archive:FILE:REF``."""
        return f"{PREFIX}{self.path}" + (f":{self.ref}" if self.ref else "")


def familiar_name(reference: Reference) -> str:
    """The name as Docker shows it: ``alpine``, ``user/app``, ``localhost:5000/team/app``.

    Docker Hub's ``docker.io/`` goes, and so does ``library/`` before a one-component name
    (distribution's ``FamiliarName``).
    """
    if reference.domain != DOCKER_HUB:
        return reference.name
    repository = reference.repository
    short = repository.removeprefix("library/")
    if short != repository and "/" not in short:
        return short
    return repository


def repo_tag(reference: Reference) -> str:
    """The ``RepoTags`` entry ``docker save`` writes for ``reference``: familiar name and tag.

    >>> repo_tag(parse_reference("docker.io/library/alpine:3.20"))
    'alpine:3.20'
    >>> repo_tag(parse_reference("127.0.0.1:5000/library/sample"))
    '127.0.0.1:5000/library/sample:latest'

    A reference by digest alone has no tag to record: :class:`~tank.errors.InvalidReference`.
    """
    if reference.tag is None:
        raise InvalidReference(
            str(reference), "a docker-archive names an image by tag; this reference has none"
        )
    return f"{familiar_name(reference)}:{reference.tag}"


def write_docker_archive(
    dest: str | os.PathLike[str],
    *,
    config_path: Path,
    config_digest: str,
    layers: Sequence[tuple[str, str, Path]],
    diff_ids: Sequence[str],
    repo_tags: Sequence[str],
) -> None:
    """Write one image as a docker-archive tar at ``dest`` (see the module's docstring).

    ``config_path`` holds the config blob, which must hash to ``config_digest``. ``layers`` are
    ``(digest, media_type, path)`` of each compressed layer blob, in manifest order, and
    ``diff_ids`` the config's ``rootfs.diff_ids`` (sha256), one per layer. ``repo_tags`` are the
    names to record, each normalised with :func:`repo_tag` (``docker.io/library/alpine:latest``
    becomes ``alpine:latest``; none is fine).

    The parent directory is created if needed; an existing file at ``dest`` is replaced, and
    only once the new archive is complete. Raises :class:`ArchiveError` for inputs that do not
    fit together (counts, a config whose diff_ids differ, a missing blob, ``dest`` a directory),
    :class:`~tank.layers.compression.UnsupportedLayer` for a layer type that is not a tar,
    :class:`~tank.errors.DigestMismatch` for a config or an uncompressed layer that hashes to
    something else, :class:`~tank.errors.CorruptLayer` for a layer that does not decompress,
    :class:`~tank.errors.InvalidReference` and :class:`~tank.errors.InvalidDigest` for bad names
    and digests.
    """
    final = Path(dest)
    config_id = Digest.parse(config_digest)
    plan = _plan_layers(layers, diff_ids)
    config = _read_config(Path(config_path), config_id, [diff_id for _, _, _, diff_id in plan])
    tags = list(dict.fromkeys(_normalised_tag(tag) for tag in repo_tags))
    layer_names = [_layer_name(diff_id) for _, _, _, diff_id in plan]

    repositories: dict[str, dict[str, str]] = {}
    if plan:
        top = plan[-1][3].hex
        for tag in tags:
            name, _, tag_name = tag.rpartition(":")
            repositories.setdefault(name, {})[tag_name] = top
    manifest = [{"Config": f"{config_id.hex}.json", "RepoTags": tags, "Layers": layer_names}]

    if final.is_dir():
        raise ArchiveError(f"{final}: is a directory; a docker-archive is a file")
    final.parent.mkdir(parents=True, exist_ok=True)
    owner = foreign_owner(final.parent.stat())
    if owner is not None:
        raise ArchiveError(
            f"{final.parent}: belongs to uid {owner}; as root, tank writes archives only into "
            "directories root owns (their owner could swap what is written)"
        )
    with atomic_file(final, mode=_FILE_MODE, readable=True, buffering=CHUNK) as out:
        tar = _TarWriter(out)
        tar.add_bytes("manifest.json", _json(manifest))
        tar.add_bytes("repositories", _json(repositories))
        tar.add_bytes(f"{config_id.hex}.json", config)
        written: dict[Digest, Digest] = {}  # diff_id -> the blob stored for it
        for (digest, media_type, path, diff_id), name in zip(plan, layer_names, strict=True):
            stored = written.get(diff_id)
            if stored is None:
                tar.add_directory(name.rpartition("/")[0])
                tar.add_layer(name, path, media_type, digest=digest, diff_id=diff_id)
                written[diff_id] = digest
            elif stored != digest:  # the same tar compressed differently: check it too
                _verify_layer(path, media_type, digest=digest, diff_id=diff_id)
        tar.finish()


# -- inputs ------------------------------------------------------------------------------------


def _plan_layers(
    layers: Sequence[tuple[str, str, Path]], diff_ids: Sequence[str]
) -> list[tuple[Digest, str, Path, Digest]]:
    """Validate the layers: digests, media types, diff_ids (sha256), blobs present."""
    if len(layers) != len(diff_ids):
        raise ArchiveError(
            f"{len(layers)} layers but {len(diff_ids)} diff_ids: an image has one diff_id per "
            "layer"
        )
    plan = []
    for (digest_text, media_type, path_text), diff_text in zip(layers, diff_ids, strict=True):
        digest = Digest.parse(digest_text)
        diff_id = Digest.parse(diff_text)
        if diff_id.algorithm != "sha256":
            raise ArchiveError(
                f"layer {digest}: diff_id {diff_id} is not sha256 (Docker's layer IDs are)"
            )
        layer_compression(media_type)  # UnsupportedLayer before anything is written
        path = Path(path_text)
        if not path.is_file():
            raise ArchiveError(f"layer {digest}: its blob {path} does not exist")
        plan.append((digest, media_type, path, diff_id))
    return plan


def _read_config(path: Path, digest: Digest, diff_ids: list[Digest]) -> bytes:
    """The config's bytes, verified against ``digest``, with ``diff_ids`` as its rootfs."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArchiveError(f"config {digest}: its blob {path} does not exist") from None
    hasher = digest.hasher()
    hasher.update(data)
    hasher.verify(digest, what="config")
    try:
        config = json.loads(data)
    except ValueError as exc:
        raise ArchiveError(f"config {digest}: not valid JSON ({exc})") from None
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    listed = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if listed != diff_ids:
        raise ArchiveError(
            f"config {digest}: its rootfs.diff_ids {listed!r} are not the diff_ids given "
            f"{[str(d) for d in diff_ids]!r}; docker load would refuse the archive"
        )
    return data


def _normalised_tag(text: str) -> str:
    """A ``RepoTags`` entry in Docker's familiar spelling; no digests."""
    reference = parse_reference(text)
    if reference.digest is not None:
        raise InvalidReference(text, "a RepoTags entry is NAME:TAG, without a digest")
    return repo_tag(reference)


def _layer_name(diff_id: Digest) -> str:
    return f"{diff_id.hex}/layer.tar"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _verify_layer(path: Path, media_type: str, *, digest: Digest, diff_id: Digest) -> None:
    """Check that the layer blob at ``path`` decompresses to ``diff_id``."""
    _check_diff_id(diff_id_of(path, media_type), digest=digest, diff_id=diff_id)


def _check_diff_id(actual: Digest, *, digest: Digest, diff_id: Digest) -> None:
    if actual != diff_id:
        raise DigestMismatch(
            diff_id, actual, what=f"layer {digest} decompressed, against its diff_id"
        )


# -- the tar -----------------------------------------------------------------------------------


class _TarWriter:
    """A deterministic tar written by hand, so a layer can stream in before its header."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode = size, kind, mode
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        # ustar when it fits (every reader knows it), else GNU: base-256 sizes over 8 GiB
        if size <= _USTAR_MAX_SIZE:
            with contextlib.suppress(ValueError):  # ValueError: a name too long for ustar
                return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")

    def add_bytes(self, name: str, data: bytes) -> None:
        """A regular file holding ``data``."""
        self._out.write(self._header(name, len(data), tarfile.REGTYPE, _FILE_MODE))
        self._out.write(data)
        self._pad(len(data))

    def add_directory(self, name: str) -> None:
        """A directory entry."""
        self._out.write(self._header(name + "/", 0, tarfile.DIRTYPE, _DIR_MODE))

    def add_layer(
        self, name: str, path: Path, media_type: str, *, digest: Digest, diff_id: Digest
    ) -> None:
        """The layer blob at ``path``, decompressed, verified against ``diff_id``."""
        out = self._out
        start = out.tell()
        out.write(bytes(_BLOCK))  # the header's place, filled in once the size is known
        hasher = PipelinedHasher(Hasher(diff_id.algorithm))
        size = 0
        try:
            with open_layer(path, media_type) as stream:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
        finally:
            actual = hasher.finish().digest()
        _check_diff_id(actual, digest=digest, diff_id=diff_id)
        self._pad(size)
        end = out.tell()
        header = self._header(name, size, tarfile.REGTYPE, _FILE_MODE)
        if len(header) != _BLOCK:  # cannot happen for "<sha256 hex>/layer.tar"
            raise ArchiveError(f"layer {digest}: its tar header does not fit one block")
        out.seek(start)
        out.write(header)
        out.seek(end)

    def finish(self) -> None:
        """The end-of-archive marker: two zero blocks."""
        self._out.write(bytes(2 * _BLOCK))

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._out.write(bytes(_BLOCK - size % _BLOCK))


__all__ = [
    "PREFIX",
    "ArchiveError",
    "ArchiveTarget",
    "familiar_name",
    "repo_tag",
    "write_docker_archive",
]
