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
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from filelock import FileLock

from tank import _json
from tank._fs import FICLONE, TMP_PREFIX, Dir, copy_data, foreign_owner, reflink
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
#: an ``index.json`` larger than this is refused (one entry is ~300 bytes)
MAX_INDEX_JSON: Final = 16 * 1024 * 1024


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

    The layout may be one someone else prepared, so nothing in it is trusted: every file and
    directory inside is reached through directory descriptors, never through a symlink (a
    symlink at ``blobs/``, ``blobs/<alg>/``, ``index.json``, ``oci-layout`` or the lock is an
    error), and as root a layout owned by another user is refused.

    The directory and its parents are created if needed. Raises :class:`LayoutError` for a
    non-empty directory that is not a layout, an unreadable ``oci-layout`` or ``index.json``, a
    symlink inside, another user's layout (as root), or a manifest that is neither given nor in
    the layout; :class:`~tank.errors.SizeMismatch` when the manifest's file is not
    ``manifest_size`` bytes; :class:`~tank.errors.InvalidDigest` for a bad digest.
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
    with _open_layout(root) as layout, _layout_lock(layout):
        _check_target(root)
        _ensure_oci_layout(layout)
        index = _read_index(layout)
        with _subdir(layout, "blobs") as blob_root:
            _sweep_temporaries(layout, blob_root)
            _check_top(blob_root, sources, top, manifest_size)
            _place_blobs(blob_root, sources, copy=copy)
        _drop_ref(index, ref_name)
        index["manifests"].append(
            index_entry(manifest_media_type, top, manifest_size, ref_name, platform)
        )
        layout.write_atomically("index.json", json.dumps(index, separators=(",", ":")).encode())


def index_entry(
    media_type: str, digest: Digest, size: int, ref_name: str,
    platform: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The ``index.json`` entry naming an image ``ref_name`` (with its ``platform`` when
    given), as a layout and an OCI archive write it."""
    entry: dict[str, Any] = {
        "mediaType": media_type,
        "digest": str(digest),
        "size": size,
        "annotations": {REF_NAME_ANNOTATION: ref_name},
    }
    if platform is not None:
        entry["platform"] = dict(platform)
    return entry


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


def _open_layout(root: Path) -> Dir:
    """The layout's root directory, open; as root, one owned by another user is refused (its
    owner could plant links in it)."""
    try:
        layout = Dir.open(root)
    except OSError as exc:
        raise LayoutError(f"{root}: cannot open the layout: {exc.strerror}") from None
    owner = foreign_owner(os.fstat(layout.fd))
    if owner is not None:
        layout.close()
        raise LayoutError(
            f"{root}: the layout belongs to uid {owner}; as root, tank writes only into "
            "layouts root owns (their owner could redirect what is written)"
        )
    return layout


@contextlib.contextmanager
def _subdir(parent: Dir, name: str) -> Iterator[Dir]:
    """``parent/name``, created if needed, never through a symlink."""
    try:
        child = parent.subdir(name, create=True)
    except OSError as exc:
        raise LayoutError(
            f"{parent.path / name}: is not a directory of the layout (a symlink, or another "
            f"kind of file: {exc.strerror}); tank never writes through links in a layout"
        ) from None
    with child:
        yield child


@contextlib.contextmanager
def _layout_lock(layout: Dir) -> Iterator[None]:
    """The writers' lock, ``.tank.lock`` (refused when it is a symlink; lock errors are
    :class:`LayoutError`)."""
    st = layout.lstat(LOCK_NAME)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise LayoutError(f"{layout.path / LOCK_NAME}: is not a regular file (a symlink?)")
    try:
        lock = FileLock(layout.path / LOCK_NAME)
        lock.acquire()
    except OSError as exc:
        raise LayoutError(f"{layout.path / LOCK_NAME}: cannot lock the layout: {exc}") from None
    try:
        yield
    finally:
        lock.release()


def _regular(layout: Dir, name: str, cap: int) -> bytes | None:
    """The layout file ``name`` (never through a symlink); ``None`` when absent."""
    try:
        data = layout.read(name, cap)
    except OSError as exc:
        raise LayoutError(
            f"{layout.path / name}: cannot read it ({exc.strerror}); a symlink there is refused"
        ) from None
    if data is not None and len(data) > cap:
        raise LayoutError(f"{layout.path / name}: larger than {cap} bytes")
    return data


def _ensure_oci_layout(layout: Dir) -> None:
    """Write ``oci-layout`` if absent; check the version of one that is there."""
    raw = _regular(layout, "oci-layout", 64 * 1024)
    if raw is None:
        text = json.dumps({"imageLayoutVersion": LAYOUT_VERSION})
        layout.write_atomically("oci-layout", text.encode())
        return
    path = layout.path / "oci-layout"
    doc = _json.loads_object(raw, what=str(path), error=LayoutError)
    version = doc.get("imageLayoutVersion")
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise LayoutError(f"{path}: unsupported imageLayoutVersion {version!r} (tank writes 1.x)")


def _read_index(layout: Dir) -> dict[str, Any]:
    """The layout's ``index.json`` as a dict (a new, empty index when there is none)."""
    raw = _regular(layout, "index.json", MAX_INDEX_JSON)
    if raw is None:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    path = layout.path / "index.json"
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


def _sweep_temporaries(layout: Dir, blob_root: Dir) -> None:
    """Remove temporary files a crashed writer left (called under the lock, so none is live)."""
    dirs = [layout, blob_root]
    algorithms = []
    with os.scandir(blob_root.fd) as entries:
        algorithms = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    opened = []
    for name in algorithms:
        with contextlib.suppress(OSError):
            opened.append(blob_root.subdir(name))
    try:
        for directory in dirs + opened:
            with os.scandir(directory.fd) as entries:
                stale = [e.name for e in entries if e.name.startswith(TMP_PREFIX)]
            for name in stale:
                directory.remove(name)
    finally:
        for directory in opened:
            directory.close()


# -- placing files -----------------------------------------------------------------------------


def _check_top(blob_root: Dir, sources: Mapping[Digest, Path], top: Digest, size: int) -> None:
    """The top manifest is given, or already in the layout, with the size the entry says."""
    source = sources.get(top)
    if source is not None:
        actual: int | None = source.stat().st_size if source.exists() else None
    else:
        try:
            with blob_root.subdir(top.algorithm) as alg:
                st = alg.lstat(top.hex)
        except OSError:
            st = None
        actual = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
    if actual is None:
        raise LayoutError(
            f"{blob_root.path.parent}: the manifest {top} is neither among the blobs given nor "
            "in the layout"
        )
    if actual != size:
        raise SizeMismatch(size, actual, what="manifest", digest=top)


def _place_blobs(blob_root: Dir, sources: Mapping[Digest, Path], *, copy: bool) -> None:
    """Put every source at ``blobs/<alg>/<hex>``; fsync the directories that changed."""
    by_algorithm: dict[str, list[tuple[Digest, Path]]] = {}
    for digest, source in sources.items():
        by_algorithm.setdefault(digest.algorithm, []).append((digest, source))
    created = False
    for algorithm, items in sorted(by_algorithm.items()):
        created = created or blob_root.lstat(algorithm) is None
        with _subdir(blob_root, algorithm) as directory:
            changed = [_place_blob(source, directory, d, copy=copy) for d, source in items]
            if any(changed):
                directory.fsync()
    if created:
        blob_root.fsync()


def _place_blob(source: Path, directory: Dir, digest: Digest, *, copy: bool) -> bool:
    """Put ``source`` at ``directory/<hex>``; False if a file of the right size is already
    there (a symlink there is replaced, never followed)."""
    try:
        size = source.stat().st_size
    except FileNotFoundError:
        raise LayoutError(f"blob {digest}: its source {source} does not exist") from None
    st = directory.lstat(digest.hex)
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size:
        return False
    tmp = directory.temp_name(digest.hex)
    try:
        if not _clone_or_copy(source, directory, tmp, size, digest, clone_only=True) and (
            copy or not directory.link_from(source, tmp)
        ):
            _clone_or_copy(source, directory, tmp, size, digest, clone_only=False)
        directory.rename(tmp, digest.hex)
    except BaseException:
        directory.remove(tmp)
        raise
    return True


def _clone_or_copy(
    source: Path, directory: Dir, name: str, size: int, digest: Digest, *, clone_only: bool
) -> bool:
    """``source`` as the new file ``directory/name``: a reflink clone, or (unless
    ``clone_only``) a copy; read-only and fsynced. False, with nothing left, when it cannot
    clone."""
    try:
        with source.open("rb") as src, directory.new_file(name) as fd:
            if not reflink(src.fileno(), fd):
                if clone_only:
                    raise _CannotClone  # new_file removes what it created
                copy_data(src.fileno(), fd)
            actual = os.fstat(fd).st_size
            if actual != size:
                raise SizeMismatch(size, actual, what="blob copy", digest=digest)
            os.fchmod(fd, _READ_ONLY)
            os.fsync(fd)
    except _CannotClone:
        return False
    return True


class _CannotClone(Exception):
    """This filesystem cannot clone (the temporary file is already removed)."""


__all__ = [
    "FICLONE",
    "LAYOUT_VERSION",
    "LOCK_NAME",
    "REF_NAME_ANNOTATION",
    "LayoutError",
    "LayoutTarget",
    "index_entry",
    "write_image",
]
