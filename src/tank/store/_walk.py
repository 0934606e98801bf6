"""Walking the manifests in the cache: which blobs each cached image reaches, and which images
are complete. Read-only: a blob that does not verify is simply not followed.

(Kept apart so that it can be replaced by the image model as one piece.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

from tank.digest import Digest
from tank.errors import InvalidDigest
from tank.platform import Platform, is_attestation
from tank.store._scan import regular as _regular
from tank.store.content import Store

#: cached manifests larger than this are not walked (the registry client's own limit)
MAX_MANIFEST: Final = 4 * 1024 * 1024
#: how deep indexes may nest when walking (real ones are one level deep)
MAX_DEPTH: Final = 8


def _read_json_blob(store: Store, digest: str, cap: int = MAX_MANIFEST) -> dict[str, Any] | None:
    """A cached blob parsed as a JSON object, verified against its digest; else ``None``.

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
    if hasher.digest() != d:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _digest_of(descriptor: Any) -> Digest | None:
    if not isinstance(descriptor, dict):
        return None
    try:
        return Digest.parse(descriptor.get("digest") or "")
    except InvalidDigest:
        return None


def _is_manifest(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("manifests"), list) or (
        isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list)
    )


class _Walker:
    """Walks manifests in the cache, remembering each one's tree."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._docs: dict[str, dict[str, Any] | None] = {}

    def doc(self, digest: str) -> dict[str, Any] | None:
        if digest not in self._docs:
            self._docs[digest] = _read_json_blob(self.store, digest)
        return self._docs[digest]

    def tree(self, digest: Digest, depth: int = 0) -> set[Digest]:
        """``digest`` and everything it refers to, as far as the cached manifests tell."""
        out = {digest}
        doc = self.doc(digest)
        if doc is None or depth > MAX_DEPTH or not _is_manifest(doc):
            return out
        for entry in doc.get("manifests") or []:
            child = _digest_of(entry)
            if child is not None and child not in out:
                out |= self.tree(child, depth + 1)
        config = _digest_of(doc.get("config"))
        if config is not None:
            out.add(config)
        for layer in doc.get("layers") or []:
            d = _digest_of(layer)
            if d is not None:
                out.add(d)
        return out

    def platforms(self, digest: Digest) -> list[str]:
        """The platforms of the image(s) under ``digest`` whose every blob is cached."""
        doc = self.doc(digest)
        if doc is None:
            return []
        if isinstance(doc.get("manifests"), list):
            out = []
            for entry in doc["manifests"]:
                child = _digest_of(entry)
                spec = entry.get("platform") if isinstance(entry, dict) else None
                plat = Platform.from_json(spec)
                if child is None or plat is None or is_attestation(entry):
                    continue
                if self._complete(child):
                    out.append(str(plat))
            return out
        if not self._complete(digest):
            return []
        config = _digest_of(doc.get("config"))
        config_doc = _read_json_blob(self.store, config, 8 * MAX_MANIFEST) if config else None
        plat = Platform.from_json(config_doc)
        return [str(plat)] if plat is not None else []

    def _complete(self, digest: Digest) -> bool:
        if self.doc(digest) is None:
            return False
        return all(self.store.has_blob(d) for d in self.tree(digest))


def _cached_manifests(store: Store) -> Iterator[Digest]:
    """Every cached blob that is a manifest (small, JSON, with ``manifests`` or ``config``)."""
    for d, path in store.iter_blobs():
        st = _regular(path)
        if st is None or st.st_size > MAX_MANIFEST or st.st_size < 2:
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
        doc = walker.doc(d)
        if doc is None or not _is_manifest(doc):
            continue
        tree = walker.tree(d)
        if tree & held:
            out |= tree
    return out

