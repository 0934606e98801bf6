"""tank.image: the one model of manifests, indexes, descriptors and configs, and its rules.

Real-world shapes come from containers/image's own test fixtures (Debian's
golang-github-containers-image-dev, installed by scripts/bootstrap): data no one here wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tank import mediatypes
from tank.digest import compute
from tank.errors import (
    InvalidImageConfig,
    InvalidManifest,
    ManifestTooLarge,
    PlatformNotFound,
    UnsupportedManifest,
)
from tank.image import (
    MAX_INDEX_ENTRIES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    Index,
    Manifest,
    Where,
    parse_config,
    parse_manifest,
)
from tank.platform import Platform

FIXTURES = Path("/usr/share/gocode/src/github.com/containers/image")
MANIFESTS = FIXTURES / "manifest" / "fixtures"
IMAGES = FIXTURES / "internal" / "image" / "fixtures"
D = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def fixtures() -> Path:
    if not MANIFESTS.is_dir():
        pytest.fail(
            f"{MANIFESTS} is missing: the tests need containers/image's fixtures "
            "(Debian: apt-get install golang-github-containers-image-dev)", pytrace=False,
        )
    return FIXTURES


# what each valid fixture is: (kind, media type tank reads it as)
VALID = {
    "manifest/fixtures/ociv1.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/ociv1.image.index.json": ("index", mediatypes.OCI_INDEX),
    "manifest/fixtures/ociv1nomime.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/ociv1nomime.image.index.json": ("index", mediatypes.OCI_INDEX),
    "manifest/fixtures/ociv1.zstd.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/ociv1.uncompressed.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/ociv1.nondistributable.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/ociv1.nondistributable.gzip.manifest.json": (
        "image", mediatypes.OCI_MANIFEST
    ),
    "manifest/fixtures/ociv1.nondistributable.zstd.manifest.json": (
        "image", mediatypes.OCI_MANIFEST
    ),
    "manifest/fixtures/ociv1.invalid.mediatype.manifest.json": ("image", mediatypes.OCI_MANIFEST),
    "manifest/fixtures/v2s2.manifest.json": ("image", mediatypes.DOCKER_MANIFEST),
    "manifest/fixtures/v2s2nomime.manifest.json": ("image", mediatypes.DOCKER_MANIFEST),
    "manifest/fixtures/v2s2.uncompressed.manifest.json": ("image", mediatypes.DOCKER_MANIFEST),
    "manifest/fixtures/v2s2.nondistributable.manifest.json": (
        "image", mediatypes.DOCKER_MANIFEST
    ),
    "manifest/fixtures/v2s2.nondistributable.gzip.manifest.json": (
        "image", mediatypes.DOCKER_MANIFEST
    ),
    "manifest/fixtures/v2list.manifest.json": ("index", mediatypes.DOCKER_MANIFEST_LIST),
    "internal/image/fixtures/oci1.json": ("image", mediatypes.OCI_MANIFEST),
    "internal/image/fixtures/oci1-artifact.json": ("image", mediatypes.OCI_MANIFEST),
    "internal/image/fixtures/oci1-all-media-types.json": ("image", mediatypes.OCI_MANIFEST),
    "internal/image/fixtures/oci1index.json": ("index", mediatypes.OCI_INDEX),
    "internal/image/fixtures/schema2.json": ("image", mediatypes.DOCKER_MANIFEST),
    "internal/image/fixtures/schema2-all-media-types.json": ("image", mediatypes.DOCKER_MANIFEST),
    "internal/image/fixtures/schema2list.json": ("index", mediatypes.DOCKER_MANIFEST_LIST),
    "internal/image/fixtures/schema2list-variants.json": (
        "index", mediatypes.DOCKER_MANIFEST_LIST
    ),
}
SCHEMA1 = [
    "manifest/fixtures/v2s1.manifest.json",
    "manifest/fixtures/v2s1-unsigned.manifest.json",
    "manifest/fixtures/v2s1-invalid-signatures.manifest.json",
    "manifest/fixtures/schema2-to-schema1-by-docker.json",
    "internal/image/fixtures/schema1.json",
]
CONFIGS = [
    "internal/image/fixtures/oci1-config.json",
    "internal/image/fixtures/schema2-config.json",
    "internal/image/fixtures/schema1-to-oci1-config.json",
]


@pytest.mark.parametrize(("name", "expected"), sorted(VALID.items()))
def test_every_valid_fixture_of_containers_image_parses(
    fixtures: Path, name: str, expected: tuple[str, str]
) -> None:
    raw = (fixtures / name).read_bytes()
    doc = parse_manifest(raw)
    assert (doc.kind, doc.media_type) == expected
    assert doc.raw is raw
    assert doc.digest == compute(raw)  # the bytes' own digest, never re-serialised JSON
    if isinstance(doc, Manifest):
        assert doc.config.size >= 0
        assert all(layer.size >= 0 for layer in doc.layers)
    else:
        assert doc.manifests


@pytest.mark.parametrize("name", SCHEMA1)
def test_schema1_fixtures_are_refused_in_one_line(fixtures: Path, name: str) -> None:
    with pytest.raises(UnsupportedManifest, match="schema 1") as info:
        parse_manifest((fixtures / name).read_bytes(), place=Where("r.io", "a/b", "v1"))
    assert "\n" not in str(info.value)
    assert "r.io/a/b:v1" in str(info.value)


def test_non_json_and_unknown_versions_are_refused_in_one_line(fixtures: Path) -> None:
    with pytest.raises(InvalidManifest, match="not valid JSON") as bad:
        parse_manifest((MANIFESTS / "non-json.manifest.json").read_bytes())
    with pytest.raises(UnsupportedManifest, match="schemaVersion") as unknown:
        parse_manifest((MANIFESTS / "unknown-version.manifest.json").read_bytes())
    assert "\n" not in str(bad.value) + str(unknown.value)


@pytest.mark.parametrize("name", CONFIGS)
def test_real_configs_parse(fixtures: Path, name: str) -> None:
    config = parse_config((fixtures / name).read_bytes())
    assert config.os == "linux"
    assert config.architecture == "amd64"
    assert config.diff_ids
    assert config.created
    assert len(config.created_by(len(config.diff_ids))) == len(config.diff_ids)


def test_an_index_selects_as_containerd_does(fixtures: Path) -> None:
    index = parse_manifest((IMAGES / "schema2list-variants.json").read_bytes())
    assert isinstance(index, Index)
    chosen = index.select(Platform.parse("linux/arm/v7"))
    assert chosen.platform == Platform("linux", "arm", "v7")
    assert chosen in index.manifests
    with pytest.raises(PlatformNotFound, match="offers"):
        index.select(Platform.parse("windows/riscv64"))


def _image(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": D, "size": 2},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": D, "size": 3}],
    }
    doc.update(extra)
    return doc


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (b'{"schemaVersion":2,"schemaVersion":2}', InvalidManifest, "duplicate key"),
        (b"[" * 100 + b"]" * 100, InvalidManifest, "nested deeper"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, InvalidManifest, "nested deeper"),
        (json.dumps(_image(manifests=[])).encode(), InvalidManifest, "ambiguous"),
        (json.dumps(_image(schemaVersion="2")).encode(), UnsupportedManifest, "schemaVersion"),
        (json.dumps(_image(mediaType="text/plain")).encode(), UnsupportedManifest, "media type"),
        (json.dumps(_image(layers="x")).encode(), InvalidManifest, "no layers list"),
        (b"x" * (MAX_MANIFEST_SIZE + 1), ManifestTooLarge, "limit"),
    ],
)
def test_untrusted_documents_are_refused_with_tanks_own_errors(
    raw: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_manifest(raw)


def test_a_content_type_that_contradicts_the_body_is_refused() -> None:
    raw = json.dumps(_image()).encode()
    with pytest.raises(InvalidManifest, match="contradicts"):
        parse_manifest(raw, mediatypes.DOCKER_MANIFEST)
    assert parse_manifest(raw, "application/octet-stream").media_type == mediatypes.OCI_MANIFEST


def test_too_many_index_entries_are_refused() -> None:
    entry = {"mediaType": mediatypes.OCI_MANIFEST, "digest": D, "size": 1}
    doc = {"schemaVersion": 2, "manifests": [entry] * (MAX_INDEX_ENTRIES + 1)}
    with pytest.raises(InvalidManifest, match="manifests"):
        parse_manifest(json.dumps(doc).encode())


def test_artifacts_keep_their_type_subject_and_annotations() -> None:
    subject = {"mediaType": mediatypes.OCI_MANIFEST, "digest": D, "size": 7}
    doc = _image(artifactType="application/x.test", subject=subject, annotations={"k": "v"})
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, Manifest)
    assert parsed.artifact_type == "application/x.test"
    assert parsed.subject == Descriptor.from_json(subject)
    assert parsed.annotations == {"k": "v"}


def test_a_descriptor_round_trips_its_json() -> None:
    doc = {
        "mediaType": mediatypes.OCI_MANIFEST, "digest": D, "size": 5,
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        "annotations": {"a": "b"}, "artifactType": "x/y", "urls": ["https://e.x/b"],
    }
    d = Descriptor.from_json(doc)
    assert d.to_json() == doc
    assert d.platform == Platform("linux", "arm64", "v8")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"config": {"Cmd": "sh"}, "rootfs": {"diff_ids": []}}, "Cmd"),
        ({"config": {}, "rootfs": {"diff_ids": ["nope"]}}, "diff_ids"),
        ({"config": {}}, "rootfs"),
        ({"config": {}, "rootfs": {"diff_ids": []}, "history": {}}, "history"),
    ],
)
def test_configs_are_checked_strictly(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidImageConfig, match=message):
        parse_config(json.dumps(doc).encode())


def test_a_config_without_rootfs_describes_but_cannot_unpack() -> None:
    raw = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Env": ["A=1"]}})
    config = parse_config(raw.encode(), require_rootfs=False)
    assert config.diff_ids == ()
    assert config.env_dict == {"A": "1"}
    assert config.platform == Platform("linux", "arm64", "v8")
    with pytest.raises(InvalidImageConfig):
        parse_config(raw.encode())
