"""Sigstore (cosign) signatures: what one is, and checking one against trusted keys.

cosign stores the signatures of the manifest ``sha256:<hex>`` under the tag
``sha256-<hex>.sig`` of the same repository: an OCI image manifest whose every layer is one
signature, of media type ``application/vnd.dev.cosign.simplesigning.v1+json``. The layer's blob
is the *payload* (the "simple signing" JSON below) and its annotation
``dev.cosignproject.cosign/signature`` the base64 signature over the payload's bytes::

    {"critical": {"identity": {"docker-reference": "registry.example/app"},
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "type": "cosign container image signature"},
     "optional": null}

:func:`check` accepts a :class:`Signature` only when, in this order (nothing in the payload is
read before its signature verified):

1. its signature verifies with one of the trusted keys (:mod:`tank.policy.keys`);
2. the payload is exactly that document (containers/image's strict reading: no unknown keys in
   ``critical``, the right ``type``, an integer ``optional.timestamp`` when there is one);
3. ``docker-manifest-digest`` is the digest of the manifest the signature was found for (hashed
   with the payload's algorithm);
4. ``docker-reference`` is accepted by the requirement's ``signedIdentity``
   (:mod:`tank.policy.identity`).

Layers of other media types (attestations and other attachments) are not signatures and are
skipped. Keyless signatures (a Fulcio certificate, a Rekor bundle) carry more annotations; they
are read here as any other, and a key-based requirement ignores those annotations, as
containers/image does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tank import _json
from tank.digest import Digest, compute
from tank.errors import InvalidDigest
from tank.policy.identity import IdentityMatch, Named

if TYPE_CHECKING:
    from tank.policy.keys import PublicKey

#: the media type of a signature layer
SIMPLE_SIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
#: the layer annotation holding the base64 signature
SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
#: ``critical.type`` of a cosign image signature
PAYLOAD_TYPE: Final = "cosign container image signature"
#: a payload larger than this is not read (containers/image's limit for a signature)
MAX_PAYLOAD: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Signature:
    """One signature as found: untrusted until :func:`check` accepts it.

    :ivar media_type: the layer's media type; :ivar payload: the layer's blob (verified against
        the layer's digest when it was fetched); :ivar annotations: the layer's annotations.
    :ivar subject: the digest of the manifest it was found for (its ``.sig`` tag's).
    :ivar where: where it was found, for messages (``sha256-….sig layer 1``).
    """

    media_type: str
    payload: bytes = field(repr=False)
    annotations: Mapping[str, str]
    subject: Digest
    where: str

    @property
    def is_signature(self) -> bool:
        """Whether the layer is a simple-signing signature (others are attachments)."""
        return self.media_type == SIMPLE_SIGNING


@dataclass(frozen=True)
class Payload:
    """A simple-signing payload, read after its signature verified.

    :ivar digest: ``critical.image.docker-manifest-digest``.
    :ivar identity: ``critical.identity.docker-reference`` (cosign writes the repository only).
    :ivar creator: ``optional.creator``, if any; :ivar timestamp: ``optional.timestamp``, if any.
    """

    digest: str
    identity: str
    creator: str | None = None
    timestamp: int | None = None


def _exact(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    if set(obj) != keys:
        extra, missing = sorted(set(obj) - keys), sorted(keys - set(obj))
        raise ValueError(f"{what} has " + (f"unknown keys {extra}" if extra else
                                           f"no {', '.join(missing)}"))
    return obj


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def parse_payload(data: bytes) -> Payload:
    """Read a simple-signing payload strictly; :class:`ValueError` saying why it is not one."""
    doc = _exact(_json.loads(data), {"critical", "optional"}, "the payload")
    critical = _exact(doc["critical"], {"type", "image", "identity"}, "critical")
    if critical["type"] != PAYLOAD_TYPE:
        raise ValueError(f"unknown signature type {str(critical['type'])[:80]!r}")
    image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
    identity = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
    optional = doc["optional"]
    creator: str | None = None
    timestamp: int | None = None
    if optional is not None:  # cosign writes null when there are no annotations
        if not isinstance(optional, dict):
            raise ValueError("optional is not a JSON object")
        if "creator" in optional:
            creator = _string(optional["creator"], "optional.creator")
        if "timestamp" in optional:
            stamp = optional["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, int | float) or stamp != int(
                stamp
            ):
                raise ValueError("optional.timestamp is not an integer")
            timestamp = int(stamp)
    return Payload(
        digest=_string(image["docker-manifest-digest"], "critical.image.docker-manifest-digest"),
        identity=_string(identity["docker-reference"], "critical.identity.docker-reference"),
        creator=creator,
        timestamp=timestamp,
    )


@dataclass(frozen=True)
class Accepted:
    """A signature a requirement accepted: by which key, for which identity."""

    signature: Signature
    key: PublicKey
    payload: Payload

    def to_json(self) -> dict[str, Any]:
        """``{where, subject, key, algorithm, identity, creator, timestamp}``."""
        return {
            "where": self.signature.where,
            "subject": str(self.signature.subject),
            "key": self.key.fingerprint,
            "keySource": self.key.source,
            "algorithm": self.key.algorithm,
            "identity": self.payload.identity,
            "creator": self.payload.creator,
            "timestamp": self.payload.timestamp,
        }


def _digest_matches(claimed: str, manifest: bytes) -> bool:
    try:
        want = Digest.parse(claimed)
    except InvalidDigest:
        return False
    return compute(manifest, want.algorithm) == want


def check(
    signature: Signature,
    keys: Sequence[PublicKey],
    *,
    manifest: bytes,
    want: Named,
    identity: IdentityMatch,
) -> Accepted | str:
    """Judge one signature (see the module): an :class:`Accepted`, or why it is refused.

    :param manifest: the bytes of the manifest ``signature.subject`` names (already verified
        against that digest).
    :param want: the identity the image is pulled as (:func:`tank.policy.identity.intended`).
    """
    encoded = signature.annotations.get(SIGNATURE_ANNOTATION)
    if encoded is None:
        return f"no {SIGNATURE_ANNOTATION} annotation"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the signature annotation is not base64"
    key = next((k for k in keys if k.verify(raw, signature.payload)), None)
    if key is None:
        names = ", ".join(k.fingerprint for k in keys)
        return f"not signed by the trusted key{'s' if len(keys) > 1 else ''} ({names})"
    try:
        payload = parse_payload(signature.payload)
    except ValueError as exc:
        return f"signed by {key.fingerprint}, but not a simple-signing payload: {exc}"
    if not _digest_matches(payload.digest, manifest):
        return (f"signed by {key.fingerprint} for the manifest {payload.digest[:80]}, not "
                f"{signature.subject}")
    if not identity.matches(want, payload.identity):
        return (f"signed by {key.fingerprint} for the identity {payload.identity[:300]!r}, which "
                f"signedIdentity {identity.describe()} does not accept for {want}")
    return Accepted(signature, key, payload)


__all__ = [
    "MAX_PAYLOAD",
    "PAYLOAD_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "Accepted",
    "Payload",
    "Signature",
    "check",
    "parse_payload",
]
