"""tank.unpack: the API, the config it returns, the cache and copies, media types, metadata."""

from __future__ import annotations

import os
import random
import stat
import struct
import tarfile
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from support.unpacking import (
    IS_ROOT,
    NOBODY,
    Built,
    E,
    build,
    layer,
    layer_of,
    nobody_dir,
    remove_tree,
    run_tank,
    run_unpack_as_nobody,
    seed_store,
    snapshot,
    tar_of,
)
from tank import unpack
from tank._pull import pull
from tank.errors import (
    CacheMiss,
    DigestMismatch,
    InvalidImageConfig,
    UnpackError,
    UnsupportedLayer,
)
from tank.image.config import ImageConfig
from tank.outputs.rootfs import UnpackWarning, rootfs_path, unpack_layers
from tank.store import Store
from tank.testing.images import Blob, Pusher
from tank.testing.registry import LocalRegistry
from test_unpack_conformance import conformance_layers

CONFIG: dict[str, Any] = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/entry", "--flag"],
        "Cmd": ["serve"],
        "Env": ["PATH=/usr/bin:/bin", "EMPTY=", "A=1=2"],
        "User": "1000:1000",
        "WorkingDir": "/srv",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": {"org.opencontainers.image.title": "t"},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
}


def small_layers() -> list[Blob]:
    return [
        layer([E("etc", "dir"), E("etc/os-release", data=b"ID=tank\n"),
               E("bin", "dir"), E("bin/t", data=b"t"),
               E("bin/l", "hardlink", target="bin/t")]),
        layer([E("etc/.wh.os-release"), E("etc/new", data=b"new", mode=0o600)],
              compression="zstd"),
    ]


# -- the config -------------------------------------------------------------------------------


def test_image_config_fields() -> None:
    config = ImageConfig.from_json(CONFIG)
    assert config.entrypoint == ("/bin/entry", "--flag")
    assert config.cmd == ("serve",)
    assert config.argv == ("/bin/entry", "--flag", "serve")
    assert config.env == ("PATH=/usr/bin:/bin", "EMPTY=", "A=1=2")
    assert config.env_dict == {"PATH": "/usr/bin:/bin", "EMPTY": "", "A": "1=2"}
    assert config.user == "1000:1000"
    assert config.working_dir == "/srv"
    assert config.exposed_ports == ("80/tcp", "53/udp")
    assert dict(config.labels) == {"org.opencontainers.image.title": "t"}
    assert (config.os, config.architecture, config.variant) == ("linux", "arm64", "v8")
    assert config.diff_ids == ("sha256:" + "a" * 64,)
    assert config.raw["config"]["Cmd"] == ["serve"]
    with pytest.raises(TypeError):
        config.labels["x"] = "y"  # type: ignore[index]


def test_image_config_defaults() -> None:
    config = ImageConfig.from_json({"rootfs": {"diff_ids": []}, "os": "linux",
                                    "architecture": "amd64"})
    assert config.entrypoint is None
    assert config.cmd is None
    assert config.argv == ()
    assert config.env == ()
    assert config.user == ""
    assert config.working_dir == ""
    assert config.exposed_ports == ()
    assert dict(config.labels) == {}
    assert config.variant is None


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"config": {"Cmd": "sh -c x"}}, "Cmd"),
        ({"config": {"Env": [1]}}, "Env"),
        ({"config": {"User": 0}}, "User"),
        ({"config": {"Labels": {"a": 1}}}, "Labels"),
        ({"config": {"ExposedPorts": ["80/tcp"]}}, "ExposedPorts"),
        ({"config": []}, "config"),
        ({"rootfs": None}, "rootfs"),
        ({"rootfs": {"diff_ids": ["md5:abc"]}}, "diff_ids"),
        ({"rootfs": {}}, "diff_ids"),
        ({"os": 5}, "os"),
    ],
)
def test_image_config_refuses_wrong_types(change: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidImageConfig, match=key):
        ImageConfig.from_json({**CONFIG, **change})


# -- unpack(): pulled images, cached references, the rootfs cache ----------------------------


def test_unpack_a_pulled_image(registry: LocalRegistry, tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", small_layers(), config_extra={"config": {"Cmd": ["t"]}})
    with Pusher(registry.url) as pusher:
        pusher.push_image("unpack/small", "v1", built.image)
    image = pull(f"{registry.host}/unpack/small:v1", cache=tmp_path / "cache")
    events: list[tuple[str, int, int]] = []
    config = unpack(image, tmp_path / "rootfs", progress=lambda *e: events.append(e))
    assert config.cmd == ("t",)
    root = tmp_path / "rootfs"
    assert sorted(os.listdir(root / "etc")) == ["new"]
    assert os.stat(root / "etc/new").st_mode & 0o7777 == 0o600
    assert os.stat(root / "bin/t").st_ino == os.stat(root / "bin/l").st_ino
    # progress: per layer, uncompressed bytes, the last call with done == total
    finals = [e for e in events if e[1] == e[2]]
    assert [e[0] for e in finals] == [b.digest for b in built.image.layers]
    assert all(e[2] == -1 for e in events if e not in finals)

    # the tree was built once in the cache; a reference resolves offline and copies it
    cached = rootfs_path(Store(tmp_path / "cache"), image.digest, rootless=not IS_ROOT)
    assert cached.is_dir()
    events.clear()
    again = unpack(f"{registry.host}/unpack/small:v1", tmp_path / "again",
                   cache=tmp_path / "cache", progress=lambda *e: events.append(e))
    assert again == config
    assert events == []  # nothing unpacked: a copy
    assert snapshot(tmp_path / "again") == snapshot(root) == snapshot(cached)


def test_copies_are_independent_of_the_cache_and_of_each_other(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", small_layers())
    ref = seed_store(tmp_path / "cache", built)
    unpack(ref, tmp_path / "one", cache=tmp_path / "cache")
    unpack(ref, tmp_path / "two", cache=tmp_path / "cache")
    cached = rootfs_path(Store(tmp_path / "cache"), built.image.manifest_digest)
    for name in ("bin/t", "etc/new"):
        inodes = {os.stat(p / name).st_ino for p in (tmp_path / "one", tmp_path / "two", cached)}
        assert len(inodes) == 3
    # the image's own hard links survive the copy, and are not links into the cache
    one = tmp_path / "one"
    assert os.stat(one / "bin/t").st_ino == os.stat(one / "bin/l").st_ino
    assert os.stat(one / "bin/t").st_nlink == 2
    (one / "bin/t").write_bytes(b"changed by a container")
    assert (cached / "bin/t").read_bytes() == b"t"
    assert (tmp_path / "two/bin/l").read_bytes() == b"t"


def test_no_rootfs_cache_unpacks_straight_into_dest(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", [layer(e) for e in conformance_layers()])
    ref = seed_store(tmp_path / "cache", built)
    unpack(ref, tmp_path / "direct", cache=tmp_path / "cache", rootfs_cache=False)
    assert not (tmp_path / "cache/rootfs").exists()
    unpack(ref, tmp_path / "copied", cache=tmp_path / "cache")
    # the copy keeps everything, directory times included
    assert snapshot(tmp_path / "direct") == snapshot(tmp_path / "copied")


@pytest.mark.skipif(not IS_ROOT, reason="runs a second user through setpriv")
def test_rootless_cache_and_copy(tmp_path: Path) -> None:
    """As uid 65534: read-only and unreadable entries survive the build and the copy."""
    work = nobody_dir("tank-rootless-cache-")
    try:
        layers = [*conformance_layers(), [E("secret", data=b"s", mode=0o000),
                                          E("locked", "dir", mode=0o000)]]
        built = build(work / "blobs", [layer(e) for e in layers])
        for path in (work / "blobs").iterdir():
            path.chmod(0o644)
        cache = work / "cache"
        cache.mkdir()
        os.chown(cache, NOBODY, NOBODY)
        ref = seed_store(cache, built)
        for dirpath, dirnames, filenames in os.walk(cache):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
        for name in ("copy", "again", "direct"):
            (work / name).mkdir()
            os.chown(work / name, NOBODY, NOBODY)
        run_unpack_as_nobody(ref, work / "copy", cache)
        run_unpack_as_nobody(ref, work / "again", cache)
        run_unpack_as_nobody(ref, work / "direct", cache, rootfs_cache=False)
        expected = snapshot(work / "direct")
        assert snapshot(work / "copy") == expected
        assert snapshot(work / "again") == expected
        assert expected["secret"].mode == 0
        assert expected["locked"].mode == 0
        assert {node.uid for node in expected.values()} == {NOBODY}
    finally:
        remove_tree(work)


def test_concurrent_unpacks_build_once(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", small_layers())
    ref = seed_store(tmp_path / "cache", built)
    builds: list[str] = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            unpack(ref, tmp_path / name, cache=tmp_path / "cache",
                   progress=lambda d, done, total: builds.append(name) if done == total else None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(builds)) == 1  # one of the three built the tree, the others copied it
    base = rootfs_path(Store(tmp_path / "cache"), built.image.manifest_digest).parent
    assert os.listdir(base) == [built.image.manifest_digest.partition(":")[2]]
    assert snapshot(tmp_path / "t0") == snapshot(tmp_path / "t1") == snapshot(tmp_path / "t2")


def test_dest_must_be_absent_or_an_empty_directory(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", small_layers())
    ref = seed_store(tmp_path / "cache", built)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    with pytest.raises(UnpackError, match="not empty"):
        unpack(ref, full, cache=tmp_path / "cache")
    assert os.listdir(full) == ["keep"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UnpackError, match="not a directory"):
        unpack(ref, afile, cache=tmp_path / "cache")
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack(ref, empty, cache=tmp_path / "cache", rootfs_cache=False)
    assert (empty / "etc/new").is_file()
    unpack(ref, tmp_path / "new/parents/root", cache=tmp_path / "cache")
    assert (tmp_path / "new/parents/root/etc/new").is_file()
    with pytest.raises(UnpackError, match="not empty"):
        unpack_layers(built.layers, built.diff_ids, full)


@pytest.mark.parametrize("rootfs_cache", [True, False])
def test_a_failed_unpack_leaves_nothing(tmp_path: Path, rootfs_cache: bool) -> None:
    good = layer([E("a", data=b"a")])
    bad = layer([E("b", data=b"b")])
    bad = Blob(bad.data, bad.digest, bad.size, bad.media_type, "sha256:" + "0" * 64)
    built = build(tmp_path / "blobs", [good, bad])
    ref = seed_store(tmp_path / "cache", built)
    with pytest.raises(DigestMismatch, match=bad.digest):
        unpack(ref, tmp_path / "made", cache=tmp_path / "cache", rootfs_cache=rootfs_cache)
    assert not (tmp_path / "made").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(DigestMismatch):
        unpack(ref, tmp_path / "kept", cache=tmp_path / "cache", rootfs_cache=rootfs_cache)
    assert os.listdir(tmp_path / "kept") == []
    rootfs = tmp_path / "cache/rootfs"
    assert not rootfs.exists() or [p for p in rootfs.rglob("*") if not p.is_dir()] == []
    assert not rootfs.exists() or not any(p.name.startswith(".tmp") for p in rootfs.rglob("*"))


def test_missing_layer_blob_is_a_cache_miss(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", small_layers())
    ref = seed_store(tmp_path / "cache", built)
    Store(tmp_path / "cache").remove_blob(built.image.layers[1].digest)
    with pytest.raises(CacheMiss, match=built.image.layers[1].digest):
        unpack(ref, tmp_path / "root", cache=tmp_path / "cache")
    assert not (tmp_path / "root").exists()
    with pytest.raises(CacheMiss):
        unpack("registry.test/never/pulled:v1", tmp_path / "root", cache=tmp_path / "cache")


# -- media types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", "gzip"),
        ("application/vnd.oci.image.layer.v1.tar+zstd", "zstd"),
        ("application/vnd.oci.image.layer.v1.tar", "none"),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"),
        ("application/vnd.docker.image.rootfs.diff.tar.zstd", "zstd"),
        ("application/vnd.docker.image.rootfs.diff.tar", "none"),
        # the bytes decide: a gzip media type carrying a plain tar is read as one
        ("application/vnd.oci.image.layer.v1.tar+gzip", "none"),
    ],
)
def test_layer_media_types(tmp_path: Path, media_type: str, compression: str) -> None:
    blob = layer_of(tar_of([E("hello", data=b"hi")]), compression)
    path = tmp_path / "blob"
    path.write_bytes(blob.data)
    (tmp_path / "root").mkdir()
    unpack_layers([(blob.digest, media_type, path)], [blob.diff_id or ""], tmp_path / "root")
    assert (tmp_path / "root/hello").read_bytes() == b"hi"


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/octet-stream",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ],
)
def test_unknown_foreign_and_nondistributable_layers_are_refused(
    tmp_path: Path, media_type: str
) -> None:
    good = layer([E("a", data=b"a")])
    bad = layer([E("b", data=b"b")])
    built = build(tmp_path / "blobs", [good, bad])
    layers = [built.layers[0], (bad.digest, media_type, built.layers[1][2])]
    (tmp_path / "root").mkdir()
    with pytest.raises(UnsupportedLayer, match=media_type.replace("+", r"\+")):
        unpack_layers(layers, built.diff_ids, tmp_path / "root")
    assert os.listdir(tmp_path / "root") == []


# -- entry types and metadata -------------------------------------------------------------------


def test_a_rewritten_lower_file_leaves_its_hard_links_alone(tmp_path: Path) -> None:
    """ggcr #2002: t1 and t3 are hard links to t2; a later layer rewrites t1 only."""
    built = build(tmp_path / "blobs", [
        layer([E("t2", data=b"123"), E("t1", "hardlink", target="t2"),
               E("t3", "hardlink", target="t2")]),
        layer([E("t1", data=b"456")]),
    ])
    root = tmp_path / "root"
    root.mkdir()
    unpack_layers(built.layers, built.diff_ids, root)
    assert [(root / n).read_bytes() for n in ("t1", "t2", "t3")] == [b"456", b"123", b"123"]
    assert os.stat(root / "t2").st_nlink == 2


def test_types_replace_each_other_within_a_layer(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", [layer([
        E("x", data=b"file"), E("x", "dir"), E("x/in", data=b"in"),  # file -> dir
        E("y", "dir"), E("y/in", data=b"in"), E("y", "symlink", target="x"),  # dir -> link
        E("z", "symlink", target="/nowhere"), E("z", "fifo"),  # link -> fifo
    ])])
    root = tmp_path / "root"
    root.mkdir()
    unpack_layers(built.layers, built.diff_ids, root)
    assert (root / "x/in").read_bytes() == b"in"
    assert os.readlink(root / "y") == "x"
    assert stat.S_ISFIFO(os.lstat(root / "z").st_mode)


def test_directory_times_are_set_after_their_content(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", [
        layer([E("d", "dir", mtime=1_000), E("d/a", data=b"a", mtime=2_000)]),
        layer([E("d/b", data=b"b", mtime=3_000), E("e", "dir", mtime=4_000),
               E("e/f", "dir", mtime=5_000), E("e/f/g", data=b"", mtime=6_000)]),
    ])
    root = tmp_path / "root"
    root.mkdir()
    unpack_layers(built.layers, built.diff_ids, root)
    mtimes = {n: os.stat(root / n).st_mtime for n in ("d", "d/a", "d/b", "e", "e/f", "e/f/g")}
    assert mtimes == {"d": 1_000, "d/a": 2_000, "d/b": 3_000, "e": 4_000, "e/f": 5_000,
                      "e/f/g": 6_000}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_modes_and_owners_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """A new file gets its permission bits from open() when the umask keeps them whole, and
    skips the chown when it already has the owner: the result is the same as always."""
    modes = [0o644, 0o666, 0o600, 0o400, 0o755, 0o4755, 0o2750, 0o1777, 0o000, 0o777]
    owners = [(0, 0), (1000, 1000), (0, 50), (50, 0)]
    entries = [E("sg", "dir", mode=0o2775, gid=50)]
    for i, mode in enumerate(modes):
        uid, gid = owners[i % len(owners)]
        entries.append(E(f"f{i}", data=b"x" * i, mode=mode, uid=uid, gid=gid))
        entries.append(E(f"sg/f{i}", data=b"y", mode=mode, uid=uid, gid=gid))
    built = build(tmp_path / "blobs", [layer(entries)])
    root = tmp_path / "root"
    root.mkdir()
    old = os.umask(umask)
    try:
        unpack_layers(built.layers, built.diff_ids, root)
    finally:
        os.umask(old)
    for i, mode in enumerate(modes):
        uid, gid = owners[i % len(owners)]
        for name in (f"f{i}", f"sg/f{i}"):
            st = os.lstat(root / name)
            assert stat.S_IMODE(st.st_mode) == mode, (name, oct(st.st_mode))
            if IS_ROOT:
                assert (st.st_uid, st.st_gid) == (uid, gid), name
    assert (root / "f3").read_bytes() == b"xxx"


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_device_nodes_as_root(tmp_path: Path) -> None:
    built = build(tmp_path / "blobs", [layer([
        E("dev", "dir"), E("dev/null", "char", mode=0o666, major=1, minor=3),
        E("dev/loop0", "block", mode=0o660, major=7, minor=0, gid=6),
    ])])
    root = tmp_path / "root"
    root.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unpack_layers(built.layers, built.diff_ids, root)
    null, loop = os.lstat(root / "dev/null"), os.lstat(root / "dev/loop0")
    assert stat.S_ISCHR(null.st_mode)
    assert null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode)
    assert loop.st_rdev == os.makedev(7, 0)
    assert (stat.S_IMODE(loop.st_mode), loop.st_gid) == (0o660, 6)


def device_image(tmp_path: Path) -> Any:
    return build(tmp_path, [layer([
        E("dev", "dir"), E("dev/null", "char", mode=0o666, major=1, minor=3),
        E("dev/zero", "char", mode=0o666, major=1, minor=5),
        E("dev/loop0", "block", mode=0o660, major=7, minor=0),
        E("dev/fifo", "fifo", mode=0o644),
    ])])


def test_device_nodes_skipped_rootless_with_one_warning(tmp_path: Path) -> None:
    built = device_image(tmp_path / "blobs")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.warns(UnpackWarning, match=r"skipped 3 device node\(s\) \(first: dev/null") as w:
        unpack_layers(built.layers, built.diff_ids, root, rootless=True)
    assert len(w) == 1
    assert sorted(os.listdir(root / "dev")) == ["fifo"]


def unpack_as_nobody(built: Built, work: Path) -> tuple[Path, list[str], str]:
    """Unpack ``built`` into ``work/root`` as uid 65534: the root, the warning lines, stderr."""
    for path in (work / "blobs").iterdir():
        path.chmod(0o644)
    root = work / "root"
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    stderr = run_tank(built, root, as_nobody=True)
    return root, [line for line in stderr.splitlines() if line.startswith("WARNING")], stderr


@pytest.mark.skipif(not IS_ROOT, reason="runs a second user through setpriv")
def test_device_nodes_skipped_when_unprivileged(tmp_path: Path) -> None:
    work = nobody_dir("tank-devices-")
    try:
        root, warned, stderr = unpack_as_nobody(device_image(work / "blobs"), work)
        assert len(warned) == 1, stderr
        assert "skipped 3 device node(s)" in warned[0]
        assert sorted(os.listdir(root / "dev")) == ["fifo"]
        assert os.stat(root / "dev/fifo").st_uid == NOBODY
    finally:
        remove_tree(work)


CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service+ep


def xattr_image(root: Path) -> Any:
    caps = CAPABILITY.decode("utf-8", "surrogateescape")
    return build(root, [layer([
        E("plain", data=b"p", pax={"SCHILY.xattr.user.origin": "tank test"}),
        E("ping", data=b"\x7fELF", mode=0o755, uid=1000,
          pax={"SCHILY.xattr.security.capability": caps,
               "SCHILY.xattr.user.bin": "\x00\x01\x02 binary"}),
        E("dir", "dir", pax={"SCHILY.xattr.user.dir": "yes",
                              "SCHILY.xattr.trusted.overlay.opaque": "y"}),
    ])])


def test_user_xattrs_are_kept_and_privileged_ones_set_as_root(tmp_path: Path) -> None:
    built = xattr_image(tmp_path / "blobs")
    root = tmp_path / "root"
    root.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unpack_layers(built.layers, built.diff_ids, root)
    assert os.getxattr(root / "plain", "user.origin") == b"tank test"
    assert os.getxattr(root / "ping", "user.bin") == b"\x00\x01\x02 binary"
    assert os.getxattr(root / "dir", "user.dir") == b"yes"
    if IS_ROOT:
        assert caught == []
        # set after the chown to uid 1000, which would have cleared it
        assert os.getxattr(root / "ping", "security.capability") == CAPABILITY
        assert os.stat(root / "ping").st_uid == 1000
        assert os.getxattr(root / "dir", "trusted.overlay.opaque") == b"y"


@pytest.mark.skipif(not IS_ROOT, reason="runs a second user through setpriv")
def test_privileged_xattrs_skipped_when_unprivileged_with_one_warning(tmp_path: Path) -> None:
    work = nobody_dir("tank-xattrs-")
    try:
        root, warned, stderr = unpack_as_nobody(xattr_image(work / "blobs"), work)
        assert len(warned) == 1, stderr
        assert "skipped 2 extended attribute(s)" in warned[0]
        assert os.getxattr(root / "plain", "user.origin") == b"tank test"
        assert os.getxattr(root / "dir", "user.dir") == b"yes"
        assert "security.capability" not in os.listxattr(root / "ping")
        assert os.stat(root / "ping").st_mode & 0o7777 == 0o755
    finally:
        remove_tree(work)


def test_a_layer_without_end_of_archive_blocks_is_read(tmp_path: Path) -> None:
    blob = layer_of(tar_of([E("a", data=b"a" * 700)], end=False))
    path = tmp_path / "blob"
    path.write_bytes(blob.data)
    (tmp_path / "root").mkdir()
    unpack_layers([(blob.digest, blob.media_type, path)], [blob.diff_id or ""],
                  tmp_path / "root")
    assert (tmp_path / "root/a").read_bytes() == b"a" * 700


# -- tar headers --------------------------------------------------------------------------------


def header_blocks() -> list[bytes]:
    """512-byte blocks of many kinds of headers (and of PAX data, which is no header)."""
    blocks: list[bytes] = []
    long_name = "dir/" * 30 + "file"  # ustar splits it into prefix and name
    cases: list[tuple[str, bytes, dict[str, Any]]] = [
        ("file", tarfile.REGTYPE, {"size": 5}),
        (long_name, tarfile.REGTYPE, {}),
        ("d/", tarfile.DIRTYPE, {"mode": 0o1777}),
        ("v7dir/", tarfile.AREGTYPE, {}),
        ("sym", tarfile.SYMTYPE, {"linkname": "/abs/target"}),
        ("hard", tarfile.LNKTYPE, {"linkname": "file"}),
        ("null", tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
        ("fifo", tarfile.FIFOTYPE, {"mode": 0o4755}),
        ("ünïcödé", tarfile.REGTYPE, {"uid": 1000, "gid": 1000}),
        ("big-uid", tarfile.REGTYPE, {"uid": 0o7777777 + 1, "mtime": 8**11 + 5}),
    ]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        for name, kind, extra in cases:
            info = tarfile.TarInfo(name)
            info.type = kind
            for key, value in extra.items():
                setattr(info, key, value)
            try:
                data = info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")
            except ValueError:
                continue  # not representable in this format
            blocks += [data[i : i + 512] for i in range(0, len(data), 512)]
    return blocks


def decoded(parse: Any, block: bytes) -> tuple[Any, ...]:
    try:
        h = parse(block)
    except (tarfile.HeaderError, ValueError):
        return ("error",)
    return (h.name, h.linkname, h.type, h.mode, h.uid, h.gid, h.size, int(h.mtime),
            h.devmajor, h.devminor)


def test_header_fast_path_decodes_exactly_as_tarfile() -> None:
    from tank.layers.tar import _parse_header

    def frombuf(block: bytes) -> tarfile.TarInfo:
        return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")

    rng = random.Random(5)
    blocks = header_blocks()
    assert len(blocks) > 30
    for block in list(blocks):
        for _ in range(40):  # mutations, with the checksum left wrong or made right again
            mutated = bytearray(block)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(512)] = rng.choice(
                    [0, 0x20, 0x30, 0x37, 0x38, 0x2D, 0x80, 0xFF, rng.randrange(256)])
            blocks.append(bytes(mutated))
            if rng.random() < 0.5:
                mutated[148:156] = b" " * 8
                mutated[148:156] = b"%06o\0 " % sum(mutated)
                blocks.append(bytes(mutated))
    outcomes = {"error": 0, "ok": 0}
    for block in blocks:
        ours, theirs = decoded(_parse_header, block), decoded(frombuf, block)
        assert ours == theirs, block
        outcomes["error" if ours == ("error",) else "ok"] += 1
    assert outcomes["ok"] > 100
    assert outcomes["error"] > 100


def test_a_tree_as_deep_as_allowed_unpacks_and_copies(tmp_path: Path) -> None:
    from tank.outputs.rootfs import MAX_DEPTH

    deep = "/".join(["d"] * (MAX_DEPTH - 1)) + "/leaf"
    built = build(tmp_path / "blobs", [layer([E(deep, data=b"deep")]),
                                       layer([E("d/.wh..wh..opq"), E("d/new", data=b"n")])])
    ref = seed_store(tmp_path / "cache", built)
    unpack(ref, tmp_path / "root", cache=tmp_path / "cache")
    assert os.listdir(tmp_path / "root/d") == ["new"]
    first = build(tmp_path / "blobs1", [layer([E(deep, data=b"deep")])])
    unpack(seed_store(tmp_path / "cache", first, "registry.test/unpack/deep:v1"),
           tmp_path / "deep", cache=tmp_path / "cache")
    assert (tmp_path / "deep" / deep).read_bytes() == b"deep"


# -- reading a layer without unpacking it (tank.layers.tar) ----------------------------------------


def test_a_layer_is_read_entry_by_entry_without_unpacking(tmp_path: Path) -> None:
    from tank.digest import Digest
    from tank.layers.tar import REGULAR_TYPES, read_layer, split_name
    from tank.layers.whiteout import is_opaque, is_whiteout, whiteout_target

    big = bytes(range(256)) * 9000  # over 2 MiB: several chunks
    blob = layer([
        E("/etc", "dir", mode=0o750),
        E("etc/big", data=big, mode=0o4755, uid=7, gid=8,
          pax={"SCHILY.xattr.user.k": "v", "mtime": "1700000000.25"}),
        E("etc/link", "symlink", target="/etc/big"),
        E("etc/.wh.gone"),
        E("etc/.wh..wh..opq"),
        E("./etc/skipped", data=b"x" * 1000),
        E("last", data=b"tail"),
    ], "zstd")
    path = tmp_path / "layer"
    path.write_bytes(blob.data)
    assert blob.diff_id is not None
    hasher = Digest.parse(blob.diff_id).hasher()
    seen: list[tuple[list[str], bytes, int]] = []
    with read_layer(path, blob.media_type, digest=blob.digest, hasher=hasher) as reader:
        for entry in reader:
            seen.append((split_name(entry.name), entry.kind, entry.size))
            if entry.name == "etc/big":
                assert entry.kind in REGULAR_TYPES
                assert (entry.mode, entry.uid, entry.gid) == (0o4755, 7, 8)
                assert entry.mtime_ns == 1_700_000_000_250_000_000
                assert entry.xattrs == {"user.k": b"v"}
                assert b"".join(reader.chunks()) == big
                assert reader.read() == b""
            elif entry.name == "etc/link":
                assert entry.linkname == "/etc/big"
            elif entry.name == "last":
                assert reader.read(2) == b"ta"  # the rest is skipped
    hasher.verify(blob.diff_id)  # every byte of the stream went through the hasher
    assert [(parts, size) for parts, _, size in seen] == [
        (["etc"], 0), (["etc", "big"], len(big)), (["etc", "link"], 0), (["etc", ".wh.gone"], 0),
        (["etc", ".wh..wh..opq"], 0), (["etc", "skipped"], 1000), (["last"], 4),
    ]
    names = [parts[-1] for parts, _, _ in seen]
    assert [n for n in names if is_whiteout(n)] == [".wh.gone", ".wh..wh..opq"]
    assert [whiteout_target(n) for n in names if is_whiteout(n)] == ["gone", None]
    assert [n for n in names if is_opaque(n)] == [".wh..wh..opq"]
    assert whiteout_target(".wh..wh.plnk") is None
    assert whiteout_target("file") is None


def test_reading_a_layer_keeps_the_limits_and_names_the_layer(tmp_path: Path) -> None:
    from tank.errors import CorruptLayer, LayerTooLarge, UnsafeEntry
    from tank.layers.tar import read_layer, split_name
    from tank.layers.whiteout import whiteout_target

    blob = layer([E("a", data=b"1"), E("b", data=b"2"), E("c", data=b"3")], "none")
    path = tmp_path / "layer"
    path.write_bytes(blob.data)
    with (pytest.raises(LayerTooLarge, match="more than 2 entries") as info,
          read_layer(path, blob.media_type, digest=blob.digest, max_entries=2) as reader):
        list(reader)
    assert (info.value.layer, info.value.entry) == (blob.digest, "c")
    with (pytest.raises(LayerTooLarge, match="uncompressed bytes"),
          read_layer(path, blob.media_type, digest=blob.digest, max_layer_bytes=1024) as reader):
        list(reader)
    path.write_bytes(tar_of([E("cut", data=b"z" * 2000)])[:1024])
    with (pytest.raises(CorruptLayer, match="in the middle of 'cut'"),
          read_layer(path, blob.media_type, digest=blob.digest) as reader):
        [b"".join(reader.chunks()) for _ in reader]
    with pytest.raises(ValueError, match=r"'\.\.' component"):
        split_name("a/../../etc/passwd")
    with pytest.raises(UnsafeEntry, match="naming no entry"):
        whiteout_target(".wh..")
