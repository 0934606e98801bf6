"""Root filesystems: an image's layers applied, in order, into a directory, safely.

:func:`unpack` turns a pulled image into the directory a container runtime pivots into and hands
back the parsed image config (:class:`ImageConfig`) for the runtime to apply. :func:`unpack_layers`
is the core: layer blobs in, a tree out. The rules are the OCI image-spec's layer rules, applied as
``umoci unpack`` applies them (a conformance test compares the two trees entry by entry):

- Layers apply in manifest order. Media types: gzip, zstd and plain tar, OCI and Docker spellings
  (:func:`~tank.layers.compression.layer_compression`); an unknown type fails before anything is
  written.
  Each layer's uncompressed bytes are hashed as they are extracted and must hash to the layer's
  ``rootfs.diff_ids`` entry (:class:`~tank.errors.DigestMismatch` otherwise).
- Whiteouts: ``.wh.NAME`` removes NAME as the lower layers left it; ``.wh..wh..opq`` hides all the
  lower layers put in its directory, wherever it stands in the tar, and keeps what the same layer
  adds (the layer's own paths are remembered while it is applied, as umoci does). Whiteout files
  never appear in the result; other aufs metadata (``.wh..wh.*``) is ignored.
- Entry types: regular files, directories, symlinks (targets kept exactly as written, absolute
  ones too, and never followed while writing), hard links (to an entry of this or a lower layer),
  FIFOs, and device nodes: created when root, otherwise skipped with one
  :class:`UnpackWarning`. An entry replaces whatever was at its path when the types
  differ (only a directory merges into a directory). A file is always written as a new inode, so
  a hard link made by a lower layer keeps the old content.
- Metadata: modes exactly as the tar says (setuid, setgid and sticky included, root or not),
  modification times to the nanosecond (a directory's at the end of its layer, after its
  content), ownership from the tar's numeric ids when root (user and group names are never looked
  up) and the caller's own otherwise, extended attributes (PAX ``SCHILY.xattr.*`` and
  ``LIBARCHIVE.xattr.*``) where the filesystem and the privileges allow: any that cannot be set is
  skipped, with one warning per unpack.

Safety (a layer is hostile until proven otherwise):

- Names: a leading ``/`` is dropped (``/etc/x`` is the root's ``etc/x``, as tar, umoci and
  containerd read it); ``.`` components are dropped; a name with a ``..`` component is refused.
  Names longer than ``PATH_MAX`` (4096 bytes), components longer than ``NAME_MAX`` (255), more
  than :data:`MAX_DEPTH` levels, or with a NUL byte are refused. Backslashes are ordinary
  characters. The root itself may only be given directory metadata: an entry that would make it
  anything else is refused.
- Paths are resolved component by component from a file descriptor of the root, each directory
  opened with ``O_NOFOLLOW`` relative to its parent's descriptor (never ``realpath`` then
  ``open``). A symlink met on the way is resolved *inside* the root, as ``securejoin`` and
  ``openat2(RESOLVE_IN_ROOT)`` do: an absolute target restarts at the root, ``..`` stops at the
  root, and at most 40 links are followed. Every write, chmod, chown, utime and unlink then goes
  through the parent directory's descriptor and never follows a final symlink. Python's own
  ``tarfile`` extraction (and its ``filter="data"``, bypassable in the Python 3.11 this runs on) is
  not used: headers are decoded by :meth:`tarfile.TarInfo.frombuf`, extended (PAX) headers by a
  linear parser here, and every entry is created by this module.
- A hard link's target is resolved the same way and must exist in the root and not be a
  directory; the link is made to the entry itself (a symlink is linked, not followed).
- Limits: a layer's uncompressed size (``max_layer_bytes``) and entry count (``max_entries``),
  the size of an extended header (:data:`MAX_HEADER_BYTES`), the names above. GNU sparse entries
  and entry types outside the list above are refused.
- A refused entry fails the unpack with :class:`~tank.errors.UnsafeEntry` (or
  :class:`~tank.errors.LayerTooLarge`) naming the layer digest and the entry; whatever was written
  is removed.

Speed: a background thread decompresses the layers one after another (the next layer's inflate
overlaps the current layer's extraction) into a small bounded queue; the caller's thread hashes
and writes. ``zlib``, ``hashlib`` and ``os.write`` release the GIL, so two cores are kept busy.

The cache: with ``rootfs_cache`` (the default) :func:`unpack` builds the tree once per image, in
``rootfs/<algorithm>/<hex>`` of the cache, named by the image manifest's digest (rootless builds,
whose ownership and device nodes differ, in ``rootfs/rootless/<algorithm>/<hex>``). It is built in
a temporary sibling and renamed into place only when every layer verified, under a per-image lock,
so concurrent unpacks build it once. ``DEST`` is then a copy of it (a reflink where the filesystem
can clone, else an in-kernel copy), never a hard link: a container writing in ``DEST`` changes
neither the cache nor another copy.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import queue
import secrets
import stat
import struct
import sys
import tarfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple
from urllib.parse import unquote_to_bytes

import filelock

from tank.digest import Digest, PipelinedHasher
from tank.errors import (
    CacheMiss,
    CorruptLayer,
    InvalidImageConfig,
    LayerTooLarge,
    UnpackError,
    UnsafeEntry,
    UnsupportedLayer,
)
from tank.image.config import ImageConfig
from tank.layers.compression import CHUNK, layer_compression, open_layer
from tank.store import Store

#: default ceiling on one layer's uncompressed size
DEFAULT_MAX_LAYER_BYTES: Final = 64 << 30
#: default ceiling on the number of entries in one layer
DEFAULT_MAX_ENTRIES: Final = 2_000_000
#: the longest name (and symlink target) accepted, in bytes: Linux's PATH_MAX
PATH_MAX: Final = 4096
#: the longest path component accepted, in bytes: Linux's NAME_MAX
NAME_MAX: Final = 255
#: the deepest path accepted, in components (after symlinks are resolved): far beyond any real
#: image, and shallow enough that walking a tree with a descriptor per level stays well within
#: the default limit of 1024 open files
MAX_DEPTH: Final = 256
#: the largest extended (PAX) header accepted, in bytes
MAX_HEADER_BYTES: Final = 1 << 20
#: symlinks followed while resolving one path (Linux's MAXSYMLINKS)
MAX_SYMLINKS: Final = 40
#: Linux ``FICLONE``: clone the source fd's extents into the target
FICLONE: Final = 0x40049409

#: ``progress(layer_digest, bytes_done, bytes_total)``: see :func:`unpack_layers`
UnpackProgress = Callable[[str, int, int], None]

_BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(_BLOCK)
_O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE: Final = 64
_QUEUE_DEPTH: Final = 4
#: bytes read from the decompressor at a time (larger reads halve its overhead per byte)
_READ: Final = 4 << 20
_WHITEOUT: Final = ".wh."
_OPAQUE: Final = ".wh..wh..opq"
_AUFS_META: Final = ".wh..wh."
_TMP_PREFIX: Final = ".tmp-"

_REGULAR: Final = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_KNOWN: Final = _REGULAR | {
    tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
}
_PAX_TYPES: Final = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})
_LONG_TYPES: Final = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})
_SPARSE_KEYS: Final = ("GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.major",
                       "GNU.sparse.offset", "GNU.sparse.numblocks")
_NO_XATTR: Final = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC,
     errno.E2BIG, errno.ERANGE}
)
_NS: Final = 1_000_000_000
_MAX_TIME_NS: Final = (1 << 63) - 1
_MAX_ID: Final = (1 << 32) - 2  # (uid_t) -1 means "unchanged" to chown


class UnpackWarning(UserWarning):
    """Something an unpack skipped, said once per unpack: device nodes when not root, extended
    attributes that the filesystem or the caller's privileges refuse. (A warning, not an error:
    it is not a :class:`~tank.errors.TankError`.)"""


# -- the public entry points --------------------------------------------------------------------


def unpack_image(
    store: Store,
    manifest_digest: str,
    config: ImageConfig,
    layers: Sequence[tuple[str, str, Path]],
    dest: str | os.PathLike[str],
    *,
    rootfs_cache: bool = True,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: UnpackProgress | None = None,
    rootless: bool | None = None,
    what: str = "",
) -> None:
    """Unpack an image whose blobs are in ``store`` into the directory ``dest``.

    ``layers`` are ``(digest, media_type, path)`` in manifest order and ``config`` the image's
    parsed config (its ``diff_ids`` one per layer). The keywords are :func:`tank.unpack`'s; ``what``
    names the image in a :class:`~tank.errors.CacheMiss`.

    On any error ``dest`` is left as it was found (removed if this call created it) and the cache
    keeps no partial tree.
    """
    if len(config.diff_ids) != len(layers):
        raise InvalidImageConfig(
            f"image {manifest_digest}: the config lists {len(config.diff_ids)} diff_ids for "
            f"{len(layers)} layers"
        )
    for _, media_type, _ in layers:
        _check_media_type(media_type)  # UnsupportedLayer before anything is written
    for digest, _, path in layers:
        if not path.is_file():
            raise CacheMiss(f"layer {digest} of {what or manifest_digest} is not in the cache at "
                            f"{store.root}", digest=digest)
    rootless = _is_rootless(rootless)
    target = Path(dest)
    created = _prepare_dest(target)
    try:
        if rootfs_cache:
            built = _cached_tree(
                store, manifest_digest, layers, config.diff_ids, rootless=rootless,
                max_layer_bytes=max_layer_bytes, max_entries=max_entries, progress=progress,
            )
            _copy_tree(built, target, rootless=rootless)
        else:
            unpack_layers(
                layers, config.diff_ids, target, max_layer_bytes=max_layer_bytes,
                max_entries=max_entries, progress=progress, rootless=rootless,
            )
    except BaseException:
        if created:
            _remove_path(target)
        else:
            _clear_dir(target)
        raise


def unpack_layers(
    layers: Sequence[tuple[str, str, Path]],
    diff_ids: Sequence[str],
    dest: Path,
    *,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: UnpackProgress | None = None,
    rootless: bool | None = None,
) -> None:
    """Apply ``layers`` in order into ``dest``, an existing empty directory.

    :param layers: ``(digest, media_type, blob_path)`` per layer, bottom first.
    :param diff_ids: each layer's ``diff_id`` (the digest of its uncompressed bytes), same order.
    :param progress: ``progress(layer_digest, done, total)`` as for :func:`unpack`.
    :param rootless: as for :func:`unpack`.

    Raises :class:`~tank.errors.UnsupportedLayer` (before writing anything),
    :class:`~tank.errors.UnsafeEntry`, :class:`~tank.errors.LayerTooLarge`,
    :class:`~tank.errors.UnpackError` (an entry that cannot be created, naming the layer and the
    entry), :class:`~tank.errors.CorruptLayer` (a stream that does not decode, or is not a tar)
    and :class:`~tank.errors.DigestMismatch` (a layer that does not hash to its diff_id). On any
    error ``dest`` is emptied again.
    """
    if len(layers) != len(diff_ids):
        raise ValueError(f"{len(layers)} layers but {len(diff_ids)} diff_ids")
    expected = [Digest.parse(d) for d in diff_ids]
    for _, media_type, _ in layers:
        _check_media_type(media_type)
    if max_layer_bytes < 0 or max_entries < 0:
        raise ValueError("max_layer_bytes and max_entries must not be negative")
    dest = Path(dest)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if os.listdir(root_fd):
            raise UnpackError(f"{dest} is not empty")
        feed = _Feed([(path, media_type) for _, media_type, path in layers])
        applier = _Applier(root_fd, rootless=_is_rootless(rootless))
        try:
            for (digest, _, path), diff_id in zip(layers, expected, strict=True):
                applier.apply_layer(
                    feed, digest, path, diff_id, max_layer_bytes=max_layer_bytes,
                    max_entries=max_entries, progress=progress,
                )
            applier.finish()
        except BaseException:
            feed.close()
            applier.close()
            _clear_fd(root_fd)
            raise
        feed.close()
        applier.close()
    finally:
        os.close(root_fd)
    applier.warn()


def _check_media_type(media_type: str) -> None:
    """:class:`~tank.errors.UnsupportedLayer` unless tank unpacks layers of this type.

    Foreign (Docker) and non-distributable (OCI) layers are refused by name, not skipped: their
    content is meant to come from elsewhere, and an image without it is not the image.
    """
    layer_compression(media_type)
    if "foreign" in media_type or "nondistributable" in media_type:
        raise UnsupportedLayer(media_type)


# -- decompression in a background thread -------------------------------------------------------


class _Feed:
    """Decompresses the layers one after another in a thread, into a bounded queue of chunks.

    :meth:`get` returns the next chunk of the current layer, ``None`` at the end of a layer (the
    next call starts the next layer), and raises whatever the thread met (a corrupt stream).
    """

    def __init__(self, layers: Sequence[tuple[Path, str]]) -> None:
        self._layers = list(layers)
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tank-unpack-inflate", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        try:
            for path, media_type in self._layers:
                with open_layer(path, media_type) as stream:
                    while chunk := stream.read(_READ):
                        if not self._put(chunk):
                            return
                if not self._put(None):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def get(self) -> bytes | None:
        """The next chunk, ``None`` at a layer's end; raises the decompressor's error."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it may be ahead, in the next layer) and wait for it."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()


class _Truncated(Exception):
    """The layer's tar ends in the middle of a header or of a file's data."""


class _LayerReader:
    """One layer's uncompressed bytes as they come off the feed: counted, limited, and handed
    to a hashing thread (so that hashing overlaps both the inflate and the writes)."""

    def __init__(
        self, feed: _Feed, hasher: PipelinedHasher, digest: str, limit: int,
        progress: UnpackProgress | None,
    ) -> None:
        self._feed = feed
        self.hasher = hasher
        self._digest = digest
        self._limit = limit
        self._progress = progress
        self._buf = memoryview(b"")
        self._pos = 0
        self._done = False
        self.total = 0
        self.entry: str | None = None  # the entry being read, for messages

    def _refill(self) -> bool:
        if self._done:
            return False
        chunk = self._feed.get()
        if chunk is None:
            self._done = True
            self._buf, self._pos = memoryview(b""), 0
            return False
        self.total += len(chunk)
        if self.total > self._limit:
            raise LayerTooLarge(
                f"more than {self._limit} uncompressed bytes (max_layer_bytes)",
                layer=self._digest, entry=self.entry,
            )
        self.hasher.update(chunk)
        self._buf, self._pos = memoryview(chunk), 0
        if self._progress is not None:
            self._progress(self._digest, self.total, -1)
        return True

    def read_exact(self, n: int) -> bytes | None:
        """``n`` bytes; ``None`` when the layer ends before the first one; else truncation."""
        if n == 0:
            return b""
        if self._pos == len(self._buf) and not self._refill():
            return None
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos : end].tobytes()
            self._pos = end
            return data
        parts = [self._buf[self._pos :].tobytes()]
        need = n - len(parts[0])
        self._pos = len(self._buf)
        while need:
            if not self._refill():
                raise _Truncated
            k = min(need, len(self._buf))
            parts.append(self._buf[:k].tobytes())
            self._pos = k
            need -= k
        return b"".join(parts)

    def copy_to(self, fd: int, n: int) -> None:
        """Write the next ``n`` bytes to ``fd``."""
        while n:
            if self._pos == len(self._buf) and not self._refill():
                raise _Truncated
            k = min(n, len(self._buf) - self._pos)
            view = self._buf[self._pos : self._pos + k]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += k
            n -= k

    def skip(self, n: int) -> None:
        """Pass over the next ``n`` bytes."""
        while n:
            if self._pos == len(self._buf) and not self._refill():
                raise _Truncated
            k = min(n, len(self._buf) - self._pos)
            self._pos += k
            n -= k

    def drain(self) -> None:
        """Read (and hash) the rest of the layer: the padding after the end-of-archive blocks."""
        self._pos = len(self._buf)
        while self._refill():
            self._pos = len(self._buf)


# -- tar headers --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """One tar member, its extended headers applied."""

    name: str
    kind: bytes
    size: int  # bytes of data that follow (regular files only)
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes]


class _Header(NamedTuple):
    """The fields of one 512-byte tar header that an unpack uses."""

    name: str
    linkname: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    devmajor: int
    devminor: int


# name mode uid gid size mtime chksum type linkname (magic version uname gname) devmajor devminor
# prefix (pad)
_USTAR: Final = struct.Struct("100s8s8s8s12s12s8sc100s72x8s8s155s12x")
_GNU_TYPES: Final = frozenset(tarfile.GNU_TYPES)


def _parse_header(block: bytes) -> _Header:
    """Decode a header exactly as :meth:`tarfile.TarInfo.frombuf` does (names as UTF-8 with
    ``surrogateescape``), a few times faster for the common case: octal numbers and a checksum
    over unsigned bytes. Anything else (base-256 numbers, a signed checksum, an invalid field, a
    GNU sparse header) is handed to ``frombuf`` itself, which decodes it or raises
    :class:`tarfile.HeaderError`.
    """
    name, mode, uid, gid, size, mtime, chksum, kind, link, major, minor, prefix = (
        _USTAR.unpack(block)
    )
    try:
        if kind == tarfile.GNUTYPE_SPARSE:
            raise ValueError
        numbers = []
        for field_ in (mode, uid, gid, size, mtime, chksum, major, minor):
            if field_[0] & 0x80:
                raise ValueError  # base-256
            numbers.append(int(field_.split(b"\0", 1)[0].strip() or b"0", 8))
        if numbers[5] != sum(block) - sum(block[148:156]) + 256:
            raise ValueError
    except ValueError:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        return _Header(info.name, info.linkname, info.type, info.mode, info.uid, info.gid,
                       info.size, int(info.mtime), info.devmajor, info.devminor)
    text = name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if kind == tarfile.AREGTYPE and text.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        text = text.rstrip("/")
    head = prefix.split(b"\0", 1)[0]
    if head and kind not in _GNU_TYPES:
        text = head.decode("utf-8", "surrogateescape") + "/" + text
    return _Header(
        text, link.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"), kind, numbers[0],
        numbers[1], numbers[2], numbers[3], numbers[4], numbers[6], numbers[7],
    )


def _pad(size: int) -> int:
    return -size % _BLOCK


def _nts(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, str]:
    """PAX records (``"%d %s=%s\\n"``), parsed in one linear pass; ``_BadTar`` if malformed.

    (Python 3.11.7's own parser uses regular expressions that backtrack quadratically on
    crafted headers: CVE-2024-6232.)
    """
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding some writers leave inside the declared size
            if data.count(0, pos) != end - pos:
                raise _BadTar("an extended header with data after its NUL padding")
            break
        space = data.find(b" ", pos, min(end, pos + 21))
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _BadTar("an extended header record without a valid length")
        length = int(digits)
        stop = pos + length
        if length <= len(digits) + 1 or stop > end or data[stop - 1] != 0x0A:
            raise _BadTar("an extended header record whose length does not fit")
        record = data[space + 1 : stop - 1]
        equals = record.find(b"=")
        if equals <= 0:
            raise _BadTar("an extended header record without a keyword")
        keyword = record[:equals].decode("utf-8", "surrogateescape")
        out[keyword] = record[equals + 1 :].decode("utf-8", "surrogateescape")
        pos = stop
    return out


class _BadTar(Exception):
    """A header that does not decode."""


def _pax_int(pax: Mapping[str, str], key: str, default: int, *, limit: int) -> int:
    value = pax.get(key)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise _BadTar(f"an extended header {key}={value[:40]!r} that is not a number")
    number = int(value)
    if number > limit:
        raise _BadTar(f"an extended header {key}={number} out of range")
    return number


def _pax_time(value: str | None) -> int | None:
    """A PAX time (``[-]seconds[.fraction]``) in nanoseconds, exactly."""
    if value is None or value == "":
        return None
    text = value[1:] if value.startswith("-") else value
    whole, _, fraction = text.partition(".")
    if (
        len(text) > 40 or not whole.isascii() or not whole.isdigit()
        or (fraction and (not fraction.isascii() or not fraction.isdigit()))
    ):
        raise _BadTar(f"an extended header time {value[:40]!r} that is not a number")
    ns = int(whole) * _NS + int((fraction + "000000000")[:9])
    return -ns if value.startswith("-") else ns


def _xattrs(pax: Mapping[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in pax.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = unquote_to_bytes(key[len("LIBARCHIVE.xattr.") :])
            try:
                out[name.decode("utf-8", "surrogateescape")] = base64.b64decode(value + "==")
            except (binascii.Error, ValueError):
                raise _BadTar(f"an extended attribute {key!r} that is not base64") from None
    return out


def _read_entry(reader: _LayerReader) -> _Entry | None:
    """The next member, or ``None`` at the end of the archive.

    Global PAX headers (``git archive`` writes one with a comment) are checked and ignored: a
    global ``path`` or ``size`` would otherwise apply to every later member.
    """
    local: dict[str, str] = {}
    longname: str | None = None
    longlink: str | None = None
    extra = 0
    while True:
        block = reader.read_exact(_BLOCK)
        if block is None or block == _ZERO_BLOCK:
            return None
        try:
            info = _parse_header(block)
        except (tarfile.HeaderError, ValueError) as exc:
            raise _BadTar(f"an invalid tar header ({exc})") from None
        reader.entry = info.name
        if info.size < 0:
            raise _BadTar("a header with a negative size")
        kind = info.type
        if kind in _PAX_TYPES or kind in _LONG_TYPES:
            extra += 1
            if extra > 64:
                raise LayerTooLarge("more than 64 extended headers for one entry")
            if kind in _PAX_TYPES and info.size > MAX_HEADER_BYTES:
                raise LayerTooLarge(f"an extended (PAX) header of {info.size} bytes, over "
                                    f"{MAX_HEADER_BYTES}")
            if kind in _LONG_TYPES and info.size > PATH_MAX + 1:
                raise UnsafeEntry(f"an absurd name: a GNU long name header of {info.size} "
                                  f"bytes, over {PATH_MAX}")
            data = reader.read_exact(info.size)
            if data is None:
                raise _Truncated
            reader.skip(_pad(info.size))
            if kind == tarfile.GNUTYPE_LONGNAME:
                longname = _nts(data)
            elif kind == tarfile.GNUTYPE_LONGLINK:
                longlink = _nts(data)
            elif kind == tarfile.XGLTYPE:
                _parse_pax(data)  # checked, then ignored, as Go's archive/tar (umoci) does
            else:
                local.update(_parse_pax(data))
            continue
        pax = local
        if kind == tarfile.GNUTYPE_SPARSE or (pax and any(k in pax for k in _SPARSE_KEYS)):
            name = pax.get("path") or longname or info.name
            raise UnsafeEntry("GNU sparse entries are not supported", entry=name)
        if pax:
            name = pax.get("path") or longname or info.name
            linkname = pax.get("linkpath") or longlink or info.linkname
            size = _pax_int(pax, "size", info.size, limit=1 << 62)
            uid = _pax_int(pax, "uid", info.uid, limit=_MAX_ID)
            gid = _pax_int(pax, "gid", info.gid, limit=_MAX_ID)
            pax_mtime = _pax_time(pax.get("mtime"))
            mtime_ns = info.mtime * _NS if pax_mtime is None else pax_mtime
            pax_atime = _pax_time(pax.get("atime"))
            atime_ns = mtime_ns if pax_atime is None else pax_atime
            xattrs = _xattrs(pax)
        else:
            name = longname or info.name
            linkname = longlink or info.linkname
            size, uid, gid = info.size, info.uid, info.gid
            mtime_ns = atime_ns = info.mtime * _NS
            xattrs = {}
        reader.entry = name
        if abs(mtime_ns) > _MAX_TIME_NS or abs(atime_ns) > _MAX_TIME_NS:
            raise _BadTar("a modification time out of range")
        if not (0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID):
            raise _BadTar(f"an owner {uid}:{gid} out of range")
        if not (0 <= info.devmajor < 1 << 32 and 0 <= info.devminor < 1 << 32):
            raise _BadTar("a device number out of range")
        return _Entry(
            name=name,
            kind=kind,
            size=size if kind in _REGULAR or kind not in _KNOWN else 0,
            mode=info.mode & 0o7777,
            uid=uid,
            gid=gid,
            mtime_ns=mtime_ns,
            atime_ns=atime_ns,
            linkname=linkname,
            devmajor=info.devmajor,
            devminor=info.devminor,
            xattrs=xattrs,
        )


def _split(name: str, what: str = "name") -> list[str]:
    """A member name's components inside the root; ``ValueError`` (the reason) if refused."""
    if "\0" in name:
        raise ValueError(f"a NUL byte in the {what}")
    if len(name) > PATH_MAX // 4 and len(os.fsencode(name)) > PATH_MAX:
        raise ValueError(f"an absurd {what}: longer than {PATH_MAX} bytes")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"a '..' component in the {what}")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"an absurd {what}: more than {MAX_DEPTH} levels")
    for part in parts:
        if len(part) > NAME_MAX // 4 and len(os.fsencode(part)) > NAME_MAX:
            raise ValueError(f"an absurd {what}: a component longer than {NAME_MAX} bytes")
    return parts


# -- resolving paths inside the root ------------------------------------------------------------


class _NotDirectory(Exception):
    """A path component that is neither a directory nor a symlink."""


class _Tree:
    """Directory descriptors inside one root, found only by ``openat(…, O_NOFOLLOW)`` steps.

    Paths are handled as *real* paths: tuples of names, each a directory (no symlinks), from the
    root. :meth:`resolve` maps a name from a layer to one, following symlinks inside the root;
    :meth:`dir_fd` gives (cached) descriptors. Both caches are dropped whenever a directory or a
    symlink is removed (:meth:`invalidate`), the only changes that can make them wrong.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fresh: set[tuple[str, ...]] = set()  # directories made (by anyone) since reset
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._lexical: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._retired: list[int] = []

    def invalidate(self) -> None:
        """Forget every cached path and descriptor.

        The descriptors are closed only at the next :meth:`trim`: the entry being applied may
        still hold some (a parent whose child it just removed is still that parent).
        """
        self._lexical.clear()
        self._retired.extend(self._fds.values())
        self._fds.clear()

    def trim(self) -> None:
        """Between entries: close retired descriptors and the least recently used ones beyond
        the cache size."""
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()
        while len(self._fds) > _FD_CACHE:
            _, fd = self._fds.popitem(last=False)
            os.close(fd)
        if len(self._lexical) > 100_000:
            self._lexical.clear()

    def close(self) -> None:
        """Close every descriptor."""
        self.invalidate()
        self.trim()

    def dir_fd(self, real: tuple[str, ...]) -> int:
        """The directory at ``real``, opened step by step with ``O_NOFOLLOW`` (cached)."""
        if not real:
            return self.root_fd
        fd = self._fds.get(real)
        if fd is not None:
            self._fds.move_to_end(real)
            return fd
        # start from the deepest cached ancestor (usually the parent)
        start, fd = 0, self.root_fd
        for i in range(len(real) - 1, 0, -1):
            cached = self._fds.get(real[:i])
            if cached is not None:
                start, fd = i, cached
                break
        owned = False
        try:
            for name in real[start:]:
                step = os.open(name, _O_DIR, dir_fd=fd)
                if owned:
                    os.close(fd)
                fd, owned = step, True
        except BaseException:
            if owned:
                os.close(fd)
            raise
        self._fds[real] = fd
        return fd

    def resolve(self, parts: Sequence[str], *, create: bool) -> tuple[str, ...] | None:
        """The real path of the directory named ``parts``, symlinks resolved inside the root.

        Missing directories are created (mode 0755) with ``create``; without it ``None`` is
        returned for a path that does not lead to a directory. With ``create``, a component that
        is not a directory raises :class:`_NotDirectory`; too many symlinks or too deep a result
        raise :class:`ValueError`.
        """
        key = tuple(parts)
        hit = self._lexical.get(key)
        if hit is not None:
            return hit
        real: list[str] = []
        fd, owned = self.root_fd, False
        # start below the deepest ancestor already resolved (usually the parent)
        start = 0
        for i in range(len(key) - 1, 0, -1):
            known = self._lexical.get(key[:i])
            if known is not None:
                start, real, fd = i, list(known), self.dir_fd(known)
                break
        pending = list(reversed(key[start:]))
        links = 0
        try:
            while pending:
                name = pending.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if real:
                        real.pop()
                        if owned:
                            os.close(fd)
                        fd, owned = os.dup(self.dir_fd(tuple(real))), True
                    continue
                try:
                    step = os.open(name, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        return None
                    try:
                        os.mkdir(name, 0o700, dir_fd=fd)
                    except FileExistsError:  # made under us since: look again (bounded)
                        links += 1
                        if links > MAX_SYMLINKS:
                            raise
                        pending.append(name)
                        continue
                    step = os.open(name, _O_DIR, dir_fd=fd)
                    os.fchmod(step, 0o755)
                    self.fresh.add((*real, name))
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise ValueError(
                            f"more than {MAX_SYMLINKS} symlinks (or changes under way) while "
                            f"resolving {'/'.join(parts)!r}"
                        ) from None
                    if stat.S_ISDIR(st.st_mode):  # it changed under us: try again
                        pending.append(name)
                        continue
                    if not stat.S_ISLNK(st.st_mode):
                        if create:
                            raise _NotDirectory("/".join((*real, name))) from None
                        return None
                    target = os.readlink(name, dir_fd=fd)
                    if target.startswith("/"):
                        real.clear()
                        if owned:
                            os.close(fd)
                        fd, owned = self.root_fd, False
                    pending.extend(reversed(target.split("/")))
                    continue
                if owned:
                    os.close(fd)
                fd, owned = step, True
                real.append(name)
                if len(real) > MAX_DEPTH:
                    raise ValueError(f"more than {MAX_DEPTH} levels once symlinks are resolved")
            result = tuple(real)
            if owned and result not in self._fds:
                self._fds[result] = fd
                owned = False
            self._lexical[key] = result
            return result
        finally:
            if owned:
                os.close(fd)


# -- applying layers ----------------------------------------------------------------------------


class _Applier:
    """Applies layers, entry by entry, into one root; remembers what a layer's end must do."""

    def __init__(self, root_fd: int, *, rootless: bool) -> None:
        self.tree = _Tree(root_fd)
        self.rootless = rootless
        self.upper: set[str] = set()  # real paths this layer wrote (and their parents)
        self.hidden: set[tuple[str, ...]] = set()  # whiteouts (or opaque dirs) applied
        self.dir_times: dict[tuple[str, ...], tuple[int, int]] = {}
        self.touched: dict[tuple[str, ...], tuple[int, int]] = {}  # times before the layer
        self.deferred_modes: dict[tuple[str, ...], int] = {}  # rootless: dirs without u+rwx
        self.skipped_devices: list[str] = []
        self.skipped_xattrs: list[tuple[str, str, str]] = []
        self._layer = ""

    # -- per layer

    def apply_layer(
        self, feed: _Feed, digest: str, path: Path, diff_id: Digest, *, max_layer_bytes: int,
        max_entries: int, progress: UnpackProgress | None,
    ) -> None:
        """Read one layer off ``feed`` and apply it; verify it against ``diff_id``."""
        self._layer = digest
        self.upper = set()
        self.tree.fresh = set()
        self.hidden = set()
        self.dir_times = {}
        self.touched = {}
        hasher = PipelinedHasher(diff_id.hasher(), depth=_QUEUE_DEPTH)
        try:
            self._apply_entries(feed, digest, path, hasher, max_layer_bytes=max_layer_bytes,
                                max_entries=max_entries, progress=progress)
        finally:
            done = hasher.finish()
        done.verify(diff_id, what=f"uncompressed layer {digest} (its diff_id)")
        if progress is not None:
            progress(digest, done.size, done.size)

    def _apply_entries(
        self, feed: _Feed, digest: str, path: Path, hasher: PipelinedHasher, *,
        max_layer_bytes: int, max_entries: int, progress: UnpackProgress | None,
    ) -> None:
        reader = _LayerReader(feed, hasher, digest, max_layer_bytes, progress)
        count = 0
        try:
            while (entry := _read_entry(reader)) is not None:
                count += 1
                if count > max_entries:
                    raise LayerTooLarge(f"more than {max_entries} entries (max_entries)",
                                        layer=digest, entry=entry.name)
                if entry.size > max_layer_bytes:
                    raise LayerTooLarge(
                        f"an entry of {entry.size} bytes, over max_layer_bytes "
                        f"({max_layer_bytes})", layer=digest, entry=entry.name,
                    )
                self.tree.trim()
                try:
                    consumed = self._apply(entry, reader)
                except UnpackError as exc:
                    if exc.layer is None:
                        raise type(exc)(exc.reason, layer=digest, entry=entry.name) from None
                    raise
                except (ValueError, _NotDirectory) as exc:
                    reason = str(exc)
                    if isinstance(exc, _NotDirectory):
                        reason = f"{reason!r} is not a directory"
                    raise UnsafeEntry(reason, layer=digest, entry=entry.name) from None
                except OSError as exc:
                    raise UnpackError(
                        f"{exc.strerror or exc}", layer=digest, entry=entry.name
                    ) from exc
                if not consumed:
                    reader.skip(entry.size)
                reader.skip(_pad(entry.size))
            reader.entry = None
            reader.drain()
            self._set_dir_times()
        except _Truncated:
            what = repr(reader.entry) if reader.entry else "a header"
            raise CorruptLayer(
                str(path), f"layer {digest}: the tar ends in the middle of {what}"
            ) from None
        except _BadTar as exc:
            where = f" (at {reader.entry!r})" if reader.entry else ""
            raise CorruptLayer(str(path), f"layer {digest}: {exc}{where}") from None
        except UnpackError as exc:
            if exc.layer is None:
                raise type(exc)(exc.reason, layer=digest, entry=reader.entry) from None
            raise

    def _touch(self, real: tuple[str, ...], fd: int) -> None:
        """Note a directory's times before this layer changes its content (see below)."""
        if real not in self.touched:
            st = os.fstat(fd)
            self.touched[real] = (st.st_atime_ns, st.st_mtime_ns)

    def _set_dir_times(self) -> None:
        """Directories' times, now that the layer wrote their content: the layer's own entry's
        times, else the times the directory had before the layer changed its content (as umoci
        keeps them), so the result does not depend on when it was unpacked."""
        for real, times in self.touched.items():
            if real in self.dir_times:
                continue
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue
            os.utime(fd, ns=times)
        self.touched = {}
        for real, (atime, mtime) in self.dir_times.items():
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue  # removed or replaced later in the layer
            os.utime(fd, ns=(atime, mtime))
        self.dir_times = {}

    def finish(self) -> None:
        """After the last layer: the modes kept back so the unprivileged caller could write."""
        for real in sorted(self.deferred_modes, key=len, reverse=True):
            try:
                fd = self.tree.dir_fd(real)
            except OSError:
                continue
            os.fchmod(fd, self.deferred_modes[real])
        self.deferred_modes.clear()

    def close(self) -> None:
        """Close the descriptors."""
        self.tree.close()

    def warn(self) -> None:
        """One warning per kind of thing skipped."""
        if self.skipped_devices:
            first = self.skipped_devices[0]
            warnings.warn(
                f"skipped {len(self.skipped_devices)} device node(s) (first: {first}): creating "
                "them needs root", UnpackWarning, stacklevel=3,
            )
        if self.skipped_xattrs:
            name, where, why = self.skipped_xattrs[0]
            warnings.warn(
                f"skipped {len(self.skipped_xattrs)} extended attribute(s) the filesystem or "
                f"the privileges refused (first: {name} on {where}: {why})",
                UnpackWarning, stacklevel=3,
            )

    # -- per entry

    def _apply(self, entry: _Entry, reader: _LayerReader) -> bool:
        """Apply one entry; whether its data was read."""
        parts = _split(entry.name)
        if not parts:
            if entry.kind != tarfile.DIRTYPE:
                raise UnsafeEntry("refusing to make the root directory anything but a directory")
            self._dir_metadata(self.tree.root_fd, (), entry)
            return False
        name = parts[-1]
        if name.startswith(_WHITEOUT):
            self._whiteout(parts[:-1], name)
            return False
        real_parent = self.tree.resolve(parts[:-1], create=True)
        assert real_parent is not None
        parent = self.tree.dir_fd(real_parent)
        self._touch(real_parent, parent)
        real = (*real_parent, name)
        self._mark_upper(real)
        kind = entry.kind
        if kind in _REGULAR:
            self._make_file(parent, name, entry, reader)
            return True
        if kind == tarfile.DIRTYPE:
            self._make_dir(parent, name, real, entry)
        elif kind == tarfile.SYMTYPE:
            self._make_symlink(parent, name, entry)
        elif kind == tarfile.LNKTYPE:
            self._make_hardlink(parent, name, entry)
        elif kind == tarfile.FIFOTYPE:
            self._make_fifo(parent, name, entry)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            self._make_device(parent, name, entry)
        else:
            raise UnsafeEntry(f"unsupported tar entry type {kind!r}")
        return False

    def _mark_upper(self, real: tuple[str, ...]) -> None:
        key = "/".join(real)
        upper = self.upper
        if key in upper:
            return
        upper.add(key)
        for i in range(len(real) - 1, 0, -1):
            prefix = "/".join(real[:i])
            if prefix in upper:
                break
            upper.add(prefix)

    def _clear_slot(
        self, parent: int, name: str, *, keep_dir: bool = False
    ) -> os.stat_result | None:
        """Remove whatever is at ``name`` (a directory with its content) unless it is a directory
        and ``keep_dir``; return its ``lstat`` when it is kept, else ``None``."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            self.tree.invalidate()
            _rmtree_at(parent, name)
            if self.deferred_modes:
                self._forget_deferred()
        else:
            os.unlink(name, dir_fd=parent)
            if stat.S_ISLNK(st.st_mode):
                self.tree.invalidate()
        return None

    def _forget_deferred(self) -> None:
        """Drop the deferred modes of directories just removed, so that a directory made again
        at the same path (implicitly, as a parent) does not get the old one's mode."""
        for real in list(self.deferred_modes):
            try:
                self.tree.dir_fd(real)
            except OSError:
                del self.deferred_modes[real]

    def _make_file(self, parent: int, name: str, entry: _Entry, reader: _LayerReader) -> None:
        try:
            fd = os.open(name, _O_NEW, 0o600, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            fd = os.open(name, _O_NEW, 0o600, dir_fd=parent)
        try:
            if entry.size:
                reader.copy_to(fd, entry.size)
            self._fd_metadata(fd, name, entry)
        finally:
            os.close(fd)

    def _fd_metadata(self, fd: int, name: str, entry: _Entry) -> None:
        """Owner, mode, xattrs, then times (chown clears setuid bits; writes and chown clear
        ``security.capability``)."""
        if not self.rootless:
            os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)
        for key, value in entry.xattrs.items():
            self._setxattr(fd, key, value, entry.name, follow=True)
        os.utime(fd, ns=(entry.atime_ns, entry.mtime_ns))

    def _dir_metadata(self, fd: int, real: tuple[str, ...], entry: _Entry) -> None:
        if not self.rootless:
            os.fchown(fd, entry.uid, entry.gid)
        mode = entry.mode
        if self.rootless and mode & 0o700 != 0o700:
            self.deferred_modes[real] = mode
            mode |= 0o700
        else:
            self.deferred_modes.pop(real, None)
        os.fchmod(fd, mode)
        for key, value in entry.xattrs.items():
            self._setxattr(fd, key, value, entry.name, follow=True)
        self.dir_times[real] = (entry.atime_ns, entry.mtime_ns)

    def _make_dir(self, parent: int, name: str, real: tuple[str, ...], entry: _Entry) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            self.tree.fresh.add(real)
        except FileExistsError:
            if self._clear_slot(parent, name, keep_dir=True) is None:
                os.mkdir(name, 0o700, dir_fd=parent)
                self.tree.fresh.add(real)
        fd = self.tree.dir_fd(real)
        self._dir_metadata(fd, real, entry)

    def _make_symlink(self, parent: int, name: str, entry: _Entry) -> None:
        target = entry.linkname
        if not target or "\0" in target or len(os.fsencode(target)) > PATH_MAX:
            raise UnsafeEntry("a symlink target that is empty, too long or holds a NUL byte")
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            os.symlink(target, name, dir_fd=parent)
        self._link_metadata(parent, name, entry)

    def _link_metadata(self, parent: int, name: str, entry: _Entry) -> None:
        """Metadata by name, for what cannot be opened: symlinks (never followed) and devices."""
        if not self.rootless:
            os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        if entry.xattrs:
            proc = f"/proc/self/fd/{parent}/{name}"
            for key, value in entry.xattrs.items():
                self._setxattr(proc, key, value, entry.name, follow=False)
        os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _make_hardlink(self, parent: int, name: str, entry: _Entry) -> None:
        try:
            target = _split(entry.linkname, "hard link target")
        except ValueError as exc:
            raise UnsafeEntry(str(exc)) from None
        if not target:
            raise UnsafeEntry("a hard link to the root directory")
        target_parent = self.tree.resolve(target[:-1], create=False)
        if target_parent is None:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist")
        target_fd = self.tree.dir_fd(target_parent)
        try:
            st = os.stat(target[-1], dir_fd=target_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise UnpackError(f"the hard link target {entry.linkname!r} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeEntry(f"a hard link to the directory {entry.linkname!r}")
        try:
            here = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                return  # already that inode
            self._clear_slot(parent, name)
        os.link(target[-1], name, src_dir_fd=target_fd, dst_dir_fd=parent, follow_symlinks=False)

    def _make_fifo(self, parent: int, name: str, entry: _Entry) -> None:
        try:
            os.mkfifo(name, 0o600, dir_fd=parent)
        except FileExistsError:
            self._clear_slot(parent, name)
            os.mkfifo(name, 0o600, dir_fd=parent)
        fd = os.open(name, _O_READ | os.O_NONBLOCK, dir_fd=parent)
        try:
            self._fd_metadata(fd, name, entry)
        finally:
            os.close(fd)

    def _make_device(self, parent: int, name: str, entry: _Entry) -> None:
        self._clear_slot(parent, name)
        if self.rootless:
            self.skipped_devices.append(f"{entry.name} in layer {self._layer}")
            return
        kind = stat.S_IFCHR if entry.kind == tarfile.CHRTYPE else stat.S_IFBLK
        try:
            os.mknod(name, 0o600 | kind, os.makedev(entry.devmajor, entry.devminor),
                     dir_fd=parent)
        except PermissionError:  # root without CAP_MKNOD (a container, a user namespace)
            self.skipped_devices.append(f"{entry.name} in layer {self._layer}")
            return
        os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, entry.mode, dir_fd=parent)  # the node just made: no symlink to follow
        if entry.xattrs:
            proc = f"/proc/self/fd/{parent}/{name}"
            for key, value in entry.xattrs.items():
                self._setxattr(proc, key, value, entry.name, follow=False)
        os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _setxattr(self, target: int | str, key: str, value: bytes, where: str, *,
                  follow: bool) -> None:
        try:
            os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
            self.skipped_xattrs.append((key, where, exc.strerror or str(exc)))

    # -- whiteouts

    def _whiteout(self, parent_parts: list[str], name: str) -> None:
        if name == _OPAQUE:
            opaque = True
        elif name.startswith(_AUFS_META):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to apply
        else:
            opaque = False
            hidden = name[len(_WHITEOUT) :]
            if hidden in ("", ".", ".."):
                raise UnsafeEntry(f"a whiteout {name!r} naming no entry")
        real_parent = self.tree.resolve(parent_parts, create=False)
        if real_parent is None:
            return  # nothing there to hide
        # Lower entries can only be hidden once per layer: whatever a directory holds after that
        # was written by this layer. Remembering it keeps repeated whiteouts linear.
        marker = real_parent if opaque else (*real_parent, hidden)
        if marker in self.hidden or real_parent in self.tree.fresh:
            return
        self.hidden.add(marker)
        parent = self.tree.dir_fd(real_parent)
        self._touch(real_parent, parent)
        if opaque:
            for child in os.listdir(parent):
                self._hide(parent, real_parent, child)
        else:
            self._hide(parent, real_parent, hidden)

    def _hide(self, parent: int, real_parent: tuple[str, ...], name: str) -> None:
        """Remove ``name`` as the lower layers left it: keep what this layer wrote there."""
        real = (*real_parent, name)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if "/".join(real) not in self.upper:
            self._clear_slot(parent, name)
            return
        if stat.S_ISDIR(st.st_mode) and real not in self.tree.fresh and real not in self.hidden:
            self.hidden.add(real)
            fd = os.open(name, _O_DIR, dir_fd=parent)
            try:
                self._touch(real, fd)
                for child in os.listdir(fd):
                    self._hide(fd, real, child)
            finally:
                os.close(fd)


# -- removing trees by descriptor ---------------------------------------------------------------


def _rmtree_at(parent: int, name: str) -> None:
    """Remove the directory ``name`` in ``parent`` and everything in it, never following a link.

    A directory the (unprivileged) caller cannot write or search is made so first, when the
    caller owns it.
    """
    fd = _open_dir_for_removal(parent, name)
    try:
        for child in os.listdir(fd):
            try:
                os.unlink(child, dir_fd=fd)
            except IsADirectoryError:
                _rmtree_at(fd, child)
            except PermissionError:  # Linux answers EPERM for unlink() of a directory
                st = os.stat(child, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise
                _rmtree_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _open_dir_for_removal(parent: int, name: str) -> int:
    try:
        fd = os.open(name, _O_DIR, dir_fd=parent)
    except PermissionError:
        fd = -1
    if fd >= 0:
        st = os.fstat(fd)
        if st.st_mode & 0o700 == 0o700 or os.geteuid() == 0:
            return fd
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
        return fd
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name)
    os.chmod(name, stat.S_IMODE(st.st_mode) | 0o700, dir_fd=parent)
    return os.open(name, _O_DIR, dir_fd=parent)


def _clear_fd(fd: int) -> None:
    """Empty the directory open as ``fd`` (best effort: used while an error propagates)."""
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700 and os.geteuid() != 0:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    for child in _listdir(fd):
        with contextlib.suppress(OSError):
            try:
                os.unlink(child, dir_fd=fd)
            except (IsADirectoryError, PermissionError):
                _rmtree_at(fd, child)


def _listdir(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError:
        return []


def _clear_dir(path: Path) -> None:
    """Empty ``path`` (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _clear_fd(fd)
    finally:
        os.close(fd)


def _remove_path(path: Path) -> None:
    """Remove the directory ``path`` and its content (best effort)."""
    parent = path.absolute().parent
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            _rmtree_at(fd, path.name)
    finally:
        os.close(fd)


# -- the destination, the cache and copies out of it --------------------------------------------


def _is_rootless(rootless: bool | None) -> bool:
    return os.geteuid() != 0 if rootless is None else rootless


def _prepare_dest(dest: Path) -> bool:
    """Check ``dest`` is absent or an empty directory; create it if absent. Whether it was."""
    try:
        st = dest.stat()
    except FileNotFoundError:
        dest.mkdir(parents=True)
        return True
    if not stat.S_ISDIR(st.st_mode):
        raise UnpackError(f"{dest} exists and is not a directory")
    if any(True for _ in os.scandir(dest)):
        raise UnpackError(f"{dest} exists and is not empty")
    return False


def rootfs_path(store: Store, manifest_digest: str, *, rootless: bool | None = None) -> Path:
    """Where the cache keeps the tree of the image whose manifest is ``manifest_digest``."""
    d = Digest.parse(manifest_digest)
    base = store.root / "rootfs"
    if _is_rootless(rootless):
        base = base / "rootless"
    return base / d.algorithm / d.hex


def _cached_tree(
    store: Store, manifest_digest: str, layers: Sequence[tuple[str, str, Path]],
    diff_ids: Sequence[str], *, rootless: bool, max_layer_bytes: int, max_entries: int,
    progress: UnpackProgress | None,
) -> Path:
    """The image's tree in the cache, built now (under the image's lock) if it is not there."""
    final = rootfs_path(store, manifest_digest, rootless=rootless)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    locks = store.root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    tag = "rootless-" if rootless else ""
    with filelock.FileLock(locks / f"rootfs-{tag}{final.parent.name}-{final.name}.lock"):
        if final.is_dir():
            return final
        for stale in final.parent.glob(f"{_TMP_PREFIX}{final.name}-*"):
            _remove_path(stale)  # a build that crashed: we hold the lock, nobody else builds
        tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            os.chmod(tmp, 0o755)  # noqa: S103 - a root filesystem's root is 0755
            unpack_layers(
                layers, diff_ids, tmp, max_layer_bytes=max_layer_bytes,
                max_entries=max_entries, progress=progress, rootless=rootless,
            )
            os.rename(tmp, final)
        except BaseException:
            _remove_path(tmp)
            raise
    return final


class _Copier:
    """Copies a tree (the cache's) into an empty directory: same types, modes, owners, times,
    xattrs and hard-link groups; file data by reflink where possible, else in the kernel."""

    def __init__(self, dest_fd: int, *, rootless: bool) -> None:
        self.dest_fd = dest_fd
        self.rootless = rootless
        self.reflink = sys.platform == "linux"
        self.links: dict[tuple[int, int], tuple[str, ...]] = {}
        self.euid = os.geteuid()

    def copy_dir(self, src: int, dst: int, rel: tuple[str, ...]) -> None:
        """Copy the content of ``src`` into ``dst`` (``rel`` is its path from the root)."""
        for name in os.listdir(src):
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dst)
                sfd = self._open_src(src, name, st, directory=True)
                try:
                    dfd = os.open(name, _O_DIR, dir_fd=dst)
                    try:
                        self.copy_dir(sfd, dfd, (*rel, name))
                        self.metadata_fd(sfd, dfd, st)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    self._link(first, dst, name)
                    continue
                self.links[key] = (*rel, name)
            if stat.S_ISREG(mode):
                self._copy_file(src, dst, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                self._name_metadata(src, dst, name, st)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(name, 0o600, dir_fd=dst)
                fd = os.open(name, _O_READ | os.O_NONBLOCK, dir_fd=dst)
                try:
                    sfd = os.open(name, _O_READ | os.O_NONBLOCK, dir_fd=src)
                    try:
                        self.metadata_fd(sfd, fd, st)
                    finally:
                        os.close(sfd)
                finally:
                    os.close(fd)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.mknod(name, 0o600 | stat.S_IFMT(mode), st.st_rdev, dir_fd=dst)
                os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
                self._name_metadata(src, dst, name, st)

    def _open_src(self, parent: int, name: str, st: os.stat_result, *, directory: bool) -> int:
        flags = _O_DIR if directory else _O_READ
        try:
            return os.open(name, flags, dir_fd=parent)
        except PermissionError:
            if st.st_uid != self.euid:
                raise
        # our own entry without read (or search) permission: open it, then put the mode back
        os.chmod(name, stat.S_IMODE(st.st_mode) | (0o500 if directory else 0o400), dir_fd=parent)
        try:
            return os.open(name, flags, dir_fd=parent)
        finally:
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=parent)

    def _link(self, first: tuple[str, ...], dst: int, name: str) -> None:
        fd = self.dest_fd
        owned = False
        try:
            for part in first[:-1]:
                step = os.open(part, _O_DIR, dir_fd=fd)
                if owned:
                    os.close(fd)
                fd, owned = step, True
            os.link(first[-1], name, src_dir_fd=fd, dst_dir_fd=dst, follow_symlinks=False)
        finally:
            if owned:
                os.close(fd)

    def _copy_file(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        sfd = self._open_src(src, name, st, directory=False)
        try:
            dfd = os.open(name, _O_NEW, 0o600, dir_fd=dst)
            try:
                if st.st_size:
                    self._data(sfd, dfd, st.st_size)
                self.metadata_fd(sfd, dfd, st)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def _data(self, sfd: int, dfd: int, size: int) -> None:
        if self.reflink:
            import fcntl

            try:
                fcntl.ioctl(dfd, FICLONE, sfd)
            except OSError:
                self.reflink = False  # this filesystem cannot clone: copy from now on
            else:
                return
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(sfd, dfd, size - copied)
                if not n:
                    break
                copied += n
        except OSError as exc:
            if copied or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                           errno.EOPNOTSUPP):
                raise
            while chunk := os.read(sfd, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dfd, view) :]

    def metadata_fd(self, sfd: int, dfd: int, st: os.stat_result) -> None:
        """Owner, mode, xattrs and times of ``sfd`` onto ``dfd``."""
        if not self.rootless:
            os.fchown(dfd, st.st_uid, st.st_gid)
        os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):
            for key in os.listxattr(sfd):
                with contextlib.suppress(OSError):
                    os.setxattr(dfd, key, os.getxattr(sfd, key))
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _name_metadata(self, src: int, dst: int, name: str, st: os.stat_result) -> None:
        if not self.rootless:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        with contextlib.suppress(OSError):
            source, target = f"/proc/self/fd/{src}/{name}", f"/proc/self/fd/{dst}/{name}"
            for key in os.listxattr(source, follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.setxattr(target, key, os.getxattr(source, key, follow_symlinks=False),
                                follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _copy_tree(source: Path, dest: Path, *, rootless: bool) -> None:
    """Copy the tree at ``source`` into the empty directory ``dest`` (root metadata included)."""
    src = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(src)
            copier = _Copier(dst, rootless=rootless)
            copier.copy_dir(src, dst, ())
            copier.metadata_fd(src, dst, st)
        finally:
            os.close(dst)
    finally:
        os.close(src)


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_LAYER_BYTES",
    "MAX_DEPTH",
    "MAX_HEADER_BYTES",
    "NAME_MAX",
    "PATH_MAX",
    "UnpackProgress",
    "UnpackWarning",
    "rootfs_path",
    "unpack_image",
    "unpack_layers",
]
