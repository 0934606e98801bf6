"""``tank export``: an image's final tree as one tar stream.

The entries come in listing order (:mod:`tank.inside.view`): depth first, a directory before its
content, names sorted by their bytes; the same image always gives the same bytes. The root
directory itself is not an entry (extracting must not change the directory extracted into). A
file with several paths is written once, at its first path; the others are hard links to it.
There are no whiteouts, and nothing a layer removed.

Headers are POSIX (pax) tar, written here: ustar fields where the values fit, a pax extended
header for the rest (long names and link targets, sizes of 8 GiB and more, large owners,
modification times with nanoseconds or before 1970, extended attributes as ``SCHILY.xattr.*``),
numeric owners only (no user or group names), device numbers in base-256 when octal cannot hold
them. Names that are not UTF-8 are written as their bytes (``hdrcharset=BINARY``).

The contents were kept in a :class:`~tank.inside.read.Spool` per layer while the layers were read
(one decompression of each layer, several at once); they are copied from there with
``sendfile`` into a file or a pipe, or through zlib with ``gzip`` (level 6, no name, time 0: the
same bytes every time).
"""

from __future__ import annotations

import errno
import os
import tarfile
import zlib
from collections.abc import Mapping
from typing import Final, Protocol

from tank.inside.tree import BLOCK, CHAR, DIR, FIFO, FILE, SYMLINK, Dir, Node, walk

_BLOCK: Final = 512
_NS: Final = 1_000_000_000
_BUFFER: Final = 1 << 20
_COPY: Final = 8 << 20
_TYPES: Final = {
    FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE,
    FIFO: tarfile.FIFOTYPE, CHAR: tarfile.CHRTYPE, BLOCK: tarfile.BLKTYPE,
}
#: gzip's default compression level
GZIP_LEVEL: Final = 6


class BinaryWriter(Protocol):
    """Where a tar goes when it is not a file descriptor: anything with ``write(bytes)``."""

    def write(self, data: bytes, /) -> object:
        """Take the next bytes."""


# -- headers ------------------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    """``value`` in octal, zero-padded, NUL-terminated, in a field of ``width`` bytes."""
    return b"%0*o\0" % (width - 1, value)


def _number(value: int, width: int) -> bytes:
    """A numeric field: octal when it fits, else base-256 (GNU), as tar readers accept."""
    if 0 <= value < 8 ** (width - 1):
        return _octal(value, width)
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"LEN KEY=VALUE\\n"`` record; LEN counts itself."""
    body = b" " + key + b"=" + value + b"\n"
    size = len(body) + 1
    while len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _ustar(
    name: bytes, kind: bytes, *, size: int = 0, mode: int = 0, uid: int = 0, gid: int = 0,
    mtime: int = 0, linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
) -> bytes:
    """One 512-byte ustar header (the fields already fit)."""
    fields = [
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # the checksum, counted as spaces
        kind,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        bytes(32),  # uname
        bytes(32),  # gname
        _number(devmajor, 8),
        _number(devminor, 8),
        bytes(155),  # prefix
        bytes(12),
    ]
    block = bytearray(b"".join(fields))
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def header(
    name: str, kind: bytes, *, size: int = 0, mode: int = 0o644, uid: int = 0, gid: int = 0,
    mtime_ns: int = 0, linkname: str = "", devices: tuple[int, int] | None = None,
    xattrs: Mapping[str, bytes] | None = None,
) -> bytes:
    """The header block(s) of one entry: a pax extended header first when a value needs one."""
    raw_name = name.encode("utf-8", "surrogateescape")
    raw_link = linkname.encode("utf-8", "surrogateescape")
    pax: list[tuple[bytes, bytes]] = []
    if len(raw_name) > 100:
        pax.append((b"path", raw_name))
    if len(raw_link) > 100:
        pax.append((b"linkpath", raw_link))
    if size >= 8 ** 11:
        pax.append((b"size", str(size).encode()))
    for key, value in ((b"uid", uid), (b"gid", gid)):
        if value >= 8 ** 7:
            pax.append((key, str(value).encode()))
    seconds, fraction = divmod(mtime_ns, _NS)
    if fraction or not 0 <= seconds < 8 ** 11:
        whole, part = divmod(abs(mtime_ns), _NS)
        text = f"{'-' if mtime_ns < 0 else ''}{whole}"
        if part:
            text += "." + f"{part:09d}".rstrip("0")
        pax.append((b"mtime", text.encode()))
    for attr, content in sorted((xattrs or {}).items()):
        pax.append((b"SCHILY.xattr." + attr.encode("utf-8", "surrogateescape"), content))
    major, minor = devices or (0, 0)
    block = _ustar(
        raw_name[:100], kind, size=size if size < 8 ** 11 else 0, mode=mode,
        uid=uid if uid < 8 ** 7 else 0, gid=gid if gid < 8 ** 7 else 0,
        mtime=min(max(seconds, 0), 8 ** 11 - 1), linkname=raw_link[:100], devmajor=major,
        devminor=minor,
    )
    if not pax:
        return block
    records = b"".join(_pax_record(k, v) for k, v in pax)
    if not all(_utf8(k) and _utf8(v) for k, v in pax):
        records = _pax_record(b"hdrcharset", b"BINARY") + records
    extended = _ustar(b"././@PaxHeader", tarfile.XHDTYPE, size=len(records), mode=0o644)
    return extended + records + bytes(-len(records) % _BLOCK) + block


# -- the output ---------------------------------------------------------------------------------


class TarOutput:
    """Bytes out to a file descriptor or a writer, buffered; file contents copied from a
    descriptor (``sendfile`` where it can); optionally through gzip."""

    def __init__(
        self, fd: int | None = None, writer: BinaryWriter | None = None, *, gzip: bool = False,
    ) -> None:
        self.fd = fd
        self.writer = writer
        self.written = 0  # bytes of tar (before compression)
        self._buffer = bytearray()
        self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None
        self._sendfile = fd is not None and not gzip

    def write(self, data: bytes) -> None:
        """Queue ``data``."""
        self._buffer += data
        self.written += len(data)
        if len(self._buffer) >= _BUFFER:
            self.flush()

    def flush(self) -> None:
        """Send what is queued."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._raw(data)

    def _raw(self, data: bytes) -> None:
        if self._gzip is not None:
            data = self._gzip.compress(data)
            if not data:
                return
        if self.fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        else:
            assert self.writer is not None
            self.writer.write(data)

    def copy(self, source: int, offset: int, size: int) -> None:
        """Send ``size`` bytes of the descriptor ``source`` from ``offset``."""
        self.flush()
        self.written += size
        end = offset + size
        if self._sendfile:
            assert self.fd is not None
            try:
                while offset < end:
                    sent = os.sendfile(self.fd, source, offset, min(end - offset, 1 << 30))
                    if sent == 0:
                        raise OSError(errno.EIO, "the scratch file ended early")
                    offset += sent
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self._sendfile = False  # e.g. a descriptor opened with O_APPEND
        while offset < end:
            chunk = os.pread(source, min(_COPY, end - offset), offset)
            if not chunk:
                raise OSError(errno.EIO, "the scratch file ended early")
            self._raw(chunk)
            offset += len(chunk)

    def finish(self) -> None:
        """The end-of-archive blocks, then everything flushed (and the gzip trailer)."""
        self.write(bytes(2 * _BLOCK))
        self.flush()
        if self._gzip is not None:
            tail = self._gzip.flush()
            self._gzip = None
            if self.fd is not None:
                view = memoryview(tail)
                while view:
                    view = view[os.write(self.fd, view):]
            else:
                assert self.writer is not None
                self.writer.write(tail)


def write_tar(root: Dir, out: TarOutput, spools: Mapping[int, int]) -> int:
    """Write the tree under ``root`` as a tar to ``out``; the number of entries written. File
    contents come from the descriptor ``spools[node.layer]``, at the offset ``node.data``
    (each layer's files were kept in that layer's spool)."""
    first: dict[int, str] = {}
    count = 0
    for parts, node in walk(root):
        name = "/".join(parts)
        count += 1
        if node.kind != DIR and node.nlink > 1:
            seen = first.get(id(node))
            if seen is not None:
                out.write(_header_of(name, node, tarfile.LNKTYPE, linkname=seen))
                continue
            first[id(node)] = name
        if node.kind == DIR:
            out.write(_header_of(name + "/", node, tarfile.DIRTYPE))
        elif node.kind == FILE:
            out.write(_header_of(name, node, tarfile.REGTYPE, size=node.size))
            if node.size:
                spool = spools.get(node.layer)
                if spool is None or not isinstance(node.data, int):
                    raise ValueError(f"no content kept for {name}")
                out.copy(spool, node.data, node.size)
                out.write(bytes(-node.size % _BLOCK))
        else:
            out.write(_header_of(name, node, _TYPES[node.kind], linkname=node.link))
    out.finish()
    return count


def _header_of(
    name: str, node: Node, kind: bytes, *, size: int = 0, linkname: str = "",
) -> bytes:
    return header(
        name, kind, size=size, mode=node.mode, uid=node.uid, gid=node.gid,
        mtime_ns=node.mtime_ns, linkname=linkname, devices=node.devices, xattrs=node.xattrs,
    )


__all__ = ["GZIP_LEVEL", "BinaryWriter", "TarOutput", "header", "write_tar"]
