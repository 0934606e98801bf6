"""Helpers for the unpack tests (no tests here): hand-made layers, images, tree snapshots.

- :class:`E` describes one tar entry, :func:`tar_of` writes entries as a PAX tar and
  :func:`layer_of` wraps a tar as a layer :class:`~tank.testing.images.Blob` with its diff_id.
- :class:`Built` is an image (layers, config, manifest) on disk: the arguments
  :func:`tank.outputs.rootfs.unpack_layers` takes, and an OCI layout for umoci.
- :func:`snapshot` describes a tree entry by entry (type, mode, size, content hash, times,
  symlink target, owner, hard-link group), never following a symlink, for comparisons.
- :func:`unprivileged` runs a command as uid/gid 65534 (``setpriv``), for the rootless tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from tank.outputs.layout import write_image
from tank.testing.images import (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    Blob,
    Image,
    make_image,
    sha256_digest,
)

EPOCH = 1_700_000_000
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
NOBODY = 65534
UMOCI = "/usr/bin/umoci"
SETPRIV = "/usr/bin/setpriv"
IS_ROOT = os.geteuid() == 0


@dataclass
class E:
    """One tar entry: ``kind`` is file, dir, symlink, hardlink, fifo, char or block."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    target: str = ""  # symlink target or hard link name
    mtime: int = EPOCH
    uid: int = 0
    gid: int = 0
    major: int = 0
    minor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}


def tar_of(entries: Sequence[E], *, end: bool = True) -> bytes:
    """A PAX tar of ``entries``, in order; without ``end`` no end-of-archive blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            info.mtime = e.mtime
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            info.linkname = e.target
            info.devmajor, info.devminor = e.major, e.minor
            info.pax_headers = dict(e.pax)
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
        data = buf.getvalue()
        if not end:
            return data
    return buf.getvalue()


def layer_of(tar: bytes, compression: str = "gzip") -> Blob:
    """``tar`` as a layer blob (gzip, zstd or plain), with its diff_id."""
    diff_id = sha256_digest(tar)
    if compression == "gzip":
        return Blob.of(gzip.compress(tar, compresslevel=1, mtime=0), OCI_LAYER_GZIP, diff_id)
    if compression == "zstd":
        return Blob.of(zstandard.ZstdCompressor().compress(tar), OCI_LAYER_ZSTD, diff_id)
    return Blob.of(tar, OCI_LAYER, diff_id)


def layer(entries: Sequence[E], compression: str = "gzip") -> Blob:
    """A layer of ``entries``."""
    return layer_of(tar_of(entries), compression)


@dataclass
class Built:
    """An image written to a directory: blob files, and what unpack_layers takes."""

    image: Image
    root: Path
    layers: list[tuple[str, str, Path]]
    diff_ids: list[str]

    def layout(self, target: Path, tag: str = "test") -> str:
        """Write the image as an OCI layout; the ``DIR:TAG`` umoci wants."""
        blobs = {b.digest: self.blob_path(b.digest) for b in self.image.blobs()}
        blobs[self.image.manifest_digest] = self.blob_path(self.image.manifest_digest)
        write_image(
            target, manifest_digest=self.image.manifest_digest,
            manifest_media_type=self.image.media_type, manifest_size=len(self.image.manifest),
            ref_name=tag, blobs=blobs, platform=self.image.platform, copy=True,
        )
        return f"{target}:{tag}"

    def blob_path(self, digest: str) -> Path:
        """The file holding a blob."""
        return self.root / digest.replace(":", "-")

    def args_json(self, dest: Path, **options: Any) -> str:
        """The arguments of :func:`run_tank` as JSON."""
        return json.dumps({
            "layers": [[d, m, str(p)] for d, m, p in self.layers],
            "diff_ids": self.diff_ids,
            "dest": str(dest),
            "options": options,
        })


def build(root: Path, layers: Sequence[Blob], **image_options: Any) -> Built:
    """Write the image of ``layers`` (blobs, config, manifest) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    image = make_image(layers, **image_options)
    built = Built(image, root, [], [])
    for blob in image.blobs():
        built.blob_path(blob.digest).write_bytes(blob.data)
    built.blob_path(image.manifest_digest).write_bytes(image.manifest)
    built.layers = [(b.digest, b.media_type, built.blob_path(b.digest)) for b in image.layers]
    built.diff_ids = [b.diff_id or "" for b in image.layers]
    return built


# -- trees ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One entry of a tree, as the conformance test compares it."""

    kind: str
    mode: int
    size: int | None
    sha256: str | None
    mtime_ns: int
    target: str | None
    uid: int
    gid: int
    links: tuple[str, ...]  # the hard-link group (paths sharing the inode), or ()
    rdev: int


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block")):
        if test(mode):
            return name
    return "other"


def walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` (relative path, lstat), never following symlinks."""
    stack = [""]
    while stack:
        rel = stack.pop()
        for name in sorted(os.listdir(root / rel if rel else root)):
            path = f"{rel}/{name}" if rel else name
            st = os.lstat(root / path)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)


def snapshot(root: Path) -> dict[str, Node]:
    """Every entry under ``root`` as a :class:`Node`."""
    entries = list(walk(root))
    groups: dict[tuple[int, int], list[str]] = {}
    for path, st in entries:
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(path)
    out: dict[str, Node] = {}
    for path, st in entries:
        kind = _kind(st.st_mode)
        digest = None
        if kind == "file":
            with open(root / path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        group = groups.get((st.st_dev, st.st_ino), [])
        out[path] = Node(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            size=st.st_size if kind == "file" else None,
            sha256=digest,
            mtime_ns=st.st_mtime_ns,
            target=os.readlink(root / path) if kind == "symlink" else None,
            uid=st.st_uid,
            gid=st.st_gid,
            links=tuple(sorted(group)) if len(group) > 1 else (),
            rdev=st.st_rdev if kind in ("char", "block") else 0,
        )
    return out


def differences(
    ours: Mapping[str, Node], theirs: Mapping[str, Node], *, ownership: bool,
    dir_mtimes: bool = False,
) -> list[str]:
    """What differs, entry by entry: everything but directory mtimes (unless ``dir_mtimes``)
    and ownership (unless ``ownership``)."""
    problems: list[str] = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a is None or b is None:
            problems.append(f"{path}: only in {'umoci' if a is None else 'tank'}")
            continue
        fields = ["kind", "mode", "size", "sha256", "target", "links", "rdev"]
        if a.kind != "dir" or dir_mtimes:
            fields.append("mtime_ns")
        if ownership:
            fields += ["uid", "gid"]
        for name in fields:
            x, y = getattr(a, name), getattr(b, name)
            if x != y:
                problems.append(f"{path}: {name} tank={x!r} umoci={y!r}")
    return problems


# -- running things ---------------------------------------------------------------------------


def umoci_unpack(layout_ref: str, bundle: Path, *, rootless: bool, as_nobody: bool) -> Path:
    """``umoci unpack [--rootless]``; the rootfs path."""
    cmd = [UMOCI, "unpack", *(["--rootless"] if rootless else []), "--image", layout_ref,
           str(bundle)]
    proc = unprivileged(cmd) if as_nobody else subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return bundle / "rootfs"


_RUN_TANK = """
import json, sys, warnings
from pathlib import Path
from tank.outputs.rootfs import unpack_layers
args = json.loads(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    unpack_layers([(d, m, Path(p)) for d, m, p in args["layers"]], args["diff_ids"],
                  Path(args["dest"]), **args["options"])
for w in caught:
    print(f"WARNING {w.category.__name__}: {w.message}", file=sys.stderr)
"""


def run_tank(built: Built, dest: Path, *, as_nobody: bool, **options: Any) -> str:
    """``unpack_layers`` in a fresh process (as uid 65534 with ``as_nobody``); its stderr."""
    cmd = [sys.executable, "-c", _RUN_TANK, built.args_json(dest, **options)]
    proc = unprivileged(cmd) if as_nobody else subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


_READABLE_PATH: list[str] = []


def readable_pythonpath() -> str:
    """A world-readable copy of the packages the unprivileged child imports.

    The checkout (and its .venv) may sit in a directory only root can enter, such as a fresh
    clone under ``mktemp -d``: uid 65534 could then not import tank at all.
    """
    if not _READABLE_PATH:
        import filelock
        import platformdirs
        import urllib3

        import tank

        root = Path(tempfile.mkdtemp(prefix="tank-pythonpath-", dir="/tmp"))
        for module in (tank, zstandard, filelock, urllib3, platformdirs):
            source = Path(module.__file__ or "").parent
            shutil.copytree(source, root / source.name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)  # noqa: S103 - uid 65534 must read the copy
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        root.chmod(0o755)
        _READABLE_PATH.append(str(root))
    return _READABLE_PATH[0]


def unprivileged(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as uid/gid 65534 with no supplementary groups (when root), else as is."""
    prefix = ([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
              if IS_ROOT else [])
    env = {**os.environ, "HOME": tempfile.gettempdir(), "PYTHONDONTWRITEBYTECODE": "1"}
    if IS_ROOT:
        env["PYTHONPATH"] = readable_pythonpath()
        # the test session's empty settings folders are root's; give the child its own
        nothing = str(Path(env["PYTHONPATH"]) / "no-settings")
        for name in ("XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "DOCKER_CONFIG", "TANK_CERTS_D",
                     "CONTAINERS_REGISTRIES_CONF"):
            env[name] = nothing
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=300,
                          check=False, env=env)


def nobody_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that uid 65534 owns (removed by :func:`remove_tree`)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if IS_ROOT:
        os.chown(path, NOBODY, NOBODY)
    path.chmod(0o755)
    return path


def remove_tree(path: Path) -> None:
    """Remove a tree whatever its modes (directories without write permission included)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path)


def files_in(path: Path) -> list[str]:
    """Every path under ``path``, sorted (a canary's surroundings)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def seed_store(cache: Path, built: Built, ref: str = "registry.test/unpack/image:v1") -> str:
    """Put ``built`` into a tank cache as if ``ref`` had been pulled; return ``ref``."""
    from tank.reference import parse as parse_reference
    from tank.store import Store

    store = Store(cache)
    for blob in built.image.blobs():
        store.put_bytes(blob.digest, blob.data)
    store.put_bytes(built.image.manifest_digest, built.image.manifest)
    parsed = parse_reference(ref)
    store.set_ref(parsed.registry, parsed.repository, parsed.tag or "latest",
                  built.image.manifest_digest, built.image.media_type)
    return ref


_RUN_UNPACK = """
import json, sys
from tank import unpack
args = json.loads(sys.argv[1])
config = unpack(args["ref"], args["dest"], cache=args["cache"], **args["options"])
print(json.dumps(config.cmd))
"""


def run_unpack_as_nobody(ref: str, dest: Path, cache: Path, **options: Any) -> str:
    """:func:`tank.unpack` of a cached reference, as uid 65534; its stdout."""
    args = json.dumps({"ref": ref, "dest": str(dest), "cache": str(cache), "options": options})
    proc = unprivileged([sys.executable, "-c", _RUN_UNPACK, args])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
