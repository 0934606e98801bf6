"""Walking the manifests in the cache: which blobs each cached image reaches, and which images
are complete. Read-only: a blob that does not verify, or does not parse, is simply not followed.

Manifests and configs are read through the image model (:func:`tank.image.parse_manifest`,
:func:`tank.image.parse_config`), so the cache's maintenance applies the same rules (size caps,
strict JSON, valid descriptors) as a pull.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from tank.digest import Digest
from tank.errors import InvalidDigest, TankError
from tank.image import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Index,
    Manifest,
    parse_config,
    parse_manifest,
)
from tank.platform import is_attestation
from tank.store._scan import regular as _regular
from tank.store.content import Store

#: how deep indexes may nest when walking (real ones are one level deep)
MAX_DEPTH: Final = 8

Document = Manifest | Index


def _read_verified(store: Store, digest: str, cap: int) -> bytes | None:
    """A cached blob's bytes when it is at most ``cap`` bytes and verifies; else ``None``.

    Unlike :meth:`Store.read_blob` it never removes anything (a corrupt blob is simply not
    read): listing the cache does not change it.
    """
    try:
        d = Digest.parse(digest)
    except InvalidDigest:
        return None
    path = store.blob_path(d)
    st = _regular(path)
    if st is None or st.st_size > cap:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return None
    hasher = d.hasher()
    hasher.update(data)
    return data if hasher.digest() == d else None


def read_document(store: Store, digest: str) -> Document | None:
    """The cached manifest or index ``digest``, parsed by the image model; ``None`` when it is
    missing, corrupt, or not a manifest tank reads."""
    raw = _read_verified(store, digest, MAX_MANIFEST_SIZE)
    if raw is None:
        return None
    try:
        return parse_manifest(raw, None, digest=Digest.parse(digest))
    except TankError:
        return None


class _Walker:
    """Walks manifests in the cache, remembering each one's document."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._docs: dict[str, Document | None] = {}

    def doc(self, digest: str) -> Document | None:
        """The cached document ``digest`` (parsed once)."""
        if digest not in self._docs:
            self._docs[digest] = read_document(self.store, digest)
        return self._docs[digest]

    def tree(self, digest: Digest, depth: int = 0) -> set[Digest]:
        """``digest`` and everything it refers to, as far as the cached manifests tell."""
        out = {digest}
        doc = self.doc(digest)
        if doc is None or depth > MAX_DEPTH:
            return out
        if isinstance(doc, Index):
            for entry in doc.manifests:
                if entry.digest not in out:
                    out |= self.tree(entry.digest, depth + 1)
            return out
        out.add(doc.config.digest)
        out.update(layer.digest for layer in doc.layers)
        return out

    def platforms(self, digest: Digest) -> list[str]:
        """The platforms of the image(s) under ``digest`` whose every blob is cached."""
        doc = self.doc(digest)
        if doc is None:
            return []
        if isinstance(doc, Index):
            return [
                str(entry.platform) for entry in doc.manifests
                if entry.platform is not None and not is_attestation(entry.json)
                and self._complete(entry.digest)
            ]
        if not self._complete(digest):
            return []
        raw = _read_verified(self.store, doc.config.digest, MAX_CONFIG_SIZE)
        try:
            platform = parse_config(raw, require_rootfs=False).platform if raw else None
        except TankError:
            platform = None
        return [str(platform)] if platform is not None else []

    def _complete(self, digest: Digest) -> bool:
        if self.doc(digest) is None:
            return False
        return all(self.store.has_blob(d) for d in self.tree(digest))


def _cached_manifests(store: Store) -> Iterator[Digest]:
    """Every cached blob that may be a manifest (small, and a JSON object by its first byte)."""
    for d, path in store.iter_blobs():
        st = _regular(path)
        if st is None or st.st_size > MAX_MANIFEST_SIZE or st.st_size < 2:
            continue
        try:
            with open(path, "rb") as f:
                first = f.read(1)
        except OSError:
            continue
        if first == b"{":
            yield d


def _in_flight(store: Store, walker: _Walker, held: set[Digest]) -> set[Digest]:
    """``held``, plus the whole tree of every cached manifest whose tree reaches into it."""
    if not held:
        return set()
    out = set(held)
    for d in _cached_manifests(store):
        if walker.doc(d) is None:
            continue
        tree = walker.tree(d)
        if tree & held:
            out |= tree
    return out
