"""Checks on what a caller names: nothing from the caller reaches a URL unvalidated."""

from __future__ import annotations

from tank.digest import Digest
from tank.errors import InvalidDigest, InvalidReference
from tank.reference import _DOMAIN, _PATH, _TAG, api_host


def registry_host(registry: str) -> str:
    """``registry`` as the API addresses it (Docker Hub's aliases become its API host); else
    :class:`~tank.errors.InvalidReference`."""
    if isinstance(registry, str) and api_host(registry) != registry:
        return api_host(registry)
    if not isinstance(registry, str) or not _DOMAIN.fullmatch(registry):
        raise InvalidReference(str(registry), "invalid registry host (expected host[:port])")
    return registry


def repository_name(repository: str) -> str:
    """``repository`` checked against the distribution spec's name grammar."""
    if not isinstance(repository, str) or not _PATH.fullmatch(repository):
        raise InvalidReference(str(repository), "invalid repository name")
    return repository


def manifest_reference(reference: str) -> str | Digest:
    """A tag, or a digest (parsed): what may follow ``/manifests/`` in a URL."""
    if isinstance(reference, str) and ":" in reference:
        try:
            return Digest.parse(reference)
        except InvalidDigest as exc:
            raise InvalidReference(reference, exc.reason) from None
    if not isinstance(reference, str) or not _TAG.fullmatch(reference):
        raise InvalidReference(str(reference), "invalid tag")
    return reference


def tag_name(tag: str) -> str:
    """``tag`` checked against the tag grammar."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidReference(str(tag), "invalid tag")
    return tag


__all__ = ["manifest_reference", "registry_host", "repository_name", "tag_name"]
