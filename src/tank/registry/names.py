"""Checks on what a caller names: nothing from the caller reaches a URL unvalidated."""

from __future__ import annotations

import re

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


def _checked(value: str, grammar: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not grammar.fullmatch(value):
        raise InvalidReference(str(value), f"invalid {what}")
    return value


def repository_name(repository: str) -> str:
    """``repository`` checked against the distribution spec's name grammar."""
    return _checked(repository, _PATH, "repository name")


def manifest_reference(reference: str) -> str | Digest:
    """A tag, or a digest (parsed): what may follow ``/manifests/`` in a URL."""
    if isinstance(reference, str) and ":" in reference:
        try:
            return Digest.parse(reference)
        except InvalidDigest as exc:
            raise InvalidReference(reference, exc.reason) from None
    return _checked(reference, _TAG, "tag")


def tag_name(tag: str) -> str:
    """``tag`` checked against the tag grammar."""
    return _checked(tag, _TAG, "tag")


__all__ = ["manifest_reference", "registry_host", "repository_name", "tag_name"]
