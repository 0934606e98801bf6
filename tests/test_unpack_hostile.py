"""Hostile layers (security catalog A and B): each test ends with nothing changed outside the root.

Every test unpacks into ``tmp/root`` next to ``tmp/outside``, which holds a canary file; the
``canary`` fixture checks afterwards that ``outside`` holds exactly what it held, with the same
content, mode and times, and that no inode of it gained a hard link.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.unpacking import E, build, layer, layer_of, tar_of
from tank.errors import CorruptLayer, DigestMismatch, LayerTooLarge, UnpackError, UnsafeEntry
from tank.outputs.rootfs import MAX_DEPTH, MAX_HEADER_BYTES, unpack_layers
from tank.testing.images import OCI_LAYER_GZIP, Blob, sha256_digest


@dataclass
class Canary:
    """``outside/`` beside the root, and what it held before the unpack."""

    tmp: Path
    root: Path
    outside: Path
    before: dict[str, tuple[int, int, int, bytes]]

    def check(self) -> None:
        assert state(self.outside) == self.before, "something outside the root changed"


def state(path: Path) -> dict[str, tuple[int, int, int, bytes]]:
    out = {}
    for p in sorted(path.rglob("*")):
        st = os.lstat(p)
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(p.relative_to(path))] = (st.st_mode, st.st_mtime_ns, st.st_nlink, data)
    return out


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Canary]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"tweet")
    (outside / "canary").chmod(0o644)
    (outside / "sub").mkdir()
    (outside / "sub/keep").write_bytes(b"keep")
    root = tmp_path / "root"
    root.mkdir()
    c = Canary(tmp_path, root, outside, state(outside))
    yield c
    c.check()


def unpack(c: Canary, *layers: Sequence[E] | Blob, max_layer_bytes: int = 1 << 40,
           max_entries: int = 1 << 30) -> None:
    blobs = [x if isinstance(x, Blob) else layer(x) for x in layers]
    built = build(c.tmp / "blobs", blobs)
    unpack_layers(built.layers, built.diff_ids, c.root, max_layer_bytes=max_layer_bytes,
                  max_entries=max_entries)


def refused(c: Canary, entry: str, *layers: Sequence[E] | Blob,
            error: type[UnpackError] = UnsafeEntry) -> UnpackError:
    """The unpack fails naming the entry and its layer; the root is left empty."""
    with pytest.raises(error) as info:
        unpack(c, *layers)
    assert info.value.entry == entry
    assert info.value.layer is not None
    assert info.value.layer.startswith("sha256:")
    assert info.value.layer in str(info.value)
    assert repr(entry) in str(info.value)
    assert os.listdir(c.root) == []
    return info.value


# -- A1: names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../outside/canary", "a/../../outside/x", "./../x", "..",
                                  "a/b/../../../outside/new"])
def test_dotdot_names_are_refused(canary: Canary, name: str) -> None:
    refused(canary, name, [E("a", "dir"), E(name, data=b"pwned")])


def test_dotdot_in_a_later_layer_fails_and_removes_the_earlier_ones(canary: Canary) -> None:
    refused(canary, "../outside/canary", [E("ok", data=b"ok")],
            [E("../outside/canary", data=b"pwned")])


def test_absolute_names_stay_inside_the_root(canary: Canary) -> None:
    target = str(canary.outside / "canary")
    unpack(canary, [E("/abs/evil", data=b"evil"), E(target, data=b"pwned"),
                    E("/", "dir", mode=0o755)])
    assert (canary.root / "abs/evil").read_bytes() == b"evil"
    assert (canary.root / target.lstrip("/")).read_bytes() == b"pwned"
    assert canary.root.is_dir()
    assert not canary.root.is_symlink()


def test_backslashes_are_ordinary_characters(canary: Canary) -> None:
    unpack(canary, [E("..\\..\\outside\\x", data=b"x"), E(".", "dir"), E("./", "dir")])
    assert os.listdir(canary.root) == ["..\\..\\outside\\x"]


@pytest.mark.parametrize(
    ("name", "why"),
    [("a" * 256, "component longer than 255"), ("a/" * 2100 + "x", "longer than 4096"),
     ("d/" * (MAX_DEPTH + 1) + "x", f"more than {MAX_DEPTH} levels"), ("nul\0byte", "NUL")],
)
def test_absurd_names_are_refused(canary: Canary, name: str, why: str) -> None:
    with pytest.raises(UnsafeEntry, match=why):
        unpack(canary, [E("x", data=b"x", pax={"path": name})])  # PAX: any length, any byte
    assert os.listdir(canary.root) == []


def test_a_64k_gnu_long_name_is_refused_without_reading_it(canary: Canary) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("x" * 65536)
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(UnsafeEntry, match="GNU long name"):
        unpack(canary, layer_of(buf.getvalue()))


# -- A2-A6: symlinks ----------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["absolute", "relative"])
@pytest.mark.parametrize("split", [False, True])
def test_writing_through_a_symlink_stays_inside(canary: Canary, link: str, split: bool) -> None:
    """A2/A4: ``evil -> outside`` then ``evil/pwned``, in the same or in the next layer."""
    target = str(canary.outside) if link == "absolute" else "../../outside"
    first = [E("evil", "symlink", target=target)]
    second = [E("evil/pwned", data=b"pwned"), E("evil/sub/keep", data=b"overwritten?")]
    if split:
        unpack(canary, first, second)
    else:
        unpack(canary, first + second)
    inside = canary.root / (target.lstrip("/") if link == "absolute" else "outside")
    assert (inside / "pwned").read_bytes() == b"pwned"  # resolved inside the root
    assert os.readlink(canary.root / "evil") == target  # kept as written


@pytest.mark.parametrize("name", [".", "./", ""])
def test_the_root_cannot_become_a_symlink(canary: Canary, name: str) -> None:
    """A3 (umoci CVE-2021-29136)."""
    entry = name or "."
    refused(canary, entry, [E(entry, "symlink", target=str(canary.outside))],
            [E("etc/passwd", data=b"pwned")])
    assert canary.root.is_dir()
    assert not canary.root.is_symlink()


@pytest.mark.parametrize("kind", ["file", "dir", "fifo"])
def test_metadata_never_goes_through_a_symlink(canary: Canary, kind: str) -> None:
    """A5 (containerd CVE-2021-32760): ``s -> canary``, then an entry ``s`` with mode 04777."""
    unpack(canary, [E("s", "symlink", target=str(canary.outside / "canary"))],
           [E("s", kind, mode=0o4777, mtime=5, uid=1234)])
    st = os.lstat(canary.root / "s")
    assert stat.S_IMODE(st.st_mode) == 0o4777
    assert not stat.S_ISLNK(st.st_mode)


def test_missing_parents_are_made_inside(canary: Canary) -> None:
    """A6 (moby CVE-2021-41089): ``link/newdir/file`` with ``link -> outside``."""
    unpack(canary, [E("link", "symlink", target=str(canary.outside)),
                    E("link/newdir/file", data=b"x")])
    assert (canary.root / str(canary.outside).lstrip("/") / "newdir/file").is_file()


def test_symlink_loops_are_refused(canary: Canary) -> None:
    refused(canary, "l1/x", [E("l1", "symlink", target="l2"), E("l2", "symlink", target="l1"),
                             E("l1/x", data=b"x")])


def test_symlink_chains_resolve_inside(canary: Canary) -> None:
    """A9: ``a -> .``, ``b -> a/../..``: every walk stays in the root."""
    unpack(canary, [E("a", "symlink", target="."), E("b", "symlink", target="a/../.."),
                    E("c", "symlink", target="b/b/b/../outside"),
                    E("a/a/a/b/b/escape", data=b"x"), E("c/canary", data=b"pwned")])
    assert (canary.root / "escape").read_bytes() == b"x"
    assert (canary.root / "outside/canary").read_bytes() == b"pwned"


def test_a_symlink_chain_past_path_max_is_refused(canary: Canary) -> None:
    name = "a/" * 2100 + "file"
    with pytest.raises(UnsafeEntry, match="absurd"):
        unpack(canary, [E("a", "symlink", target="."), E(name, data=b"x")])


def test_symlinks_swapped_in_during_the_unpack_never_lead_out(canary: Canary) -> None:
    """A12: a thread keeps swapping ``root/dir`` for a symlink to ``outside`` and back while
    the second layer writes 2,000 new subdirectories of it (each resolved afresh)."""
    built = build(canary.tmp / "blobs", [
        layer([E("dir", "dir")]),
        layer([E(f"dir/s{i}/f", data=b"x") for i in range(2000)]),
    ])
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        real, moved = canary.root / "dir", canary.root / "dir.real"
        while not stop.is_set():
            if real.is_symlink() or not real.is_dir():
                time.sleep(0.0001)
                continue
            try:
                os.rename(real, moved)
                os.symlink(canary.outside, real)
                time.sleep(0.0005)
                os.unlink(real)
                os.rename(moved, real)
                swaps += 1
            except OSError:
                time.sleep(0.0001)

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        for _ in range(3):
            for child in os.listdir(canary.root):
                if (canary.root / child).is_symlink():
                    (canary.root / child).unlink(missing_ok=True)  # the swapper may be faster
            try:
                unpack_layers(built.layers, built.diff_ids, canary.root)
            except UnpackError:
                pass  # failing is fine; writing outside is not
            else:
                break
    finally:
        stop.set()
        thread.join()
    assert swaps > 0


# -- A7, A8, A15: hard links --------------------------------------------------------------------


def test_hard_link_with_dotdot_is_refused(canary: Canary) -> None:
    refused(canary, "x", [E("x", "hardlink", target="../../outside/canary")])


def test_hard_link_to_an_absolute_host_file_resolves_inside(canary: Canary) -> None:
    before = os.stat("/etc/passwd").st_nlink
    error = refused(canary, "x", [E("x", "hardlink", target="/etc/passwd")], error=UnpackError)
    assert "does not exist" in error.reason
    assert os.stat("/etc/passwd").st_nlink == before


def test_hard_link_to_a_symlink_links_the_symlink(canary: Canary) -> None:
    before = os.stat("/etc/passwd").st_nlink
    unpack(canary, [E("sym", "symlink", target="/etc/passwd"), E("x", "hardlink", target="sym"),
                    E("out", "symlink", target="../../outside/canary"),
                    E("y", "hardlink", target="out")])
    for name, link in (("x", "sym"), ("y", "out")):
        st = os.lstat(canary.root / name)
        assert stat.S_ISLNK(st.st_mode)
        assert st.st_ino == os.lstat(canary.root / link).st_ino
    assert os.stat("/etc/passwd").st_nlink == before


def test_hard_link_through_a_symlinked_directory_stays_inside(canary: Canary) -> None:
    refused(canary, "x", [E("lnk", "symlink", target=str(canary.outside)),
                          E("x", "hardlink", target="lnk/canary")], error=UnpackError)


def test_hard_link_is_not_resolved_against_the_working_directory(
    canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A8 (oras-go)."""
    monkeypatch.chdir(canary.outside)
    refused(canary, "x", [E("x", "hardlink", target="canary")], error=UnpackError)


def test_hard_link_to_a_directory_is_refused(canary: Canary) -> None:
    refused(canary, "x", [E("d", "dir"), E("x", "hardlink", target="d")])


def test_a_legal_hard_link_works(canary: Canary) -> None:
    unpack(canary, [E("a", data=b"a"), E("b", "hardlink", target="/a")])
    assert os.stat(canary.root / "a").st_ino == os.stat(canary.root / "b").st_ino


# -- A10: whiteouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["etc/.wh.", ".wh...", ".wh..", "etc/.wh.."])
def test_whiteouts_naming_no_entry_are_refused(canary: Canary, name: str) -> None:
    refused(canary, name, [E("etc", "dir"), E("etc/x", data=b"x")], [E(name)])


def test_whiteout_with_dotdot_is_refused(canary: Canary) -> None:
    refused(canary, "../.wh.x", [E("x", data=b"x")], [E("../.wh.x")])
    refused(canary, "../outside/.wh.canary", [E("x", data=b"x")],
            [E("../outside/.wh.canary")])


def test_whiteouts_in_a_symlinked_directory_stay_inside(canary: Canary) -> None:
    unpack(canary, [E("link", "symlink", target=str(canary.outside)),
                    E("rel", "symlink", target="../outside")],
           [E("link/.wh.canary"), E("rel/.wh.canary"), E("rel/.wh..wh..opq"),
            E("link/sub/.wh..wh..opq")])
    assert os.readlink(canary.root / "link") == str(canary.outside)


def test_whiting_out_a_symlink_removes_the_link_not_its_target(canary: Canary) -> None:
    unpack(canary, [E("lnk", "symlink", target=str(canary.outside / "canary")),
                    E("dlnk", "symlink", target=str(canary.outside))],
           [E(".wh.lnk"), E(".wh.dlnk")])
    assert os.listdir(canary.root) == []


# -- B1, B2, B3, B6, B9: resources --------------------------------------------------------------


def gzip_of_zeros(header: bytes, zero_bytes: int) -> bytes:
    """gzip members: ``header`` then ``zero_bytes`` of zeros, without holding them."""
    chunk = gzip.compress(bytes(64 << 20), compresslevel=9, mtime=0)
    parts = [gzip.compress(header, mtime=0)]
    parts += [chunk] * (zero_bytes // (64 << 20))
    return b"".join(parts)


def header_for(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def bomb(data: bytes) -> Blob:
    return Blob.of(data, OCI_LAYER_GZIP, "sha256:" + "0" * 64)


def test_a_file_claiming_more_than_the_limit_fails_at_its_header(canary: Canary) -> None:
    """B1: a 10 GiB file of zeros in a 10 MiB gzip."""
    blob = bomb(gzip_of_zeros(header_for("zeros", 10 << 30), 10 << 30))
    start = time.monotonic()
    with pytest.raises(LayerTooLarge, match="max_layer_bytes") as info:
        unpack(canary, blob, max_layer_bytes=256 << 20)
    assert info.value.entry == "zeros"
    assert time.monotonic() - start < 10
    assert os.listdir(canary.root) == []


def test_inflating_past_the_limit_fails_while_streaming(canary: Canary) -> None:
    """B1 (moby CVE-2017-14992): a small valid tar, then gigabytes of zero padding."""
    tar = tar_of([E("small", data=b"s")])
    blob = bomb(gzip_of_zeros(tar, 4 << 30))
    start = time.monotonic()
    with pytest.raises(LayerTooLarge, match="more than 268435456 uncompressed bytes"):
        unpack(canary, blob, max_layer_bytes=256 << 20)
    assert time.monotonic() - start < 20
    assert os.listdir(canary.root) == []


def test_many_files_past_the_limit(canary: Canary) -> None:
    entries = [E(f"f{i}", data=bytes(1 << 20)) for i in range(12)]
    with pytest.raises(LayerTooLarge) as info:
        unpack(canary, entries, max_layer_bytes=10 << 20)
    assert info.value.entry is not None
    assert info.value.entry.startswith("f")
    assert os.listdir(canary.root) == []


def test_entry_count_over_the_limit(canary: Canary) -> None:
    entries = [E(f"f{i}") for i in range(101)]
    with pytest.raises(LayerTooLarge, match="more than 100 entries") as info:
        unpack(canary, entries, max_entries=100)
    assert info.value.entry == "f100"
    unpack(canary, entries[:100], max_entries=100)


def test_a_layer_not_matching_its_diff_id_fails(canary: Canary) -> None:
    good = layer([E("a", data=b"a")])
    bad = layer([E("b", data=b"b")])
    other = sha256_digest(b"something else")
    with pytest.raises(DigestMismatch, match=f"uncompressed layer {bad.digest}"):
        unpack(canary, good, Blob(bad.data, bad.digest, bad.size, bad.media_type, other))
    assert os.listdir(canary.root) == []


def raw_header(name: bytes, size_field: bytes, kind: bytes = b"0",
               uid_field: bytes = b"0000000\0") -> bytes:
    """A ustar header block with hand-written size and uid fields and a correct checksum."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = uid_field
    block[116:124] = b"0000000\0"
    block[124:136] = size_field
    block[136:148] = b"14520000000\0"
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def test_a_100_mib_pax_header_is_refused_without_reading_it(canary: Canary) -> None:
    """B2: the header claims 100 MiB; refused from its size field, before any of it is read."""
    size = b"%011o\0" % (100 << 20)
    tar = raw_header(b"././@PaxHeader", size, b"x") + b"9 a=bcde\n" + bytes(503)
    with pytest.raises(LayerTooLarge, match=f"over {MAX_HEADER_BYTES}"):
        unpack(canary, layer_of(tar))


def test_a_million_pax_records_are_refused(canary: Canary) -> None:
    records = b"6 a=b\n" * 1_000_000
    tar = raw_header(b"././@PaxHeader", b"%011o\0" % len(records), b"x") + records
    with pytest.raises(LayerTooLarge):
        unpack(canary, layer_of(tar + bytes(-len(tar) % 512)))


def test_gnu_sparse_maps_are_refused(canary: Canary) -> None:
    """B2: a GNU sparse 1.0 entry announcing 10**7 regions: refused before the map is read."""
    pax = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sparse",
           "GNU.sparse.realsize": "1000000000"}
    body = b"10000000\n" + b"0\n" * 1000
    with pytest.raises(UnsafeEntry, match="sparse"):
        unpack(canary, [E("GNUSparseFile.0/sparse", data=body, pax=pax)])


def test_pathological_pax_values_parse_in_linear_time(canary: Canary) -> None:
    """B3 (CVE-2024-6232): values that make Python 3.11.7's regexes backtrack."""
    start = time.monotonic()
    unpack(canary, [E("a", data=b"a", pax={"comment": "1" * 1_000_000}),
                    E("b", data=b"b", pax={"comment": " 1" * 400_000 + "=" })])
    assert time.monotonic() - start < 5
    assert (canary.root / "a").read_bytes() == b"a"


@pytest.mark.parametrize(
    "size_field",
    [b"\xff" * 11 + b"\xfe", b"-0000000001\0"],  # base-256 -2, and a minus sign
)
def test_a_negative_size_is_refused_promptly(canary: Canary, size_field: bytes) -> None:
    tar = raw_header(b"neg", size_field) + bytes(1024)
    start = time.monotonic()
    with pytest.raises(CorruptLayer):
        unpack(canary, layer_of(tar))
    assert time.monotonic() - start < 1


def test_a_negative_owner_is_refused(canary: Canary) -> None:
    """uid -1 (base-256) would mean "leave the owner alone" to chown."""
    tar = raw_header(b"neg", b"00000000000\0", uid_field=b"\xff" * 8) + bytes(1024)
    with pytest.raises(CorruptLayer, match="out of range"):
        unpack(canary, layer_of(tar))


def test_a_global_pax_header_applies_to_nothing(canary: Canary) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"path": "../outside/canary", "size": "3", "comment": "git"}
                      ) as tar:
        info = tarfile.TarInfo("a")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"12345"))
    assert b"../outside/canary" in buf.getvalue()
    unpack(canary, layer_of(buf.getvalue()))
    assert os.listdir(canary.root) == ["a"]
    assert (canary.root / "a").read_bytes() == b"12345"


@pytest.mark.parametrize(
    "content",
    ["random", "gzip of text", "truncated header", "truncated data", "bad checksum"],
)
def test_layers_that_are_not_tars_fail_promptly_without_leaks(
    canary: Canary, content: str
) -> None:
    """B6: no hang, no thread or descriptor left behind."""
    tar = tar_of([E("file", data=b"x" * 5000)])
    data = {
        "random": os.urandom(100_000),
        "gzip of text": gzip.compress(b"hello, not a tar\n" * 1000),
        "truncated header": gzip.compress(tar[:300]),
        "truncated data": gzip.compress(tar[:2000]),
        "bad checksum": gzip.compress(tar[:148] + b"9999999\0" + tar[156:]),
    }[content]
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    start = time.monotonic()
    with pytest.raises(CorruptLayer):
        unpack(canary, Blob.of(data, OCI_LAYER_GZIP, sha256_digest(b"")))
    assert time.monotonic() - start < 5
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    assert os.listdir(canary.root) == []


def test_a_corrupt_gzip_stream_fails(canary: Canary) -> None:
    good = gzip.compress(tar_of([E("a", data=os.urandom(100_000))]))
    broken = good[:-8] + bytes(8)  # CRC and length wrong
    with pytest.raises(CorruptLayer):
        unpack(canary, Blob.of(broken, OCI_LAYER_GZIP, sha256_digest(b"")))
    with pytest.raises(CorruptLayer, match="truncated"):
        unpack(canary, Blob.of(good[: len(good) // 2], OCI_LAYER_GZIP, sha256_digest(b"")))
    assert os.listdir(canary.root) == []


def test_many_entries_and_opaque_whiteouts_stay_linear(canary: Canary) -> None:
    """B9: 20,000 entries in one directory and 5,000 opaque markers for it, in one layer."""
    lower = [E("d", "dir")] + [E(f"d/low{i}") for i in range(5_000)]
    upper = [E(f"d/up{i}") for i in range(20_000)]
    upper += [E("d/.wh..wh..opq")] * 5_000 + [E(f"d/sub{i}/.wh..wh..opq") for i in range(100)]
    start = time.monotonic()
    unpack(canary, lower, upper)
    assert time.monotonic() - start < 60
    names = os.listdir(canary.root / "d")
    # an opaque marker in a directory that does not exist creates nothing
    assert len(names) == 20_000
    assert not any(n.startswith("low") for n in names)
