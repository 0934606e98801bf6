"""The options several commands share, each defined once, and what they turn into.

- :func:`trust_options` (``--ca-file``, ``--insecure-registry``, and ``--config``): the command
  receives one ``settings`` argument, a :class:`tank.config.Config`;
- :data:`retries_option`, :data:`json_option`, :data:`quiet_option`, :data:`cache_option`,
  :func:`platform_option`;
- :func:`remote`: the ``transport=``, ``retry=`` and ``credentials=`` a registry command passes
  to the library.

Invariants: nothing here imports more than click at import time (``tank --help`` loads every
command module); the library is imported inside the functions that need it. ``--cache`` also
records its value in ``ctx.meta[CACHE_META]``, where :mod:`tank.cli.errors` finds it to tell a
failing cache from another failing directory.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from tank._inspect import Reader
    from tank.auth.credentials import Credentials, CredentialsArg, CredentialStore
    from tank.config import Config
    from tank.registry import Repository
    from tank.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

#: where ``--cache`` leaves its value for the error report (``ctx.meta`` is shared by the
#: whole context chain)
CACHE_META = "tank.cache_dir"

COMMON_PLATFORMS = (
    "linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le",
    "linux/s390x", "linux/riscv64", "windows/amd64",
)


# -- completion --------------------------------------------------------------------------------


def complete_platform(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --platform: the usual platforms."""
    return [p for p in COMMON_PLATFORMS if p.startswith(incomplete)]


def complete_cached_ref(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[str]:
    """Shell completion for REF: the images recorded in the cache."""
    try:
        from tank.store.maintenance import listing

        refs = [i.reference for i in listing(ctx.params.get("cache_dir")).images]
    except Exception:  # completion must never fail loudly
        return []
    return [r for r in refs if r.startswith(incomplete)]


# -- the shared options --------------------------------------------------------------------------


def _remember_cache(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    ctx.meta[CACHE_META] = value
    return value


#: ``--cache DIR`` (``$TANK_CACHE``), as ``cache_dir``
cache_option = click.option(
    "--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE", callback=_remember_cache,
    help="The cache directory [env TANK_CACHE; default ~/.cache/tank].",
)

#: ``--retries N``, for the commands that talk to a registry
retries_option = click.option(
    "--retries", type=click.IntRange(0, 100), default=4, show_default=True,
    help="Retries of a failed request (resets, timeouts, 429, 5xx), with backoff.",
)

#: ``--json``, as ``as_json``
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON document on stdout."
)

#: ``-q/--quiet``
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress output.")


def platform_option(help: str) -> Callable[[F], F]:
    """``--platform OS/ARCH[/VARIANT]``, completed from the usual platforms; ``help`` says
    what the command does with it."""
    return click.option(
        "--platform", metavar="OS/ARCH[/VARIANT]", shell_complete=complete_platform, help=help,
    )


#: where the credential options leave their choice for :func:`registry_credentials`
CREDENTIALS_META = "tank.credentials"


def parse_creds(text: str, *, option: str = "--creds") -> Credentials:
    """``USER[:PASS]`` as skopeo's ``--creds`` takes it; without ``:PASS`` the password is read
    from the terminal (asked for) or from stdin."""
    from tank.auth.credentials import Credentials

    user, colon, password = text.partition(":")
    if not user:
        raise click.BadParameter("give USER[:PASS]", param_hint=option)
    if not colon:
        if sys.stdin.isatty():
            password = str(click.prompt(f"Password for {user}", hide_input=True, err=True))
        else:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise click.BadParameter(f"the password for {user} is empty", param_hint=option)
    return Credentials(user, password, source=option)


def _remember_credentials(
    ctx: click.Context, authfile: str | None, creds: str | None, no_creds: bool
) -> None:
    chosen = [name for name, given in (("--authfile", authfile), ("--creds", creds),
                                        ("--no-creds", no_creds)) if given]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one of {' and '.join(chosen)}")
    ctx.meta[CREDENTIALS_META] = (authfile, creds, no_creds)


def trust_options(*, config_option: bool, credentials: bool = True) -> Callable[[F], F]:
    """``--ca-file FILE``, ``--insecure-registry HOST[:PORT]`` (repeatable), with
    ``config_option`` ``--config FILE``, and with ``credentials`` the credential options as
    skopeo spells them: ``--authfile FILE``, ``--creds USER[:PASS]``, ``--no-creds`` (read back
    with :func:`registry_credentials`).

    The command receives them as one ``settings`` argument: the configuration files
    (:func:`tank.config.load`) with the options applied, a :class:`tank.config.Config`. Pass it
    on as ``config=settings`` (``tank.pull``) or use ``settings.transport()`` for a
    :class:`~tank.transport.Transport`. A configuration that cannot be used raises
    :class:`~tank.errors.ConfigError` (exit 2).
    """

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def wrapper(
            *args: Any, ca_file: str | None, insecure_registries: tuple[str, ...],
            config_file: str | None = None, **kwargs: Any,
        ) -> Any:
            from tank.config import load

            if credentials:
                _remember_credentials(
                    click.get_current_context(), kwargs.pop("authfile", None),
                    kwargs.pop("creds", None), kwargs.pop("no_creds", False),
                )
            settings = load(config_file).with_options(
                ca_file=ca_file, insecure_registries=insecure_registries
            )
            return f(*args, settings=settings, **kwargs)

        options = [
            click.option("--ca-file", metavar="FILE",
                         type=click.Path(exists=True, dir_okay=False),
                         help="Also trust the CAs in this PEM file (a registry with a private "
                              "CA; per registry: ~/.config/tank/certs.d/HOST[:PORT]/*.crt)."),
            click.option("--insecure-registry", "insecure_registries", metavar="HOST[:PORT]",
                         multiple=True,
                         help="Allow this registry plain HTTP or TLS without verification "
                              "(repeatable)."),
        ]
        if credentials:
            options += [
                click.option("--authfile", metavar="FILE", type=click.Path(dir_okay=False),
                             help="Read credentials from this auth.json only (skopeo's "
                                  "--authfile) [default: auth.json, then ~/.docker/config.json]."),
                click.option("--creds", metavar="USER[:PASS]",
                             help="Use these credentials (the password is asked for, or read "
                                  "from stdin, when :PASS is left out)."),
                click.option("--no-creds", is_flag=True,
                             help="Access the registry anonymously, whatever is stored."),
            ]
        if config_option:
            options.append(
                click.option("--config", "config_file", metavar="FILE",
                             type=click.Path(dir_okay=False),
                             help="tank's config file [env TANK_CONFIG; default "
                                  "~/.config/tank/config.toml].")
            )
        command: Any = wrapper
        for option in reversed(options):
            command = option(command)
        return cast("F", command)

    return decorate


#: the trust and credential options plus ``--config FILE``, for every command that talks to a
#: registry
config_options = trust_options(config_option=True)
#: the trust options and ``--config FILE`` without the credential ones (``tank login``)
login_trust_options = trust_options(config_option=True, credentials=False)
#: the same without ``--config`` (``tank inspect --config`` prints the config blob; the file
#: comes from ``$TANK_CONFIG``)
inspect_trust_options = trust_options(config_option=False)


# -- what the options turn into ------------------------------------------------------------------


def credential_store(authfile: str | None = None) -> CredentialStore:
    """The machine's registry credentials (auth.json, docker config, helpers), read lazily;
    only ``authfile`` when one is given."""
    from tank.auth.credentials import CredentialStore

    return CredentialStore(authfile=authfile)


def registry_credentials() -> CredentialsArg:
    """The ``credentials=`` the credential options chose: ``--creds``' credentials, ``None``
    with ``--no-creds``, else the machine's store (``--authfile``'s file only, when given)."""
    ctx = click.get_current_context(silent=True)
    authfile, creds, no_creds = (
        ctx.meta.get(CREDENTIALS_META, (None, None, False)) if ctx else (None, None, False)
    )
    if no_creds:
        return None
    if creds is not None:
        return parse_creds(creds)
    return credential_store(authfile)


def retry_policy(retries: int) -> RetryPolicy:
    """The default retry policy with ``--retries`` retries (so ``retries + 1`` attempts)."""
    from tank.retry import DEFAULT_RETRY

    return dataclasses.replace(DEFAULT_RETRY, attempts=retries + 1)


def session(settings: Config, retries: int, registry: str, repository: str) -> Repository:
    """A :class:`~tank.Repository` on the registry itself for a command: the credential
    options' choice, the configuration's trust, timeouts and ``blocked`` rules, ``--retries``."""
    from tank.registry import Client

    client = Client(
        registry, credentials=registry_credentials(), transport=settings.transport(),
        retry=retry_policy(retries), config=settings,
    )
    return client.repository(repository)


def reader(settings: Config, retries: int, reference: str) -> Reader:
    """The registry conversation of a read command for ``reference``: the endpoints the
    configuration gives it (mirrors, ``blocked``, insecure entries), the machine's credentials,
    the configuration's trust and timeouts, ``--retries``."""
    from tank._inspect import Reader
    from tank.reference import parse as parse_reference

    return Reader(
        parse_reference(reference), settings.transport(), retry_policy(retries),
        registry_credentials(), settings,
    )


def remote(settings: Config, retries: int) -> dict[str, Any]:
    """The ``transport``, ``retry`` and ``credentials`` keywords a registry command passes to
    the library."""
    return {
        "transport": settings.transport(),
        "retry": retry_policy(retries),
        "credentials": registry_credentials(),
        "config": settings,
    }
