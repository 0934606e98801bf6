"""Hostile registries and manifests: each a clear error, nothing unverified left in the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tank import pull
from tank.errors import (
    DigestMismatch,
    InvalidManifest,
    SizeMismatch,
    UnsupportedManifest,
)
from tank.image import MAX_INDEX_ENTRIES, MAX_LAYERS
from tank.store import Store
from tank.testing.fronts import MakeFront, Recorded, Response
from tank.testing.registry import LocalRegistry
from tank.testing.seed import Seeded

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def serve(front_tag: str, body: bytes, media_type: str = OCI_MANIFEST):  # type: ignore[no-untyped-def]
    def respond(r: Recorded) -> Response | None:
        if r.path.endswith(f"/manifests/{front_tag}"):
            return (200, {"Content-Type": media_type}, body)
        return None
    return respond


def manifest_of(seeded: Seeded) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(seeded.latest.manifest)
    return doc


def pull_crafted(
    registry: LocalRegistry, make_front: MakeFront, tmp_path: Path, body: bytes,
    media_type: str = OCI_MANIFEST,
) -> None:
    front = make_front(registry.url)
    front.respond = serve("crafted", body, media_type)
    try:
        pull(f"{front.host}/library/sample:crafted", cache=tmp_path)
    finally:
        assert Store(tmp_path).verify() == []  # nothing unverified, whatever happened


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(layers=None), "no layers list"),
        (lambda d: d.update(layers={}), "no layers list"),
        (lambda d: d.pop("config"), "config descriptor"),
        (lambda d: d["layers"][0].update(size=-1), "invalid size"),
        (lambda d: d["layers"][0].update(size="12"), "invalid size"),
        (lambda d: d["layers"][0].update(size=1e30), "invalid size"),
        (lambda d: d["layers"][0].update(size=True), "invalid size"),
        (lambda d: d["layers"][0].update(digest=5), "no digest"),
        (lambda d: d["layers"][0].update(digest="sha384:" + "a" * 96), "unsupported algorithm"),
        (lambda d: d["layers"][0].update(digest="sha256:../../../etc/passwd"), "invalid digest"),
        (lambda d: d["layers"][0].update(mediaType=7), "no mediaType"),
        (lambda d: d.update(manifests=[]), "ambiguous"),
    ],
)
def test_malformed_manifests_are_clear_errors(
    mutate: Any, message: str, registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    doc = manifest_of(seeded)
    mutate(doc)
    with pytest.raises(InvalidManifest, match=message) as info:
        pull_crafted(registry, make_front, tmp_path, json.dumps(doc).encode())
    assert "library/sample" in str(info.value)


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'"a string"', b"", b"\xff\xfe", b'{"a":1,"a":2}'],
)
def test_bodies_that_are_not_manifests(
    body: bytes, registry: LocalRegistry, make_front: MakeFront, tmp_path: Path
) -> None:
    with pytest.raises(InvalidManifest):
        pull_crafted(registry, make_front, tmp_path, body)


def test_a_layer_longer_than_declared_is_cut_off_and_refused(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    doc = manifest_of(seeded)
    layer = doc["layers"][2]
    layer["size"] -= 100  # the registry's bytes are 100 longer than declared
    with pytest.raises(SizeMismatch, match="more than"):
        pull_crafted(registry, make_front, tmp_path, json.dumps(doc).encode())
    store = Store(tmp_path)
    assert not store.has_blob(layer["digest"])
    ingest = tmp_path / "ingest"
    assert not ingest.exists() or all(
        p.stat().st_size <= layer["size"] for p in ingest.iterdir()
    )  # never written in full


def test_a_layer_shorter_than_declared_is_refused(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    doc = manifest_of(seeded)
    doc["layers"][0]["size"] += 10
    with pytest.raises(SizeMismatch, match="only"):
        pull_crafted(registry, make_front, tmp_path, json.dumps(doc).encode())


def test_a_config_whose_bytes_do_not_match_its_digest(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    config = seeded.latest.config.digest
    front.corrupt = lambda r: r.path.endswith(config)
    with pytest.raises(DigestMismatch, match=config):
        pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path)
    assert not Store(tmp_path).has_blob(config)


def test_absurd_layer_counts(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    doc = manifest_of(seeded)
    doc["layers"] = doc["layers"][:1] * (MAX_LAYERS + 1)
    with pytest.raises(InvalidManifest, match="layers"):
        pull_crafted(registry, make_front, tmp_path, json.dumps(doc).encode())


def test_absurd_index_sizes(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    index = json.loads(seeded.multi.manifest)
    index["manifests"] = index["manifests"][:1] * (MAX_INDEX_ENTRIES + 1)
    with pytest.raises(InvalidManifest, match="manifests"):
        pull_crafted(registry, make_front, tmp_path, json.dumps(index).encode(), OCI_INDEX)


def test_an_index_that_refers_to_an_index(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    """An index naming another index (here: itself, by digest) is refused, not followed."""
    index = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": seeded.multi.manifest_digest,
                       "size": len(seeded.multi.manifest),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }
    front = make_front(registry.url)
    front.respond = serve("crafted", json.dumps(index).encode(), OCI_INDEX)
    # the child is the real multi-platform index: a nested index
    with pytest.raises(UnsupportedManifest, match="nested"):
        pull(f"{front.host}/library/sample:crafted", cache=tmp_path, platform="linux/amd64")


def test_a_manifest_digest_that_lies_about_the_child(
    registry: LocalRegistry, make_front: MakeFront, seeded: Seeded, tmp_path: Path
) -> None:
    """The index names a child by digest; the registry serves other bytes for it."""
    child = seeded.multi.image_for("linux", "arm64", "v8")
    front = make_front(registry.url)
    front.corrupt = lambda r: r.path.endswith(f"/manifests/{child.manifest_digest}")
    front.strip_headers = {"Docker-Content-Digest"}
    with pytest.raises(DigestMismatch, match=child.manifest_digest):
        pull(f"{front.host}/{seeded.repo}:multi", cache=tmp_path, platform="linux/arm64")
    assert not Store(tmp_path).has_blob(child.manifest_digest)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Huge": "a" * 200_000},  # one header line over http.client's 64 KiB limit
        {f"X-Many-{i}": "x" for i in range(150)},  # more than the 100 headers allowed
    ],
)
def test_absurd_response_headers_are_a_clear_error(
    headers: dict[str, str], registry: LocalRegistry, make_front: MakeFront, seeded: Seeded,
    tmp_path: Path,
) -> None:
    from tank.errors import TransportError
    from tank.retry import RetryPolicy

    front = make_front(registry.url)
    front.respond = lambda r: (200, {**headers, "Content-Type": OCI_MANIFEST}, b"{}") if (
        "/manifests/" in r.path) else None
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    with pytest.raises(TransportError) as info:
        pull(f"{front.host}/{seeded.repo}:latest", cache=tmp_path, retry=fast)
    assert "gave up after 2 attempts" in str(info.value)
    assert len(str(info.value)) < 2_000  # the error does not echo the absurd header
    assert Store(tmp_path).verify() == []
