"""tank.layers.compression: layer media types, magic numbers, and streaming gzip / zstd / tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from tank.errors import IntegrityError, TankError
from tank.layers.compression import (
    CHUNK,
    CorruptLayer,
    UnsupportedLayer,
    diff_id_of,
    layer_compression,
    open_layer,
    sniff,
    use_isal,
)
from tank.testing.images import make_layer, sample_image

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def plain_tar() -> bytes:
    """A real tar of a few files, big enough to span several 1 MiB chunks."""
    rng = random.Random(7)
    return make_layer(
        {
            "etc/hostname": b"tank\n",
            "usr/lib/blob.bin": rng.randbytes(1_500_000),
            "usr/share/zeros": bytes(3_000_000),
        },
        compression="none",
    ).data


@pytest.fixture(autouse=True, params=["zlib", "isal"])
def inflate(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with zlib and with ISA-L (the ``fast`` extra): the same bytes out, the
    same errors."""
    if request.param == "isal":
        pytest.importorskip("isal")
    assert use_isal(request.param == "isal") == request.param
    yield request.param
    use_isal(True)


@pytest.fixture(scope="module")
def tar_bytes() -> bytes:
    return plain_tar()


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path, media_type: str) -> bytes:
    with open_layer(path, media_type) as stream:
        return stream.read()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- media types and magic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        (OCI_GZIP, "gzip"),
        (OCI_ZSTD, "zstd"),
        (OCI_TAR, "none"),
        (DOCKER_GZIP, "gzip"),
        ("application/vnd.docker.image.rootfs.diff.tar", "none"),
        ("application/vnd.docker.image.rootfs.diff.tar.zstd", "zstd"),  # containerd's name
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar", "none"),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "zstd"),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar", "none"),
        ("application/vnd.oci.image.layer.v1.tar.gzip", "gzip"),
        ("Application/VND.OCI.image.layer.v1.tar+gzip; charset=binary", "gzip"),
    ],
)
def test_layer_compression(media_type: str, expected: str) -> None:
    assert layer_compression(media_type) == expected


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.in-toto+json",
        "application/octet-stream",
        "application/vnd.oci.image.layer.v1.tar+gzip+zstd",
        "",
    ],
)
def test_unknown_media_types_are_unsupported_layers(media_type: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedLayer, match="unsupported layer media type") as info:
        layer_compression(media_type)
    assert info.value.media_type == media_type
    assert isinstance(info.value, TankError)
    path = put(tmp_path, "layer", gzip.compress(b"x"))
    with pytest.raises(UnsupportedLayer), open_layer(path, media_type):
        pass
    with pytest.raises(UnsupportedLayer):
        diff_id_of(path, media_type)


def test_sniff() -> None:
    assert sniff(gzip.compress(b"x")[:4]) == "gzip"
    assert sniff(zstandard.ZstdCompressor().compress(b"x")[:4]) == "zstd"
    assert sniff(b"\x5f\x2a\x4d\x18") == "zstd"  # a skippable frame
    assert sniff(b"etc/") == "none"
    assert sniff(b"") == "none"
    assert sniff(b"\x1f") == "none"


# -- decoding ----------------------------------------------------------------------------------


def test_gzip(tmp_path: Path, tar_bytes: bytes) -> None:
    path = put(tmp_path, "layer", gzip.compress(tar_bytes))
    assert read_all(path, OCI_GZIP) == tar_bytes
    assert diff_id_of(path, DOCKER_GZIP) == sha256(tar_bytes)


def test_the_stream_is_a_tar_file_object(tmp_path: Path, tar_bytes: bytes) -> None:
    path = put(tmp_path, "layer", gzip.compress(tar_bytes))
    with open_layer(path, OCI_GZIP) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        names = [member.name for member in tar]
    assert names == ["etc", "etc/hostname", "usr", "usr/lib", "usr/lib/blob.bin", "usr/share",
                     "usr/share/zeros"]


def test_reads_are_bounded_however_compressible(tmp_path: Path) -> None:
    """64 MiB of zeros is 64 KiB of gzip: no read returns more than was asked for."""
    zeros = bytes(64 << 20)
    path = put(tmp_path, "layer", gzip.compress(zeros, compresslevel=9))
    assert path.stat().st_size < 100_000
    total = 0
    with open_layer(path, OCI_GZIP) as stream:
        while chunk := stream.read(CHUNK):
            assert len(chunk) <= CHUNK
            total += len(chunk)
    assert total == len(zeros)


def test_concatenated_gzip_members(tmp_path: Path, tar_bytes: bytes) -> None:
    """pigz-style: the tar split across members, each a full gzip stream."""
    cuts = [0, 1000, 1_000_000, 2_500_000, len(tar_bytes)]
    members = b"".join(
        gzip.compress(tar_bytes[a:b], mtime=0) for a, b in itertools.pairwise(cuts)
    )
    path = put(tmp_path, "layer", members)
    assert read_all(path, OCI_GZIP) == tar_bytes
    assert diff_id_of(path, OCI_GZIP) == sha256(tar_bytes)


def test_gzip_with_trailing_nul_padding(tmp_path: Path, tar_bytes: bytes) -> None:
    path = put(tmp_path, "layer", gzip.compress(tar_bytes) + bytes(512))
    assert read_all(path, OCI_GZIP) == tar_bytes
    # padding past a chunk boundary, and between members, is still padding
    path = put(tmp_path, "layer2", gzip.compress(b"a") + bytes(CHUNK + 5) + gzip.compress(b"b"))
    assert read_all(path, OCI_GZIP) == b"ab"


def test_zstd(tmp_path: Path, tar_bytes: bytes) -> None:
    path = put(tmp_path, "layer", zstandard.ZstdCompressor(level=3).compress(tar_bytes))
    assert read_all(path, OCI_ZSTD) == tar_bytes
    assert diff_id_of(path, OCI_ZSTD) == sha256(tar_bytes)


def test_zstd_streamed_frames_and_skippable_frames(tmp_path: Path, tar_bytes: bytes) -> None:
    """A frame written in pieces (no content size, many blocks), a skippable frame, a second
    frame with a checksum: one stream."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False) as writer:
        for i in range(0, len(tar_bytes), 70_000):
            writer.write(tar_bytes[i : i + 70_000])
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"tank!"
    tail = zstandard.ZstdCompressor(write_checksum=True).compress(b"tail")
    path = put(tmp_path, "layer", skippable + out.getvalue() + tail)
    assert diff_id_of(path, OCI_ZSTD) == sha256(tar_bytes + b"tail")


def test_plain_tar(tmp_path: Path, tar_bytes: bytes) -> None:
    path = put(tmp_path, "layer", tar_bytes)
    assert read_all(path, OCI_TAR) == tar_bytes
    assert diff_id_of(path, "application/vnd.docker.image.rootfs.diff.tar") == sha256(tar_bytes)


def test_an_empty_layer(tmp_path: Path) -> None:
    path = put(tmp_path, "layer", b"")
    assert diff_id_of(path, OCI_GZIP) == sha256(b"")


@pytest.mark.parametrize(
    ("media_type", "compress"),
    [
        (OCI_GZIP, lambda data: zstandard.ZstdCompressor().compress(data)),
        (DOCKER_GZIP, lambda data: data),
        (OCI_ZSTD, gzip.compress),
        (OCI_TAR, gzip.compress),
    ],
    ids=["gzip-type-zstd-bytes", "gzip-type-plain-bytes", "zstd-type-gzip-bytes",
         "tar-type-gzip-bytes"],
)
def test_the_bytes_win_over_the_media_type(
    media_type: str, compress: Callable[[bytes], bytes], tmp_path: Path, tar_bytes: bytes
) -> None:
    path = put(tmp_path, "layer", compress(tar_bytes))
    assert read_all(path, media_type) == tar_bytes
    assert diff_id_of(path, media_type) == sha256(tar_bytes)


def test_diff_id_matches_the_image_builder(tmp_path: Path) -> None:
    image = sample_image()
    for i, layer in enumerate(image.layers):
        path = put(tmp_path, f"layer{i}", layer.data)
        assert diff_id_of(path, layer.media_type) == layer.diff_id
    plain = make_layer({"a/b": b"c"}, compression="none")
    path = put(tmp_path, "plain", plain.data)
    assert diff_id_of(path, plain.media_type) == plain.diff_id


# -- corrupt streams ---------------------------------------------------------------------------


# where to cut a compressed stream of n bytes
CUTS: dict[str, Callable[[int], int]] = {
    "half": lambda n: n // 2,
    "trailer": lambda n: n - 8,
    "last-byte": lambda n: n - 1,
    "header": lambda n: 10,
    "magic-only": lambda n: 2,
}


@pytest.mark.parametrize("where", list(CUTS))
def test_a_truncated_gzip_is_a_corrupt_layer(where: str, tmp_path: Path, tar_bytes: bytes) -> None:
    data = gzip.compress(tar_bytes)
    path = put(tmp_path, "layer", data[: CUTS[where](len(data))])
    with pytest.raises(CorruptLayer, match="truncated gzip stream") as info:
        diff_id_of(path, OCI_GZIP)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, IntegrityError)


@pytest.mark.parametrize("where", ["half", "trailer", "last-byte", "header"])
def test_a_truncated_zstd_is_a_corrupt_layer(where: str, tmp_path: Path, tar_bytes: bytes) -> None:
    data = zstandard.ZstdCompressor(write_checksum=True).compress(tar_bytes)
    path = put(tmp_path, "layer", data[: CUTS[where](len(data))])
    with pytest.raises(CorruptLayer, match="truncated zstd stream") as info:
        diff_id_of(path, OCI_ZSTD)
    assert info.value.path == str(path)


def test_gzip_checksum_and_garbage_are_corrupt(tmp_path: Path, tar_bytes: bytes) -> None:
    data = bytearray(gzip.compress(tar_bytes))
    data[-6] ^= 0xFF  # the CRC-32
    path = put(tmp_path, "crc", bytes(data))
    with pytest.raises(CorruptLayer, match="bad gzip stream"):
        diff_id_of(path, OCI_GZIP)
    path = put(tmp_path, "garbage", gzip.compress(b"x") + b"not gzip")
    with pytest.raises(CorruptLayer, match="neither another gzip member nor NUL padding"):
        diff_id_of(path, OCI_GZIP)
    path = put(tmp_path, "nul-then-garbage", gzip.compress(b"x") + bytes(10) + b"\x1f")
    with pytest.raises(CorruptLayer, match="neither another gzip member"):
        diff_id_of(path, OCI_GZIP)


def test_a_corrupt_zstd_frame(tmp_path: Path, tar_bytes: bytes) -> None:
    data = zstandard.ZstdCompressor().compress(tar_bytes)
    path = put(tmp_path, "layer", data + b"\0" * 16)
    with pytest.raises(CorruptLayer, match="bad zstd stream"):
        diff_id_of(path, OCI_ZSTD)
