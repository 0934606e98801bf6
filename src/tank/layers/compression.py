"""Layer blobs, decompressed as they stream: gzip, zstd and plain tar.

A layer's media type says how it is compressed (:func:`layer_compression`), in the OCI and the
Docker spellings alike. :func:`open_layer` gives a file object of the uncompressed tar bytes,
read in 1 MiB chunks, in memory that stays flat whatever the layer's size or compression ratio.
:func:`diff_id_of` hashes that stream: the layer's ``diff_id``, as a config's
``rootfs.diff_ids`` lists it.

What the bytes are wins over what the media type says. The media type must name a layer type tank
knows (else :class:`UnsupportedLayer`), but the stream is decoded by its magic number
(:func:`sniff`): a ``tar+gzip`` layer that carries zstd or a plain tar is read as what it is.
containerd does the same (``compression.DecompressStream`` looks only at the bytes), and so does
``docker load``; a writer that mislabels its layers should not make tank fail where they succeed.

gzip is decoded with :func:`zlib.decompressobj` (``wbits=31``: a gzip wrapper, its CRC-32 and
length checked) in a loop, not with :class:`gzip.GzipFile`, which is slower. With ``isal``
installed (``pip install tank-oci[fast]``), its ``isal_zlib.decompressobj`` does the same work
about twice as fast (ISA-L's inflate: the same bytes out, the same checks); without it, zlib.
Several gzip members in a row are one stream (RFC 1952 §2.2; ``pigz`` and parallel compressors
write them), and NUL bytes after the last member are padding to ignore, as umoci 0.4.7 and
Python's ``gzip`` allow.
Anything else after the stream, a member that stops early or a bad checksum raises
:class:`CorruptLayer`.

zstd is decoded by ``zstandard``'s stream reader across frames (RFC 8878 §3: a stream may hold
several frames, skippable ones among them). That reader treats input that ends inside a frame as
a normal end, so tank follows the frame and block headers as the bytes go by and raises
:class:`CorruptLayer` when the input stops short of a frame's end.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final, Literal, cast

import zstandard

from tank.digest import Digest, Hasher, PipelinedHasher
from tank.errors import CorruptLayer, UnsupportedLayer
from tank.mediatypes import strip_parameters

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Compression = Literal["gzip", "zstd", "none"]

#: how much is read (and handed out) at a time
CHUNK: Final = 1 << 20

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"

# The layer types without their compression suffix: image-spec (layer, and the deprecated
# non-distributable layer) and Docker's image manifest v2 schema 2 (layer, and foreign layer).
_LAYER_BASES: Final = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
    }
)
# OCI writes "+gzip", Docker ".gzip"; both are accepted after every base
_SUFFIXES: Final[tuple[tuple[str, Compression], ...]] = (
    ("+gzip", "gzip"),
    (".gzip", "gzip"),
    ("+zstd", "zstd"),
    (".zstd", "zstd"),
)


def layer_compression(media_type: str) -> Compression:
    """How a layer of ``media_type`` is compressed; :class:`UnsupportedLayer` if not a layer.

    >>> layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip")
    'gzip'
    >>> layer_compression("application/vnd.oci.image.layer.v1.tar+zstd")
    'zstd'
    >>> layer_compression("application/vnd.oci.image.layer.v1.tar")
    'none'
    """
    base = strip_parameters(media_type) if isinstance(media_type, str) else None
    if base in _LAYER_BASES:
        return "none"
    if base is not None:
        for suffix, kind in _SUFFIXES:
            if base.endswith(suffix) and base[: -len(suffix)] in _LAYER_BASES:
                return kind
    raise UnsupportedLayer(media_type)


def sniff(prefix: bytes) -> Compression:
    """What the first bytes of a blob are: ``1f 8b`` gzip, ``28 b5 2f fd`` zstd, else none.

    A zstd skippable frame (``5?  2a 4d 18``) also counts as zstd, as containerd's
    ``DetectCompression`` has it.
    """
    if prefix[:2] == GZIP_MAGIC:
        return "gzip"
    if prefix[:4] == ZSTD_MAGIC or _is_skippable(prefix):
        return "zstd"
    return "none"


@contextlib.contextmanager
def open_layer(path: str | os.PathLike[str], media_type: str) -> Iterator[BinaryIO]:
    """A binary file object of the layer's uncompressed tar bytes (streaming, bounded memory).

    ``media_type`` must be a layer type (else :class:`UnsupportedLayer`, before the file is
    opened); the bytes decide how to decode (see the module's docstring): when their magic
    disagrees with the media type (a ``tar+gzip`` type carrying zstd or plain tar), they are read
    as what they are. Reads raise :class:`CorruptLayer` for a stream that is truncated, fails its
    checksum or has trailing garbage. The file is closed when the block ends.
    """
    layer_compression(media_type)
    name = os.fspath(path)
    raw = open(name, "rb", buffering=0)  # noqa: SIM115 - closed below, after the block
    try:
        prefix = raw.read(4)
        raw.seek(0)
        kind = sniff(prefix)
        decoder: io.RawIOBase
        if kind == "gzip":
            decoder = _GzipDecoder(raw, name)
        elif kind == "zstd":
            decoder = _ZstdDecoder(raw, name)
        else:
            decoder = raw
        with io.BufferedReader(decoder, buffer_size=CHUNK) as stream:
            yield stream
    finally:
        raw.close()


def diff_id_of(path: str | os.PathLike[str], media_type: str) -> Digest:
    """The sha256 of the layer's uncompressed stream: its ``diff_id``."""
    hasher = PipelinedHasher(Hasher("sha256"))
    try:
        with open_layer(path, media_type) as stream:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
    finally:
        done = hasher.finish()
    return done.digest()


# -- gzip --------------------------------------------------------------------------------------


class _Inflate:
    """Which inflate decodes gzip: ``isal_zlib`` when installed, else ``zlib`` (same API)."""

    module: Any = None
    errors: tuple[type[Exception], ...] = (zlib.error,)

    @classmethod
    def new(cls) -> Any:
        """A fresh ``decompressobj(wbits=31)`` (a gzip member, its CRC-32 and length checked)."""
        if cls.module is None:
            cls.use(fast=True)
        return cls.module.decompressobj(wbits=31)

    @classmethod
    def use(cls, *, fast: bool) -> str:
        """Choose ISA-L (``fast``, when ``isal`` imports) or zlib; the name of the one chosen."""
        cls.module, cls.errors = zlib, (zlib.error,)
        if fast:
            try:
                from isal import isal_zlib  # lazily: only a gzip layer needs it
            except ImportError:
                return "zlib"
            isal_error = cast("type[Exception]", isal_zlib.error)
            cls.module, cls.errors = isal_zlib, (zlib.error, isal_error)
            return "isal"
        return "zlib"


def use_isal(enabled: bool = True) -> str:
    """Inflate gzip layers with ISA-L (``isal``) when ``enabled`` and installed, else zlib;
    returns ``"isal"`` or ``"zlib"``. The output is identical either way."""
    return _Inflate.use(fast=enabled)


class _GzipDecoder(io.RawIOBase):
    """gzip members in a row, then optional NUL padding, decoded by zlib in bounded steps."""

    def __init__(self, raw: IO[bytes], path: str) -> None:
        self._raw = raw
        self._path = path
        self._inflate = _Inflate.new()
        self._pending = b""  # compressed bytes read but not yet given to zlib
        self._input_done = False
        self._eof = False

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def _read(self) -> bytes:
        """The next chunk of the file; ``b""`` (and ``_input_done``) at its end."""
        data = self._raw.read(CHUNK)
        if not data:
            self._input_done = True
        return data

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Fill ``buffer`` with up to its length of uncompressed bytes; 0 at the end."""
        with memoryview(buffer) as view, view.cast("B") as out:
            limit = len(out)
            while limit and not self._eof:
                data = self._pending
                if not data and not self._input_done:
                    data = self._read()
                try:
                    # max_length bounds the output however compressible the input: a chunk of
                    # zeros can inflate a thousandfold
                    chunk = self._inflate.decompress(data, limit)
                except _Inflate.errors as exc:
                    raise CorruptLayer(self._path, f"bad gzip stream ({exc})") from None
                if self._inflate.eof:
                    self._pending = b""
                    self._next_member(self._inflate.unused_data)
                else:
                    self._pending = self._inflate.unconsumed_tail
                    if not chunk and not self._pending and self._input_done:
                        raise CorruptLayer(
                            self._path, "truncated gzip stream: the file ends inside a member"
                        )
                if chunk:
                    out[: len(chunk)] = chunk
                    return len(chunk)
            return 0

    def _next_member(self, rest: bytes) -> None:
        """After a member: start the next one, or skip NUL padding to the end of the file."""
        while True:
            rest = rest.lstrip(b"\0")
            if rest:
                if len(rest) < len(GZIP_MAGIC) and not self._input_done:
                    rest += self._read()
                    continue
                if rest.startswith(GZIP_MAGIC):
                    self._inflate = _Inflate.new()
                    self._pending = rest
                    return
                raise CorruptLayer(
                    self._path,
                    "data after the end of the gzip stream that is neither another gzip member "
                    "nor NUL padding",
                )
            if self._input_done:
                self._eof = True
                return
            rest = self._read()


# -- zstd --------------------------------------------------------------------------------------


def _is_skippable(prefix: bytes | bytearray) -> bool:
    """Whether ``prefix`` opens a zstd skippable frame (magic ``0x184D2A5?``, little-endian)."""
    return len(prefix) >= 4 and prefix[0] & 0xF0 == 0x50 and prefix[1:4] == b"\x2a\x4d\x18"


class _ZstdFrames:
    """Follows zstd frame boundaries (RFC 8878 §3.1) in compressed bytes fed in order.

    It reads only headers: the frame magic and frame header, each block's 3-byte header (passing
    over the block's content by its size), the optional checksum, and a skippable frame's size.
    Decoding is libzstd's; this only tells whether the bytes so far end at the end of a frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "magic"
        self._need = 4  # header bytes the current state waits for
        self._skip = 0  # content bytes to pass over first
        self._checksum = False
        self._broken = False  # not zstd as far as this can tell: libzstd will say why

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next bytes of the stream."""
        view = memoryview(data)
        while not self._broken:
            if self._skip:
                if not view:
                    return
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
            elif len(self._buf) < self._need:
                if not view:
                    return
                step = min(self._need - len(self._buf), len(view))
                self._buf += view[:step]
                view = view[step:]
            else:
                header = bytes(self._buf)
                self._buf.clear()
                self._header(header)

    def complete(self) -> bool:
        """Whether the bytes fed so far end exactly at the end of a frame (or are not zstd)."""
        return self._broken or (self._state == "magic" and not self._buf and not self._skip)

    def _expect(self, state: str, need: int, skip: int = 0) -> None:
        self._state, self._need, self._skip = state, need, skip

    def _header(self, header: bytes) -> None:
        """Act on a complete header of the current state."""
        state = self._state
        if state == "magic":
            if header == ZSTD_MAGIC:
                self._expect("frame header", 1)
            elif _is_skippable(header):
                self._expect("skippable size", 4)
            else:
                self._broken = True
        elif state == "skippable size":
            self._expect("magic", 4, skip=int.from_bytes(header, "little"))
        elif state == "frame header":
            descriptor = header[0]
            single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            window = 0 if single_segment else 1
            dictionary = (0, 1, 2, 4)[descriptor & 0x03]
            content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            self._expect("frame header rest", window + dictionary + content_size)
        elif state == "frame header rest":
            self._expect("block", 3)
        elif state == "block":
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:  # reserved block type
                self._broken = True
                return
            content = 1 if kind == 1 else size  # an RLE block stores its one byte
            if not last:
                self._expect("block", 3, skip=content)
            elif self._checksum:
                self._expect("checksum", 4, skip=content)
            else:
                self._expect("magic", 4, skip=content)
        else:  # the checksum after the last block
            self._expect("magic", 4)


class _Tee(io.RawIOBase):
    """Reads the file for zstd's reader and shows each chunk to a :class:`_ZstdFrames`."""

    def __init__(self, raw: IO[bytes], frames: _ZstdFrames) -> None:
        self._raw = raw
        self._frames = frames

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the file, followed by the frame tracker."""
        data = self._raw.read(size)
        if data:
            self._frames.feed(data)
        return data


class _ZstdDecoder(io.RawIOBase):
    """zstd frames in a row, decoded by ``zstandard``; truncation is caught by the headers."""

    def __init__(self, raw: IO[bytes], path: str) -> None:
        self._path = path
        self._frames = _ZstdFrames()
        tee = _Tee(raw, self._frames)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast("IO[bytes]", tee), read_size=CHUNK, read_across_frames=True
        )

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Fill ``buffer`` with up to its length of uncompressed bytes; 0 at the end."""
        try:
            n = self._reader.readinto(buffer)
        except zstandard.ZstdError as exc:
            raise CorruptLayer(self._path, f"bad zstd stream ({exc})") from None
        if not n and not self._frames.complete():
            raise CorruptLayer(self._path, "truncated zstd stream: the file ends inside a frame")
        return n


__all__ = [
    "CHUNK",
    "Compression",
    "CorruptLayer",
    "UnsupportedLayer",
    "diff_id_of",
    "layer_compression",
    "open_layer",
    "sniff",
    "use_isal",
]
