"""``signedIdentity``: which image identities a signature may claim, as containers/image decides.

A signature names the image it is for (its payload's ``critical.identity.docker-reference``); the
policy's ``signedIdentity`` says which names it accepts for the image being pulled (the
*intended* reference, as the user wrote it, normalised: ``alpine`` is
``docker.io/library/alpine:latest``). The six types, with containers/image's exact rules:

- ``matchExact``: both carry a tag (or a digest) and are equal. cosign writes no tag, so a
  cosign signature never matches.
- ``matchRepoDigestOrExact`` (the default): a pull by tag needs the same ``name:tag``; a pull by
  digest needs the same repository (any tag). A signature without tag or digest never matches,
  so cosign signatures need one of the repository matchers below.
- ``matchRepository``: the same repository, whatever the tag.
- ``exactReference`` (``dockerReference``): the signature names exactly this tagged or
  digested reference.
- ``exactRepository`` (``dockerRepository``): the signature names this repository.
- ``remapIdentity`` (``prefix``, ``signedPrefix``): the intended reference with ``prefix``
  replaced by ``signedPrefix`` (a mirror's name for images signed under the upstream name), then
  ``matchRepoDigestOrExact``.

A pulled reference with both a tag and a digest is judged as its digest (the manifest is fetched
by digest); containers/image refuses such references outright. Names are compared normalised
(``index.docker.io/library/alpine`` is ``docker.io/library/alpine``); a signed identity that does
not parse matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from tank.errors import InvalidReference
from tank.reference import _DOMAIN, _PATH, Reference, parse

#: the default ``signedIdentity`` when a requirement names none
DEFAULT_IDENTITY: Final = "matchRepoDigestOrExact"


@dataclass(frozen=True)
class Named:
    """A reference as a signature or a policy writes it: ``name`` and, when written, a tag
    and/or a digest (a name alone is *name-only*, which some matchers refuse)."""

    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name_only(self) -> bool:
        """Neither tag nor digest."""
        return self.tag is None and self.digest is None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else ""
        )


def parse_named(text: str) -> Named:
    """``text`` normalised as ``ParseNormalizedNamed`` does, keeping whether it had a tag.

    :raises InvalidReference: not a reference.
    """
    ref = parse(text)
    rest = text.partition("@")[0]
    has_tag = ":" in rest[rest.rfind("/") + 1:]
    return Named(ref.name, ref.tag if has_tag else None, str(ref.digest) if ref.digest else None)


def intended(ref: Reference) -> Named:
    """The identity a pull of ``ref`` stands for: its digest when it has one, else its tag."""
    if ref.digest is not None:
        return Named(ref.name, None, str(ref.digest))
    return Named(ref.name, ref.tag or "latest", None)


def _signed(text: str) -> Named | None:
    try:
        return parse_named(text)
    except InvalidReference:
        return None


def _repo_digest_or_exact(want: Named, signed: Named) -> bool:
    if signed.name_only:
        return False
    if want.tag is not None:
        return str(signed) == str(want)
    return signed.name == want.name


class IdentityMatch:
    """One ``signedIdentity`` rule (see the module)."""

    #: the ``type`` it is spelled with in ``policy.json``
    type: str = ""

    def matches(self, want: Named, signed_identity: str) -> bool:
        """Whether a signature claiming ``signed_identity`` is accepted for the image ``want``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The rule in a few words, for messages."""
        return self.type

    def to_json(self) -> dict[str, Any]:
        """The rule as ``policy.json`` spells it."""
        return {"type": self.type}


class MatchExact(IdentityMatch):
    """``matchExact``: the same tagged (or digested) reference."""

    type = "matchExact"

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed = _signed(signed_identity)
        if signed is None or signed.name_only or want.name_only:
            return False
        return str(signed) == str(want)


class MatchRepoDigestOrExact(IdentityMatch):
    """``matchRepoDigestOrExact``: by tag, the same ``name:tag``; by digest, the same repository."""

    type = "matchRepoDigestOrExact"

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed = _signed(signed_identity)
        return signed is not None and _repo_digest_or_exact(want, signed)


class MatchRepository(IdentityMatch):
    """``matchRepository``: the same repository, any tag (cosign's repository-only identity)."""

    type = "matchRepository"

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed = _signed(signed_identity)
        return signed is not None and signed.name == want.name


@dataclass(frozen=True, eq=False)
class ExactReference(IdentityMatch):
    """``exactReference``: the signature names exactly ``docker_reference``."""

    docker_reference: str
    type = "exactReference"

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed, expected = _signed(signed_identity), _signed(self.docker_reference)
        if signed is None or expected is None or signed.name_only or expected.name_only:
            return False
        return str(signed) == str(expected)

    def describe(self) -> str:
        """See :class:`IdentityMatch`."""
        return f"exactReference {self.docker_reference}"

    def to_json(self) -> dict[str, Any]:
        """See :class:`IdentityMatch`."""
        return {"type": self.type, "dockerReference": self.docker_reference}


@dataclass(frozen=True, eq=False)
class ExactRepository(IdentityMatch):
    """``exactRepository``: the signature names the repository ``docker_repository``."""

    docker_repository: str
    type = "exactRepository"

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed, expected = _signed(signed_identity), _signed(self.docker_repository)
        return signed is not None and expected is not None and signed.name == expected.name

    def describe(self) -> str:
        """See :class:`IdentityMatch`."""
        return f"exactRepository {self.docker_repository}"

    def to_json(self) -> dict[str, Any]:
        """See :class:`IdentityMatch`."""
        return {"type": self.type, "dockerRepository": self.docker_repository}


_PREFIX_NAME = re.compile(rf"(?:{_DOMAIN.pattern})/(?:{_PATH.pattern})")


def valid_prefix(text: str) -> bool:
    """Whether ``text`` may be a ``remapIdentity`` prefix: a ``host[:port]``, or a
    ``host[:port]/path`` name (containers/image's check, no stricter)."""
    return bool(_DOMAIN.fullmatch(text) or _PREFIX_NAME.fullmatch(text))


@dataclass(frozen=True, eq=False)
class RemapIdentity(IdentityMatch):
    """``remapIdentity``: ``prefix`` becomes ``signed_prefix``, then matchRepoDigestOrExact."""

    prefix: str
    signed_prefix: str
    type = "remapIdentity"

    def remap(self, want: Named) -> Named | None:
        """``want`` with the prefix replaced (unchanged when it does not start with it);
        ``None`` when the result is not a reference."""
        name = want.name
        if not (name == self.prefix or name.startswith(self.prefix + "/")):
            return want
        text = str(want).replace(self.prefix, self.signed_prefix, 1)
        remapped = _signed(text)
        # containers/image parses the result without normalising it: it must be canonical
        if remapped is None or str(remapped) != text:
            return None
        return remapped

    def matches(self, want: Named, signed_identity: str) -> bool:
        """See :class:`IdentityMatch`."""
        signed, remapped = _signed(signed_identity), self.remap(want)
        return signed is not None and remapped is not None and _repo_digest_or_exact(
            remapped, signed
        )

    def describe(self) -> str:
        """See :class:`IdentityMatch`."""
        return f"remapIdentity {self.prefix} -> {self.signed_prefix}"

    def to_json(self) -> dict[str, Any]:
        """See :class:`IdentityMatch`."""
        return {"type": self.type, "prefix": self.prefix, "signedPrefix": self.signed_prefix}


__all__ = [
    "DEFAULT_IDENTITY",
    "ExactReference",
    "ExactRepository",
    "IdentityMatch",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "Named",
    "RemapIdentity",
    "intended",
    "parse_named",
    "valid_prefix",
]
