"""Signing images as cosign does, for tests, with every signature checked by openssl too.

Debian's skopeo has sigstore switched off and cosign is not packaged, so the tests make cosign's
signatures themselves (``cryptography``) and store them exactly as ``cosign sign --key`` does:
the tag ``sha256-<hex>.sig`` holds an OCI image manifest whose layers are simple-signing
payloads (``application/vnd.dev.cosign.simplesigning.v1+json``), each with its base64 signature
in the annotation ``dev.cosignproject.cosign/signature``, and a config naming the layers as
diff_ids. tank's verifier is never its own only judge: :meth:`Signer.sign` has ``openssl``
verify every signature it makes (and :func:`openssl_verifies` refuses a tampered one).

The signatures made by cosign itself that containers/image ships as test data (Debian's
``golang-github-containers-image-dev``) are in :data:`FIXTURES`; :func:`fixture_signature`
reads one.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tank.testing.images import Pusher, sha256_digest

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

#: containers/image's signature fixtures: cosign.pub and signatures cosign made with its key
FIXTURES = Path("/usr/share/gocode/src/github.com/containers/image/signature/fixtures")

KeyKind = Literal["ecdsa", "ed25519", "rsa"]


def payload(digest: str, identity: str, *, optional: dict[str, Any] | None = None) -> bytes:
    """A simple-signing payload laid out as cosign writes it (keys in its struct order)."""
    doc = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": optional,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def openssl_verifies(public_pem: bytes, kind: KeyKind, data: bytes, signature: bytes) -> bool:
    """Whether ``openssl`` accepts ``signature`` of ``data`` by the key (SHA-256 for ECDSA and
    RSA, as cosign; Ed25519 over the raw bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        key, msg, sig = Path(tmp, "key.pub"), Path(tmp, "payload"), Path(tmp, "sig")
        key.write_bytes(public_pem)
        msg.write_bytes(data)
        sig.write_bytes(signature)
        if kind == "ed25519":
            argv = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin",
                    "-in", str(msg), "-sigfile", str(sig)]
        else:
            argv = ["openssl", "dgst", "-sha256", "-verify", str(key), "-signature", str(sig),
                    str(msg)]
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@dataclass
class Signer:
    """A key pair signing as cosign does; every signature is checked by openssl as it is made."""

    kind: KeyKind = "ecdsa"
    private: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "ecdsa":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif self.kind == "ed25519":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> bytes:
        """The public key as ``cosign.pub`` holds it (PEM, PKIX)."""
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ))

    def write_public(self, path: Path) -> Path:
        """Write :attr:`public_pem` to ``path``."""
        path.write_bytes(self.public_pem)
        return path

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (DER ECDSA / PKCS #1 v1.5 with SHA-256, or Ed25519), checked by openssl."""
        if self.kind == "ecdsa":
            sig = self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        elif self.kind == "ed25519":
            sig = self.private.sign(data)
        else:
            sig = self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        assert openssl_verifies(self.public_pem, self.kind, data, sig), "openssl refused it"
        return bytes(sig)


@dataclass(frozen=True)
class Layer:
    """One signature layer: its payload, the base64 signature, and more annotations."""

    payload: bytes
    signature: str
    media_type: str = SIMPLE_SIGNING
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def signed(cls, signer: Signer, data: bytes) -> Layer:
        """``data`` signed by ``signer``."""
        return cls(data, base64.b64encode(signer.sign(data)).decode())


def signature_tag(digest: str) -> str:
    """``sha256-<hex>.sig``."""
    return digest.replace(":", "-", 1) + ".sig"


def push_signatures(pusher: Pusher, repo: str, digest: str, layers: list[Layer]) -> str:
    """Write ``layers`` as cosign does under ``sha256-<hex>.sig`` in ``repo``; the manifest's
    digest."""
    descriptors = []
    for layer in layers:
        pusher.push_blob(repo, layer.payload)
        descriptors.append({
            "mediaType": layer.media_type, "size": len(layer.payload),
            "digest": sha256_digest(layer.payload),
            "annotations": {ANNOTATION: layer.signature, **layer.annotations},
        })
    config = json.dumps({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
        "config": {},
    }, separators=(",", ":")).encode()
    pusher.push_blob(repo, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config),
                   "digest": sha256_digest(config)},
        "layers": descriptors,
    }, separators=(",", ":")).encode()
    return pusher.push_manifest(repo, signature_tag(digest), manifest, OCI_MANIFEST)


def sign_image(pusher: Pusher, repo: str, digest: str, identity: str, *signers: Signer) -> str:
    """Sign ``digest`` for ``identity`` with each of ``signers`` (one layer each), as cosign."""
    data = payload(digest, identity)
    return push_signatures(pusher, repo, digest, [Layer.signed(s, data) for s in signers])


@dataclass(frozen=True)
class FixtureSignature:
    """A signature cosign made, from containers/image's fixtures."""

    media_type: str
    payload: bytes
    annotations: dict[str, str]

    @property
    def layer(self) -> Layer:
        """As a :class:`Layer` to push."""
        return Layer(self.payload, self.annotations[ANNOTATION], self.media_type)


def fixture_signature(name: str) -> FixtureSignature:
    """``FIXTURES/name``: containers/image's ``dir:`` signature file (a format byte,
    ``sigstore-json``, a newline, then ``{"mimeType", "payload", "annotations"}``)."""
    raw = (FIXTURES / name).read_bytes()
    head = b"\x00sigstore-json\n"
    assert raw.startswith(head), f"{name} is not a sigstore signature file"
    doc = json.loads(raw[len(head):])
    return FixtureSignature(doc["mimeType"], base64.b64decode(doc["payload"]),
                            dict(doc["annotations"]))
