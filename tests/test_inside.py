"""``tank ls``, ``cat``, ``export`` and ``diff`` against the real registry, with referees: the tree
``tank pull -o rootfs:`` unpacks, ``umoci unpack`` of the same image, and GNU tar.

The images: the unpack's conformance image (whiteouts across three layers, opaque directories
before and after what they keep, hard links within and across layers, files replaced by
directories and back, symlink chains, absolute and dangling symlinks, setuid bits, read-only
directories, nanosecond times); a fourth layer on it for ``diff``; a small image whose top layer
lists its parents (``cat`` reads only that layer); a layer with symlinks that would leave the
root on the host; a 300 MB file (streamed in bounded memory); a hostile layer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tank
from support.unpacking import IS_ROOT, UMOCI, E, differences, layer, snapshot
from tank.inside import read as inside_read
from tank.store import Store
from tank.testing.images import Blob, Image, Pusher, make_image, make_layer
from tank.testing.registry import LocalRegistry
from test_unpack_conformance import check_expectations, conformance_layers

BIG = 300 * 1000 * 1000


def fourth_layer() -> list[E]:
    """What v2 changes on top of the conformance image."""
    return [
        E("etc", "dir"),
        E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/bash\n"),  # content
        E("etc/.wh.shadow"),  # removed
        E("usr/bin/su", data=b"#!/bin/su v2\n", mode=0o755),  # mode only
        E("new", "dir"),
        E("new/file", data=b"added"),  # added, with its directory
        E("c", "dir"),  # file -> directory
        E("lib64", "symlink", target="/usr/lib64"),  # link target
        E("times/old", data=b"old", mtime=99),  # only the time: not a change
        E("tmp", "dir", mode=0o1777, uid=5),  # owner
    ]


def big_layer() -> Blob:
    """One 300 MB file of zeros, gzip-compressed as it is made (a few hundred kB)."""
    info = tarfile.TarInfo("big/zeros")
    info.size = BIG
    info.mode = 0o644
    head = tarfile.TarInfo("big")
    head.type = tarfile.DIRTYPE
    head.mode = 0o755
    blocks = head.tobuf(tarfile.PAX_FORMAT) + info.tobuf(tarfile.PAX_FORMAT)
    plain = hashlib.sha256()
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = io.BytesIO()
    chunk = bytes(8 << 20)
    for data in (blocks, *([chunk] * (BIG // len(chunk))), bytes(BIG % len(chunk)),
                 bytes(-BIG % 512 + 1024)):
        plain.update(data)
        out.write(deflate.compress(data))
    out.write(deflate.flush())
    return Blob.of(out.getvalue(), "application/vnd.oci.image.layer.v1.tar+gzip",
                   "sha256:" + plain.hexdigest())


@dataclass(frozen=True)
class Images:
    """The references pushed."""

    conf: str
    conf2: str
    small: str
    small_image: Image
    escape: str
    big: str
    hostile: str


@pytest.fixture(scope="module")
def images(registry: LocalRegistry) -> Images:
    base = [layer(entries) for entries in conformance_layers()]
    small = make_image([
        make_layer({"etc/hostname": b"base\n", "usr/share/doc/a": b"a" * 5000}),
        make_layer({"usr/bin/tool": b"#!/bin/sh\n"}),
        make_layer({"etc/os-release": b'ID=tank\nVERSION_ID="15"\n'}),
    ])
    escape = [E("etc", "dir"), E("etc/hostname", data=b"the image's hostname\n"),
              E("up", "symlink", target="../../../../../../../../etc/hostname"),
              E("abs", "symlink", target="/etc/hostname"),
              E("loop", "symlink", target="loop2"), E("loop2", "symlink", target="loop"),
              E("etc/evil\x1b[31m", data=b"red"), E(os.fsdecode(b"etc/bad\xff"), data=b"ff")]
    hostile = [E("ok", data=b"fine"), E("../../escape", data=b"bad")]
    with Pusher(registry.url) as pusher:
        pusher.push_image("inside/conf", "v1", make_image(base))
        pusher.push_image("inside/conf", "v2", make_image([*base, layer(fourth_layer())]))
        pusher.push_image("inside/small", "v1", small)
        pusher.push_image("inside/escape", "v1", make_image([layer(escape)]))
        pusher.push_image("inside/big", "v1", make_image([big_layer()]))
        pusher.push_image("inside/hostile", "v1", make_image([layer(hostile)]))
    host = registry.host
    return Images(f"{host}/inside/conf:v1", f"{host}/inside/conf:v2", f"{host}/inside/small:v1",
                  small, f"{host}/inside/escape:v1", f"{host}/inside/big:v1",
                  f"{host}/inside/hostile:v1")


def run(*args: str, cache: Path, stdin: Any = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tank", *args], capture_output=True, timeout=300,
        env={**os.environ, "TANK_CACHE": str(cache)}, stdin=stdin, check=False,
    )


@pytest.fixture(scope="module")
def trees(images: Images, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The conformance images unpacked by ``tank pull -o rootfs:`` and by ``umoci unpack``."""
    work = tmp_path_factory.mktemp("trees")
    out: dict[str, Path] = {}
    for name, ref in (("v1", images.conf), ("v2", images.conf2)):
        cache = work / f"cache-{name}"
        rootfs = work / f"rootfs-{name}"
        tank.pull(ref, output=f"rootfs:{rootfs}", cache=cache)
        out[name] = rootfs
        layout = work / f"layout-{name}"
        tank.pull(ref, output=f"oci:{layout}:v", cache=cache)
        bundle = work / f"umoci-{name}"
        done = subprocess.run([UMOCI, "unpack", *([] if IS_ROOT else ["--rootless"]), "--image",
                               f"{layout}:v", str(bundle)], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
        out[f"umoci-{name}"] = bundle / "rootfs"
    return out


# -- ls ------------------------------------------------------------------------------------------


def listing(ref: str, cache: Path, *args: str) -> list[dict[str, Any]]:
    done = run("ls", ref, *args, "--json", "-q", cache=cache)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)["entries"]
    return entries


def described(entries: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """path → (kind, mode, size, target, owner) from a ``tank ls --json`` listing."""
    by_path = {e["path"]: e for e in entries}
    out = {}
    for e in entries:
        kind, target = e["type"], e["linkTarget"]
        if kind == "hardlink":
            kind, target = by_path[e["linkTarget"]]["type"], None
        out[e["path"].lstrip("/")] = (
            kind, int(e["mode"], 8), e["size"] if kind == "file" else None,
            target if kind == "symlink" else None, (e["uid"], e["gid"]) if IS_ROOT else None,
        )
    return out


def tree_described(root: Path) -> dict[str, tuple[Any, ...]]:
    return {
        path: (n.kind, n.mode, n.size, n.target, (n.uid, n.gid) if IS_ROOT else None)
        for path, n in snapshot(root).items()
    }


def test_ls_lists_the_tree_the_unpack_and_umoci_make(
    images: Images, trees: dict[str, Path], tmp_path: Path,
) -> None:
    ours = described(listing(images.conf, tmp_path / "cache", "-R"))
    assert ours == tree_described(trees["v1"])
    assert ours == tree_described(trees["umoci-v1"])
    top = listing(images.conf, tmp_path / "cache")  # one directory, not recursive
    assert [e["path"] for e in top] == sorted(
        ("/" + p for p in os.listdir(trees["v1"])), key=lambda p: p.encode())
    usr_bin = {e["path"]: e for e in listing(images.conf, tmp_path / "cache", "/bin/../usr/bin")}
    assert usr_bin["/usr/bin/t5"]["type"] == "hardlink"
    assert usr_bin["/usr/bin/t5"]["linkTarget"] == "/usr/bin/t2"
    assert usr_bin["/usr/bin/su"]["mode"] == "4755"
    assert usr_bin["/usr/bin/su"]["layer"] == 1


def test_ls_long_format_and_symlinks(images: Images, tmp_path: Path) -> None:
    done = run("ls", images.conf, "/lib", "-l", "-q", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    line = done.stdout.decode().strip()
    assert line.startswith("lrwxrwxrwx")
    assert line.endswith("lib -> /usr/lib")
    followed = run("ls", images.conf, "/lib/", "-l", "-q", cache=tmp_path / "cache")
    assert b"libfoo.so -> libfoo.so.1" in followed.stdout
    assert b"libfoo.so.1\n" in followed.stdout


def test_ls_of_one_layer_shows_its_whiteouts_and_fetches_only_it(
    images: Images, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    entries = listing(images.conf, cache, "--layer", "1", "-R")
    kinds = {e["path"]: e["type"] for e in entries}
    assert kinds["/a/x"] == "whiteout"
    assert kinds["/a/sub"] == "whiteout"
    assert kinds["/b"] == "opaque"
    assert kinds["/usr/bin/t4"] == "hardlink"
    assert {e["layer"] for e in entries} == {1}
    layers = tank.inspect(images.conf).layers
    assert _cached_layers(cache, [str(x.digest) for x in layers]) == [str(layers[1].digest)]
    missing = run("ls", images.conf, "--layer", "3", cache=cache)
    assert missing.returncode == 3
    assert b"the image has 3 layers" in missing.stderr


def _cached_layers(cache: Path, digests: list[str]) -> list[str]:
    store = Store(cache)
    return [d for d in digests if store.has_blob(d)]


# -- cat -----------------------------------------------------------------------------------------


def test_cat_gives_the_files_of_the_unpacked_tree(
    images: Images, trees: dict[str, Path], tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    files = [p for p, n in snapshot(trees["v1"]).items() if n.kind == "file"]
    assert len(files) > 20
    for path in files:
        got = tank.read_file(images.conf, "/" + path, cache=cache)
        assert got == (trees["v1"] / path).read_bytes() == (trees["umoci-v1"] / path).read_bytes()
    done = run("cat", images.conf, "/etc/motd", "/lib/libfoo.so", "/usr/bin/t4", "-q",
               cache=cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        (trees["v1"] / "etc/motd").read_bytes() + (trees["v1"] / "usr/lib/libfoo.so.1")
        .read_bytes() + (trees["v1"] / "usr/bin/t2").read_bytes()
    )


def test_cat_of_a_file_in_the_top_layer_fetches_only_the_top_layer(
    images: Images, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    done = run("cat", images.small, "/etc/os-release", "-q", cache=cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'ID=tank\nVERSION_ID="15"\n'
    layers = [b.digest for b in images.small_image.layers]
    assert _cached_layers(cache, layers) == [layers[-1]]
    lower = run("cat", images.small, "/etc/hostname", "-q", cache=cache)
    assert lower.stdout == b"base\n"
    assert _cached_layers(cache, layers) == layers  # each layer above may have deleted it


@pytest.mark.parametrize(("path", "code", "message"), [
    ("/a/x", 3, b"/a/x: deleted by layer 1"),
    ("/f/../etc/shadowy", 3, b"no such file or directory in the image"),
    ("/etc/localtime", 3, b"the symlink /etc/localtime -> /usr/share/zoneinfo/UTC leads nowhere"),
    ("/var/run/x", 3, b"leads nowhere"),
    ("/etc", 1, b"/etc is a directory"),
    ("/var/fifo", 1, b"/var/fifo is a FIFO"),
])
def test_cat_of_what_is_not_a_file_is_a_clear_error(
    images: Images, tmp_path: Path, path: str, code: int, message: bytes,
) -> None:
    done = run("cat", images.conf, "/etc/motd", path, "-q", cache=tmp_path / "cache")
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert done.stdout == b""  # nothing before every path was found
    assert done.stderr.count(b"\n") == 1  # one line, no traceback


def test_cat_resolves_symlinks_inside_the_image_never_on_the_host(
    images: Images, tmp_path: Path,
) -> None:
    for path in ("/up", "/abs", "/etc/../up"):
        assert tank.read_file(images.escape, path, cache=tmp_path) == b"the image's hostname\n"
    loop = run("cat", images.escape, "/loop", cache=tmp_path)
    assert loop.returncode == 3
    assert b"too many levels of symlinks" in loop.stderr


def test_cat_streams_a_large_file_in_bounded_memory(images: Images, tmp_path: Path) -> None:
    child = (
        "import hashlib, json, resource, sys, tank\n"
        "ref, cache = sys.argv[1:]\n"
        "tank.files(ref, '/', cache=cache)\n"  # fetch and read once: the baseline
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "class Sink:\n"
        "    h = hashlib.sha256(); n = 0\n"
        "    def write(self, b): self.h.update(b); self.n += len(b)\n"
        "sink = Sink()\n"
        "tank.cat(ref, '/big/zeros', sink, cache=cache)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'base': base, 'peak': peak, 'n': sink.n, 'sha': sink.h.hexdigest()}))"
    )
    done = subprocess.run([sys.executable, "-c", child, images.big, str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n"] == BIG
    assert report["sha"] == hashlib.sha256(bytes(BIG)).hexdigest()
    assert report["peak"] - report["base"] < 64 * 1024, report


def test_cat_offline_of_an_image_never_pulled_is_a_cache_miss(
    images: Images, tmp_path: Path,
) -> None:
    done = run("cat", images.small, "/etc/os-release", "--offline", cache=tmp_path)
    assert done.returncode == 3
    assert b"offline" in done.stderr


# -- export --------------------------------------------------------------------------------------


def extract(tar: Path, dest: Path) -> Path:
    dest.mkdir()
    done = subprocess.run(["tar", "-xpf", str(tar), "--numeric-owner", "-C", str(dest)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return dest


def test_export_extracted_by_gnu_tar_is_the_unpacked_tree(
    images: Images, trees: dict[str, Path], tmp_path: Path,
) -> None:
    out = tmp_path / "export.tar"
    done = run("export", images.conf, "-o", str(out), "-q", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    extracted = extract(out, tmp_path / "x")
    check_expectations(extracted)
    ours = snapshot(extracted)
    assert differences(ours, snapshot(trees["v1"]), ownership=IS_ROOT) == []
    assert differences(ours, snapshot(trees["umoci-v1"]), ownership=IS_ROOT) == []


def test_export_is_stable_without_whiteouts_or_removed_files(
    images: Images, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    first = run("export", images.conf, "-q", cache=cache)  # stdout is a pipe here
    second = run("export", images.conf, "-q", cache=cache)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    zipped = run("export", images.conf, "--gzip", "-q", cache=cache)
    assert gzip.decompress(zipped.stdout) == first.stdout
    with tarfile.open(fileobj=io.BytesIO(first.stdout)) as tar:
        names = tar.getnames()
        kinds = {m.name: m.type for m in tar.getmembers()}
    assert not [n for n in names if "/.wh." in "/" + n]
    for gone in ("a/x", "a/y", "a/sub", "b/old1", "b/olddir", "opt/lower", "d/inside"):
        assert gone not in names
        assert not [n for n in names if n.startswith(gone + "/")]
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/t2")
    assert kinds["usr/bin/t3"] == tarfile.LNKTYPE
    assert names == sorted(names, key=lambda n: [p.encode() for p in n.rstrip("/").split("/")])


def test_export_refuses_a_terminal_and_writes_files_whole(images: Images, tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    bad = run("export", images.hostile, "-o", str(target), cache=tmp_path / "cache")
    assert bad.returncode == 1
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]


# -- diff ----------------------------------------------------------------------------------------


def tree_diff(a: Path, b: Path) -> dict[str, str]:
    """path → added/removed/changed, from two unpacked trees (times ignored)."""
    x, y = snapshot(a), snapshot(b)
    out = {}
    for path in x.keys() | y.keys():
        if path not in y:
            out["/" + path] = "removed"
        elif path not in x:
            out["/" + path] = "added"
        else:
            n, m = x[path], y[path]
            if (n.kind, n.mode, n.sha256, n.target, n.uid, n.gid) != (
                    m.kind, m.mode, m.sha256, m.target, m.uid, m.gid):
                out["/" + path] = "changed"
    return out


def test_diff_is_the_diff_of_the_unpacked_trees(
    images: Images, trees: dict[str, Path], tmp_path: Path,
) -> None:
    done = run("diff", images.conf, images.conf2, "--json", "-q", cache=tmp_path / "cache")
    assert done.returncode == 1, done.stderr  # they differ
    changes = json.loads(done.stdout)["changes"]
    assert {c["path"]: c["change"] for c in changes} == tree_diff(trees["v1"], trees["v2"])
    by_path = {c["path"]: c for c in changes}
    assert by_path["/etc/passwd"]["fields"] == ["content"]
    assert by_path["/usr/bin/su"]["fields"] == ["mode"]  # the same bytes as layer 1 wrote
    assert by_path["/c"]["fields"] == ["type", "mode"]
    assert by_path["/lib64"]["fields"] == ["link"]
    assert by_path["/tmp"]["fields"] == ["owner"]
    assert "/times/old" not in by_path
    paths = [c["path"] for c in changes]
    assert paths == sorted(paths, key=lambda p: [s.encode() for s in p.split("/")])
    text = run("diff", images.conf, images.conf2, "-q", cache=tmp_path / "cache")
    assert text.returncode == 1
    assert b"changed  /usr/bin/su  (mode 4755 -> 0755)\n" in text.stdout
    assert b"added    /new/file\n" in text.stdout
    assert b"removed  /etc/shadow\n" in text.stdout


def test_diff_of_an_image_with_itself_is_empty_and_exits_0(
    images: Images, tmp_path: Path,
) -> None:
    done = run("diff", images.conf, images.conf, "-q", cache=tmp_path / "cache")
    assert (done.returncode, done.stdout) == (0, b"")
    missing = run("diff", images.conf, images.conf.replace(":v1", ":nope"), "-q",
                  cache=tmp_path / "cache")
    assert missing.returncode == 3  # an error keeps its code


def test_diff_reads_a_layer_both_images_have_once(
    images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    original = inside_read.read_each

    def counting(layers: Any, *args: Any, **kwargs: Any) -> None:
        read.extend(layer.diff_id for layer in layers)
        original(layers, *args, **kwargs)

    monkeypatch.setattr("tank.inside.view.read_each", counting)
    changes = tank.diff(images.conf, images.conf2, cache=tmp_path)
    assert changes
    assert len(read) == len(set(read)) == 4


# -- hostile layers ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["ls", "-R"], ["cat", "/ok"], ["export", "-o", "-"],
                                     ["diff", "SELF"]])
def test_a_hostile_layer_is_a_clear_error(
    images: Images, tmp_path: Path, command: list[str],
) -> None:
    args = [a if a != "SELF" else images.hostile for a in command[1:]]
    done = run(command[0], images.hostile, *args, "-q", cache=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(b"tank: error: cannot unpack layer sha256:")
    assert b"'..'" in done.stderr
    assert b"Traceback" not in done.stderr
    assert done.stdout == b""


def test_library_listing(images: Images, tmp_path: Path) -> None:
    entries = list(tank.files(images.small, "/etc", recursive=False, cache=tmp_path))
    assert [(e.path, e.layer, e.kind) for e in entries] == [
        ("/etc/hostname", 0, "file"), ("/etc/os-release", 2, "file")]
    assert entries[1].layer_digest == images.small_image.layers[2].digest
    with pytest.raises(tank.PathNotFound):
        tank.files(images.small, "/nope", cache=tmp_path)
    pulled = tank.pull(images.small, cache=tmp_path)
    assert [e.path for e in tank.files(pulled, "/usr", recursive=True)] == [
        "/usr/bin", "/usr/bin/tool", "/usr/share", "/usr/share/doc", "/usr/share/doc/a"]


def test_library_export_to_a_path_or_a_file_object(images: Images, tmp_path: Path) -> None:
    target = tmp_path / "small.tar"
    count = tank.export(images.small, target, cache=tmp_path / "cache")
    buffer = io.BytesIO()
    assert tank.export(images.small, buffer, gzip=True, cache=tmp_path / "cache") == count
    assert gzip.decompress(buffer.getvalue()) == target.read_bytes()
    with tarfile.open(target) as tar:
        assert tar.getnames() == [
            "etc", "etc/hostname", "etc/os-release", "usr", "usr/bin", "usr/bin/tool",
            "usr/share", "usr/share/doc", "usr/share/doc/a"]
        member = tar.extractfile("usr/share/doc/a")
        assert member is not None
        assert member.read() == b"a" * 5000
    assert count == 9


def test_names_from_the_image_never_drive_the_terminal(images: Images, tmp_path: Path) -> None:
    done = run("ls", images.escape, "/etc", "-q", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [b"bad\\xff", b"evil\\x1b[31m", b"hostname"]
    bad = os.fsdecode(b"/etc/bad\xff")
    assert run("cat", images.escape, bad, "-q", cache=tmp_path).stdout == b"ff"
    missing = run("cat", images.escape, bad + "x", "-q", cache=tmp_path)
    assert missing.returncode == 3
    assert b"/etc/bad\\xffx: no such file" in missing.stderr
    deeper = run("cat", images.escape, bad + "/x", "-q", cache=tmp_path)
    assert deeper.returncode == 3
    assert deeper.stderr.endswith(b"ls " + images.escape.encode() + b" /etc/bad\\xff` lists "
                                  b"what is there\n")
    assert b"\x1b" not in run("ls", images.escape, "/etc", "-l", "-q", cache=tmp_path).stdout
