"""``tank artifact push|pull``: OCI artifacts, as oras makes them (see :mod:`tank._artifact`).

Invariants: stdout gets one line per file and the digest (or the ``--json`` document), only
after the work succeeded; a title that would escape the output directory, or overwrite a file
without ``--overwrite``, is refused before anything of it is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import (
    cache_option,
    config_options,
    credential_store,
    inspect_trust_options,
    json_option,
    retries_option,
    retry_policy,
)
from tank.cli.output import clean, human_bytes, print_json

if TYPE_CHECKING:
    from tank._artifact import ArtifactResult
    from tank.config import Config

EXAMPLES = """\b
Examples:
  tank artifact push registry.local:5000/o/notes:v1 README.md:text/markdown
  tank artifact push registry.local:5000/o/site:v1 ./public --artifact-type application/x-site
  tank artifact pull registry.local:5000/o/notes:v1 -o ./notes

"""


@click.group(epilog=EXAMPLES + EXIT_CODES_HELP)
def artifact() -> None:
    """Push files as an OCI artifact, or pull one into a directory (what oras does)."""


def _report(result: ArtifactResult, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(result.to_json())
        return
    for title, digest, size, path in result.files:
        where = f" -> {path}" if path is not None else ""
        click.echo(clean(f"{title} {digest} {human_bytes(size)}{where}"))
    click.echo(clean(f"{verb} {result.reference} {result.digest}"))


@artifact.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference")
@click.argument("files", nargs=-1, required=True)
@click.option("--artifact-type", metavar="TYPE", help="The manifest's artifactType "
              "(default application/vnd.unknown.artifact.v1).")
@click.option("--annotation", "annotations", metavar="KEY=VALUE", multiple=True,
              help="An annotation on the manifest (repeatable).")
@click.option("--config", "config_blob", metavar="FILE[:MEDIATYPE]",
              help="A config blob instead of the empty one (tank's own config file comes "
                   "from $TANK_CONFIG here).")
@retries_option
@json_option
@inspect_trust_options
def push(
    reference: str, files: tuple[str, ...], artifact_type: str | None,
    annotations: tuple[str, ...], config_blob: str | None, retries: int, as_json: bool,
    settings: Config,
) -> None:
    """Push FILE[:MEDIATYPE]... as an artifact named REFERENCE; a directory is packed as
    tar+gzip."""
    from tank._artifact import push_artifact

    notes = {}
    for item in annotations:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter("give KEY=VALUE", param_hint="--annotation")
        notes[key] = value
    result = push_artifact(
        reference, list(files), artifact_type=artifact_type, annotations=notes,
        config_file=config_blob, credentials=credential_store(), retry=retry_policy(retries),
        config=settings,
    )
    _report(result, as_json, "pushed")


@artifact.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference")
@click.option("-o", "--output", metavar="DIR", default=".", show_default=True,
              help="Where to write the files.")
@click.option("--overwrite", is_flag=True, help="Replace files that exist.")
@cache_option
@retries_option
@json_option
@config_options
def pull(
    reference: str, output: str, overwrite: bool, cache_dir: str | None, retries: int,
    as_json: bool, settings: Config,
) -> None:
    """Write every titled file of the artifact REFERENCE into DIR, verified."""
    from tank._artifact import pull_artifact

    result = pull_artifact(
        reference, output, overwrite=overwrite, cache=cache_dir, credentials=credential_store(),
        retry=retry_policy(retries), config=settings,
    )
    _report(result, as_json, "pulled")
