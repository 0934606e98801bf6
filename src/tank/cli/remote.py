"""The commands that read a registry without pulling: ``inspect``, ``digest``, ``tags``, ``blob``.

Invariants: they never touch the cache; stdout carries only what was asked for (the readable
inspection, a JSON document, a digest, tags, or bytes exactly as served and verified); every
string a registry sent is escaped before it reaches a terminal (:func:`tank.cli.output.clean`).
``inspect --raw`` fetches manifests only: never a config or a layer.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import (
    complete_cached_ref,
    config_options,
    inspect_trust_options,
    json_option,
    platform_option,
    reader,
    remote,
    retries_option,
)
from tank.cli.output import clean, human_bytes, print_json, short_type, table, write_bytes

if TYPE_CHECKING:
    from tank._inspect import Inspection
    from tank.config import Config


# -- inspect -------------------------------------------------------------------------------------

INSPECT_EXAMPLES = """\b
Examples:
  tank inspect alpine
  tank inspect alpine --platform linux/arm64
  tank inspect alpine --raw | sha256sum
  tank inspect ghcr.io/o/app:1.2 --config | jq .config.Env
  tank inspect alpine --json | jq '.platforms[].platform'

"""


@click.command(epilog=INSPECT_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@platform_option("From a multi-platform index, inspect this platform's image.")
@click.option("--raw", is_flag=True,
              help="Print the manifest exactly as served (its sha256 is the digest); nothing "
                   "but manifests is fetched.")
@click.option("--config", "show_config", is_flag=True,
              help="Print the image's config blob (from an index: this host's platform, or "
                   "--platform).")
@click.option("--sizes", is_flag=True,
              help="For an index, also read each platform's manifest for its image size (one "
                   "more request each; Docker Hub counts them against its rate limit).")
@json_option
@retries_option
@inspect_trust_options
def inspect(
    reference: str, platform: str | None, raw: bool, show_config: bool, sizes: bool,
    as_json: bool, retries: int, settings: Config,
) -> None:
    """Show what REFERENCE is, without pulling its layers.

    For a multi-platform index: the platforms it offers, with their digests and manifest sizes
    (with --sizes, image sizes).
    For an image: digest, media type, platform, creation time, entrypoint, cmd, env, user,
    working directory, exposed ports, labels, and its layers with the history step that made
    each one.
    """
    if sum((raw, show_config, as_json)) > 1:
        raise click.UsageError("choose one of --raw, --config and --json")
    if raw:
        write_bytes(raw_manifest(reference, platform, settings, retries))
        return
    from tank._inspect import inspect as do_inspect
    from tank.platform import host_platform

    want = platform or (str(host_platform()) if show_config else None)
    info = do_inspect(
        reference, platform=want, children=sizes and not show_config,
        **remote(settings, retries),
    )
    if show_config:
        write_bytes(info.config_raw or b"")
    elif as_json:
        print_json(info.to_json())
    else:
        print_inspection(info)


def raw_manifest(reference: str, platform: str | None, settings: Config, retries: int) -> bytes:
    """The manifest of ``reference`` exactly as served; from an index and with ``platform``,
    that platform's manifest (fetched by the digest the index names). Nothing else is fetched:
    a manifest whose config or layers are unreachable still prints."""
    from tank.errors import InvalidManifest
    from tank.image import Index, Where, parse_manifest
    from tank.platform import Platform
    from tank.reference import parse as parse_reference

    ref = parse_reference(reference)
    read = reader(settings, retries, reference)
    info = read.info(ref.fetch_reference)
    is_index = info.is_index or (info.media_type is None and "manifests" in info.json)
    if platform is None or not is_index:
        return info.raw
    place = Where(ref.registry, ref.repository, ref.fetch_reference)
    index = parse_manifest(info.raw, info.media_type, digest=info.digest, place=place)
    if not isinstance(index, Index):
        return info.raw
    entry = index.select(Platform.parse(platform), place=place)
    child = read.info(entry.digest)
    if len(child.raw) != entry.size:
        raise InvalidManifest(
            f"the index says manifest {entry.digest} has {entry.size} bytes, it has "
            f"{len(child.raw)}", **place.kwargs(),
        )
    return child.raw


def print_inspection(info: Inspection) -> None:
    """The readable form of an :class:`~tank._inspect.Inspection`."""
    def row(label: str, value: object) -> None:
        click.echo(f"{label + ':':<12} {value}")

    row("Reference", info.reference)
    row("Digest", info.digest)
    if info.kind == "index":
        row("Media type", f"{info.media_type} (multi-platform index)")
        sized = any(e.image_size is not None for e in info.platforms)
        click.echo("Platforms:" + ("  (image sizes)" if sized else "  (manifest sizes; "
                                    "--sizes for image sizes)"))
        rows = [
            [str(e.platform or "-"), str(e.digest),
             human_bytes(e.image_size if e.image_size is not None else e.size),
             *(["(attestation)"] if e.attestation else [])]
            for e in info.platforms
        ]
        for line in table(rows, right=(2,), min_widths=(8, 0, 9), indent="  "):
            click.echo(line)
        return
    if info.index_digest:
        row("Index", info.index_digest)
    row("Media type", info.media_type)
    row("Platform", info.platform or "-")
    row("Created", clean(info.created or "-"))
    row("Size", f"{human_bytes(info.total_size)} ({len(info.layers)} layers, compressed)")
    row("Entrypoint", clean(json.dumps(info.entrypoint)) if info.entrypoint else "-")
    row("Cmd", clean(json.dumps(info.cmd)) if info.cmd else "-")
    row("User", clean(info.user or "-"))
    row("Workdir", clean(info.working_dir or "-"))
    row("Ports", clean(", ".join(info.exposed_ports)) or "-")
    if info.env:
        click.echo("Env:")
        for item in info.env:
            click.echo(f"  {clean(item)}")
    if info.labels:
        click.echo("Labels:")
        for key, value in sorted(info.labels.items()):
            click.echo(f"  {clean(key)}={clean(value)}")
    click.echo("Layers:")
    rows = [
        [str(layer.digest), human_bytes(layer.size), short_type(layer.media_type)
         + (f"  {clean(layer.created_by)}" if layer.created_by else "")]
        for layer in info.layers
    ]
    for line in table(rows, right=(1,), min_widths=(0, 9), indent="  "):
        click.echo(line)


# -- digest, tags --------------------------------------------------------------------------------


@click.command(epilog="\b\nExamples:\n  tank digest alpine\n  tank digest alpine --platform "
               "linux/arm64\n  tank pull \"alpine@$(tank digest alpine)\"\n\n" + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@platform_option("Print the digest of this platform's image in the index instead.")
@retries_option
@config_options
def digest(reference: str, platform: str | None, retries: int, settings: Config) -> None:
    """Print the digest REFERENCE resolves to, and nothing else.

    That is the index's digest for a multi-platform image (with --platform, the chosen
    platform's image). Without --platform it costs one HEAD request when the registry sends
    Docker-Content-Digest (Docker Hub does not count HEADs against its rate limit), else the
    manifest is fetched and hashed.
    """
    from tank._inspect import resolve_digest

    click.echo(resolve_digest(reference, platform=platform, **remote(settings, retries)))


@click.command(epilog="\b\nExamples:\n  tank tags alpine\n  tank tags ghcr.io/owner/app --max "
               "10\n  tank tags quay.io/org/repo --json | jq '.tags | length'\n\n"
               + EXIT_CODES_HELP)
@click.argument("repository")
@click.option("--max", "limit", type=click.IntRange(0), metavar="N",
              help="Print at most N tags (no further page is fetched).")
@json_option
@retries_option
@config_options
def tags(
    repository: str, limit: int | None, as_json: bool, retries: int, settings: Config
) -> None:
    """List the tags of REPOSITORY, one per line, in the registry's order.

    Every page is fetched, following the registry's Link headers to the end.
    """
    from tank._inspect import list_tags, parse_repository

    repo = parse_repository(repository)
    found = list_tags(repo, limit=limit, **remote(settings, retries))
    if as_json:
        print_json({"repository": repo.name, "tags": found})
        return
    for tag in found:
        click.echo(tag)


# -- blob ----------------------------------------------------------------------------------------


@click.command(epilog="\b\nExamples:\n  tank blob alpine sha256:<hex> -o layer.tar.gz\n  tank "
               "blob alpine sha256:<hex> | tar -tz\n  tank blob ghcr.io/o/app "
               "\"$(tank inspect ghcr.io/o/app --json | jq -r .config.digest)\" | jq .\n\n"
               + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.argument("blob_digest", metavar="DIGEST")
@click.option("-o", "--output", metavar="FILE",
              help="Write the blob to FILE, which appears only once it verified (default: "
                   "stdout).")
@retries_option
@config_options
def blob(
    reference: str, blob_digest: str, output: str | None, retries: int, settings: Config
) -> None:
    """Fetch one blob of REFERENCE's repository, verified against DIGEST.

    To stdout the bytes stream as they arrive and are verified at the end: on a mismatch tank
    exits 5 and what was written must be discarded. With -o the file appears only when the
    blob verified. A broken-off download resumes where it stopped.
    """
    from tank.digest import Digest
    from tank.errors import StorageError
    from tank.reference import parse as parse_reference

    parse_reference(reference)
    want = Digest.parse(blob_digest)
    read = reader(settings, retries, reference)
    if output is None or output == "-":
        out = sys.stdout.buffer
        read.fetch_blob(want, StdoutSink(out))
        out.flush()
        return
    try:
        read.download_blob(want, output)
    except OSError as exc:  # -o into a directory that is missing or not writable
        raise StorageError(f"cannot write {output}: {exc.strerror or exc}", path=output,
                           errno=exc.errno) from exc


class StdoutSink:
    """A :class:`~tank.registry.BlobSink` over stdout, which cannot take bytes back: when the
    registry sends the blob again from its start, what stdout already has is skipped (and still
    hashed, so the whole blob is verified at the end)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.written = 0  # bytes of the blob seen in this pass, from its start
        self.emitted = 0  # bytes on stdout

    def write(self, data: bytes) -> None:
        """Write what stdout does not have yet."""
        skip = max(0, self.emitted - self.written)
        self.written += len(data)
        if skip < len(data):
            self.out.write(data[skip:])
            self.emitted += len(data) - skip

    def restart(self) -> None:
        """Start a pass from the blob's first byte (stdout keeps what it has)."""
        self.written = 0
