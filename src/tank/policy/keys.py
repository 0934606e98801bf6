"""Public keys a ``sigstoreSigned`` requirement trusts, and checking a signature with one.

A key is a PEM ``PUBLIC KEY`` (PKIX), as ``cosign generate-key-pair`` writes ``cosign.pub``:
ECDSA on P-256, P-384 or P-521, Ed25519, or RSA of at least 2048 bits. The signature is checked
exactly as containers/image and cosign check a key-based signature: over the payload bytes as
stored, ECDSA (ASN.1 DER) and RSA (PKCS #1 v1.5) with SHA-256 whatever the curve or size, Ed25519
over the bytes themselves. Anything else is refused when the key is loaded (a
:class:`~tank.errors.PolicyError`), never at verification time.

A key's *fingerprint* is ``sha256:`` and the hex SHA-256 of its DER SubjectPublicKeyInfo, what
``openssl pkey -pubin -in cosign.pub -outform DER | sha256sum`` prints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tank.errors import PolicyError

#: RSA keys shorter than this are refused
MIN_RSA_BITS: Final = 2048
#: a key file longer than this is refused (a PEM public key is a few hundred bytes)
MAX_KEY_FILE: Final = 64 * 1024

_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

KeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key.

    :ivar source: where it came from (a path, or ``keyData``), for messages.
    :ivar algorithm: ``ECDSA P-256``, ``Ed25519``, ``RSA 4096``, …
    :ivar fingerprint: ``sha256:`` + the hex SHA-256 of its DER SubjectPublicKeyInfo.
    """

    key: KeyType = field(repr=False)
    source: str
    algorithm: str
    fingerprint: str

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> PublicKey:
        """The key in PEM ``data``; :class:`~tank.errors.PolicyError` naming ``source`` when it
        is not one tank verifies with."""
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise PolicyError(f"{source} is not a PEM public key ({exc})") from None
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve = _CURVES.get(key.curve.name)
            if curve is None:
                raise PolicyError(f"{source}: ECDSA on {key.curve.name} is not supported "
                                  "(P-256, P-384 and P-521 are)")
            algorithm = f"ECDSA {curve}"
        elif isinstance(key, ed25519.Ed25519PublicKey):
            algorithm = "Ed25519"
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise PolicyError(f"{source}: an RSA key of {key.key_size} bits is too weak "
                                  f"(tank needs at least {MIN_RSA_BITS})")
            algorithm = f"RSA {key.key_size}"
        else:
            raise PolicyError(f"{source}: a {type(key).__name__} is not a signing key tank "
                              "verifies with (ECDSA, Ed25519 or RSA)")
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, source, algorithm, "sha256:" + hashlib.sha256(der).hexdigest())

    @classmethod
    def from_file(cls, path: str) -> PublicKey:
        """The key in the PEM file ``path`` (read now)."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_KEY_FILE + 1)
        except OSError as exc:
            raise PolicyError(f"cannot read the key {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_KEY_FILE:
            raise PolicyError(f"the key {path} is over {MAX_KEY_FILE} bytes: not a public key")
        return cls.from_pem(data, source=path)

    def verify(self, signature: bytes, payload: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``payload`` (see the module)."""
        key = self.key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
            else:
                key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def describe(self) -> str:
        """``ECDSA P-256 key sha256:1a2b3c4d5e6f… (cosign.pub)``, for messages."""
        return f"{self.algorithm} key {self.fingerprint[:19]}… ({self.source})"


__all__ = ["MIN_RSA_BITS", "PublicKey"]
