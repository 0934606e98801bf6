"""Who produced an image: the containers signature policy, and sigstore (cosign) signatures.

tank verifies *what* it pulls (every byte against its digest); this package decides whether to
trust *who* made it, as skopeo and podman do, from the same ``policy.json``::

    from tank.policy import Policy, verify

    verdict = verify("registry.example/app:1.2", policy=Policy.for_keys("cosign.pub"))
    [(s.key.fingerprint, s.payload.identity) for s in verdict.signatures]

    tank.pull("registry.example/app:1.2", policy="/etc/containers/policy.json")

Modules, lowest first: :mod:`~tank.policy.identity` (``signedIdentity``),
:mod:`~tank.policy.keys` (public keys, ``cryptography``), :mod:`~tank.policy.sigstore` (a
signature and its payload, checked), :mod:`~tank.policy.requirements`,
:mod:`~tank.policy.document` (``policy.json``, scopes), :mod:`~tank.policy.lookup` (which file),
:mod:`~tank.policy.judge` (a verdict, no network), :mod:`~tank.policy.check` (signatures from
the registry, a pull's gate, :func:`verify`).

Invariants:

- Nothing here prints, and nothing but :mod:`~tank.policy.check` talks to a registry (through a
  :class:`~tank.Repository`, imported only when used): parsing and judging a policy never import
  the network layers.
- A policy that cannot be read, or names what containers/image does not know, is a
  :class:`~tank.errors.PolicyError` (exit 2) before anything is fetched. A requirement tank reads
  but cannot verify yet (GPG ``signedBy``, keyless Fulcio/Rekor ``sigstoreSigned``) is never met:
  it refuses, saying so; it never passes silently.
- Nothing of a signature's payload is believed before its signature verified with a trusted key.
- A refusal (:class:`~tank.errors.PolicyRefused`, exit 7) names the scope, each unmet
  requirement, and why each signature looked at was refused.
- Without any policy file, every image is accepted and nothing is said, as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tank.policy.document import Policy, Scope, namespaces
from tank.policy.identity import (
    ExactReference,
    ExactRepository,
    IdentityMatch,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
)
from tank.policy.judge import Found, Met, Verdict, judge, precheck
from tank.policy.lookup import SYSTEM_POLICY, USER_POLICY, load_policy, policy_path
from tank.policy.requirements import (
    InsecureAcceptAnything,
    Reject,
    Requirement,
    SigstoreSigned,
    Unverifiable,
)
from tank.policy.sigstore import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    Accepted,
    Payload,
    Signature,
    parse_payload,
)

if TYPE_CHECKING:
    from tank.policy.check import Gate, enforce, find_signatures, gate, verify
    from tank.policy.keys import PublicKey
    from tank.registry.referrers import signature_tag

#: loaded on first use: the registry side, and ``cryptography``
_LAZY = {
    "verify": "tank.policy.check",
    "enforce": "tank.policy.check",
    "find_signatures": "tank.policy.check",
    "gate": "tank.policy.check",
    "Gate": "tank.policy.check",
    "PublicKey": "tank.policy.keys",
    "signature_tag": "tank.registry.referrers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tank.policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "SYSTEM_POLICY",
    "USER_POLICY",
    "Accepted",
    "ExactReference",
    "ExactRepository",
    "Found",
    "Gate",
    "IdentityMatch",
    "InsecureAcceptAnything",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "Met",
    "Payload",
    "Policy",
    "PublicKey",
    "Reject",
    "RemapIdentity",
    "Requirement",
    "Scope",
    "Signature",
    "SigstoreSigned",
    "Unverifiable",
    "Verdict",
    "enforce",
    "find_signatures",
    "gate",
    "judge",
    "load_policy",
    "namespaces",
    "parse_payload",
    "policy_path",
    "precheck",
    "signature_tag",
    "verify",
]
