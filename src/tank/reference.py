"""Image references, parsed and normalised exactly as docker/distribution does.

>>> r = parse("alpine")
>>> str(r), r.registry, r.repository, r.tag
('docker.io/library/alpine:latest', 'registry-1.docker.io', 'library/alpine', 'latest')
>>> parse("localhost:5000/team/app@sha256:" + "0" * 64).fetch_reference[:7]
'sha256:'

Rules (distribution's ``reference`` package, ``ParseNormalizedNamed``):

- The first ``/``-separated component is a registry only when it contains a ``.`` or a ``:``, is
  ``localhost``, or is not all lower case; otherwise the whole name is a Docker Hub repository.
- ``docker.io`` and ``index.docker.io`` are Docker Hub, whose API host is ``registry-1.docker.io``;
  a one-component Hub name gets ``library/``.
- Repository components are lower-case alphanumerics joined by ``.``, ``_``, ``__`` or dashes; the
  whole name (registry included) is at most 255 characters; upper case in the repository is
  refused; a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a name of 64 hex characters alone is
  refused (it looks like an image ID).
- ``name:tag@digest`` keeps both; the digest wins for fetching. With neither, the tag is
  ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tank.digest import Digest
from tank.errors import InvalidDigest, InvalidReference

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API: Final = "registry-1.docker.io"
#: the names a reference may give Docker Hub by; :func:`parse` makes each :data:`DOCKER_HUB`
DOCKER_HUB_ALIASES: Final = frozenset({DOCKER_HUB, "index.docker.io"})
#: every host name Docker Hub answers to: its aliases and its API host
DOCKER_HUB_NAMES: Final = DOCKER_HUB_ALIASES | {DOCKER_HUB_API}
NAME_TOTAL_LENGTH_MAX: Final = 255
DEFAULT_TAG: Final = "latest"

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_ID = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference.

    ``domain`` is the registry as written and normalised (``docker.io`` for Docker Hub);
    ``registry`` is the host the API is reached at (``registry-1.docker.io`` for Docker Hub).
    """

    domain: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def registry(self) -> str:
        """The API host (and port) to talk to."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def fetch_reference(self) -> str:
        """What to put after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """``domain/repository`` without tag or digest."""
        return f"{self.domain}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def api_host(registry: str) -> str:
    """The host ``registry``'s API is reached at: :data:`DOCKER_HUB_API` for one of the
    :data:`DOCKER_HUB_ALIASES` (compared as written), else ``registry`` unchanged.

    >>> api_host("docker.io"), api_host("index.docker.io"), api_host("ghcr.io")
    ('registry-1.docker.io', 'registry-1.docker.io', 'ghcr.io')
    """
    return DOCKER_HUB_API if registry in DOCKER_HUB_ALIASES else registry


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if (
        not slash
        or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first)
    ):
        return DOCKER_HUB, name
    return first, rest


#: what skopeo's other transports hold, for the message when one is given as a reference
_TRANSPORTS: Final = {
    "oci": "an OCI image layout",
    "oci-archive": "an OCI layout archive",
    "docker-archive": "a docker-archive tar",
    "dir": "a directory of blobs (skopeo's dir: transport)",
    "containers-storage": "an image in podman's or CRI-O's storage",
    "docker-daemon": "an image in a Docker engine",
    "ostree": "an OSTree repository",
    "sif": "a Singularity image",
    "tarball": "a tarball",
}
_TRANSPORT = re.compile(r"(?P<name>[a-z-]+):(?!\d+(?:/|$))")
#: skopeo's spelling of a registry reference: ``docker://REF``
DOCKER_TRANSPORT: Final = "docker://"


def _other_transport(text: str) -> InvalidReference | None:
    """The error for ``oci:DIR`` and the like given where a registry reference is expected."""
    match = _TRANSPORT.match(text)
    if match is None or match["name"] not in _TRANSPORTS:
        return None
    name = match["name"]
    what = _TRANSPORTS[name]
    if name in ("oci", "oci-archive", "docker-archive"):
        hint = (f"{text} names {what}, not a registry image: `tank copy {text} DEST` copies "
                f"from it, `tank push {text} REF` pushes it, and `tank pull REF -o {name}:…` "
                "writes one")
    else:
        hint = (f"{text} names {what}, which tank does not read: save it as a docker-archive "
                "or an OCI layout first (docker save, podman save, skopeo copy)")
    return InvalidReference(text, hint)


def parse(text: str) -> Reference:
    """Parse an image reference; raise :class:`InvalidReference` saying why it is invalid.

    ``docker://REF`` (skopeo's spelling) is ``REF``; another transport's name (``oci:DIR``,
    ``docker-archive:FILE``, …) is refused with a message naming the command that takes it.
    """
    if not isinstance(text, str):
        raise InvalidReference(repr(text), "not a string")
    if text.startswith(DOCKER_TRANSPORT):
        text = text[len(DOCKER_TRANSPORT):]
    if not text:
        raise InvalidReference(text, "empty reference")
    other = _other_transport(text)
    if other is not None:
        raise other
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(text, "contains white space")
    if _ID.fullmatch(text):
        raise InvalidReference(
            text, "a 64-character hex string is an image ID, not a repository name"
        )

    rest, at, digest_text = text.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise InvalidReference(text, exc.reason) from None

    domain, remainder = _split_domain(rest)
    # A tag is whatever follows the last ':' that comes after the last '/'.
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    path = remainder
    if colon > last_slash:
        path, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(
                text,
                f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128; "
                "not starting with '.' or '-')",
            )

    if domain in DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    elif not _DOMAIN.fullmatch(domain):
        raise InvalidReference(text, f"invalid registry host {domain!r}")

    if not path:
        raise InvalidReference(text, "missing repository name")
    if path.lower() != path:
        raise InvalidReference(text, "repository name must be lowercase")
    if not _PATH.fullmatch(path):
        raise InvalidReference(
            text,
            f"invalid repository name {path!r} (lower-case letters and digits, separated by "
            "'.', '_', '__', '-' or '/')",
        )
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            text, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain=domain, repository=path, tag=tag, digest=digest)


__all__ = [
    "DEFAULT_TAG",
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_API",
    "DOCKER_HUB_NAMES",
    "Reference",
    "api_host",
    "parse",
]
