"""tank.policy without a registry: policy.json read as containers/image reads it, scopes,
signedIdentity, keys, payloads, and signatures made by cosign itself (containers/image's test
data) judged against their manifests."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
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
)
from tank.cli.errors import exit_code
from tank.digest import Digest, compute
from tank.errors import PolicyError, PolicyRefused
from tank.image import parse_manifest
from tank.policy import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    Policy,
    PublicKey,
    RemapIdentity,
    Signature,
    judge,
    load_policy,
    namespaces,
    parse_payload,
    policy_path,
    precheck,
)
from tank.policy import lookup as policy_lookup
from tank.policy.identity import Named, intended, parse_named
from tank.policy.judge import Found
from tank.policy.sigstore import Accepted, check
from tank.reference import parse as parse_reference

COSIGN_PUB = FIXTURES / "cosign.pub"
#: the manifest cosign signed in containers/image's fixtures, and the identity it signed
COSIGN_MANIFEST = FIXTURES / "dir-img-cosign-valid" / "manifest.json"
COSIGN_IDENTITY = "192.168.64.2:5000/cosign-signed-single-sample"
DIGEST = "sha256:" + "0123456789abcdef" * 4
OTHER = "sha256:" + "a" * 64


def policy(doc: Any) -> Policy:
    return Policy.from_bytes(json.dumps(doc).encode())


def key_policy(path: Path | str, identity: dict[str, Any] | None = None) -> Policy:
    requirement: dict[str, Any] = {"type": "sigstoreSigned", "keyPath": str(path)}
    if identity is not None:
        requirement["signedIdentity"] = identity
    return policy({"default": [requirement]})


# -- reading policy.json -------------------------------------------------------------------------


def test_containers_image_s_own_example_policy_reads_and_scopes_as_it_does() -> None:
    """signature/fixtures/policy.json: every requirement and signedIdentity type; the scopes
    are chosen most specific first, then wildcard domains, then the default."""
    p = Policy.from_file(FIXTURES / "policy.json")
    cases = {
        "example.com/playground/app:1": "example.com/playground",
        "example.com/hardened/app": "example.com/hardened",
        "registry.access.redhat.com/rhel7/rhel:7.2": "registry.access.redhat.com",
        "cdn.access.redhat.com/rhel": "*.access.redhat.com",
        "quay.redhat.com/x/y": "*.redhat.com",
        "other.com/x": "*.com",
        "example.com/sigstore/key-path-example": "example.com/sigstore/key-path-example",
        "quay.io/x/y": None,  # no docker scope: the policy's default
    }
    for ref, scope in cases.items():
        assert p.scope_for(parse_reference(ref)).name == scope, ref
    assert [r.type for r in p.default] == ["reject"]
    hardened = p.scope_for(parse_reference("example.com/hardened/app")).requirements
    assert [r.type for r in hardened] == ["signedBy", "signedBy", "signedBaseLayer"]


def test_scope_namespaces_are_containers_image_s() -> None:
    ref = parse_reference("registry.example.com:5000/team/app:1.2")
    assert namespaces(ref) == [
        "registry.example.com:5000/team/app:1.2", "registry.example.com:5000/team/app",
        "registry.example.com:5000/team", "registry.example.com:5000",
        "*.example.com", "*.com",
    ]
    assert namespaces(parse_reference("alpine@" + DIGEST))[:3] == [
        f"docker.io/library/alpine@{DIGEST}", "docker.io/library/alpine", "docker.io/library",
    ]


def test_the_most_specific_scope_wins_then_the_transport_default_then_the_default() -> None:
    p = policy({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "r.example/team": [{"type": "reject"}],
            "r.example/team/app:1": [{"type": "insecureAcceptAnything"}],
        }, "dir": {"": [{"type": "reject"}]}},
    })
    assert p.scope_for(parse_reference("r.example/team/app:1")).name == "r.example/team/app:1"
    assert p.scope_for(parse_reference("r.example/team/app:2")).name == "r.example/team"
    assert p.scope_for(parse_reference("r.example/other")).name == ""
    assert policy({"default": [{"type": "reject"}]}).scope_for(parse_reference("x")).name is None


@pytest.mark.parametrize(("doc", "says"), [
    (b"{", "not valid JSON"),
    (b'{"default": [{"type": "reject"}], "default": []}', "duplicate key"),
    ({}, "'default' is missing"),
    ({"default": []}, "must not be empty"),
    ({"default": [{"type": "reject"}], "extra": 1}, "unknown key 'extra'"),
    ({"default": [{"type": "signedByMagic"}]}, "unknown requirement type 'signedByMagic'"),
    ({"default": [{"type": "reject", "keyPath": "/k"}]}, "unknown key 'keyPath'"),
    ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/k", "keyData": "AA=="}]},
     "exactly one of"),
    ({"default": [{"type": "sigstoreSigned", "keyData": "not base64!"}]}, "not base64"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/k",
                   "signedIdentity": {"type": "matchSomething"}}]},
     "unknown signedIdentity type"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/k",
                   "signedIdentity": {"type": "exactReference", "dockerReference": "r.io/a"}}]},
     "neither a tag nor a digest"),
    ({"default": [{"type": "sigstoreSigned", "keyPath": "/k",
                   "signedIdentity": {"type": "remapIdentity", "prefix": "a b",
                                      "signedPrefix": "r.io"}}]},
     "not a host[:port][/path] name"),
    ({"default": [{"type": "signedBy", "keyType": "PGP", "keyPath": "/k"}]},
     "keyType 'PGP'"),
    ({"default": [{"type": "reject"}], "transports": {"docker": []}},
     "transports.docker is not a JSON object"),
    ({"default": [{"type": "reject"}], "transports": {"docker": {"r.io": []}}},
     "must not be empty"),
])
def test_a_malformed_policy_is_a_policy_error_exit_2(doc: Any, says: str) -> None:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(PolicyError) as info:
        Policy.from_bytes(data, source="/etc/x/policy.json")
    assert says in str(info.value)
    assert str(info.value).startswith("/etc/x/policy.json: ")
    assert exit_code(info.value) == 2


def test_keyless_gpg_and_base_layer_requirements_read_but_are_never_met(tmp_path: Path) -> None:
    """What tank does not verify yet refuses, saying so: never a silent pass."""
    for requirement, says in [
        ({"type": "sigstoreSigned", "fulcio": {"caPath": "/f", "oidcIssuer": "https://i",
                                              "subjectEmail": "a@b"}}, "keyless (Fulcio)"),
        ({"type": "sigstoreSigned", "keyPath": str(COSIGN_PUB),
          "rekorPublicKeyPath": "/rekor.pub"}, "Rekor"),
        ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}, "GPG"),
        ({"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchRepository"}},
         "signedBaseLayer"),
    ]:
        p = policy({"default": [requirement]})
        with pytest.raises(PolicyRefused) as info:
            precheck(p, parse_reference("r.example/app"))
        assert says in str(info.value)
        assert exit_code(info.value) == 7


def test_keys_are_read_when_their_scope_is_used_and_must_be_keys(tmp_path: Path) -> None:
    missing = key_policy(tmp_path / "nope.pub")
    with pytest.raises(PolicyError, match="cannot read the key"):
        precheck(missing, parse_reference("r.example/app"))
    not_a_key = tmp_path / "garbage.pub"
    not_a_key.write_text("hello")
    with pytest.raises(PolicyError, match="not a PEM public key"):
        key_policy(not_a_key).scope_for(parse_reference("x")).requirements[0].prepare()
    # nonsense keyData (containers/image's example) is a PolicyError when it is used, not read
    p = Policy.from_file(FIXTURES / "policy.json")
    scope = p.scope_for(parse_reference("example.com/sigstore/key-data-example"))
    with pytest.raises(PolicyError, match="keyData #1 is not a PEM public key"):
        scope.requirements[0].prepare()


def test_weak_and_odd_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519

    def pem(key: Any) -> bytes:
        return bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    with pytest.raises(PolicyError, match="too weak"):
        PublicKey.from_pem(pem(rsa.generate_private_key(65537, 1024)), source="k")  # noqa: S505
    with pytest.raises(PolicyError, match="secp256k1"):
        PublicKey.from_pem(pem(ec.generate_private_key(ec.SECP256K1())), source="k")
    with pytest.raises(PolicyError, match="not a signing key"):
        PublicKey.from_pem(pem(x25519.X25519PrivateKey.generate()), source="k")


def test_the_fingerprint_is_openssl_s_sha256_of_the_der_key() -> None:
    key = PublicKey.from_file(str(COSIGN_PUB))
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(COSIGN_PUB), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    assert key.fingerprint == str(compute(der))
    assert key.algorithm == "ECDSA P-256"


# -- where the policy comes from -------------------------------------------------------------------


def test_the_lookup_order_is_config_then_home_then_etc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tank

    home, system = tmp_path / "home", tmp_path / "etc-policy.json"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(policy_lookup, "SYSTEM_POLICY", system)
    assert policy_path() is None
    assert load_policy() is None  # no file anywhere: accept everything, silently
    system.write_text(json.dumps({"default": [{"type": "reject"}]}))
    assert policy_path() == system
    user = home / ".config" / "containers" / "policy.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    assert policy_path() == user
    config = tmp_path / "config.toml"
    config.write_text('policy = "mine.json"\n')
    cfg = tank.load_config(config, registries_conf=False)
    assert cfg.policy == str(tmp_path / "mine.json")
    assert policy_path(cfg) == tmp_path / "mine.json"
    with pytest.raises(PolicyError, match=r"mine\.json: cannot read the policy"):
        load_policy(config=cfg)  # named, so required
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"default": [{"type": "reject"}]}))
    assert load_policy(explicit, config=cfg) is not None


# -- signedIdentity, as containers/image matches it -----------------------------------------------

REPO = "r.example/ns/app"


@pytest.mark.parametrize(("rule", "image", "signed", "ok"), [
    # matchExact: both tagged (or digested) and equal; cosign's repository-only never matches
    (MatchExact(), f"{REPO}:1", f"{REPO}:1", True),
    (MatchExact(), f"{REPO}:1", f"{REPO}:2", False),
    (MatchExact(), f"{REPO}:1", REPO, False),
    (MatchExact(), f"{REPO}@{DIGEST}", f"{REPO}@{DIGEST}", True),
    (MatchExact(), f"{REPO}@{DIGEST}", f"{REPO}:1", False),
    # matchRepoDigestOrExact: by tag the same name:tag; by digest the same repository
    (MatchRepoDigestOrExact(), f"{REPO}:1", f"{REPO}:1", True),
    (MatchRepoDigestOrExact(), f"{REPO}:1", f"{REPO}:2", False),
    (MatchRepoDigestOrExact(), f"{REPO}:1", REPO, False),
    (MatchRepoDigestOrExact(), f"{REPO}@{DIGEST}", f"{REPO}:7", True),
    (MatchRepoDigestOrExact(), f"{REPO}@{DIGEST}", f"{REPO}@{OTHER}", True),
    (MatchRepoDigestOrExact(), f"{REPO}@{DIGEST}", REPO, False),
    (MatchRepoDigestOrExact(), f"{REPO}@{DIGEST}", "r.example/ns/other:7", False),
    # matchRepository: the repository, any tag or none (cosign)
    (MatchRepository(), f"{REPO}:1", REPO, True),
    (MatchRepository(), f"{REPO}:1", f"{REPO}:2", True),
    (MatchRepository(), f"{REPO}@{DIGEST}", REPO, True),
    (MatchRepository(), f"{REPO}:1", "r.example/ns/other", False),
    (MatchRepository(), "busybox", "index.docker.io/library/busybox", True),  # normalised
    (MatchRepository(), "busybox", "docker.io/busybox:latest", True),
    (MatchRepository(), f"{REPO}:1", "NOT A REFERENCE", False),
    # exactReference / exactRepository: fixed names, whatever the image is pulled as
    (ExactReference(f"{REPO}:1"), "elsewhere/x:9", f"{REPO}:1", True),
    (ExactReference(f"{REPO}:1"), "elsewhere/x:9", REPO, False),
    (ExactRepository(REPO), "elsewhere/x:9", REPO, True),
    (ExactRepository(REPO), "elsewhere/x:9", f"{REPO}:3", True),
    (ExactRepository(REPO), "elsewhere/x:9", "r.example/other", False),
    # remapIdentity: the prefix replaced, then matchRepoDigestOrExact
    (RemapIdentity("mirror.lan:5000/vendor", "vendor.example.com"),
     "mirror.lan:5000/vendor/app:1", "vendor.example.com/app:1", True),
    (RemapIdentity("mirror.lan:5000/vendor", "vendor.example.com"),
     "mirror.lan:5000/vendor/app:1", "vendor.example.com/app", False),
    (RemapIdentity("mirror.lan:5000/vendor", "vendor.example.com"),
     "mirror.lan:5000/vendorx/app:1", "vendor.example.com/app:1", False),  # not the prefix
    (RemapIdentity("mirror.lan:5000/vendor", "vendor.example.com"),
     "mirror.lan:5000/vendorx/app:1", "mirror.lan:5000/vendorx/app:1", True),  # unchanged
    (RemapIdentity("mirror.lan:5000", "vendor.example.com"),
     f"mirror.lan:5000/app@{DIGEST}", "vendor.example.com/app:2", True),
])
def test_signed_identity_matches_as_containers_image(
    rule: Any, image: str, signed: str, ok: bool
) -> None:
    assert rule.matches(intended(parse_reference(image)), signed) is ok


def test_a_name_keeps_whether_it_had_a_tag() -> None:
    assert parse_named("r.example:5000/app").name_only
    assert parse_named("r.example:5000/app:1").tag == "1"
    assert parse_named(f"app@{DIGEST}") == Named("docker.io/library/app", None, DIGEST)


# -- payloads and signatures ----------------------------------------------------------------------


def test_payloads_are_read_strictly() -> None:
    good = parse_payload(payload(DIGEST, REPO, optional={"creator": "me", "timestamp": 5}))
    assert (good.digest, good.identity, good.creator, good.timestamp) == (DIGEST, REPO, "me", 5)
    doc = json.loads(payload(DIGEST, REPO))
    changes: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (lambda d: d["critical"].update(extra=1), "unknown keys"),
        (lambda d: d["critical"].update(type="other"), "unknown signature type"),
        (lambda d: d["critical"]["image"].pop("docker-manifest-digest"), "no docker-manifest"),
        (lambda d: d.update(optional={"timestamp": 1.5}), "not an integer"),
        (lambda d: d.update(more=1), "unknown keys"),
    ]
    for change, says in changes:
        bad = json.loads(json.dumps(doc))
        change(bad)
        with pytest.raises(ValueError, match=says):
            parse_payload(json.dumps(bad).encode())


def _sig(data: bytes, signature: str, subject: Digest) -> Signature:
    return Signature(SIMPLE_SIGNING, data, {SIGNATURE_ANNOTATION: signature}, subject,
                     "test layer 1")


def test_cosign_s_own_signatures_verify_with_its_key_and_openssl_agrees() -> None:
    """containers/image's fixtures: signatures made by cosign with cosign.pub's key."""
    key = PublicKey.from_file(str(COSIGN_PUB))
    manifest = COSIGN_MANIFEST.read_bytes()
    for name in ("dir-img-cosign-valid/signature-1", "dir-img-cosign-valid-2/signature-2"):
        sig = fixture_signature(name)
        raw = base64.b64decode(sig.annotations["dev.cosignproject.cosign/signature"])
        assert openssl_verifies(COSIGN_PUB.read_bytes(), "ecdsa", sig.payload, raw), name
        found = check(_sig(sig.payload, sig.layer.signature, compute(manifest)), [key],
                      manifest=manifest, want=intended(parse_reference(COSIGN_IDENTITY)),
                      identity=MatchRepository())
        assert isinstance(found, Accepted), found
        assert found.payload.identity == COSIGN_IDENTITY
        assert found.key.fingerprint == key.fingerprint


def test_cosign_vectors_that_must_be_refused() -> None:
    key = PublicKey.from_file(str(COSIGN_PUB))
    manifest = COSIGN_MANIFEST.read_bytes()
    want = intended(parse_reference(COSIGN_IDENTITY))

    def judge_one(name: str, manifest: bytes = manifest, rule: Any = None) -> str:
        sig = fixture_signature(name)
        out = check(_sig(sig.payload, sig.layer.signature, compute(manifest)), [key],
                    manifest=manifest, want=want, identity=rule or MatchRepository())
        assert isinstance(out, str), out
        return out

    # another key made it (openssl agrees)
    unknown = fixture_signature("unknown-cosign-key.signature")
    raw = base64.b64decode(unknown.layer.signature)
    assert not openssl_verifies(COSIGN_PUB.read_bytes(), "ecdsa", unknown.payload, raw)
    assert "not signed by the trusted key" in judge_one("unknown-cosign-key.signature")
    # the manifest was modified: the signed digest is another one
    modified = (FIXTURES / "dir-img-cosign-modified-manifest" / "manifest.json").read_bytes()
    assert "for the manifest sha256:634a8f35" in judge_one("dir-img-cosign-valid/signature-1",
                                                          modified)
    # cosign signs the repository only: the default signedIdentity never accepts it
    assert "does not accept" in judge_one("dir-img-cosign-valid/signature-1",
                                          rule=MatchRepoDigestOrExact())
    # containers/image's own signature for another identity
    assert "skopeo-signed:tag" in judge_one("dir-img-cosign-valid-with-tag/signature-1")


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
def test_each_key_kind_verifies_and_a_flipped_byte_is_refused(kind: Any) -> None:
    signer = Signer(kind)
    key = PublicKey.from_pem(signer.public_pem, source="k.pub")
    manifest = b'{"schemaVersion":2}'
    data = payload(str(compute(manifest)), REPO)
    layer = Layer.signed(signer, data)
    ok = check(_sig(data, layer.signature, compute(manifest)), [key], manifest=manifest,
               want=intended(parse_reference(REPO)), identity=MatchRepository())
    assert isinstance(ok, Accepted)
    raw = bytearray(base64.b64decode(layer.signature))
    raw[len(raw) // 2] ^= 0x01
    assert not openssl_verifies(signer.public_pem, kind, data, bytes(raw))
    flipped = base64.b64encode(bytes(raw)).decode()
    out = check(_sig(data, flipped, compute(manifest)), [key], manifest=manifest,
                want=intended(parse_reference(REPO)), identity=MatchRepository())
    assert isinstance(out, str)
    assert "not signed by" in out
    changed = data.replace(b"ns/app", b"ns/apq")
    assert not openssl_verifies(signer.public_pem, kind, changed, base64.b64decode(layer.signature))
    out = check(_sig(changed, layer.signature, compute(manifest)), [key], manifest=manifest,
                want=intended(parse_reference(REPO)), identity=MatchRepository())
    assert isinstance(out, str)
    assert "not signed by" in out


def test_the_policy_package_needs_no_network_layer_to_judge() -> None:
    code = ("import sys, tank.policy, tank.policy.judge, tank.policy.document; "
            "print(sorted(m for m in sys.modules if m.startswith(('tank.registry', "
            "'tank.transport', 'tank.auth', 'urllib3', 'cryptography'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_verdict_names_the_key_and_identity() -> None:
    signer = Signer()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                   "digest": str(compute(b"{}"))},
        "layers": [],
    }).encode()
    doc = parse_manifest(manifest)
    data = payload(str(doc.digest), REPO)
    layer = Layer.signed(signer, data)
    with_key = Policy.from_json({"default": [{
        "type": "sigstoreSigned", "keyData": base64.b64encode(signer.public_pem).decode(),
        "signedIdentity": {"type": "matchRepository"}}]})
    verdict = judge(with_key, parse_reference(f"{REPO}:1"), doc,
                    lambda d: Found((_sig(data, layer.signature, d.digest),)))
    assert verdict.scope is None
    [accepted] = verdict.signatures
    assert accepted.payload.identity == REPO
    out = verdict.to_json()
    assert out["requirements"][0]["signature"]["key"].startswith("sha256:")
    assert out["accepted"] is True
