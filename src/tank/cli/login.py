"""``tank login`` and ``tank logout``: credentials checked, then stored where docker keeps them.

Invariants: a password never reaches stdout, stderr or an error message; ``login`` stores
nothing until the registry accepted the credentials; both say on stderr where the credentials
are (or were), and warn when another file still holds some for that registry.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from tank.cli.errors import EXIT_CODES_HELP
from tank.cli.options import credential_store, login_trust_options

if TYPE_CHECKING:
    from tank.config import Config


def registry_arg(value: str) -> str:
    """REGISTRY as ``tank login``/``logout`` take it: ``host[:port]``, a URL, or ``docker.io``."""
    from tank.reference import _DOMAIN

    text = value.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
    host = text.split("/", 1)[0]
    if not _DOMAIN.fullmatch(host):
        raise click.BadParameter(
            f"{value!r} is not a registry (host[:port])", param_hint="REGISTRY"
        )
    return host


def _read_password(password_stdin: bool) -> str:
    """The password: from stdin (one trailing newline dropped), or asked on the terminal."""
    if password_stdin:
        password = sys.stdin.read()
        return password.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise click.UsageError("give the password with --password-stdin (stdin is not a "
                               "terminal)")
    return str(click.prompt("Password", hide_input=True, err=True))


@click.command(epilog="\b\nExamples:\n  tank login registry.example.com -u alice\n  echo "
               "\"$TOKEN\" | tank login ghcr.io -u alice --password-stdin\n\n" + EXIT_CODES_HELP)
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for on a terminal when missing).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password (or access token) from stdin instead of asking for it.")
@click.option("--authfile", metavar="FILE", type=click.Path(dir_okay=False),
              help="Store the credentials in this auth.json (skopeo's --authfile) instead.")
@login_trust_options
def login(
    registry: str, username: str | None, password_stdin: bool, authfile: str | None,
    settings: Config,
) -> None:
    """Check credentials against REGISTRY, then store them where docker would.

    The check is a GET /v2/ answering the registry's challenge with them (Basic, or a token from
    its token server, asking for a refresh token as docker does). They are stored with the
    config's credential helper (credHelpers, else credsStore) when one is set, else in
    $DOCKER_CONFIG/config.json (~/.docker/config.json), mode 0600, its other keys kept. When the
    token server grants a refresh token, that is stored instead of the password.
    """
    from tank.auth.credentials import Credentials
    from tank.errors import TankError
    from tank.registry import check_login

    host = registry_arg(registry)
    if password_stdin and not username:
        raise click.UsageError("--password-stdin needs -u/--username")
    if not username:
        if not sys.stdin.isatty():
            raise click.UsageError("give -u/--username (stdin is not a terminal)")
        username = str(click.prompt("Username", err=True))
    password = _read_password(password_stdin)
    if not password:
        raise click.UsageError("the password is empty")
    store = credential_store(authfile)
    checked = check_login(host, Credentials(username, password), transport=settings.transport())
    where = store.store(host, checked)
    click.echo(f"tank: login succeeded; the credentials for {host} are in {where}", err=True)
    try:
        found = credential_store(authfile).lookup(host) if authfile is None else None
    except TankError:  # only a warning depends on it
        found = None
    if found is not None and found.source != where:
        click.echo(f"tank: warning: {found.source} also holds credentials for {host}, and is "
                   "read first (by tank, skopeo and podman)", err=True)


@click.command()
@click.argument("registry")
@click.option("--authfile", metavar="FILE", type=click.Path(dir_okay=False),
              help="Remove them from this auth.json (skopeo's --authfile) instead.")
def logout(registry: str, authfile: str | None) -> None:
    """Remove the credentials stored for REGISTRY (with its helper's erase, or from the docker
    config file, keeping its other keys)."""
    from tank.errors import TankError

    host = registry_arg(registry)
    erased = credential_store(authfile).erase(host)
    if erased:
        click.echo(f"tank: removed the credentials for {host}", err=True)
    else:
        click.echo(f"tank: not logged in to {host}", err=True)
    try:
        left = credential_store(authfile).lookup(host)
    except TankError:  # only a note depends on it
        left = None
    if left is not None:
        click.echo(f"tank: note: {left.source} still holds credentials for {host}", err=True)
