"""tank's own tar reader: the entries of one layer, read off its uncompressed bytes as they come.

A layer is hostile until proven otherwise, and this reader is where that starts. It extracts
nothing: :class:`LayerReader` hands out each entry (:class:`TarEntry`: name, type, mode, owner,
size, times to the nanosecond, link target, extended attributes) and lets the caller read the
entry's content in chunks, copy it to a file, or leave it (it is skipped). The root filesystem
builder (:mod:`tank.outputs.rootfs`) applies the entries; anything else that walks a layer (a
listing, a ``cat``) can use the same reader with :func:`read_layer`, and
:mod:`tank.layers.whiteout` to tell whiteouts from files.

What it guarantees:

- Python's own ``tarfile`` reading (and its ``filter="data"``, bypassable in the Python 3.11 this
  runs on) is not used. Headers are decoded exactly as :meth:`tarfile.TarInfo.frombuf` decodes
  them (a fast path for the common octal case, ``frombuf`` itself for the rest); extended (PAX)
  headers by a linear parser here (Python 3.11.7's own backtracks quadratically on crafted
  headers: CVE-2024-6232).
- Limits: a layer's uncompressed size (``max_layer_bytes``, counted as the bytes come, before
  they are parsed) and entry count (``max_entries``) raise :class:`~tank.errors.LayerTooLarge`, as
  does an extended header over :data:`MAX_HEADER_BYTES` or more than
  :data:`MAX_EXTENDED_HEADERS` extended headers for one entry. A GNU long name over
  :data:`PATH_MAX` is :class:`~tank.errors.UnsafeEntry`.
- GNU sparse entries (old GNU and PAX ``GNU.sparse.*``) are refused (``UnsafeEntry``). Global
  PAX headers (``git archive`` writes one with a comment) are parsed, then ignored, as Go's
  ``archive/tar`` (umoci) does: a global ``path`` or ``size`` would otherwise apply to every
  later member.
- Numbers are range-checked: owners up to ``2**32 - 2`` (``(uid_t) -1`` means "unchanged" to
  ``chown``), times within 64-bit nanoseconds, device numbers within 32 bits. Extended
  attributes come from ``SCHILY.xattr.*`` and base64 ``LIBARCHIVE.xattr.*`` records.
- Names are checked by :func:`split_name`: a leading ``/`` is dropped (``/etc/x`` is the root's
  ``etc/x``, as tar, umoci and containerd read it) and so are ``.`` components; a ``..``
  component is refused, as are names longer than :data:`PATH_MAX` (4096 bytes), components
  longer than :data:`NAME_MAX` (255), more than :data:`MAX_DEPTH` levels, and NUL bytes.
  Backslashes are ordinary characters.
- A stream that does not parse, or ends inside a header or a file's data, is
  :class:`~tank.errors.CorruptLayer` naming the layer and the entry.

Every error names the layer's digest (and the entry, when there is one).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import struct
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple, Protocol
from urllib.parse import unquote_to_bytes

from tank.errors import CorruptLayer, LayerTooLarge, UnpackError, UnsafeEntry
from tank.layers.compression import CHUNK, open_layer

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
#: the most extended headers (PAX, GNU long names) accepted before one entry
MAX_EXTENDED_HEADERS: Final = 64
#: the tar types of regular files (whose content follows the header)
REGULAR_TYPES: Final = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
#: every tar type an entry may have: regular files, hard links, symlinks, character and block
#: devices, directories, FIFOs (the caller refuses the others)
KNOWN_TYPES: Final = REGULAR_TYPES | {
    tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
}

#: ``progress(layer_digest, bytes_done, -1)``, called as the layer's bytes come
Progress = Callable[[str, int, int], None]

_BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(_BLOCK)
_PAX_TYPES: Final = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})
_LONG_TYPES: Final = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})
_SPARSE_KEYS: Final = ("GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.major",
                       "GNU.sparse.offset", "GNU.sparse.numblocks")
_NS: Final = 1_000_000_000
_MAX_TIME_NS: Final = (1 << 63) - 1
_MAX_ID: Final = (1 << 32) - 2  # (uid_t) -1 means "unchanged" to chown


@dataclass(slots=True)
class TarEntry:
    """One tar member, its extended headers applied.

    :ivar name: the name as the tar gives it (PAX ``path``, GNU long name or header), unchecked:
        :func:`split_name` makes it path components.
    :ivar kind: the tar type flag (``tarfile.REGTYPE``, ``tarfile.DIRTYPE``, …; see
        :data:`REGULAR_TYPES` and :data:`KNOWN_TYPES`).
    :ivar size: bytes of content that follow (regular files and unknown types; 0 for the rest).
    :ivar mode: permission bits, setuid, setgid and sticky included (``0o7777`` at most).
    :ivar uid: numeric owner (names are never looked up).
    :ivar gid: numeric group.
    :ivar mtime_ns: modification time, nanoseconds since the epoch.
    :ivar atime_ns: access time (the modification time unless PAX gives one).
    :ivar linkname: a symlink's target or a hard link's target name, as written.
    :ivar devmajor: a device node's major number.
    :ivar devminor: a device node's minor number.
    :ivar xattrs: extended attributes, name → value.
    """

    name: str
    kind: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes]


def split_name(name: str, what: str = "name") -> list[str]:
    """A member name's components inside the root; ``ValueError`` (the reason) if refused.

    ``what`` names the thing in the reason (``"hard link target"``). An empty list is the root.
    """
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


def hardlink_target(entry: TarEntry) -> list[str]:
    """The components of a hard link's target inside the root;
    :class:`~tank.errors.UnsafeEntry` for a refused name, or the root itself."""
    try:
        target = split_name(entry.linkname, "hard link target")
    except ValueError as exc:
        raise UnsafeEntry(str(exc)) from None
    if not target:
        raise UnsafeEntry("a hard link to the root directory")
    return target


# -- tar headers --------------------------------------------------------------------------------


class _Header(NamedTuple):
    """The fields of one 512-byte tar header that a reader uses."""

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


class _BadTar(Exception):
    """A header that does not decode."""


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


def _read_entry(reader: LayerReader) -> TarEntry | None:
    """The next member, or ``None`` at the end of the archive.

    Global PAX headers (``git archive`` writes one with a comment) are checked and ignored: a
    global ``path`` or ``size`` would otherwise apply to every later member.
    """
    local: dict[str, str] = {}
    longname: str | None = None
    longlink: str | None = None
    extra = 0
    while True:
        block = reader._read_exact(_BLOCK)
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
            if extra > MAX_EXTENDED_HEADERS:
                raise LayerTooLarge(
                    f"more than {MAX_EXTENDED_HEADERS} extended headers for one entry")
            if kind in _PAX_TYPES and info.size > MAX_HEADER_BYTES:
                raise LayerTooLarge(f"an extended (PAX) header of {info.size} bytes, over "
                                    f"{MAX_HEADER_BYTES}")
            if kind in _LONG_TYPES and info.size > PATH_MAX + 1:
                raise UnsafeEntry(f"an absurd name: a GNU long name header of {info.size} "
                                  f"bytes, over {PATH_MAX}")
            data = reader._read_exact(info.size)
            if data is None:
                raise reader._truncated()
            reader._skip(_pad(info.size))
            if kind == tarfile.GNUTYPE_LONGNAME:
                longname = _nts(data)
            elif kind == tarfile.GNUTYPE_LONGLINK:
                longlink = _nts(data)
            elif kind == tarfile.XGLTYPE:
                _parse_pax(data)  # checked, then ignored, as Go's archive/tar (umoci) does
            else:
                local.update(_parse_pax(data))
            continue
        return _entry(reader, info, local, longname, longlink)


def _entry(
    reader: LayerReader, info: _Header, pax: dict[str, str], longname: str | None,
    longlink: str | None,
) -> TarEntry:
    """The member whose header is ``info``, with its extended headers applied and checked."""
    kind = info.type
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
    return TarEntry(
        name=name,
        kind=kind,
        size=size if kind in REGULAR_TYPES or kind not in KNOWN_TYPES else 0,
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


# -- the reader ---------------------------------------------------------------------------------


class Hashing(Protocol):
    """What a :class:`LayerReader` feeds the layer's bytes to (a hasher)."""

    def update(self, data: bytes) -> None:
        """Take the next bytes."""


class LayerReader:
    """The entries of one layer's tar, read off its uncompressed bytes as they come.

    Iterate over it (or call :meth:`next_entry`) for the entries; while an entry is current,
    :meth:`read`, :meth:`chunks` or :meth:`copy_to` give its content. Whatever content is left
    unread is skipped when the next entry is asked for. Once the entries are exhausted, the rest
    of the stream (the padding after the end-of-archive blocks) is read too, so that ``hasher``
    has seen every byte and can be checked against the layer's ``diff_id``.

    Every byte is counted against ``max_layer_bytes`` as it comes, and handed to ``hasher`` and
    ``progress``. Errors: :class:`~tank.errors.CorruptLayer` (a stream that does not parse or
    ends early), :class:`~tank.errors.LayerTooLarge` and :class:`~tank.errors.UnsafeEntry` (see
    the module's docstring), each naming ``digest``.
    """

    def __init__(
        self,
        chunks: Callable[[], bytes | None],
        *,
        digest: str,
        source: str,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        hasher: Hashing | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Read the layer whose uncompressed bytes ``chunks()`` returns, a chunk a call
        (``None`` or ``b""`` at the end); ``digest`` and ``source`` (the blob's path) name it in
        errors."""
        self._chunks = chunks
        self._digest = digest
        self._source = source
        self._limit = max_layer_bytes
        self._max_entries = max_entries
        self._hasher = hasher
        self._progress = progress
        self._buf = memoryview(b"")
        self._pos = 0
        self._done = False  # the stream has ended
        self._ended = False  # the entries have ended
        self._count = 0
        self._remaining = 0  # unread content of the current entry
        self._padding = 0  # the current entry's padding to the next block
        #: uncompressed bytes read so far
        self.total = 0
        #: the name of the entry (or header) being read, for messages; ``None`` between layers
        self.entry: str | None = None

    # -- entries

    def __iter__(self) -> Iterator[TarEntry]:
        """Each entry in turn (see :meth:`next_entry`)."""
        while (entry := self.next_entry()) is not None:
            yield entry

    def next_entry(self) -> TarEntry | None:
        """The next entry, skipping what is left of the current one; ``None`` at the end of the
        archive (the rest of the stream is then read and hashed)."""
        if self._ended:
            return None
        try:
            self._skip(self._remaining + self._padding)
            self._remaining = self._padding = 0
            entry = _read_entry(self)
        except _BadTar as exc:
            where = f" (at {self.entry!r})" if self.entry else ""
            raise CorruptLayer(self._source, f"layer {self._digest}: {exc}{where}") from None
        except UnpackError as exc:
            if exc.layer is None:
                raise type(exc)(exc.reason, layer=self._digest, entry=self.entry) from None
            raise
        if entry is None:
            self._ended = True
            self.entry = None
            self._drain()
            return None
        self._count += 1
        if self._count > self._max_entries:
            raise LayerTooLarge(f"more than {self._max_entries} entries (max_entries)",
                                layer=self._digest, entry=entry.name)
        if entry.size > self._limit:
            raise LayerTooLarge(
                f"an entry of {entry.size} bytes, over max_layer_bytes ({self._limit})",
                layer=self._digest, entry=entry.name,
            )
        self._remaining = entry.size
        self._padding = _pad(entry.size)
        return entry

    # -- the current entry's content

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes of the current entry's content; ``b""`` once it is all read."""
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        if self._pos == len(self._buf) and not self._refill():
            raise self._truncated()
        k = min(n, len(self._buf) - self._pos)
        data = self._buf[self._pos : self._pos + k].tobytes()
        self._pos += k
        self._remaining -= k
        return data

    def chunks(self) -> Iterator[bytes]:
        """The rest of the current entry's content, a chunk at a time."""
        while chunk := self.read():
            yield chunk

    def copy_to(self, fd: int) -> None:
        """Write the rest of the current entry's content to the file ``fd``."""
        n, self._remaining = self._remaining, 0
        while n:
            if self._pos == len(self._buf) and not self._refill():
                raise self._truncated()
            k = min(n, len(self._buf) - self._pos)
            view = self._buf[self._pos : self._pos + k]
            while view:
                view = view[os.write(fd, view) :]
            self._pos += k
            n -= k

    # -- the stream

    def _truncated(self) -> CorruptLayer:
        what = repr(self.entry) if self.entry else "a header"
        return CorruptLayer(
            self._source, f"layer {self._digest}: the tar ends in the middle of {what}"
        )

    def _refill(self) -> bool:
        if self._done:
            return False
        chunk = self._chunks()
        if not chunk:
            self._done = True
            self._buf, self._pos = memoryview(b""), 0
            return False
        self.total += len(chunk)
        if self.total > self._limit:
            raise LayerTooLarge(
                f"more than {self._limit} uncompressed bytes (max_layer_bytes)",
                layer=self._digest, entry=self.entry,
            )
        if self._hasher is not None:
            self._hasher.update(chunk)
        self._buf, self._pos = memoryview(chunk), 0
        if self._progress is not None:
            self._progress(self._digest, self.total, -1)
        return True

    def _read_exact(self, n: int) -> bytes | None:
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
                raise self._truncated()
            k = min(need, len(self._buf))
            parts.append(self._buf[:k].tobytes())
            self._pos = k
            need -= k
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        """Pass over the next ``n`` bytes."""
        while n:
            if self._pos == len(self._buf) and not self._refill():
                raise self._truncated()
            k = min(n, len(self._buf) - self._pos)
            self._pos += k
            n -= k

    def _drain(self) -> None:
        """Read (and hash) the rest of the layer: the padding after the end-of-archive blocks."""
        self._pos = len(self._buf)
        while self._refill():
            self._pos = len(self._buf)


@contextlib.contextmanager
def read_layer(
    path: str | os.PathLike[str],
    media_type: str,
    *,
    digest: str,
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    hasher: Hashing | None = None,
) -> Iterator[LayerReader]:
    """Open the layer blob at ``path`` and read its tar in this thread::

        with read_layer(blob, media_type, digest=digest) as layer:
            for entry in layer:
                if entry.kind in REGULAR_TYPES and entry.name == "etc/os-release":
                    data = b"".join(layer.chunks())

    ``digest`` names the layer in errors. (The root filesystem builder decompresses in a
    background thread instead: :class:`~tank.layers.feed.LayerFeed`.)
    """
    with open_layer(path, media_type) as stream:
        yield LayerReader(
            lambda: stream.read(CHUNK), digest=digest, source=str(Path(path)),
            max_layer_bytes=max_layer_bytes, max_entries=max_entries, hasher=hasher,
        )


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_LAYER_BYTES",
    "KNOWN_TYPES",
    "MAX_DEPTH",
    "MAX_EXTENDED_HEADERS",
    "MAX_HEADER_BYTES",
    "NAME_MAX",
    "PATH_MAX",
    "REGULAR_TYPES",
    "Hashing",
    "LayerReader",
    "Progress",
    "TarEntry",
    "hardlink_target",
    "read_layer",
    "split_name",
]
