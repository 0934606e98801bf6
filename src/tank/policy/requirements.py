"""The requirements of a containers policy, and how each judges an image.

A scope's requirements must all be met (each may be met by a different signature):

- ``insecureAcceptAnything``: always met.
- ``reject``: never met.
- ``sigstoreSigned`` with keys (``keyPath``, ``keyPaths``, ``keyData``, ``keyDatas``): met by one
  signature that :func:`tank.policy.sigstore.check` accepts with one of the keys.
- what tank reads but does not verify yet, so is never met (a refusal naming why, never a silent
  pass): ``sigstoreSigned`` keyless (``fulcio``, ``pki``) or with a Rekor key
  (``rekorPublicKey…``), ``signedBy`` (GPG simple signing), and ``signedBaseLayer`` (which
  containers/image does not implement either).

A requirement judges with :meth:`Requirement.judge`, given every signature gathered so far;
keys named by path are read by :meth:`Requirement.prepare`, before anything is fetched.
Keyless verification fits here as one more kind of trust anchor of :class:`SigstoreSigned`
(a certificate chain and a Rekor key in place of :class:`~tank.policy.keys.PublicKey`), with the
payload rules of :mod:`tank.policy.sigstore` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tank.digest import Digest
from tank.policy.identity import IdentityMatch, MatchRepoDigestOrExact, Named
from tank.policy.sigstore import Accepted, Signature, check

if TYPE_CHECKING:
    from tank.policy.keys import PublicKey


@dataclass(frozen=True)
class Judgement:
    """A requirement's verdict: ``met``, the signature that met it (for signature requirements),
    or the reasons it is not met (one per signature looked at, or why none could be)."""

    met: bool
    accepted: Accepted | None = None
    reasons: tuple[str, ...] = ()


class Requirement:
    """One requirement of a policy scope (see the module)."""

    #: its ``type`` in ``policy.json``
    type: str = ""
    #: whether judging it needs the image's signatures
    needs_signatures: bool = False

    def prepare(self) -> None:
        """Read what the requirement needs from disk (keys); raise
        :class:`~tank.errors.PolicyError` when it cannot be used. Before any network use."""

    def judge(
        self, want: Named, signatures: Sequence[Signature], manifests: Mapping[Digest, bytes]
    ) -> Judgement:
        """Whether the image pulled as ``want`` meets the requirement, given ``signatures``
        (each for one of ``manifests``: digest → the manifest's bytes)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The requirement in a few words, for messages."""
        return self.type

    def to_json(self) -> dict[str, Any]:
        """The requirement as ``policy.json`` spells it."""
        return {"type": self.type}


class InsecureAcceptAnything(Requirement):
    """``insecureAcceptAnything``: every image."""

    type = "insecureAcceptAnything"

    def judge(
        self, want: Named, signatures: Sequence[Signature], manifests: Mapping[Digest, bytes]
    ) -> Judgement:
        """Always met."""
        return Judgement(True)


class Reject(Requirement):
    """``reject``: no image."""

    type = "reject"

    def judge(
        self, want: Named, signatures: Sequence[Signature], manifests: Mapping[Digest, bytes]
    ) -> Judgement:
        """Never met."""
        return Judgement(False, reasons=("the policy rejects every image in this scope",))


class Unverifiable(Requirement):
    """A requirement tank reads but cannot verify yet (see the module): never met.

    :ivar spelled: the requirement as written; :ivar why: what tank does not verify.
    """

    def __init__(self, spelled: dict[str, Any], why: str) -> None:
        self.spelled = spelled
        self.why = why
        self.type = str(spelled.get("type"))
        self.needs_signatures = False

    def judge(
        self, want: Named, signatures: Sequence[Signature], manifests: Mapping[Digest, bytes]
    ) -> Judgement:
        """Never met: tank does not verify it."""
        return Judgement(False, reasons=(self.why,))

    def describe(self) -> str:
        """The type, and that tank does not verify it."""
        return f"{self.type} (not verified by tank)"

    def to_json(self) -> dict[str, Any]:
        """The requirement as written."""
        return dict(self.spelled)


@dataclass(frozen=True)
class KeySource:
    """Where a trusted key comes from: a file (read by :meth:`load`) or PEM data."""

    path: str | None = None
    pem: bytes | None = field(default=None, repr=False)

    def load(self, index: int) -> PublicKey:
        """The key (:class:`~tank.errors.PolicyError` when it cannot be used)."""
        from tank.policy.keys import PublicKey

        if self.path is not None:
            return PublicKey.from_file(self.path)
        assert self.pem is not None
        return PublicKey.from_pem(self.pem, source=f"keyData #{index + 1}")


@dataclass(eq=False)
class SigstoreSigned(Requirement):
    """``sigstoreSigned`` with public keys: one signature by one of ``keys``, for an identity
    ``identity`` accepts.

    :ivar sources: where the keys come from; :ivar identity: the ``signedIdentity`` rule.
    """

    sources: tuple[KeySource, ...]
    identity: IdentityMatch = field(default_factory=MatchRepoDigestOrExact)
    spelled: dict[str, Any] | None = field(default=None, repr=False)
    keys: tuple[PublicKey, ...] = ()
    type = "sigstoreSigned"
    needs_signatures = True

    def prepare(self) -> None:
        """Load the keys (once)."""
        if not self.keys:
            self.keys = tuple(source.load(i) for i, source in enumerate(self.sources))

    def judge(
        self, want: Named, signatures: Sequence[Signature], manifests: Mapping[Digest, bytes]
    ) -> Judgement:
        """Met by the first signature :func:`~tank.policy.sigstore.check` accepts."""
        self.prepare()
        reasons: list[str] = []
        for sig in signatures:
            if not sig.is_signature:
                continue
            manifest = manifests.get(sig.subject)
            if manifest is None:  # pragma: no cover - the caller gathers both together
                reasons.append(f"{sig.where}: its manifest {sig.subject} is unknown")
                continue
            verdict = check(sig, self.keys, manifest=manifest, want=want, identity=self.identity)
            if isinstance(verdict, Accepted):
                return Judgement(True, accepted=verdict)
            reasons.append(f"{sig.where}: {verdict}")
        return Judgement(False, reasons=tuple(reasons))

    def describe(self) -> str:
        """``sigstoreSigned (key sha256:…, signedIdentity matchRepository)``."""
        if self.keys:
            named = ", ".join(k.fingerprint[:19] + "…" for k in self.keys)
        else:
            named = ", ".join(s.path or f"keyData #{i + 1}" for i, s in enumerate(self.sources))
        plural = "s" if len(self.sources) > 1 else ""
        return f"sigstoreSigned (key{plural} {named}, signedIdentity {self.identity.describe()})"

    def to_json(self) -> dict[str, Any]:
        """The requirement as written (or as :meth:`tank.policy.Policy.for_keys` made it)."""
        if self.spelled is not None:
            return dict(self.spelled)
        paths = [s.path for s in self.sources if s.path is not None]
        keys: dict[str, Any] = {"keyPath": paths[0]} if len(paths) == 1 else {"keyPaths": paths}
        return {"type": self.type, **keys, "signedIdentity": self.identity.to_json()}


__all__ = [
    "InsecureAcceptAnything",
    "Judgement",
    "KeySource",
    "Reject",
    "Requirement",
    "SigstoreSigned",
    "Unverifiable",
]
