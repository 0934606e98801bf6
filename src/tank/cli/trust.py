"""``tank verify`` and ``tank referrers``, and the ``--policy``/``--verify-key`` options.

Invariants: stdout carries only what was asked for (the verdict, the referrers, or the
``--json`` document); a refusal is an error like any other (one line on stderr naming each unmet
requirement and why each signature was refused, exit 7); every string a registry or a signature
sent is escaped before it reaches a terminal (:func:`tank.cli.output.clean`). Nothing here
touches the cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import (
    complete_cached_ref,
    config_options,
    json_option,
    platform_option,
    remote,
    retries_option,
    session,
)
from tank.cli.output import clean, human_bytes, print_json, table

if TYPE_CHECKING:
    from tank.config import Config
    from tank.policy import Verdict
    from tank.policy.lookup import PolicyArg

F = TypeVar("F", bound=Callable[..., Any])


def chosen_policy(policy_file: str | None, verify_keys: tuple[str, ...]) -> PolicyArg:
    """What ``--policy FILE`` / ``--verify-key KEY.pub`` ask for: the file, a one-requirement
    policy of the keys, or ``None`` (the default lookup)."""
    if policy_file and verify_keys:
        raise click.UsageError("choose --policy FILE or --verify-key KEY, not both")
    if verify_keys:
        from tank.policy import Policy

        return Policy.for_keys(*verify_keys)
    return policy_file


def policy_options(f: F) -> F:
    """``--policy FILE`` and ``--verify-key KEY.pub`` (repeatable); the command receives one
    ``policy`` argument (see :func:`chosen_policy`), passed on as ``policy=``."""

    @functools.wraps(f)
    def wrapper(*args: Any, policy_file: str | None, verify_keys: tuple[str, ...],
                **kwargs: Any) -> Any:
        return f(*args, policy=chosen_policy(policy_file, verify_keys), **kwargs)

    options = [
        click.option("--policy", "policy_file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="The signature policy (containers' policy.json format) [default: "
                          "the config's policy, else ~/.config/containers/policy.json, else "
                          "/etc/containers/policy.json; none: accept every image]."),
        click.option("--verify-key", "verify_keys", metavar="KEY.pub", multiple=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Require a cosign signature by this public key, for the image's "
                          "repository (instead of a policy; repeatable: any of the keys)."),
    ]
    command: Any = wrapper
    for option in reversed(options):
        command = option(command)
    return cast("F", command)


# -- verify --------------------------------------------------------------------------------------

VERIFY_EXAMPLES = """\b
Examples:
  tank verify ghcr.io/o/app:1.2 --verify-key cosign.pub
  tank verify registry.example/app@sha256:<hex> --policy policy.json
  tank verify ghcr.io/o/app:1.2 --json | jq '.requirements[].signature.key'

"""


@click.command(epilog=VERIFY_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@platform_option("From a multi-platform index, the platform whose image is judged too "
                 "(default: the config's platform, else this host's).")
@policy_options
@json_option
@retries_option
@config_options
def verify(
    reference: str, platform: str | None, policy: PolicyArg, as_json: bool, retries: int,
    settings: Config,
) -> None:
    """Check REFERENCE against the signature policy, without pulling it; say who signed it.

    Reads the manifest and the signatures the policy needs (cosign's sha256-<hex>.sig tag),
    and prints, for each requirement met, the key (its sha256 fingerprint) and the identity of
    the signature that met it. Exits 7 when the policy refuses the image, naming each unmet
    requirement and why each signature was refused.
    """
    from tank.policy import verify as do_verify

    verdict = do_verify(reference, policy=policy, platform=platform, **remote(settings, retries))
    if as_json:
        print_json(verdict.to_json())
        return
    print_verdict(verdict)


def print_verdict(verdict: Verdict) -> None:
    """The readable form of a :class:`~tank.policy.Verdict`."""
    head = f"{verdict.reference} {verdict.digest}"
    if verdict.policy is None:
        click.echo(f"{head}: accepted (no signature policy: tank accepts every image)")
        return
    where = f" ({clean(verdict.where)})" if verdict.where else ""
    click.echo(f"{head}: accepted by {clean(verdict.policy)}{where}")
    for met in verdict.met:
        if met.accepted is None:
            click.echo(f"  {met.requirement}")
            continue
        s = met.accepted
        click.echo(f"  {met.requirement}: signed by {s.key.algorithm} key {s.key.fingerprint} "
                   f"({clean(s.key.source)}) for {clean(s.payload.identity)!r}, "
                   f"{clean(s.signature.where)}")


# -- referrers -----------------------------------------------------------------------------------

REFERRERS_EXAMPLES = """\b
Examples:
  tank referrers ghcr.io/o/app:1.2
  tank referrers ghcr.io/o/app:1.2 --artifact-type application/spdx+json
  tank referrers registry.example/app@sha256:<hex> --json | jq '.manifests[].digest'

"""


@click.command(epilog=REFERRERS_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.option("--artifact-type", metavar="TYPE",
              help="Only the referrers of this artifactType (e.g. application/spdx+json).")
@platform_option("From a multi-platform index, list the referrers of this platform's image "
                 "instead of the index's.")
@json_option
@retries_option
@config_options
def referrers(
    reference: str, artifact_type: str | None, platform: str | None, as_json: bool,
    retries: int, settings: Config,
) -> None:
    """List the manifests that refer to REFERENCE (signatures, SBOMs, attestations).

    Asks the OCI 1.1 referrers API, else (a registry without it) reads the referrers tag
    sha256-<hex>. Prints one line per referrer: digest, artifactType, size.
    """
    from tank.image import Index, Where
    from tank.platform import Platform
    from tank.reference import parse as parse_reference

    ref = parse_reference(reference)
    repo = session(settings, retries, ref.registry, ref.repository)
    subject = ref.digest
    if subject is None or platform is not None:
        info = repo.manifest(ref.fetch_reference)
        subject = info.content_digest()
        if platform is not None and isinstance(info.document, Index):
            place = Where(ref.registry, ref.repository, ref.fetch_reference)
            subject = info.document.select(Platform.parse(platform), place=place).digest
    found = repo.referrers(subject, artifact_type=artifact_type)
    if as_json:
        print_json({"reference": str(ref), "subject": str(subject),
                    "manifests": [d.to_json() for d in found.manifests]})
        return
    rows = [[str(d.digest), clean(d.artifact_type or "-"), human_bytes(d.size)]
            for d in found.manifests]
    for line in table(rows, right=(2,)):
        click.echo(line)
