"""Helpers for the tests of ``tank.inside`` (no tests here): random images, the layers of a built
image as :class:`tank.inside.read.Layer` objects, and a tree read back from the merged view.

:func:`random_layers` makes layers from a small alphabet of names so that paths collide: files,
directories, symlinks (relative, absolute, with ``..``, dangling, in loops), hard links (to files,
to symlinks, to nothing), FIFOs, whiteouts and opaque markers, and entries written through
symlinked parents. Some of those images cannot be unpacked; the unpack and the merged view must
then refuse them alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from support.unpacking import EPOCH, Built, E, Node
from tank.inside.read import Layer
from tank.inside.view import ImageView

NAMES = ("a", "b", "c", "d")


def layers_of(built: Built) -> list[Layer]:
    """A built image's layers, as the merged view takes them."""
    return [
        Layer(i, digest, built.diff_ids[i], media_type, path.stat().st_size, path)
        for i, (digest, media_type, path) in enumerate(built.layers)
    ]


def _path(rng: random.Random, depth: int = 3) -> str:
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, depth)))


def _target(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.15:
        return "/" + _path(rng)
    if choice < 0.3:
        return "../" + _path(rng, 2)
    if choice < 0.35:
        return "."
    return _path(rng, 2)


def random_layer(rng: random.Random, serial: int, made: dict[str, str]) -> list[E]:
    """One layer of 1 to 14 entries; ``made`` (path → kind) is what earlier entries made, from
    which most parents and hard link targets are taken, so that most images can be unpacked."""
    entries: list[E] = []
    for _ in range(rng.randint(1, 14)):
        dirs = [p for p, kind in made.items() if kind == "dir"]
        if dirs and rng.random() < 0.7:
            path = f"{rng.choice(dirs)}/{rng.choice(NAMES)}"
        else:
            path = _path(rng, 1 if rng.random() < 0.6 else 3)
        roll = rng.random()
        mtime = EPOCH + rng.randint(0, 3)
        mode = rng.choice((0o644, 0o600, 0o755, 0o4755))
        if roll < 0.22:
            data = f"{path} {serial} {rng.random()}".encode()
            entries.append(E(path, data=data, mode=mode, mtime=mtime, uid=rng.choice((0, 7))))
            made[path] = "file"
        elif roll < 0.5:
            entries.append(E(path, "dir", mode=rng.choice((0o755, 0o700, 0o1777)), mtime=mtime))
            made[path] = "dir"
        elif roll < 0.62:
            entries.append(E(path, "symlink", target=_target(rng), mtime=mtime))
            made[path] = "symlink"
        elif roll < 0.72:
            others = [p for p, kind in made.items() if kind != "dir"]
            target = rng.choice(others) if others and rng.random() < 0.85 else _path(rng)
            entries.append(E(path, "hardlink", target=target, mtime=mtime))
            made[path] = "hardlink"
        elif roll < 0.76:
            entries.append(E(path, "fifo", mode=0o600, mtime=mtime))
            made[path] = "fifo"
        elif roll < 0.9:
            head, _, name = path.rpartition("/")
            entries.append(E(f"{head}/.wh.{name}" if head else f".wh.{name}"))
        else:
            head = path.rpartition("/")[0]
            entries.append(E(f"{head}/.wh..wh..opq" if head else ".wh..wh..opq"))
    return entries


def random_layers(seed: int) -> list[list[E]]:
    """1 to 4 random layers."""
    rng = random.Random(seed)
    made: dict[str, str] = {}
    return [random_layer(rng, i, made) for i in range(rng.randint(1, 4))]


def nodes_of(view: ImageView) -> dict[str, Node]:
    """The merged view as :func:`support.unpacking.snapshot` describes a tree (content hashes
    from ``data``, which must be sha256 hex digests)."""
    entries = list(view.entries("/", recursive=True))
    groups: dict[str, list[str]] = {}
    for e in entries:
        if e.kind in ("file", "hardlink", "symlink", "fifo") and e.nlink > 1:
            first = e.link_target if e.kind == "hardlink" else e.path
            groups.setdefault(first, []).append(e.path[1:])
    out: dict[str, Node] = {}
    for e in entries:
        found = view.find(e.path, follow=False)
        assert found.node is not None
        kind = e.kind
        first = e.path
        if kind == "hardlink":
            kind, first = found.node.kind, e.link_target
        group = groups.get(first, [])
        out[e.path[1:]] = Node(
            kind=kind,
            mode=e.mode,
            size=e.size if kind == "file" else None,
            sha256=found.node.data if kind == "file" else None,  # type: ignore[arg-type]
            mtime_ns=e.mtime_ns,
            target=found.node.link if kind == "symlink" else None,
            uid=e.uid,
            gid=e.gid,
            links=tuple(sorted(group)) if len(group) > 1 else (),
            rdev=0,
        )
    return out


def tree_files(root: Path) -> Sequence[Path]:
    """Every path under ``root``, sorted."""
    return sorted(root.rglob("*"))
