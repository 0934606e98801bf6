"""The write side: ``tank copy``, ``tank push``, ``tank sync``, ``tank tag``, ``tank delete``.

Invariants: stdout gets one summary line per image (or tag, for ``--all-tags`` and ``sync``) or
the ``--json`` document, only after the work succeeded; progress goes to stderr as one plain line
per blob and manifest (``-q``: none). Credentials: ``--src-creds``/``--dest-creds USER[:PASS]``
(a missing password is read from the terminal, else from stdin), otherwise the machine's
credential store for each registry. A refused push exits 4 and names the scope it lacked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import (
    cache_option,
    config_options,
    json_option,
    parse_creds,
    platform_option,
    quiet_option,
    registry_credentials,
    retries_option,
    retry_policy,
    session,
)
from tank.cli.output import clean, human_bytes, print_json
from tank.cli.trust import policy_options

if TYPE_CHECKING:
    from tank._copy import CopyEvent, CopyResult
    from tank.config import Config

COPY_EXAMPLES = """\b
Examples:
  tank copy ghcr.io/o/app:1.2 registry.local:5000/o/app:1.2
  tank copy docker://alpine docker://registry.local:5000/alpine --all-platforms
  tank copy alpine oci:./alpine-layout:3
  tank copy oci-archive:app.tar registry.local:5000/app:1
  tank copy --all-tags ghcr.io/o/app registry.local:5000/o/app
  tank copy alpine registry.local:5000/alpine --dest-creds ci

"""


def _read_creds(value: str | None, side: str) -> Any:
    """``USER[:PASS]`` as credentials (the password asked for when missing); else what the
    credential options chose (``--authfile``, ``--creds``, ``--no-creds``), else the store."""
    if value is None:
        return registry_credentials()
    return parse_creds(value, option=f"--{side}-creds")


def creds_options(f: Any) -> Any:
    """``--src-creds`` and ``--dest-creds``."""
    f = click.option("--dest-creds", metavar="USER[:PASS]",
                     help="Credentials for the destination registry (the password is read "
                          "from the terminal or stdin when omitted).")(f)
    return click.option("--src-creds", metavar="USER[:PASS]",
                        help="Credentials for the source registry.")(f)


class CopyProgress:
    """Plain lines on stderr, one per blob and manifest (thread-safe); nothing with ``-q``."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()

    def __call__(self, event: CopyEvent) -> None:
        """Take one event (from any thread)."""
        if self.quiet or event.kind in ("bytes", "uploading"):
            return
        size = human_bytes(event.size or 0)
        line = {
            "manifest": f"{event.what} {event.digest}",
            "downloaded": f"{event.what} {event.digest} {size} downloaded",
            "present": f"{event.what} {event.digest} present",
            "mounted": f"{event.what} {event.digest} mounted from {event.source}",
            "uploaded": f"{event.what} {event.digest} {size} uploaded",
            "pushed": f"manifest {event.digest} pushed as {event.what}",
        }[event.kind]
        with self._lock:
            click.echo(clean(line), err=True)


def _summary(result: CopyResult) -> str:
    plats = f" ({len(result.platforms)} platforms)" if result.platforms else ""
    return (
        f"{result.source} -> {result.destination} {result.digest}{plats}: "
        f"{result.manifests_pushed} manifests pushed, {result.blobs_uploaded} blobs uploaded "
        f"({human_bytes(result.bytes_uploaded)}), {result.blobs_mounted} mounted, "
        f"{result.blobs_present} present, {result.seconds:.2f} s"
    )


def _report(results: list[CopyResult], as_json: bool, many: bool) -> None:
    if as_json:
        print_json([r.to_json() for r in results] if many else results[0].to_json())
        return
    for result in results:
        click.echo(clean(_summary(result)))


def _common(f: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        platform_option("The platform to take from a multi-platform image (default: the "
                        "config's platform, else this host's); written as a single manifest."),
        click.option("--all-platforms", is_flag=True,
                     help="Copy a whole multi-platform index: every image, then the index."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
                     show_default="4, or the config's jobs", help="Blobs in flight at once."),
        creds_options, cache_option, retries_option, quiet_option, json_option,
        config_options,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _carry_options(f: Any) -> Any:
    f = click.option(
        "--referrers", is_flag=True,
        help="Carry the image's OCI referrers (signatures, SBOMs, attestations); a "
             "destination without the referrers API gets the referrers tag.")(f)
    return click.option(
        "--signatures", is_flag=True,
        help="Carry cosign's signatures (the sha256-<hex>.sig tags) byte for byte.")(f)


@click.command(epilog=COPY_EXAMPLES + EXIT_CODES_HELP)
@click.argument("source")
@click.argument("destination")
@click.option("--all-tags", is_flag=True,
              help="SOURCE and DESTINATION are repositories: copy every tag.")
@_carry_options
@_common
@policy_options
def copy(
    source: str, destination: str, all_tags: bool, signatures: bool, referrers: bool,
    platform: str | None, all_platforms: bool, jobs: int | None, src_creds: str | None,
    dest_creds: str | None, cache_dir: str | None, retries: int, quiet: bool, as_json: bool,
    settings: Config, policy: Any,
) -> None:
    """Copy an image from SOURCE to DESTINATION, digests preserved.

    Either is a registry reference (bare, or docker://REF), oci:DIR[:TAG],
    oci-archive:FILE[:TAG] or docker-archive:FILE[:REF]. Blobs the destination has are
    skipped, blobs in another repository of its registry are mounted, the rest stream through
    the verified cache; an interrupted copy resumes, and a finished one run again uploads
    nothing.
    """
    kwargs: dict[str, Any] = {
        "jobs": jobs, "cache": cache_dir, "all_platforms": all_platforms,
        "source_credentials": _read_creds(src_creds, "src"),
        "dest_credentials": _read_creds(dest_creds, "dest"),
        "progress": CopyProgress(quiet=quiet), "retry": retry_policy(retries),
        "config": settings, "policy": policy, "signatures": signatures,
        "referrers": referrers,
    }
    if all_tags:
        from tank._sync import copy_all_tags

        results = copy_all_tags(source, destination, **kwargs)
        _report(results, as_json, many=True)
        return
    from tank._copy import copy as do_copy

    result = do_copy(source, destination, platform=platform, **kwargs)
    _report([result], as_json, many=False)


PUSH_EXAMPLES = """\b
Examples:
  tank push oci:./layout:v1 registry.local:5000/team/app:v1
  tank push docker-archive:app.tar registry.local:5000/team/app:v1
  tank push oci-archive:app.tar ghcr.io/o/app:1 --all-platforms

"""


@click.command(epilog=PUSH_EXAMPLES + EXIT_CODES_HELP)
@click.argument("source")
@click.argument("reference")
@_common
def push(
    source: str, reference: str, platform: str | None, all_platforms: bool, jobs: int | None,
    src_creds: str | None, dest_creds: str | None, cache_dir: str | None, retries: int,
    quiet: bool, as_json: bool, settings: Config,
) -> None:
    """Push a local image (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF])
    to the registry REFERENCE: ``tank copy`` for those who think in pushes."""
    from tank._copy import copy as do_copy
    from tank._sources import parse_location

    if parse_location(source).is_registry:
        raise click.BadParameter("push takes a local image (oci:, oci-archive:, "
                                 "docker-archive:); use tank copy between registries",
                                 param_hint="SOURCE")
    result = do_copy(
        source, reference, platform=platform, all_platforms=all_platforms, jobs=jobs,
        cache=cache_dir, dest_credentials=_read_creds(dest_creds, "dest"),
        progress=CopyProgress(quiet=quiet), retry=retry_policy(retries), config=settings,
    )
    _report([result], as_json, many=False)


SYNC_EXAMPLES = """\b
Examples:
  tank sync mirror.toml
  tank sync mirror.toml --all-platforms --json

\b
A sync file (TOML):
  [[sync]]
  source = "ghcr.io/owner/app"
  destination = "registry.local:5000/owner/app"   # or oci:/srv/mirror
  tags = ["v1.*", "latest"]
  all-platforms = true

"""


@click.command(epilog=SYNC_EXAMPLES + EXIT_CODES_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--all-platforms", is_flag=True, default=None,
              help="Copy whole indexes, whatever the file says.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              show_default="4, or the config's jobs", help="Blobs in flight at once.")
@_carry_options
@cache_option
@retries_option
@quiet_option
@json_option
@config_options
@policy_options
def sync(
    file: str, all_platforms: bool | None, jobs: int | None, signatures: bool,
    referrers: bool, cache_dir: str | None, retries: int, quiet: bool, as_json: bool,
    settings: Config, policy: Any,
) -> None:
    """Mirror the repositories and tags FILE names into another registry or a directory of OCI
    layouts; a second run transfers nothing."""
    from tank._sync import sync as do_sync

    results = do_sync(
        file, all_platforms=all_platforms or None, jobs=jobs, cache=cache_dir,
        source_credentials=registry_credentials(), dest_credentials=registry_credentials(),
        progress=CopyProgress(quiet=quiet), retry=retry_policy(retries), config=settings,
        policy=policy, signatures=signatures, referrers=referrers,
        on_tag=None if as_json else (lambda r: click.echo(clean(_summary(r)))),
    )
    if as_json:
        print_json([r.to_json() for r in results])


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("reference")
@click.argument("new_tag")
@retries_option
@json_option
@config_options
def tag(reference: str, new_tag: str, retries: int, as_json: bool, settings: Config) -> None:
    """Point NEW_TAG at the manifest REFERENCE names (same repository; no blob moves)."""
    from tank.reference import parse

    ref = parse(reference)
    repo = session(settings, retries, ref.registry, ref.repository)
    digest = repo.manifest(ref.fetch_reference).digest
    assert digest is not None
    repo.tag(digest, new_tag)
    if as_json:
        print_json({"reference": f"{ref.name}:{new_tag}", "digest": str(digest)})
    else:
        click.echo(f"{ref.name}:{new_tag} {digest}")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("reference")
@retries_option
@json_option
@config_options
def delete(reference: str, retries: int, as_json: bool, settings: Config) -> None:
    """Delete the manifest REFERENCE names (a tag is resolved to its digest first: every tag
    pointing at that manifest goes with it)."""
    from tank.reference import parse

    ref = parse(reference)
    repo = session(settings, retries, ref.registry, ref.repository)
    digest = ref.digest or repo.manifest(ref.fetch_reference).digest
    assert digest is not None
    repo.delete_manifest(digest)
    if as_json:
        print_json({"deleted": f"{ref.name}@{digest}"})
    else:
        click.echo(f"deleted {ref.name}@{digest}")
