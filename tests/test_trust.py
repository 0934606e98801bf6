"""Signature policy on a real registry: images signed as cosign signs them (and one signed by
cosign itself), judged by `tank pull` and `tank verify`, from the library and the command line.

Every signature made here is checked by openssl as it is made (tests/support/cosign.py); a
refusal writes nothing and downloads no layer."""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.cosign import (
    FIXTURES,
    Layer,
    Signer,
    fixture_signature,
    openssl_verifies,
    payload,
    push_signatures,
    sign_image,
)
from support.isolated import IsolatedEnv, isolated_fixture  # noqa: F401 (a fixture)
from tank import pull
from tank.errors import CacheMiss, PlatformNotFound, PolicyError, PolicyRefused
from tank.policy import Policy, verify
from tank.store import Store
from tank.testing.fronts import MakeFront
from tank.testing.images import Image, Index, Pusher, sample_image, sample_index
from tank.testing.registry import LocalRegistry

ARM64 = "linux/arm64/v8"


@dataclass(frozen=True)
class Signed:
    """The module's repositories ``trust/<case>``, each holding the sample image (or index)."""

    host: str
    key: Path  # the trusted public key
    other_key: Path
    image: Image
    index: Index

    def ref(self, case: str, tag: str = "latest") -> str:
        return f"{self.host}/trust/{case}:{tag}"


def _flip(signature: str) -> str:
    raw = bytearray(base64.b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture(scope="module")
def signed(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    keys = tmp_path_factory.mktemp("keys")
    right, wrong = Signer("ecdsa"), Signer("ed25519")
    image, index = sample_image(), sample_index()
    host = registry.host
    digest = image.manifest_digest
    with Pusher(registry.url) as p:
        def repo(case: str) -> str:
            p.push_image(f"trust/{case}", "latest", image)
            return f"trust/{case}"

        def ident(case: str) -> str:
            return f"{host}/trust/{case}"

        good = payload(digest, ident("right"))
        sign_image(p, repo("right"), digest, ident("right"), right)
        sign_image(p, repo("wrong-key"), digest, ident("wrong-key"), wrong)
        repo("unsigned")
        sign_image(p, repo("other-repo"), digest, f"{host}/trust/elsewhere", right)
        flipped = Layer.signed(right, payload(digest, ident("flipped")))
        assert not openssl_verifies(right.public_pem, "ecdsa", flipped.payload,
                                    base64.b64decode(_flip(flipped.signature)))
        push_signatures(p, repo("flipped"), digest,
                        [Layer(flipped.payload, _flip(flipped.signature))])
        signed_one = Layer.signed(right, payload(digest, ident("changed-payload")))
        changed = signed_one.payload.replace(b"changed-payload", b"changed-paylo4d")
        assert not openssl_verifies(right.public_pem, "ecdsa", changed,
                                    base64.b64decode(signed_one.signature))
        push_signatures(p, repo("changed-payload"), digest,
                        [Layer(changed, signed_one.signature)])
        other_digest = index.image_for("linux", "arm64").manifest_digest
        push_signatures(p, repo("other-digest"), digest,
                        [Layer.signed(right, payload(other_digest, ident("other-digest")))])
        push_signatures(p, repo("two"), digest, [
            Layer.signed(wrong, payload(digest, ident("two"))),
            Layer.signed(right, payload(digest, ident("two"))),
        ])
        push_signatures(p, repo("attachment"), digest,
                        [Layer(good, Layer.signed(right, good).signature, "text/plain")])
        for case in ("index-signed", "child-signed", "index-unsigned"):
            p.push_index(f"trust/{case}", "latest", index)
        sign_image(p, "trust/index-signed", index.manifest_digest, ident("index-signed"), right)
        sign_image(p, "trust/child-signed", other_digest, ident("child-signed"), right)
    return Signed(host, right.write_public(keys / "cosign.pub"),
                  wrong.write_public(keys / "other.pub"), image, index)


def _pull(ref: str, key: Path, tmp_path: Path, **kw: Any) -> Path:
    out = tmp_path / "out"
    pull(ref, policy=Policy.for_keys(key), cache=tmp_path / "cache", output=f"oci:{out}", **kw)
    return out


def _refused(ref: str, key: Path, tmp_path: Path, **kw: Any) -> PolicyRefused:
    with pytest.raises(PolicyRefused) as info:
        _pull(ref, key, tmp_path, **kw)
    assert not (tmp_path / "out").exists(), "a refused pull wrote its output"
    return info.value


# -- the cases the issue lists -------------------------------------------------------------------


def test_signed_by_the_right_key_is_accepted(signed: Signed, tmp_path: Path) -> None:
    out = _pull(signed.ref("right"), signed.key, tmp_path)
    assert (out / "index.json").is_file()
    verdict = verify(signed.ref("right"), policy=Policy.for_keys(signed.key))
    [accepted] = verdict.signatures
    assert accepted.payload.identity == f"{signed.host}/trust/right"
    assert accepted.key.algorithm == "ECDSA P-256"
    assert str(verdict.digest) == signed.image.manifest_digest


@pytest.mark.parametrize(("case", "says"), [
    ("wrong-key", "not signed by the trusted key"),
    ("unsigned", "no signature was found; no sha256-"),
    ("other-repo", "trust/elsewhere"),
    ("flipped", "not signed by the trusted key"),
    ("changed-payload", "not signed by the trusted key"),
    ("other-digest", "for the manifest sha256:"),
    ("attachment", "1 attachment that is not a signature"),
])
def test_what_the_policy_refuses_writes_nothing_and_fetches_no_layer(
    signed: Signed, tmp_path: Path, case: str, says: str
) -> None:
    refusal = _refused(signed.ref(case), signed.key, tmp_path)
    assert says in str(refusal)
    assert "requirement 1 sigstoreSigned" in str(refusal)
    assert refusal.policy.startswith("--verify-key ")
    store = Store(tmp_path / "cache")
    assert not any(store.has_blob(layer.digest) for layer in signed.image.layers)
    assert store.get_ref(signed.host, f"trust/{case}", "latest") is None


def test_two_signatures_where_one_is_right_are_accepted(signed: Signed, tmp_path: Path) -> None:
    verdict = verify(signed.ref("two"), policy=Policy.for_keys(signed.key))
    assert verdict.signatures[0].signature.where.endswith("layer 2")
    _pull(signed.ref("two"), signed.key, tmp_path)


def test_either_of_two_keys(signed: Signed, tmp_path: Path) -> None:
    verify(signed.ref("wrong-key"), policy=Policy.for_keys(signed.key, signed.other_key))


def test_a_pull_by_digest(signed: Signed, tmp_path: Path) -> None:
    ref = f"{signed.host}/trust/right@{signed.image.manifest_digest}"
    _pull(ref, signed.key, tmp_path)
    # the default signedIdentity accepts a tagged signature by digest, never cosign's bare name
    by_default = Policy.from_json({"default": [{"type": "sigstoreSigned",
                                                "keyPath": str(signed.key)}]})
    with pytest.raises(PolicyRefused, match="matchRepoDigestOrExact does not accept"):
        verify(ref, policy=by_default)


def test_from_an_index_the_index_s_signature_or_the_image_s_counts(
    signed: Signed, tmp_path: Path
) -> None:
    policy = Policy.for_keys(signed.key)
    verdict = verify(signed.ref("index-signed"), policy=policy, platform=ARM64)
    assert str(verdict.digest) == signed.index.manifest_digest
    assert verdict.signatures[0].signature.subject == signed.index.manifest_digest
    assert verdict.images == ()  # the index's signature was enough: no platform was read
    elsewhere = verify(signed.ref("index-signed"), policy=policy, platform="windows/amd64")
    assert elsewhere.signatures == verdict.signatures
    child = verify(signed.ref("child-signed"), policy=policy, platform=ARM64)
    assert child.signatures[0].signature.subject == child.images[0]
    with pytest.raises(PlatformNotFound):
        verify(signed.ref("child-signed"), policy=policy, platform="windows/amd64")
    _pull(signed.ref("index-signed"), signed.key, tmp_path / "a", platform=ARM64)
    _pull(signed.ref("index-signed"), signed.key, tmp_path / "b", all_platforms=True)
    _pull(signed.ref("child-signed"), signed.key, tmp_path / "c", platform=ARM64)
    # only the arm64 image is signed: another platform, or all of them, is refused
    refusal = _refused(signed.ref("child-signed"), signed.key, tmp_path / "d",
                       platform="linux/amd64")
    assert f"no {signed.index.manifest_digest.replace(':', '-')}.sig tag" in str(refusal)
    _refused(signed.ref("child-signed"), signed.key, tmp_path / "e", all_platforms=True)
    _refused(signed.ref("index-unsigned"), signed.key, tmp_path / "f", platform=ARM64)


def test_a_reject_scope_refuses_before_any_request(
    signed: Signed, registry: LocalRegistry, make_front: MakeFront, tmp_path: Path
) -> None:
    front = make_front(registry.url)
    host = front.host
    policy = Policy.from_json({"default": [{"type": "insecureAcceptAnything"}],
                               "transports": {"docker": {f"{host}/trust": [{"type": "reject"}]}}})
    with pytest.raises(PolicyRefused, match="rejects every image in this scope"):
        pull(f"{host}/trust/right", policy=policy, cache=tmp_path / "cache")
    assert front.requests == []
    pull(f"{host}/library/sample", policy=policy, cache=tmp_path / "cache")


def test_offline_with_a_signature_policy_is_a_cache_miss(signed: Signed, tmp_path: Path) -> None:
    pull(signed.ref("right"), policy=Policy.for_keys(signed.key), cache=tmp_path / "cache")
    with pytest.raises(CacheMiss, match="needs the signatures"):
        pull(signed.ref("right"), policy=Policy.for_keys(signed.key), cache=tmp_path / "cache",
             offline=True)
    pull(signed.ref("right"), policy=Policy.accept_anything(), cache=tmp_path / "cache",
         offline=True)


def test_signatures_come_from_the_mirror_that_served_else_the_registry(
    signed: Signed, registry: LocalRegistry, isolated: IsolatedEnv, tmp_path: Path
) -> None:
    """A mirror (here: a registry holding the image but no signature) falls through to the
    registry itself for the .sig tag; identities are judged as the reference was written."""
    with LocalRegistry() as mirror, Pusher(mirror.url) as p:
        p.push_image("trust/right", "latest", signed.image)
        isolated.write_config(f'[mirrors]\n"{signed.host}" = ["{mirror.host}"]\n')
        import tank

        image = pull(signed.ref("right"), policy=Policy.for_keys(signed.key),
                     cache=tmp_path / "cache", config=tank.load_config())
        assert image.mirror == f"{mirror.host}/trust/right"


# -- cosign's own signature, on a registry ------------------------------------------------------


def _plant(registry: LocalRegistry, repo: str, tag: str, manifest: bytes) -> str:
    """Put a manifest into the registry's storage as distribution does, without its blobs
    (containers/image's fixture names a config and a layer nobody has): enough to serve it."""
    from tank.digest import compute

    digest = compute(manifest)
    blob = registry.blob_path(digest)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(manifest)
    base = registry.storage_dir / "docker/registry/v2/repositories" / repo / "_manifests"
    for link in (base / "revisions/sha256" / digest.hex / "link",
                 base / "tags" / tag / "current/link",
                 base / "tags" / tag / "index/sha256" / digest.hex / "link"):
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(str(digest))
    return str(digest)


def test_a_signature_made_by_cosign_itself_on_a_registry(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    """containers/image's fixtures: the manifest cosign signed, its two signatures by
    cosign.pub's key and one by an unknown key, served from the registry as cosign stores
    them. cosign signed the identity 192.168.64.2:5000/cosign-signed-single-sample."""
    manifest = (FIXTURES / "dir-img-cosign-valid" / "manifest.json").read_bytes()
    repo = "cosign-signed-single-sample"
    digest = _plant(registry, repo, "latest", manifest)
    sigs = [fixture_signature(n).layer for n in (
        "unknown-cosign-key.signature", "dir-img-cosign-valid/signature-1",
        "dir-img-cosign-valid-2/signature-2")]
    with Pusher(registry.url) as p:
        push_signatures(p, repo, digest, sigs)
    ref = f"{registry.host}/{repo}:latest"
    key = str(FIXTURES / "cosign.pub")
    signed_as = "192.168.64.2:5000/cosign-signed-single-sample"

    def policy(identity: dict[str, str]) -> Policy:
        return Policy.from_json({"default": [{"type": "sigstoreSigned", "keyPath": key,
                                              "signedIdentity": identity}]})

    verdict = verify(ref, policy=policy({"type": "exactRepository",
                                         "dockerRepository": signed_as}))
    [accepted] = verdict.signatures
    assert accepted.signature.where.endswith("layer 2")  # layer 1 is the unknown key's
    assert accepted.payload.identity == signed_as
    # pulled under another name, matchRepository refuses; so does remapIdentity, which
    # compares tags as matchRepoDigestOrExact does and cosign signed none
    for identity in ({"type": "matchRepository"},
                     {"type": "remapIdentity", "prefix": registry.host,
                      "signedPrefix": "192.168.64.2:5000"}):
        with pytest.raises(PolicyRefused) as info:
            verify(ref, policy=policy(identity))
        assert "layer 1: not signed by the trusted key" in str(info.value)
        assert "'192.168.64.2:5000/cosign-signed-single-sample'" in str(info.value)


def test_a_signature_by_containers_image_with_a_tag_and_remap_identity(
    registry: LocalRegistry,
) -> None:
    """containers/image's own signature (identity 192.168.64.2:5000/skopeo-signed:tag, by
    cosign.pub's key): remapIdentity from the name it is served under accepts it."""
    manifest = (FIXTURES / "dir-img-cosign-valid-with-tag" / "manifest.json").read_bytes()
    digest = _plant(registry, "mirror/skopeo-signed", "tag", manifest)
    _plant(registry, "mirror/skopeo-signed", "other", manifest)
    with Pusher(registry.url) as p:
        push_signatures(p, "mirror/skopeo-signed", digest,
                        [fixture_signature("dir-img-cosign-valid-with-tag/signature-1").layer])
    policy = Policy.from_json({"default": [{
        "type": "sigstoreSigned", "keyPath": str(FIXTURES / "cosign.pub"),
        "signedIdentity": {"type": "remapIdentity", "prefix": f"{registry.host}/mirror",
                           "signedPrefix": "192.168.64.2:5000"}}]})
    verdict = verify(f"{registry.host}/mirror/skopeo-signed:tag", policy=policy)
    assert verdict.signatures[0].payload.creator == "containers/image 5.21.2-dev"
    with pytest.raises(PolicyRefused, match="skopeo-signed:tag'"):  # the tag is signed too
        verify(f"{registry.host}/mirror/skopeo-signed:other", policy=policy)


# -- the command line ----------------------------------------------------------------------------


def test_cli_pull_refused_exits_7_naming_the_signature_and_writes_nothing(
    signed: Signed, isolated: IsolatedEnv, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = isolated.tank("pull", signed.ref("wrong-key"), "--verify-key", str(signed.key),
                         "--cache", str(tmp_path / "cache"), "-o", f"oci:{out}", "-q")
    assert done.returncode == 7, done.stderr
    assert done.stdout == ""
    line = done.stderr.strip()
    assert line.startswith("tank: error: ")
    assert "refused by the signature policy --verify-key" in line
    assert "requirement 1 sigstoreSigned" in line
    assert ".sig layer 1: not signed by the trusted key" in line
    assert "\n" not in line
    assert not out.exists()
    done = isolated.tank("pull", signed.ref("right"), "--verify-key", str(signed.key),
                         "--cache", str(tmp_path / "cache"), "-o", f"oci:{out}", "-q")
    assert done.returncode == 0, done.stderr
    assert (out / "index.json").is_file()


def test_cli_verify_says_who_signed(signed: Signed, isolated: IsolatedEnv) -> None:
    done = isolated.tank("verify", signed.ref("right"), "--verify-key", str(signed.key))
    assert done.returncode == 0, done.stderr
    from tank.policy import PublicKey

    fingerprint = PublicKey.from_file(str(signed.key)).fingerprint
    assert f"ECDSA P-256 key {fingerprint}" in done.stdout
    assert f"'{signed.host}/trust/right'" in done.stdout
    doc = json.loads(isolated.tank("verify", signed.ref("right"), "--verify-key",
                                   str(signed.key), "--json").stdout)
    assert doc["requirements"][0]["signature"]["key"] == fingerprint
    refused = isolated.tank("verify", signed.ref("unsigned"), "--verify-key", str(signed.key))
    assert refused.returncode == 7
    assert refused.stdout == ""


def test_cli_policy_file_from_the_option_and_from_the_config(
    signed: Signed, isolated: IsolatedEnv, tmp_path: Path
) -> None:
    doc = {"default": [{"type": "reject"}], "transports": {"docker": {
        f"{signed.host}/trust": [{"type": "sigstoreSigned", "keyPath": str(signed.key),
                                  "signedIdentity": {"type": "matchRepository"}}]}}}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc))
    done = isolated.tank("verify", signed.ref("right"), "--policy", str(path))
    assert done.returncode == 0, done.stderr
    assert f"accepted by {path} (scope '{signed.host}/trust')" in done.stdout
    isolated.write_config(f'policy = "{path}"\n')
    assert isolated.tank("verify", signed.ref("unsigned")).returncode == 7
    refused = isolated.tank("pull", f"{signed.host}/library/sample", "--cache",
                            str(tmp_path / "cache"))
    assert refused.returncode == 7
    assert "rejects every image in this scope" in refused.stderr
    assert "(the default)" in refused.stderr


def test_cli_a_malformed_policy_or_two_sources_exit_2_and_transfer_nothing(
    signed: Signed, registry: LocalRegistry, make_front: MakeFront, isolated: IsolatedEnv,
    tmp_path: Path,
) -> None:
    front = make_front(registry.url)
    ref = f"{front.host}/trust/right"
    bad = tmp_path / "bad.json"
    for text in ('{"default": [{"type": "trustMe"}]}', "{", '{"default": []}'):
        bad.write_text(text)
        done = isolated.tank("pull", ref, "--policy", str(bad), "--cache", str(tmp_path / "c"))
        assert done.returncode == 2, done.stderr
        assert str(bad) in done.stderr
    missing_key = tmp_path / "missing-key.json"
    missing_key.write_text(json.dumps({"default": [{"type": "sigstoreSigned",
                                                    "keyPath": str(tmp_path / "no.pub")}]}))
    done = isolated.tank("verify", ref, "--policy", str(missing_key))
    assert done.returncode == 2
    assert "cannot read the key" in done.stderr
    assert front.requests == []
    both = isolated.tank("verify", ref, "--policy", str(bad), "--verify-key", str(signed.key))
    assert both.returncode == 2
    assert "not both" in both.stderr
    assert not (tmp_path / "c").exists()


def test_without_a_policy_file_everything_is_accepted_silently(
    signed: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tank.policy import lookup

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(lookup, "SYSTEM_POLICY", tmp_path / "none.json")
    pull(signed.ref("unsigned"), cache=tmp_path / "cache")
    verdict = verify(signed.ref("unsigned"))
    assert verdict.policy is None
    assert verdict.met == ()


def test_a_policy_error_is_raised_for_the_library_too(signed: Signed, tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text('{"default": [{"type": "insecureAcceptAnything", "x": 1}]}')
    with pytest.raises(PolicyError, match="unknown key 'x'"):
        pull(signed.ref("right"), policy=bad, cache=tmp_path / "cache")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
