"""What a copy carries besides the image, and the signature policy on a copy.

`--signatures` carries cosign's `sha256-<hex>.sig` manifests byte for byte; `--referrers` the OCI
1.1 referrers, writing the destination's referrers tag (the CNCF registry here has no referrers
API); a copy the policy refuses writes and tags nothing and exits 7. Two real registries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.artifacts import INTOTO, OCI_INDEX, OCI_MANIFEST, SPDX, artifact
from support.cosign import Signer, sign_image, signature_tag
from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (a fixture)
from tank import copy
from tank._sync import copy_all_tags
from tank.errors import InvalidReference, NotFound, PolicyRefused
from tank.policy import Policy, verify
from tank.registry import Client
from tank.registry.referrers import (
    is_attachment_tag,
    referrer_descriptor,
    referrers_tag,
    tag_schema_index,
)
from tank.testing.images import Pusher, sample_image, sample_index, sha256_digest
from tank.testing.registry import LocalRegistry


@dataclass(frozen=True)
class Source:
    host: str
    subject: str  # carry/app:1's digest
    sbom: str
    provenance: str
    stray: str  # a referrer of another image: never carried
    index: str  # carry/multi:1, an index
    child: str  # one of its images, signed on its own
    key: Path
    other_key: Path


@pytest.fixture(scope="module")
def source(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> Source:
    keys = tmp_path_factory.mktemp("keys")
    signer = Signer("ecdsa")
    image, index = sample_image(), sample_index()
    host = registry.host
    with Pusher(registry.url) as p:
        p.push_image("carry/app", "1", image)
        sign_image(p, "carry/app", image.manifest_digest, f"{host}/carry/app", signer)
        pushed = []
        for kind, body in ((SPDX, b'{"spdxVersion":"SPDX-2.3"}'),
                           (INTOTO, b'{"_type":"https://in-toto.io/Statement/v1"}')):
            raw, config, layer = artifact(image.manifest_digest, len(image.manifest), kind, body)
            p.push_blob("carry/app", config)
            p.push_blob("carry/app", layer)
            pushed.append(p.push_manifest("carry/app", sha256_digest(raw), raw, OCI_MANIFEST))
        raw, config, layer = artifact("sha256:" + "c" * 64, 10, SPDX, b"stray")
        p.push_blob("carry/app", config)
        p.push_blob("carry/app", layer)
        stray = p.push_manifest("carry/app", sha256_digest(raw), raw, OCI_MANIFEST)
        repo = Client(host).repository("carry/app")
        listed = [referrer_descriptor(repo.manifest(d).document) for d in pushed]
        p.push_manifest("carry/app", referrers_tag(image.manifest_digest),
                        tag_schema_index(None, listed), OCI_INDEX)
        p.push_index("carry/multi", "1", index)
        child = index.image_for("linux", "arm64").manifest_digest
        sign_image(p, "carry/multi", index.manifest_digest, f"{host}/carry/multi", signer)
        sign_image(p, "carry/multi", child, f"{host}/carry/multi", signer)
    return Source(host, image.manifest_digest, pushed[0], pushed[1], stray,
                  index.manifest_digest, child, signer.write_public(keys / "cosign.pub"),
                  Signer("ed25519").write_public(keys / "other.pub"))


@pytest.fixture
def dest() -> Iterator[LocalRegistry]:
    """A fresh empty registry for each test."""
    with LocalRegistry() as reg:
        yield reg


def _raw(host: str, repo: str, reference: str) -> bytes:
    return Client(host).repository(repo).manifest(reference).raw


def _tags(host: str, repo: str) -> list[str]:
    try:
        return sorted(Client(host).repository(repo).tags())
    except NotFound:
        return []


def test_signatures_and_referrers_are_carried_byte_for_byte_and_only_once(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    src = f"{source.host}/carry/app:1"
    copy(src, f"{dest.host}/mirror/app:1", signatures=True, referrers=True,
         cache=tmp_path / "cache")
    sig = signature_tag(source.subject)
    assert _raw(dest.host, "mirror/app", sig) == _raw(source.host, "carry/app", sig)
    for digest in (source.sbom, source.provenance):
        assert _raw(dest.host, "mirror/app", digest) == _raw(source.host, "carry/app", digest)
    with pytest.raises(NotFound):
        Client(dest.host).repository("mirror/app").manifest(source.stray)
    # distribution 2.8 has no referrers API: the copy wrote the referrers tag, and it lists both
    found = Client(dest.host).repository("mirror/app").referrers(source.subject)
    assert sorted(str(d.digest) for d in found.manifests) == sorted([source.sbom,
                                                                    source.provenance])
    assert [d.artifact_type for d in found.manifests] == [SPDX, INTOTO]
    again = copy(src, f"{dest.host}/mirror/app:1", signatures=True, referrers=True,
                 cache=tmp_path / "cache")
    assert (again.manifests_pushed, again.blobs_uploaded, again.bytes_uploaded) == (0, 0, 0)


def test_the_carried_signature_verifies_at_the_mirror(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    copy(f"{source.host}/carry/app:1", f"{dest.host}/carry/app:1", signatures=True,
         cache=tmp_path / "cache")
    # signed for the source's name, which a mirror's policy names (cosign signs a repository,
    # no tag: containers-policy.json(5) says matchRepository or exactRepository, not remap)
    policy = Policy.from_json({"default": [{
        "type": "sigstoreSigned", "keyPath": str(source.key),
        "signedIdentity": {"type": "exactRepository",
                           "dockerRepository": f"{source.host}/carry/app"},
    }]})
    verdict = verify(f"{dest.host}/carry/app:1", policy=policy)  # or raises
    assert str(verdict.digest) == source.subject
    assert [m.type for m in verdict.met] == ["sigstoreSigned"]
    assert verdict.met[0].accepted is not None


def test_without_the_options_nothing_but_the_image_is_copied(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    copy(f"{source.host}/carry/app:1", f"{dest.host}/mirror/app:1", cache=tmp_path / "cache")
    assert _tags(dest.host, "mirror/app") == ["1"]
    referrers = Client(dest.host).repository("mirror/app").referrers(source.subject)
    assert referrers.manifests == ()


def test_an_index_copied_whole_carries_the_signatures_of_each_image(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    copy(f"{source.host}/carry/multi:1", f"{dest.host}/mirror/multi:1", all_platforms=True,
         signatures=True, cache=tmp_path / "cache")
    for digest in (source.index, source.child):
        tag = signature_tag(digest)
        assert _raw(dest.host, "mirror/multi", tag) == _raw(source.host, "carry/multi", tag)


def test_all_tags_skips_attachment_tags_and_carries_them_with_their_image(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    source_tags = _tags(source.host, "carry/app")
    assert {t for t in source_tags if is_attachment_tag(t)} == {
        signature_tag(source.subject), referrers_tag(source.subject)}
    copy_all_tags(f"{source.host}/carry/app", f"{dest.host}/plain/app",
                  cache=tmp_path / "cache")
    assert _tags(dest.host, "plain/app") == ["1"]
    copy_all_tags(f"{source.host}/carry/app", f"{dest.host}/all/app", signatures=True,
                  referrers=True, cache=tmp_path / "cache")
    assert _tags(dest.host, "all/app") == source_tags


@pytest.mark.parametrize("tag", ["sha256-" + "a" * 64, "sha256-" + "a" * 64 + ".sig",
                                 "sha512-" + "b" * 64 + ".att", "sha256-" + "0" * 64 + ".sbom"])
def test_attachment_tags(tag: str) -> None:
    assert is_attachment_tag(tag)


@pytest.mark.parametrize("tag", ["latest", "sha256-abc", "v1.sig", "sha256-" + "a" * 64 + ".x",
                                 "SHA256-" + "a" * 64])
def test_not_attachment_tags(tag: str) -> None:
    assert not is_attachment_tag(tag)


def test_the_library_refuses_a_copy_the_policy_refuses_before_writing(
    source: Source, dest: LocalRegistry, tmp_path: Path
) -> None:
    with pytest.raises(PolicyRefused):
        copy(f"{source.host}/carry/app:1", f"{dest.host}/mirror/app:1",
             policy=Policy.for_keys(source.other_key), cache=tmp_path / "cache")
    assert _tags(dest.host, "mirror/app") == []
    result = copy(f"{source.host}/carry/app:1", f"{dest.host}/mirror/app:1",
                  policy=Policy.for_keys(source.key), cache=tmp_path / "cache")
    assert str(result.digest) == source.subject


def test_carrying_needs_registries_on_both_sides(source: Source, tmp_path: Path) -> None:
    with pytest.raises(InvalidReference, match="only from a registry to a registry"):
        copy(f"{source.host}/carry/app:1", f"oci:{tmp_path / 'out'}", signatures=True)
    assert not (tmp_path / "out").exists()


def test_cli_copy_refused_exits_7_and_tags_nothing_then_carries_with_the_right_key(
    source: Source, dest: LocalRegistry, isolated: IsolatedEnv, tmp_path: Path
) -> None:
    src, dst = f"{source.host}/carry/app:1", f"{dest.host}/cli/app:1"
    cache = ["--cache", str(tmp_path / "cache"), "-q"]
    done = isolated.tank("copy", src, dst, "--verify-key", str(source.other_key),
                         "--signatures", *cache)
    assert done.returncode == 7, done.stderr
    assert "refused by the signature policy --verify-key" in done.stderr
    assert _tags(dest.host, "cli/app") == []
    done = isolated.tank("copy", src, dst, "--verify-key", str(source.key), "--signatures",
                         "--referrers", "--json", *cache)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["digest"] == source.subject
    assert _tags(dest.host, "cli/app") == sorted(
        ["1", signature_tag(source.subject), referrers_tag(source.subject)])
    done = isolated.tank("copy", src, f"oci:{tmp_path / 'out'}", "--signatures", *cache)
    assert done.returncode == 2, done.stderr
    assert "only from a registry to a registry" in done.stderr
