"""Write pulled images into an OCI image layout (image-spec ``image-layout.md``).

A layout is a directory holding::

    oci-layout          {"imageLayoutVersion": "1.0.0"}
    index.json          an OCI image index; each entry names an image by the annotation
                        org.opencontainers.image.ref.name (what ``skopeo``'s ``oci:DIR:NAME``,
                        ``umoci --image DIR:NAME`` and ``oci-image-tool --ref name=NAME`` look up)
    blobs/<alg>/<hex>   every blob, named by its digest

:func:`write_image` adds one image (a manifest or an index, with every blob it reaches) to a
layout, new or existing, keeping whatever else the layout holds. Blobs come from tank's cache,
whose files are immutable, read-only and named by content, so a blob is placed by the cheapest
means the filesystem offers: a reflink (copy-on-write clone), else a hard link, else a copy. Each
goes through a temporary name in the destination directory and is renamed into place, so a blob's
final name never holds a partial file; ``index.json`` is replaced the same way, fsynced, and only
after every blob it refers to is in place.

Writers are serialised by a lock file, ``DIR/.tank.lock`` (see :data:`LOCK_NAME`): ``skopeo``,
``umoci`` and ``oci-image-tool`` all ignore extra files at a layout's root.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from filelock import FileLock

from tank import _json
from tank._fs import (
    FICLONE,
    TMP_PREFIX,
    copy_data,
    fsync_dir,
    new_file,
    reflink,
    temp_name,
    write_atomically,
)
from tank.digest import Digest
from tank.errors import InvalidReference, LayoutError, SizeMismatch
from tank.mediatypes import OCI_INDEX

#: the annotation an index.json entry is named by (image-spec ``annotations.md``)
REF_NAME_ANNOTATION: Final = "org.opencontainers.image.ref.name"
#: the layout version tank writes into ``oci-layout``
LAYOUT_VERSION: Final = "1.0.0"
#: the lock file, at the layout's root; the validators and readers ignore it
LOCK_NAME: Final = ".tank.lock"
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_READ_ONLY: Final = 0o444


@dataclass(frozen=True)
class LayoutTarget:
    """Where to write an image: ``oci:DIR[:TAG]``, as skopeo spells an OCI layout.

    ``tag`` is ``None`` when the spec names none; the caller picks the default.
    """

    path: Path
    tag: str | None

    @classmethod
    def parse(cls, spec: str) -> LayoutTarget:
        """Parse ``oci:DIR[:TAG]``; raise :class:`~tank.errors.InvalidReference` if it is not one.

        The text after the last ``:`` is a tag only when it is a valid tag
        (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, so never with a ``/``); otherwise the colon is
        part of the directory. A trailing ``:`` alone names no tag.

        >>> LayoutTarget.parse("oci:/tmp/x:v1")
        LayoutTarget(path=PosixPath('/tmp/x'), tag='v1')
        >>> LayoutTarget.parse("oci:/tmp/a:b/c").tag is None
        True
        """
        if not isinstance(spec, str) or not spec.startswith("oci:"):
            raise InvalidReference(str(spec), "an OCI layout target is oci:DIR[:TAG]")
        rest = spec[len("oci:") :]
        directory, colon, tag = rest.rpartition(":")
        if colon and tag == "":
            rest, found = directory, None
        elif colon and _TAG.fullmatch(tag):
            rest, found = directory, tag
        else:
            found = None
        if not rest:
            raise InvalidReference(spec, "the layout directory is empty (oci:DIR[:TAG])")
        if "\0" in rest:
            raise InvalidReference(spec, "the layout directory contains a NUL byte")
        return cls(Path(rest), found)

    def __str__(self) -> str:
        """The spec back: ``oci:DIR`` or ``oci:DIR:TAG``."""
        return f"oci:{self.path}" + (f":{self.tag}" if self.tag else "")


def write_image(
    target_dir: str | os.PathLike[str],
    *,
    manifest_digest: str,
    manifest_media_type: str,
    manifest_size: int,
    ref_name: str,
    blobs: Mapping[str, Path],
    platform: Mapping[str, str] | None = None,
    copy: bool = False,
) -> None:
    """Add an image to the OCI layout at ``target_dir`` under the name ``ref_name``.

    ``blobs`` maps each digest to its file (in tank's cache: immutable, read-only) for every blob
    to place: the top manifest (``manifest_digest``, an index or an image manifest), configs,
    layers and child manifests. A blob already in the layout with the right size is left alone.
    ``index.json`` then gets one entry for ``ref_name`` (replacing any earlier entry of that name;
    every other entry and key is kept), with ``platform`` when given. ``copy=True`` forbids hard
    links (reflinks stay allowed: they are copy-on-write). Copies and clones are made read-only.

    The directory and its parents are created if needed. Raises :class:`LayoutError` for a
    non-empty directory that is not a layout, an unreadable ``oci-layout`` or ``index.json``, or a
    manifest that is neither given nor in the layout; :class:`~tank.errors.SizeMismatch` when the
    manifest's file is not ``manifest_size`` bytes; :class:`~tank.errors.InvalidDigest` for a bad
    digest.
    """
    root = Path(target_dir)
    top = Digest.parse(manifest_digest)
    sources = {Digest.parse(digest): Path(path) for digest, path in blobs.items()}
    if not isinstance(ref_name, str) or not ref_name:
        raise LayoutError(f"{root}: an image in a layout needs a non-empty ref name")
    if isinstance(manifest_size, bool) or not isinstance(manifest_size, int) or manifest_size < 0:
        raise LayoutError(f"{root}: invalid manifest size {manifest_size!r}")

    _check_target(root)  # before creating anything, not even the lock file
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / LOCK_NAME):
        _check_target(root)
        _ensure_oci_layout(root)
        index = _read_index(root)
        blob_root = root / "blobs"
        blob_root.mkdir(exist_ok=True)
        _sweep_temporaries(root)

        top_path = sources.get(top) or _blob_path(blob_root, top)
        try:
            actual = top_path.stat().st_size
        except FileNotFoundError:
            raise LayoutError(
                f"{root}: the manifest {top} is neither among the blobs given nor in the layout"
            ) from None
        if actual != manifest_size:
            raise SizeMismatch(manifest_size, actual, what="manifest", digest=top)

        touched: set[Path] = set()
        for digest, source in sources.items():
            dest = _blob_path(blob_root, digest)
            if not dest.parent.is_dir():
                dest.parent.mkdir(exist_ok=True)
                touched.add(blob_root)
            if _place_blob(source, dest, digest, copy=copy):
                touched.add(dest.parent)
        for directory in sorted(touched, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(directory)

        _drop_ref(index, ref_name)
        entry: dict[str, Any] = {
            "mediaType": manifest_media_type,
            "digest": str(top),
            "size": manifest_size,
            "annotations": {REF_NAME_ANNOTATION: ref_name},
        }
        if platform is not None:
            entry["platform"] = dict(platform)
        index["manifests"].append(entry)
        write_atomically(root / "index.json", json.dumps(index, separators=(",", ":")).encode())


# -- the layout's own files --------------------------------------------------------------------


def _check_target(root: Path) -> None:
    """Refuse a path that is a file, or a non-empty directory without ``oci-layout``."""
    try:
        with os.scandir(root) as entries:
            names = {entry.name for entry in entries}
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise LayoutError(f"{root}: exists and is not a directory") from None
    # tank's own lock and temporary files do not count: another writer may be creating the
    # layout right now (its oci-layout is still a temporary file)
    foreign = {n for n in names if n != LOCK_NAME and not n.startswith(TMP_PREFIX)}
    if foreign and "oci-layout" not in names:
        raise LayoutError(
            f"{root}: the directory is not empty and is not an OCI layout (it has no oci-layout "
            "file); refusing to write into it"
        )


def _ensure_oci_layout(root: Path) -> None:
    """Write ``oci-layout`` if absent; check the version of one that is there."""
    path = root / "oci-layout"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        text = json.dumps({"imageLayoutVersion": LAYOUT_VERSION})
        write_atomically(root / "oci-layout", text.encode())
        return
    doc = _json.loads_object(raw, what=str(path), error=LayoutError)
    version = doc.get("imageLayoutVersion")
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise LayoutError(f"{path}: unsupported imageLayoutVersion {version!r} (tank writes 1.x)")


def _read_index(root: Path) -> dict[str, Any]:
    """The layout's ``index.json`` as a dict (a new, empty index when there is none)."""
    path = root / "index.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index = _json.loads_object(raw, what=str(path), error=LayoutError)
    manifests = index.setdefault("manifests", [])
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise LayoutError(f"{path}: 'manifests' is not a list of descriptors")
    return index


def _drop_ref(index: dict[str, Any], ref_name: str) -> None:
    """Remove the entries of ``index`` named ``ref_name``."""
    kept = []
    for entry in index["manifests"]:
        annotations = entry.get("annotations")
        if isinstance(annotations, dict) and annotations.get(REF_NAME_ANNOTATION) == ref_name:
            continue
        kept.append(entry)
    index["manifests"] = kept


def _sweep_temporaries(root: Path) -> None:
    """Remove temporary files a crashed writer left (called under the lock, so none is live)."""
    dirs = [root]
    with contextlib.suppress(FileNotFoundError), os.scandir(root / "blobs") as entries:
        dirs += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    for directory in dirs:
        with os.scandir(directory) as entries:
            stale = [e.path for e in entries if e.name.startswith(TMP_PREFIX)]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


# -- placing files -----------------------------------------------------------------------------


def _blob_path(blob_root: Path, digest: Digest) -> Path:
    """``blobs/<alg>/<hex>`` (the digest is validated, so neither part can escape)."""
    return blob_root / digest.algorithm / digest.hex


def _place_blob(source: Path, dest: Path, digest: Digest, *, copy: bool) -> bool:
    """Put ``source`` at ``dest``; False if a file of the right size is already there."""
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise LayoutError(f"blob {digest}: its source {source} does not exist") from None
    with contextlib.suppress(FileNotFoundError):
        if dest.stat().st_size == size:
            return False
    tmp = temp_name(dest)
    try:
        if not _reflink(source, tmp, size, digest) and (copy or not _hard_link(source, tmp)):
            _copy(source, tmp, size, digest)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return True


def _reflink(source: Path, tmp: Path, size: int, digest: Digest) -> bool:
    """Clone ``source`` to ``tmp`` with ``FICLONE``; False (and no ``tmp``) where unsupported."""
    with source.open("rb") as src:
        try:
            with new_file(tmp) as fd:
                if not reflink(src.fileno(), fd):
                    raise _CannotClone
                _finish_copy(fd, size, digest)
        except _CannotClone:
            return False
    return True


class _CannotClone(Exception):
    """This filesystem cannot clone (the temporary file is already removed)."""


def _hard_link(source: Path, tmp: Path) -> bool:
    """Hard-link ``source`` as ``tmp``; False where the filesystem or the kernel refuses."""
    try:
        os.link(source, tmp)
    except OSError:  # EXDEV across filesystems, EPERM (protected_hardlinks), EMLINK, ENOTSUP …
        return False
    return True


def _copy(source: Path, tmp: Path, size: int, digest: Digest) -> None:
    """Copy ``source`` to ``tmp`` in the kernel where possible, then make it read-only."""
    with source.open("rb") as src, new_file(tmp) as fd:
        copy_data(src.fileno(), fd)
        _finish_copy(fd, size, digest)


def _finish_copy(fd: int, size: int, digest: Digest) -> None:
    """Check the new file's size, make it read-only like the cache, and fsync it."""
    actual = os.fstat(fd).st_size
    if actual != size:
        raise SizeMismatch(size, actual, what="blob copy", digest=digest)
    os.fchmod(fd, _READ_ONLY)
    os.fsync(fd)


__all__ = [
    "FICLONE",
    "LAYOUT_VERSION",
    "LOCK_NAME",
    "REF_NAME_ANNOTATION",
    "LayoutError",
    "LayoutTarget",
    "write_image",
]
