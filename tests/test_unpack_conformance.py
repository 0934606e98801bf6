"""tank's root filesystems against ``umoci unpack``, entry by entry, as root and rootless.

The image exercises every layer rule: whiteouts across three layers, an opaque directory whose
marker comes after (and before) the entries the same layer adds, hard links within and across
layers (and one whose lower file a later layer rewrites), a file replaced by a directory and
back, a directory replaced by a file and back, a symlink replaced by a directory, absolute and
relative symlinks (dangling ones too), setuid/setgid/sticky modes, read-only directories with
content, nanosecond modification times, FIFOs, ``./``-prefixed names and a root entry.

Allowed differences: directory modification times, and ownership when rootless. The rootless
runs happen as uid 65534 (``setpriv``) when the tests run as root, as CI does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.unpacking import (
    IS_ROOT,
    NOBODY,
    SETPRIV,
    UMOCI,
    Built,
    E,
    build,
    differences,
    layer,
    nobody_dir,
    remove_tree,
    run_tank,
    snapshot,
    umoci_unpack,
)
from tank.outputs.rootfs import unpack_layers

pytestmark = pytest.mark.skipif(not os.access(UMOCI, os.X_OK), reason="umoci is not installed")

NS = "1700000000.123456789"


def conformance_layers() -> list[list[E]]:
    """Three layers, bottom first."""
    base = [
        E("./", "dir", mode=0o755),
        E("etc", "dir"),
        E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
        E("etc/shadow", data=b"root:*:19000::::::\n", mode=0o640, gid=42),
        E("etc/motd", data=b"lower motd\n"),
        E("etc/hostname", data=b"lower\n"),
        E("etc/localtime", "symlink", target="/usr/share/zoneinfo/UTC"),  # dangling, absolute
        E("tmp", "dir", mode=0o1777),
        E("usr", "dir"),
        E("usr/bin", "dir"),
        E("usr/bin/su", data=b"#!/bin/su\n", mode=0o4755),
        E("usr/bin/wall", data=b"#!/bin/wall\n", mode=0o2755, gid=5),
        E("usr/bin/t2", data=b"123"),
        E("usr/bin/t1", "hardlink", target="usr/bin/t2"),
        E("usr/bin/t3", "hardlink", target="usr/bin/t2"),
        E("usr/lib", "dir"),
        E("usr/lib/libfoo.so.1", data=b"\x7fELF" + bytes(range(256)) * 8, mode=0o755),
        E("usr/lib/libfoo.so", "symlink", target="libfoo.so.1"),
        E("lib", "symlink", target="usr/lib"),
        E("lib64", "symlink", target="/usr/lib"),
        E("bin", "symlink", target="usr/bin"),
        E("a", "dir", mode=0o750),
        E("a/x", data=b"x"),
        E("a/y", data=b"y"),
        E("a/sub", "dir"),
        E("a/sub/z", data=b"z"),
        E("b", "dir"),
        E("b/old1", data=b"old"),
        E("b/olddir", "dir"),
        E("b/olddir/f", data=b"f"),
        E("opt", "dir"),
        E("opt/lower", data=b"lower"),
        E("c", data=b"c is a file"),
        E("d", "dir", mode=0o700),
        E("d/inside", data=b"in d"),
        E("f", data=b"f v1"),
        E("ro", "dir", mode=0o555),
        E("ro/file", data=b"read-only dir content", mode=0o444),
        E("ro/sub", "dir", mode=0o500),
        E("ro/sub/deep", data=b"deep", mode=0o400),
        E("var", "dir"),
        E("var/fifo", "fifo", mode=0o600),
        E("times", "dir"),
        E("times/ns", data=b"ns", pax={"mtime": NS}),
        E("times/old", data=b"old", mtime=86_400),
        E("times/zero", data=b"", mtime=0),
        E("spaces and ünïcode", data=b"names"),
        E(r"back\slash", data=b"literal backslash"),
    ]
    middle = [
        E("a/.wh.x", data=b""),  # removes a/x
        E("a/.wh.sub"),  # removes a directory
        E("b/new1", data=b"new"),
        E("b/newdir", "dir"),
        E("b/newdir/g", data=b"g"),
        E("b/.wh..wh..opq"),  # after the entries it must keep
        E("c", "dir", mode=0o711),  # file -> directory
        E("c/inner", data=b"inner"),
        E("d", data=b"d is a file now"),  # directory -> file
        E("usr/bin/t1", data=b"456"),  # t2 and t3 keep 123
        E("usr/bin/t4", "hardlink", target="usr/bin/t2"),  # to a lower layer's file
        E(".wh.lib"),  # removes the link, not usr/lib
        E("etc/.wh.hostname"),
        E("etc/hostname", data=b"middle\n"),  # re-made after its whiteout
        E("etc/motd", data=b"middle motd\n"),
        E("etc/.wh.motd"),  # same layer: keeps middle's motd
        E(".wh.f"),
        E("usr/bin/su", data=b"#!/bin/su v2\n", mode=0o4755),
    ]
    top = [
        E("./opt/.wh..wh..opq"),  # before the entries it must keep
        E("./opt/upper", data=b"upper"),
        E("./opt/dir", "dir", mode=0o775),
        E("./opt/dir/file", data=b"opt file"),
        E("a/.wh.y"),
        E("c", data=b"c is a file again"),  # directory -> file
        E("d", "dir", mode=0o755),  # file -> directory
        E("d/again", data=b"again"),
        E("f", data=b"f v3"),  # whited out in the middle, back now
        E("bin", "dir", mode=0o755),  # symlink -> directory
        E("bin/sh", data=b"#!sh", mode=0o755),
        E("usr/bin/t5", "hardlink", target="usr/bin/t3"),
        E("lib", "symlink", target="/usr/lib"),
        E("var/run", "symlink", target="../run"),
        E("ro/sub/deeper", data=b"written into a 0500 directory", mode=0o644),
        E("ro/sub", "dir", mode=0o500),
    ]
    return [base, middle, top]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory uid 65534 may use (the rootless runs write there)."""
    path = nobody_dir("tank-conformance-")
    yield path
    remove_tree(path)


@pytest.fixture(scope="module")
def image(workdir: Path) -> Built:
    """The conformance image on disk (world-readable)."""
    built = build(workdir / "blobs", [layer(entries) for entries in conformance_layers()])
    for path in (workdir / "blobs").iterdir():
        path.chmod(0o644)
    (workdir / "blobs").chmod(0o755)
    return built


@pytest.fixture(scope="module")
def layout_ref(image: Built, workdir: Path) -> str:
    """The image as an OCI layout for umoci."""
    ref = image.layout(workdir / "layout")
    for dirpath, dirnames, filenames in os.walk(workdir / "layout"):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)  # noqa: S103 - readable by uid 65534
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return ref


def check_expectations(rootfs: Path) -> None:
    """A few results stated outright (both unpackers must also agree with each other)."""
    assert (rootfs / "usr/bin/t1").read_bytes() == b"456"
    for name in ("t2", "t3", "t4", "t5"):
        assert (rootfs / "usr/bin" / name).read_bytes() == b"123"
    assert sorted(os.listdir(rootfs / "a")) == []
    assert sorted(os.listdir(rootfs / "b")) == ["new1", "newdir"]
    assert sorted(os.listdir(rootfs / "opt")) == ["dir", "upper"]
    assert (rootfs / "c").read_bytes() == b"c is a file again"
    assert sorted(os.listdir(rootfs / "d")) == ["again"]
    assert (rootfs / "etc/motd").read_bytes() == b"middle motd\n"
    assert (rootfs / "etc/hostname").read_bytes() == b"middle\n"
    assert os.readlink(rootfs / "lib") == "/usr/lib"
    assert (rootfs / "usr/lib/libfoo.so.1").is_file()
    assert (rootfs / "bin").is_dir()
    assert not (rootfs / "bin").is_symlink()
    assert os.stat(rootfs / "usr/bin/su").st_mode & 0o7777 == 0o4755
    assert os.stat(rootfs / "tmp").st_mode & 0o7777 == 0o1777
    assert os.stat(rootfs / "times/ns").st_mtime_ns == 1_700_000_000_123_456_789
    assert os.stat(rootfs / "ro/sub").st_mode & 0o7777 == 0o500
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(rootfs)
                   for name in dirs + files)


@pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")
def test_as_root_tank_and_umoci_agree(image: Built, layout_ref: str, workdir: Path) -> None:
    ours = workdir / "root-tank"
    ours.mkdir()
    unpack_layers(image.layers, image.diff_ids, ours, rootless=False)
    theirs = umoci_unpack(layout_ref, workdir / "root-umoci", rootless=False, as_nobody=False)
    check_expectations(ours)
    check_expectations(theirs)
    assert differences(snapshot(ours), snapshot(theirs), ownership=True) == []
    # not required (directory times may differ), but tank keeps them as umoci does
    assert differences(snapshot(ours), snapshot(theirs), ownership=True, dir_mtimes=True) == []
    assert os.stat(ours / "etc/shadow").st_gid == 42
    assert os.stat(ours / "usr/bin/wall").st_gid == 5
    shutil.rmtree(ours)


@pytest.mark.skipif(IS_ROOT and not os.access(SETPRIV, os.X_OK), reason="setpriv is missing")
def test_rootless_tank_and_umoci_agree(image: Built, layout_ref: str, workdir: Path) -> None:
    ours, bundle = workdir / "rootless-tank", workdir / "rootless-umoci"
    ours.mkdir()
    if IS_ROOT:
        os.chown(ours, NOBODY, NOBODY)
    run_tank(image, ours, as_nobody=True)
    theirs = umoci_unpack(layout_ref, bundle, rootless=True, as_nobody=True)
    check_expectations(ours)
    assert differences(snapshot(ours), snapshot(theirs), ownership=False) == []
    me = NOBODY if IS_ROOT else os.geteuid()
    assert {node.uid for node in snapshot(ours).values()} == {me}


@pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")
def test_rootless_mode_as_root_matches_umoci_rootless(
    image: Built, layout_ref: str, workdir: Path
) -> None:
    """``rootless=True`` while root (no chown): the same tree as umoci --rootless run by root."""
    ours = workdir / "rootless-mode-tank"
    ours.mkdir()
    unpack_layers(image.layers, image.diff_ids, ours, rootless=True)
    theirs = umoci_unpack(layout_ref, workdir / "rootless-mode-umoci", rootless=True,
                          as_nobody=False)
    assert differences(snapshot(ours), snapshot(theirs), ownership=True) == []
