"""Judging an image against a policy: every requirement of its scope, over its signatures.

No network here: the signatures come from a ``find`` callable (:mod:`tank.policy.check` reads
them from the registry). The rules:

- The requirements that need no signature (``insecureAcceptAnything``, ``reject``, and those tank
  cannot verify) are judged first, before anything is fetched (:func:`precheck`).
- A signature requirement is judged along a *chain* of manifests, each one's signatures fetched
  only while some requirement is still unmet: for an image pulled through an index, the index
  and then the image. A signature counts for the manifest it was found for (its
  ``sha256-<hex>.sig`` tag) and must sign exactly that manifest. A signature of the index covers
  the image the index names by digest (cosign signs an index, not each image, unless told to);
  a signature of the image alone is enough too, as containers/image requires.
- All requirements must be met, each by one signature (possibly different ones). Otherwise
  :class:`~tank.errors.PolicyRefused` lists each unmet requirement with, for each signature
  looked at, why it was refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tank.digest import Digest
from tank.errors import PolicyRefused
from tank.image import Index, Manifest
from tank.policy.document import Policy, Scope
from tank.policy.identity import intended
from tank.policy.requirements import Judgement, Requirement
from tank.policy.sigstore import Accepted, Signature
from tank.reference import Reference

Document = Manifest | Index


@dataclass(frozen=True)
class Found:
    """The signatures found for one manifest, and notes on what else was found (no ``.sig``
    tag, attachments that are not signatures, a signature too large to read)."""

    signatures: tuple[Signature, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Met:
    """A requirement that was met, and the signature that met it (``None`` for
    ``insecureAcceptAnything``)."""

    requirement: str
    type: str
    accepted: Accepted | None = None

    def to_json(self) -> dict[str, Any]:
        """``{requirement, type, signature}``."""
        return {
            "requirement": self.requirement, "type": self.type,
            "signature": self.accepted.to_json() if self.accepted else None,
        }


@dataclass(frozen=True)
class Verdict:
    """An image the policy accepts: which scope applied, and how each requirement was met.

    :ivar reference: the image as asked for; :ivar digest: the manifest judged (the top one:
        an index's digest when the reference names an index).
    :ivar images: the image manifests judged: the top one when it is an image; through an index,
        the platform's when the index's own signatures were not enough (a pull lists every
        image it takes).
    :ivar policy: where the policy came from (``None``: no policy file, everything accepted).
    :ivar scope: the scope's key (``""`` the transport's default, ``None`` the default).
    :ivar where: the scope in words (``scope 'docker.io/library'``, ``the default``), or ``""``
        when the policy has no scopes (``--verify-key``).
    """

    reference: Reference
    digest: Digest | None
    images: tuple[Digest, ...]
    policy: str | None
    scope: str | None
    met: tuple[Met, ...]
    where: str = ""

    @property
    def signatures(self) -> tuple[Accepted, ...]:
        """The signatures that met a requirement."""
        return tuple(m.accepted for m in self.met if m.accepted is not None)

    def to_json(self) -> dict[str, Any]:
        """The ``tank verify --json`` document (keys documented in docs/commands.md)."""
        return {
            "reference": str(self.reference),
            "digest": str(self.digest) if self.digest else None,
            "images": [str(d) for d in self.images],
            "policy": self.policy,
            "scope": self.scope,
            "accepted": True,
            "requirements": [m.to_json() for m in self.met],
        }


def _failure(index: int, requirement: Requirement, judgement: Judgement,
             notes: Sequence[str]) -> str:
    reasons = list(judgement.reasons)
    if requirement.needs_signatures:
        if not reasons:
            reasons.append("no signature was found")
        reasons.extend(notes)
    return f"requirement {index + 1} {requirement.describe()}: " + "; ".join(reasons)


def _refuse(policy: Policy, scope: Scope, ref: Reference, digest: Digest | None,
            failures: list[str]) -> PolicyRefused:
    what = f"{ref}" + (f" ({digest})" if digest else "")
    where = f" ({scope.describe()})" if policy.transports else ""
    return PolicyRefused(
        f"{what} is refused by the signature policy {policy.source}{where}: "
        + "; ".join(failures),
        reference=str(ref), digest=str(digest) if digest else None, policy=policy.source,
        scope=scope.name, failures=tuple(failures),
    )


def precheck(policy: Policy, ref: Reference) -> Scope:
    """Prepare the scope's requirements (read their keys) and judge those that need no
    signature; raise :class:`~tank.errors.PolicyRefused` (or
    :class:`~tank.errors.PolicyError`) before anything is fetched."""
    scope = policy.scope_for(ref)
    failures = []
    for i, requirement in enumerate(scope.requirements):
        requirement.prepare()
        if not requirement.needs_signatures:
            verdict = requirement.judge(intended(ref), (), {})
            if not verdict.met:
                failures.append(_failure(i, requirement, verdict, ()))
    if failures:
        raise _refuse(policy, scope, ref, None, failures)
    return scope


def judge(
    policy: Policy,
    ref: Reference,
    top: Document,
    find: Callable[[Document], Found],
    *,
    then: Iterable[Document] = (),
) -> Verdict:
    """Judge ``top`` (the manifest ``ref`` names), and when its signatures are not enough the
    manifests of ``then`` in turn (an index's image): a :class:`Verdict`, or
    :class:`~tank.errors.PolicyRefused` (see the module).

    :param find: the signatures of one manifest (called at most once per manifest here).
    :param then: read only while a requirement is unmet, so it may fetch lazily.
    """
    scope = precheck(policy, ref)
    want = intended(ref)
    requirements = scope.requirements
    results: dict[int, Judgement] = {
        i: r.judge(want, (), {}) for i, r in enumerate(requirements) if not r.needs_signatures
    }
    pending = [i for i, r in enumerate(requirements) if r.needs_signatures]
    gathered: list[Signature] = []
    notes: list[str] = []
    manifests: dict[Digest, bytes] = {}
    seen = [top]
    chain = iter(then)
    doc: Document | None = top
    while pending and doc is not None:
        found = find(doc)
        gathered.extend(found.signatures)
        notes.extend(found.notes)
        manifests[doc.digest] = doc.raw
        for i in pending:
            results[i] = requirements[i].judge(want, gathered, manifests)
        pending = [i for i in pending if not results[i].met]
        doc = next(chain, None) if pending else None
        if doc is not None:
            seen.append(doc)
    failures = [
        _failure(i, r, results.get(i, Judgement(False)), notes)
        for i, r in enumerate(requirements) if not results.get(i, Judgement(False)).met
    ]
    if failures:
        raise _refuse(policy, scope, ref, top.digest, failures)
    return Verdict(
        reference=ref, digest=top.digest,
        images=tuple(d.digest for d in seen if isinstance(d, Manifest)),
        policy=policy.source, scope=scope.name,
        met=tuple(Met(r.describe(), r.type, results[i].accepted)
                  for i, r in enumerate(requirements)),
        where=scope.describe() if policy.transports else "",
    )


__all__ = ["Document", "Found", "Met", "Verdict", "judge", "precheck"]
