"""``policy.json``, the containers signature-policy format, read strictly as containers/image does.

::

    {"default": [{"type": "reject"}],
     "transports": {"docker": {
         "registry.example/app": [{"type": "sigstoreSigned", "keyPath": "/etc/keys/app.pub",
                                   "signedIdentity": {"type": "matchRepository"}}],
         "docker.io": [{"type": "insecureAcceptAnything"}]}}}

Reading refuses (:class:`~tank.errors.PolicyError`, exit 2, before anything is fetched) what
containers/image refuses: JSON that is not valid or has a duplicate key, a missing ``default``,
an empty list of requirements, an unknown key anywhere, an unknown requirement or
``signedIdentity`` type, a key source other than exactly one of ``keyPath``/``keyPaths``/
``keyData``/``keyDatas`` (or keyless ``fulcio``/``pki``), ``keyData`` that is not base64, an
``exactReference`` without tag or digest, a ``remapIdentity`` prefix that is not a name.

Which requirements apply (:meth:`Policy.scope_for`): tank pulls over the ``docker`` transport,
whose scopes are looked up as containers/image does, most specific first: the reference
(``docker.io/library/alpine:latest``, or ``…@sha256:…`` by digest), the repository, each parent
namespace up to the host (``docker.io/library``, ``docker.io``), the host's wildcard domains
without port (``*.io``), then the transport's ``""`` scope, then ``default``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tank import _json
from tank.errors import InvalidReference, PolicyError
from tank.policy.identity import (
    ExactReference,
    ExactRepository,
    IdentityMatch,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    intended,
    parse_named,
    valid_prefix,
)
from tank.policy.requirements import (
    InsecureAcceptAnything,
    KeySource,
    Reject,
    Requirement,
    SigstoreSigned,
    Unverifiable,
)
from tank.reference import Reference

#: the transport tank pulls over (skopeo's ``docker://``)
TRANSPORT: Final = "docker"
#: a policy file longer than this is refused
MAX_POLICY_SIZE: Final = 4 * 1024 * 1024

_SIGSTORE_KEYS: Final = ("keyPath", "keyPaths", "keyData", "keyDatas")
_KEYLESS: Final = ("fulcio", "pki")
_REKOR: Final = ("rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
                 "rekorPublicKeyDatas")
_KEY_TYPES: Final = frozenset({"GPGKeys", "signedByGPGKeys", "X509Certificates",
                               "signedByX509CAs"})


class _Bad(Exception):
    """A reason the document is not a policy (turned into a PolicyError with the source)."""


def _fields(obj: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not a JSON object")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise _Bad(f"{where}: unknown key {unknown[0]!r}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise _Bad(f"{where}: {missing[0]!r} is missing")
    return obj


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where} is not a string")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _Bad(f"{where} is not a non-empty list of strings")
    return [_str(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _base64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(_str(value, where), validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{where} is not base64") from None


def _identity(obj: Any, where: str) -> IdentityMatch:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not a JSON object")
    kind = obj.get("type")
    simple: dict[str, type[IdentityMatch]] = {
        "matchExact": MatchExact, "matchRepoDigestOrExact": MatchRepoDigestOrExact,
        "matchRepository": MatchRepository,
    }
    if kind in simple:
        _fields(obj, where, ("type",))
        return simple[kind]()
    if kind == "exactReference":
        text = _str(_fields(obj, where, ("type", "dockerReference"))["dockerReference"],
                    f"{where}.dockerReference")
        try:
            named = parse_named(text)
        except InvalidReference as exc:
            raise _Bad(f"{where}.dockerReference: {exc.reason}") from None
        if named.name_only:
            raise _Bad(f"{where}.dockerReference {text!r} has neither a tag nor a digest")
        return ExactReference(text)
    if kind == "exactRepository":
        text = _str(_fields(obj, where, ("type", "dockerRepository"))["dockerRepository"],
                    f"{where}.dockerRepository")
        try:
            parse_named(text)
        except InvalidReference as exc:
            raise _Bad(f"{where}.dockerRepository: {exc.reason}") from None
        return ExactRepository(text)
    if kind == "remapIdentity":
        spec = _fields(obj, where, ("type", "prefix", "signedPrefix"))
        prefix = _str(spec["prefix"], f"{where}.prefix")
        signed = _str(spec["signedPrefix"], f"{where}.signedPrefix")
        for name, value in (("prefix", prefix), ("signedPrefix", signed)):
            if not valid_prefix(value):
                raise _Bad(f"{where}.{name} {value!r} is not a host[:port][/path] name")
        return RemapIdentity(prefix, signed)
    raise _Bad(f"{where}: unknown signedIdentity type {str(kind)[:80]!r}")


def _sigstore(obj: dict[str, Any], where: str) -> Requirement:
    spec = _fields(obj, where, ("type",),
                   (*_SIGSTORE_KEYS, *_KEYLESS, *_REKOR, "signedIdentity"))
    given = [k for k in (*_SIGSTORE_KEYS, *_KEYLESS) if k in spec]
    if len(given) != 1:
        raise _Bad(f"{where}: exactly one of {', '.join((*_SIGSTORE_KEYS, *_KEYLESS))} must be "
                   f"set ({'none is' if not given else ', '.join(given) + ' are'})")
    identity = (_identity(spec["signedIdentity"], f"{where}.signedIdentity")
                if "signedIdentity" in spec else MatchRepoDigestOrExact())
    kind = given[0]
    sources: tuple[KeySource, ...]
    if kind in _KEYLESS or any(k in spec for k in _REKOR):
        if kind in _KEYLESS and not isinstance(spec[kind], dict):
            raise _Bad(f"{where}.{kind} is not a JSON object")
        what = "keyless (Fulcio) signatures" if kind == "fulcio" else (
            "signatures under a PKI" if kind == "pki" else "Rekor inclusion")
        return Unverifiable(dict(spec), f"tank does not verify {what} yet (sigstoreSigned with "
                                        "keyPath/keyData only)")
    if kind == "keyPath":
        sources = (KeySource(path=_str(spec[kind], f"{where}.keyPath")),)
    elif kind == "keyPaths":
        sources = tuple(KeySource(path=p) for p in _strings(spec[kind], f"{where}.keyPaths"))
    elif kind == "keyData":
        sources = (KeySource(pem=_base64(spec[kind], f"{where}.keyData")),)
    else:
        if not isinstance(spec[kind], list) or not spec[kind]:
            raise _Bad(f"{where}.keyDatas is not a non-empty list")
        sources = tuple(KeySource(pem=_base64(v, f"{where}.keyDatas[{i}]"))
                        for i, v in enumerate(spec[kind]))
    return SigstoreSigned(sources, identity, spelled=dict(spec))


def _signed_by(obj: dict[str, Any], where: str) -> Requirement:
    spec = _fields(obj, where, ("type", "keyType"),
                   ("keyPath", "keyPaths", "keyData", "signedIdentity"))
    if spec["keyType"] not in _KEY_TYPES:
        raise _Bad(f"{where}.keyType {str(spec['keyType'])[:80]!r} is not one of "
                   f"{', '.join(sorted(_KEY_TYPES))}")
    given = [k for k in ("keyPath", "keyPaths", "keyData") if k in spec]
    if len(given) != 1:
        raise _Bad(f"{where}: exactly one of keyPath, keyPaths and keyData must be set")
    if "signedIdentity" in spec:
        _identity(spec["signedIdentity"], f"{where}.signedIdentity")
    return Unverifiable(dict(spec), "tank does not verify GPG (simple signing) signatures; "
                                    "signedBy cannot be met")


def _requirement(obj: Any, where: str) -> Requirement:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not a JSON object")
    kind = obj.get("type")
    if kind == "insecureAcceptAnything":
        _fields(obj, where, ("type",))
        return InsecureAcceptAnything()
    if kind == "reject":
        _fields(obj, where, ("type",))
        return Reject()
    if kind == "sigstoreSigned":
        return _sigstore(obj, where)
    if kind == "signedBy":
        return _signed_by(obj, where)
    if kind == "signedBaseLayer":
        spec = _fields(obj, where, ("type", "baseLayerIdentity"))
        _identity(spec["baseLayerIdentity"], f"{where}.baseLayerIdentity")
        return Unverifiable(dict(spec), "signedBaseLayer is not implemented (by containers/image "
                                        "either): it is never met")
    raise _Bad(f"{where}: unknown requirement type {str(kind)[:80]!r}")


def _requirements(obj: Any, where: str) -> tuple[Requirement, ...]:
    if not isinstance(obj, list):
        raise _Bad(f"{where} is not a list of requirements")
    if not obj:
        raise _Bad(f"{where}: the list of requirements must not be empty")
    return tuple(_requirement(r, f"{where}[{i}]") for i, r in enumerate(obj))


@dataclass(frozen=True)
class Scope:
    """The requirements that apply to an image, and the scope they came from.

    :ivar name: the scope's key (``""``: the transport's default; ``None``: the policy's
        ``default``).
    """

    name: str | None
    requirements: tuple[Requirement, ...]

    @property
    def needs_signatures(self) -> bool:
        """Whether judging needs the image's signatures."""
        return any(r.needs_signatures for r in self.requirements)

    def describe(self) -> str:
        """``scope 'docker.io/library'`` or ``the default``."""
        return "the default" if self.name is None else f"scope {self.name!r}"


def namespaces(ref: Reference) -> list[str]:
    """The scopes a reference falls under, most specific first, as containers/image lists them:
    its identity, its repository, each parent namespace up to the host, the wildcard domains."""
    want = intended(ref)
    out = [str(want)]
    name = want.name
    while True:
        out.append(name)
        if "/" not in name:
            break
        name = name.rpartition("/")[0]
    host = name.partition(":")[0]
    while "." in host:
        host = host.partition(".")[2]
        out.append(f"*.{host}")
    return out


@dataclass(frozen=True)
class Policy:
    """A parsed containers signature policy (see the module).

    :ivar default: the ``default`` requirements.
    :ivar transports: transport → scope → requirements (only ``docker`` is used by tank).
    :ivar source: where it came from: a file's path, ``--verify-key``, or a description.
    """

    default: tuple[Requirement, ...]
    transports: Mapping[str, Mapping[str, tuple[Requirement, ...]]] = field(default_factory=dict)
    source: str = "<policy>"

    @classmethod
    def from_json(cls, doc: Any, *, source: str = "<policy>") -> Policy:
        """A policy from a parsed JSON document; :class:`~tank.errors.PolicyError` when it is
        not one (see the module)."""
        path = source if source != "<policy>" else None
        try:
            spec = _fields(doc, "the policy", ("default",), ("transports",))
            default = _requirements(spec["default"], "default")
            transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
            raw = spec.get("transports", {})
            if not isinstance(raw, dict):
                raise _Bad("transports is not a JSON object")
            for transport, scopes in raw.items():
                if not isinstance(scopes, dict):
                    raise _Bad(f"transports.{transport} is not a JSON object")
                transports[transport] = {
                    scope: _requirements(reqs, f"transports.{transport}[{scope!r}]")
                    for scope, reqs in scopes.items()
                }
        except _Bad as exc:
            raise PolicyError(f"not a containers policy: {exc}", path=path) from None
        return cls(default, transports, source)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<policy>") -> Policy:
        """A policy from ``policy.json`` bytes (strict JSON: no duplicate keys)."""
        try:
            doc = _json.loads(data)
        except ValueError as exc:
            path = source if source != "<policy>" else None
            raise PolicyError(f"not valid JSON: {exc}", path=path) from None
        return cls.from_json(doc, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """The policy in the file ``path``."""
        where = str(path)
        try:
            with Path(path).open("rb") as f:
                data = f.read(MAX_POLICY_SIZE + 1)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PolicyError(f"cannot read the policy: {reason}", path=where) from None
        if len(data) > MAX_POLICY_SIZE:
            raise PolicyError(f"over {MAX_POLICY_SIZE} bytes: not a policy", path=where)
        return cls.from_bytes(data, source=where)

    @classmethod
    def accept_anything(cls) -> Policy:
        """``{"default": [{"type": "insecureAcceptAnything"}]}``: what tank does without one."""
        return cls((InsecureAcceptAnything(),), {}, "<accept anything>")

    @classmethod
    def for_keys(
        cls, *keys: str | os.PathLike[str], identity: IdentityMatch | None = None
    ) -> Policy:
        """What ``--verify-key KEY.pub`` means: every image must carry a sigstore signature by
        one of ``keys`` (PEM files), for its own repository (``matchRepository``, since cosign
        signs the repository without a tag; pass ``identity`` for another rule)."""
        if not keys:
            raise ValueError("for_keys needs at least one key")
        sources = tuple(KeySource(path=os.fspath(k)) for k in keys)
        requirement = SigstoreSigned(sources, identity or MatchRepository())
        names = ", ".join(os.fspath(k) for k in keys)
        return cls((requirement,), {}, f"--verify-key {names}")

    def scope_for(self, ref: Reference) -> Scope:
        """The requirements that apply to pulling ``ref`` (see the module)."""
        scopes = self.transports.get(TRANSPORT)
        if scopes:
            for name in namespaces(ref):
                if name in scopes:
                    return Scope(name, scopes[name])
            if "" in scopes:
                return Scope("", scopes[""])
        return Scope(None, self.default)

    def to_json(self) -> dict[str, Any]:
        """The policy as ``policy.json`` (requirements as written)."""
        out: dict[str, Any] = {"default": [r.to_json() for r in self.default]}
        if self.transports:
            out["transports"] = {
                t: {s: [r.to_json() for r in reqs] for s, reqs in scopes.items()}
                for t, scopes in self.transports.items()
            }
        return out


__all__ = ["MAX_POLICY_SIZE", "TRANSPORT", "Policy", "Scope", "namespaces"]
