"""``tank.sync``: mirror whole repositories (their tags, chosen by pattern) into another registry
or into a directory of OCI layouts, as ``skopeo sync`` does; and ``copy --all-tags``.

A sync file is TOML (read with :mod:`tomllib`)::

    [[sync]]
    source = "ghcr.io/owner/app"          # a repository
    destination = "mirror.local:5000/app" # a repository, or oci:DIR (one layout per repository)
    tags = ["v1.*", "latest"]             # shell patterns (fnmatch); default: every tag
    all-platforms = true                  # whole indexes (default: this host's platform)

Invariants: every tag is one :func:`tank.copy`, so everything a copy guarantees holds per tag
(digests preserved, present blobs skipped, mounts, resumption); a second run of a finished sync
transfers nothing (each tag costs a ``HEAD`` at either end). Tags that hold what is attached
to an image (cosign's ``sha256-<hex>.sig``/``.att``/``.sbom``, the referrers tag schema's
``sha256-<hex>``) are not images of their own: they are skipped, and ``signatures=`` /
``referrers=`` carry them with the image they belong to. Tags are copied in the source's
order; the first failure stops the sync (what was copied stays). Into ``oci:DIR`` each
repository becomes the layout ``DIR/REPOSITORY`` holding every tag by name.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tank._copy import CopyCallback, CopyResult, copy
from tank.auth.credentials import CredentialsArg
from tank.config import Config
from tank.config import load as load_config
from tank.errors import ConfigError, InvalidReference
from tank.policy.lookup import PolicyArg, load_policy
from tank.reference import parse as parse_reference
from tank.registry import Client
from tank.registry.referrers import is_attachment_tag
from tank.retry import DEFAULT_RETRY, RetryPolicy
from tank.store import Store
from tank.transport import Transport


@dataclass(frozen=True)
class SyncEntry:
    """One ``[[sync]]`` table: a source repository, a destination, tag patterns."""

    source: str
    destination: str
    tags: tuple[str, ...] = ("*",)
    all_platforms: bool = False


def load_sync_file(path: str | os.PathLike[str]) -> list[SyncEntry]:
    """Read a sync file (see the module); :class:`~tank.errors.ConfigError` naming the file and
    the entry when it is not one."""
    where = Path(path)
    try:
        doc = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the sync file: {exc}") from None
    tables = doc.get("sync")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{where}: no [[sync]] entries")
    out = []
    for i, table in enumerate(tables, 1):
        out.append(_entry(table, f"{where}: [[sync]] entry {i}"))
    return out


def _entry(table: Any, where: str) -> SyncEntry:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = set(table) - {"source", "destination", "tags", "all-platforms"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    source, destination = table.get("source"), table.get("destination")
    if not isinstance(source, str) or not isinstance(destination, str):
        raise ConfigError(f"{where}: source and destination must be strings")
    tags = table.get("tags", ["*"])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"{where}: tags must be a list of patterns")
    whole = table.get("all-platforms", False)
    if not isinstance(whole, bool):
        raise ConfigError(f"{where}: all-platforms must be true or false")
    return SyncEntry(source.removeprefix("docker://"), destination, tuple(tags), whole)


def _repository(text: str, what: str) -> tuple[str, str]:
    """``(registry, repository)`` of a repository reference (a tag or digest is refused)."""
    name = text.removeprefix("docker://")
    ref = parse_reference(name)
    if "@" in name or ":" in name.rsplit("/", 1)[-1]:
        raise InvalidReference(text, f"the {what} of --all-tags or a sync is a repository, "
                                     "without a tag or digest")
    return ref.registry, ref.repository


def copy_all_tags(
    source: str,
    destination: str,
    *,
    patterns: Sequence[str] = ("*",),
    all_platforms: bool = False,
    jobs: int | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    source_credentials: CredentialsArg = None,
    dest_credentials: CredentialsArg = None,
    progress: CopyCallback | None = None,
    on_tag: Callable[[CopyResult], None] | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    config: Config | None = None,
    policy: PolicyArg = None,
    signatures: bool = False,
    referrers: bool = False,
) -> list[CopyResult]:
    """Copy every tag of the repository ``source`` matching ``patterns`` to ``destination``
    (a repository, or ``oci:DIR``: the layout ``DIR/REPOSITORY``); one result per tag, each
    also handed to ``on_tag`` as it is done."""
    registry, repository = _repository(source, "source")
    cfg = config if config is not None else load_config()
    policy = load_policy(policy, config=cfg)  # once, and a bad file before any transfer
    retry_policy = retry or DEFAULT_RETRY
    t = transport or cfg.transport(pool_size=max(8, 2 * (jobs or cfg.jobs or 4)))
    store = cache if isinstance(cache, Store) else Store(cache)
    client = Client(registry, credentials=source_credentials, transport=t, retry=retry_policy,
                    config=cfg)
    tags = [tag for tag in client.repository(repository).tags()
            if any(fnmatch.fnmatchcase(tag, p) for p in patterns)
            and not is_attachment_tag(tag)]  # they come with their image (signatures=...)
    if destination.startswith("oci:"):
        base = destination[len("oci:"):].rstrip("/")
        target = f"oci:{base}/{repository}"
    else:
        dst_registry, dst_repository = _repository(destination, "destination")
        target = f"{dst_registry}/{dst_repository}"
    results = []
    for tag in tags:
        result = copy(
            f"{registry}/{repository}:{tag}", f"{target}:{tag}", all_platforms=all_platforms,
            jobs=jobs, cache=store, source_credentials=source_credentials,
            dest_credentials=dest_credentials, progress=progress, retry=retry_policy,
            transport=t, config=cfg, policy=policy, signatures=signatures, referrers=referrers,
        )
        results.append(result)
        if on_tag is not None:
            on_tag(result)
    return results


def sync(
    entries: str | os.PathLike[str] | Sequence[SyncEntry],
    *,
    all_platforms: bool | None = None,
    jobs: int | None = None,
    cache: str | os.PathLike[str] | Store | None = None,
    source_credentials: CredentialsArg = None,
    dest_credentials: CredentialsArg = None,
    progress: CopyCallback | None = None,
    on_tag: Callable[[CopyResult], None] | None = None,
    retry: RetryPolicy | None = None,
    transport: Transport | None = None,
    config: Config | None = None,
    policy: PolicyArg = None,
    signatures: bool = False,
    referrers: bool = False,
) -> list[CopyResult]:
    """Mirror what a sync file (or a list of :class:`SyncEntry`) names; one result per tag.

    ``all_platforms`` overrides each entry's ``all-platforms`` when given. Credentials are
    credential sources (a :class:`~tank.CredentialStore`) or ``None``: one sync reaches several
    registries.
    """
    chosen = load_sync_file(entries) if isinstance(entries, str | os.PathLike) else list(entries)
    cfg = config if config is not None else load_config()
    policy = load_policy(policy, config=cfg)
    out: list[CopyResult] = []
    for entry in chosen:
        out += copy_all_tags(
            entry.source, entry.destination, patterns=entry.tags,
            all_platforms=entry.all_platforms if all_platforms is None else all_platforms,
            jobs=jobs, cache=cache, source_credentials=source_credentials,
            dest_credentials=dest_credentials, progress=progress, on_tag=on_tag, retry=retry,
            transport=transport, config=cfg, policy=policy, signatures=signatures,
            referrers=referrers,
        )
    return out


__all__ = ["SyncEntry", "copy_all_tags", "load_sync_file", "sync"]
