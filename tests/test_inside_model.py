"""The merged view (``tank.inside``) against the unpack, offline: the same tree, entry by entry.

The unpack (:func:`tank.outputs.rootfs.unpack_layers`) is conformance-tested against ``umoci
unpack`` (tests/test_unpack_conformance.py); here the merged view must give its tree exactly, on
the conformance image and on 400 random images (whiteouts, opaque directories, symlinked parents,
hard links, replacements, loops), and must refuse what it refuses. The top-down search of
``tank cat`` must find what the whole tree has, reading fewer layers; the export, extracted by
GNU tar, must be the unpacked tree again.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.inside import layers_of, nodes_of, random_layers
from support.unpacking import IS_ROOT, Built, E, build, differences, layer, snapshot
from tank.errors import ImagePathError, PathNotFound, UnpackError, UnsafeEntry
from tank.inside.cat import Cat
from tank.inside.export import TarOutput, header, write_tar
from tank.inside.read import Layer, Spool, hash_content
from tank.inside.tree import Merger, NeedLower, lookup, user_parts
from tank.inside.view import ImageView, in_layer, layer_entries, merge
from tank.layers.tar import TarEntry, read_layer
from tank.outputs.rootfs import unpack_layers
from test_unpack_conformance import conformance_layers

RANDOM_IMAGES = 400


@pytest.fixture(scope="module")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("conformance"),
                 [layer(entries) for entries in conformance_layers()])


def unpacked(built: Built, dest: Path) -> dict[str, object]:
    dest.mkdir()
    unpack_layers(built.layers, built.diff_ids, dest, rootless=not IS_ROOT)
    return snapshot(dest)  # type: ignore[return-value]


def test_the_merged_view_of_the_conformance_image_is_the_unpacked_tree(
    conformance: Built, tmp_path: Path,
) -> None:
    view = merge(layers_of(conformance), content=hash_content)
    theirs = unpacked(conformance, tmp_path / "root")
    assert differences(nodes_of(view), theirs, ownership=IS_ROOT) == []  # type: ignore[arg-type]
    assert view.stat("/usr/bin/t1").size == 3
    assert [e.name for e in view.entries("/opt")] == ["dir", "upper"]
    assert view.stat("/usr/bin/t4").kind == "hardlink"
    assert view.stat("/usr/bin/t4").link_target == "/usr/bin/t2"
    assert view.stat("/lib", follow=False).link_target == "/usr/lib"
    assert view.stat("/lib").kind == "dir"  # followed inside the image
    assert view.stat("/etc/motd").layer == 1
    assert view.stat("/times/ns").mtime_ns == 1_700_000_000_123_456_789
    with pytest.raises(PathNotFound, match="no such file"):
        view.stat("/a/x")
    with pytest.raises(PathNotFound, match="leads nowhere"):
        view.stat("/etc/localtime")


def _outcome(run: object) -> object:
    try:
        return run()  # type: ignore[operator]
    except (UnsafeEntry, UnpackError) as exc:
        return type(exc)


@pytest.mark.parametrize("chunk", range(8))
def test_random_images_merge_to_the_unpacked_tree_or_fail_alike(
    chunk: int, tmp_path: Path,
) -> None:
    compared = 0
    for seed in range(chunk, RANDOM_IMAGES, 8):
        built = build(tmp_path / f"img-{seed}", [layer(e) for e in random_layers(seed)])
        dest = tmp_path / f"root-{seed}"
        theirs = _outcome(lambda built=built, dest=dest: unpacked(built, dest))
        ours = _outcome(lambda built=built: merge(layers_of(built), content=hash_content))
        if isinstance(theirs, type) or isinstance(ours, type):
            assert ours == theirs, f"seed {seed}: unpack {theirs}, merged view {ours}"
            continue
        assert isinstance(ours, ImageView)
        problems = differences(nodes_of(ours), theirs, ownership=IS_ROOT)  # type: ignore[arg-type]
        assert problems == [], f"seed {seed}: {problems}"
        compared += 1
    assert compared >= 10  # the rest failed alike


def _paths_to_try(view: ImageView) -> Iterator[str]:
    for entry in view.entries("/", recursive=True):
        yield entry.path
    for a in ("a", "b", "c", "d"):
        for b in ("a", "b", "c", "d", "..", ""):
            yield f"/{a}/{b}"


@pytest.mark.parametrize("chunk", range(4))
def test_the_top_down_search_finds_what_the_whole_tree_has(chunk: int, tmp_path: Path) -> None:
    checked = 0
    for seed in range(chunk, RANDOM_IMAGES // 2, 4):
        built = build(tmp_path / f"img-{seed}", [layer(e) for e in random_layers(seed)])
        layers = layers_of(built)
        try:
            view = merge(layers, content=hash_content)
        except UnpackError:
            continue
        for path in _paths_to_try(view):
            want = _cat_whole(view, layers, path)
            got = _cat_top_down(layers, path)
            assert got == want, f"seed {seed}, {path}: top-down {got!r}, whole tree {want!r}"
            checked += 1
    assert checked > 100


def _cat_whole(view: ImageView, layers: list[Layer], path: str) -> object:
    found = view.find(path)
    if found.node is None:
        return PathNotFound
    if found.node.kind != "file":
        return ImagePathError
    return _content(layers[found.node.layer], found.node.ordinal)


def _content(layer_: Layer, ordinal: int) -> bytes:
    with read_layer(layer_.path, layer_.media_type, digest=layer_.digest) as reader:
        for i, _ in enumerate(reader):
            if i == ordinal:
                return b"".join(reader.chunks())
    raise AssertionError("no such entry")


def _cat_top_down(layers: list[Layer], path: str) -> object:
    finder = Cat(layers, lambda i: layers[i])
    try:
        [located] = finder.locate([path])
    except PathNotFound:
        return PathNotFound
    except ImagePathError:
        return ImagePathError
    out = io.BytesIO()
    finder.write(located, out)
    return out.getvalue()


def test_a_file_of_the_top_layer_needs_only_the_top_layer(tmp_path: Path) -> None:
    base = [E("etc", "dir"), E("etc/os-release", data=b"old"),
            E("lib", "symlink", target="usr/lib"), E("usr", "dir"), E("usr/lib", "dir"),
            E("usr/lib/libc.so", data=b"libc")]
    middle = [E("etc", "dir"), E("etc/passwd", data=b"root")]
    top = [E("etc", "dir"), E("etc/os-release", data=b"new"), E("etc/.wh.passwd")]
    built = build(tmp_path, [layer(base), layer(middle), layer(top)])
    layers = layers_of(built)
    fetched: list[int] = []

    def fetch(i: int) -> Layer:
        fetched.append(i)
        return layers[i]

    finder = Cat(layers, fetch)
    [found] = finder.locate(["/etc/os-release"])
    assert fetched == [2]
    assert found.small == b"new"
    with pytest.raises(PathNotFound, match=r"/etc/passwd: deleted by layer 2 .*a whiteout"):
        Cat(layers, lambda i: layers[i]).locate(["etc/passwd"])
    finder = Cat(layers, lambda i: layers[i])
    [found] = finder.locate(["/lib/libc.so"])  # through a symlink of the base layer
    assert finder.read == [2, 1, 0]
    out = io.BytesIO()
    finder.write(found, out)
    assert out.getvalue() == b"libc"


def test_a_partial_tree_asks_for_the_lower_layers_when_a_parent_is_unknown() -> None:
    merger = Merger(partial=True)
    merger.begin_layer(1, "sha256:" + "1" * 64)
    entry = tarfile.TarInfo("usr/bin/env")
    with pytest.raises(NeedLower):
        merger.apply(_entry(entry), 0)
    merger = Merger(partial=True)
    merger.begin_layer(1, "sha256:" + "1" * 64)
    merger.apply(_entry(tarfile.TarInfo("usr"), tarfile.DIRTYPE), 0)
    merger.apply(_entry(tarfile.TarInfo("usr/env")), 1)
    assert lookup(merger.root, user_parts("/usr/env")).node is not None
    with pytest.raises(NeedLower):
        lookup(merger.root, user_parts("/usr/other"))


def _entry(info: tarfile.TarInfo, kind: bytes = tarfile.REGTYPE) -> TarEntry:
    return TarEntry(name=info.name, kind=kind, size=0, mode=0o755, uid=0, gid=0, mtime_ns=0,
                    atime_ns=0, linkname="", devmajor=0, devminor=0, xattrs={})


@pytest.mark.parametrize("chunk", range(4))
def test_the_export_extracted_by_gnu_tar_is_the_unpacked_tree(chunk: int, tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("GNU tar keeps owners and FIFOs' modes only as root (CI runs as root)")
    compared = 0
    for seed in [*range(chunk, RANDOM_IMAGES // 2, 4), -1]:
        if seed == -1:
            if chunk:
                continue
            built = build(tmp_path / "conformance", [layer(e) for e in conformance_layers()])
        else:
            built = build(tmp_path / f"img-{seed}", [layer(e) for e in random_layers(seed)])
        try:
            theirs = unpacked(built, tmp_path / f"root-{seed}")
        except UnpackError:
            continue
        spool = Spool(tmp_path)
        view = merge(layers_of(built), content=spool)
        tar = tmp_path / f"export-{seed}.tar"
        with open(tar, "wb") as f:
            write_tar(view.root, TarOutput(f.fileno()), dict.fromkeys(
                range(len(built.layers)), spool.fd))
        spool.close()
        dest = tmp_path / f"extracted-{seed}"
        dest.mkdir()
        done = subprocess.run(["tar", "-xpf", str(tar), "--numeric-owner", "-C", str(dest)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        problems = differences(snapshot(dest), theirs, ownership=True)  # type: ignore[arg-type]
        assert problems == [], f"seed {seed}: {problems}"
        compared += 1
    assert compared > 5


def test_headers_carry_long_names_big_numbers_nanoseconds_and_raw_bytes(tmp_path: Path) -> None:
    name = "d/" + "x" * 150 + "/\udcff-not-utf8"
    blocks = header(name, tarfile.REGTYPE, size=0, mode=0o4755, uid=3_000_000, gid=7,
                    mtime_ns=-1_500_000_000, xattrs={"user.k": b"\xff\x00v"})
    blocks += header("l", tarfile.SYMTYPE, linkname="/" + "t" * 200, mtime_ns=5)
    blocks += header("dev", tarfile.CHRTYPE, devices=(1 << 22, 3))
    data = blocks + bytes(1024)
    with read_layer(_write(tmp_path / "h.tar", data), "application/vnd.oci.image.layer.v1.tar",
                    digest="sha256:" + "0" * 64) as reader:
        first, second, third = list(reader)
    assert first.name == name
    assert (first.mode, first.uid, first.gid, first.mtime_ns) == (0o4755, 3_000_000, 7,
                                                                  -1_500_000_000)
    assert first.xattrs == {"user.k": b"\xff\x00v"}
    assert (second.linkname, second.mtime_ns) == ("/" + "t" * 200, 5)
    assert (third.devmajor, third.devminor) == (1 << 22, 3)
    listed = subprocess.run(["tar", "-tvf", str(tmp_path / "h.tar")], capture_output=True,
                            text=True, check=False)
    assert listed.returncode == 0, listed.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_layer_is_listed_as_its_tar_has_it_whiteouts_included(conformance: Built) -> None:
    middle = layers_of(conformance)[1]
    found = layer_entries(middle)
    kinds = {e.path: e.kind for e in found}
    assert kinds["/a/x"] == "whiteout"
    assert kinds["/b"] == "opaque"
    assert kinds["/usr/bin/t4"] == "hardlink"
    assert [e.path for e in in_layer(found, "/b", recursive=False)] == ["/b/new1", "/b/newdir"]
    assert [e.path for e in in_layer(found, "/b", recursive=True)] == [
        "/b/new1", "/b/newdir", "/b/newdir/g"]


def test_names_are_checked_as_the_unpack_checks_them(tmp_path: Path) -> None:
    for bad in ("../escape", "a/../../b", "x/\0y"):
        if "\0" in bad:
            continue
        built = build(tmp_path / bad.replace("/", "_"), [layer([E(bad, data=b"x")])])
        with pytest.raises(UnsafeEntry, match=r"'\.\.'"):
            merge(layers_of(built))
    built = build(tmp_path / "hl", [layer([E("a", "hardlink", target="../../etc/passwd")])])
    with pytest.raises(UnsafeEntry):
        merge(layers_of(built))


def test_memory_holds_metadata_only(tmp_path: Path) -> None:
    big = os.urandom(1 << 20) * 8  # 8 MiB
    built = build(tmp_path, [layer([E("big", data=big)], "none")])
    view = merge(layers_of(built))
    assert view.stat("/big").size == len(big)
    found = view.find("/big")
    assert found.node is not None
    assert found.node.data is None  # the content was skipped, not kept


def test_a_layer_not_matching_its_diff_id_is_refused_before_anything_is_shown(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from tank.errors import DigestMismatch
    from tank.inside.view import record

    built = build(tmp_path, [layer([E("a", data=b"a")]), layer([E("b", data=b"b")])])
    good = layers_of(built)
    bad = [good[0], replace(good[1], diff_id="sha256:" + "0" * 64)]
    with pytest.raises(DigestMismatch, match="its diff_id"):
        merge(bad)
    with pytest.raises(DigestMismatch, match="its diff_id"):
        record(bad, lambda _: hash_content, jobs=2)
    with pytest.raises(DigestMismatch, match="its diff_id"):
        Cat(bad, lambda i: bad[i]).locate(["/b"])
