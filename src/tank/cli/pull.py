"""``tank pull``: the image into the cache, every byte verified; optionally written out.

Invariants: stdout gets one summary line or the ``--json`` document, and only after the pull
succeeded; progress goes to stderr (:mod:`tank.cli.progress`) and is closed before either the
summary or an error is printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import (
    cache_option,
    complete_cached_ref,
    config_options,
    json_option,
    platform_option,
    quiet_option,
    registry_credentials,
    retries_option,
    retry_policy,
)
from tank.cli.output import human_bytes, print_json
from tank.cli.trust import policy_options

if TYPE_CHECKING:
    from tank.config import Config
    from tank.policy.lookup import PolicyArg

EXAMPLES = """\b
Examples:
  tank pull alpine
  tank pull ghcr.io/o/app:1.2 -o oci:./app-layout --platform linux/arm64
  tank pull alpine -o rootfs:./alpine-root
  tank pull alpine -o docker-archive:alpine.tar
  tank pull alpine --json | jq .digest
  tank pull ghcr.io/o/app:1.2 --verify-key cosign.pub

"""


@click.command(epilog=EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.option("-o", "--output", metavar="oci:DIR[:TAG] | docker-archive:FILE[:REF] | rootfs:DIR",
              help="Also write the image as an OCI image layout in DIR, named TAG (default: "
                   "the reference's tag, or latest); as a tar that docker load reads, "
                   "tagged REF (default: the reference); or unpacked as a root filesystem "
                   "into DIR (new or empty).")
@platform_option("The platform to take from a multi-platform image (default: the config's "
                 "platform, else this host's).")
@click.option("--all-platforms", is_flag=True,
              help="Take every platform of a multi-platform image (and its attestations); with "
                   "-o oci: the layout holds the whole index.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              show_default="4, or the config's jobs",
              help="Blobs downloaded at once (small ones, under 1 MiB, up to four times as "
                   "many).")
@click.option("--layer-connections", type=click.IntRange(1, 16), default=None, metavar="N",
              show_default="4, or the config's layer-connections",
              help="Connections per large blob (64 MiB or more, the config's "
                   "layer-chunk-threshold): it comes as byte ranges over N connections at once; "
                   "1 fetches every blob as one stream.")
@cache_option
@click.option("--offline", is_flag=True, help="Never touch the network; use the cache only.")
@click.option("--refresh", is_flag=True, help="Re-fetch the manifest and blobs even if cached.")
@click.option("--copy", is_flag=True, help="Copy blobs into the layout instead of linking.")
@click.option("--no-rootfs-cache", is_flag=True,
              help="With -o rootfs:DIR, unpack straight into DIR instead of building the root "
                   "filesystem once in the cache and copying it out.")
@policy_options
@retries_option
@quiet_option
@json_option
@config_options
def pull(
    reference: str, output: str | None, platform: str | None, all_platforms: bool,
    jobs: int | None, layer_connections: int | None, cache_dir: str | None, offline: bool,
    refresh: bool, copy: bool, no_rootfs_cache: bool, policy: PolicyArg, retries: int,
    quiet: bool, as_json: bool,
    settings: Config,
) -> None:
    """Pull REFERENCE into the cache, verifying every byte; optionally write it out.

    An interrupted pull (Ctrl-C, a lost connection, a killed process) keeps what it downloaded;
    the next pull of the same image resumes each blob where it stopped.

    With a signature policy (--policy, --verify-key, or the one containers tools use), the
    image's signatures are judged once its manifest is known, before any layer is fetched: a
    refusal exits 7 and writes nothing.
    """
    from tank._pull import pull as do_pull
    from tank.cli.progress import PullProgress

    with PullProgress(quiet=quiet, cache_dir=cache_dir) as progress:
        image = do_pull(
            reference, platform=platform, all_platforms=all_platforms, output=output,
            cache=cache_dir, jobs=jobs, offline=offline, refresh=refresh, progress=progress,
            copy=copy, retry=retry_policy(retries), credentials=registry_credentials(),
            config=settings, rootfs_cache=not no_rootfs_cache, policy=policy,
            layer_connections=layer_connections,
        )
    if as_json:
        print_json(image.to_json())
        return
    where = f" -> {image.to_json()['output']}" if image.output is not None else ""
    plat = f" {image.platform}" if image.platform else ""
    click.echo(
        f"{image.reference} {image.digest}{plat}: {len(image.layers)} layers, "
        f"{human_bytes(image.bytes_downloaded)} downloaded, "
        f"{human_bytes(image.bytes_cached)} cached, {image.seconds:.2f} s{where}"
    )
