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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

if TYPE_CHECKING:
    from tank._inspect import Reader
    from tank.auth.credentials import CredentialStore
    from tank.config import Config
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


def trust_options(*, config_option: bool) -> Callable[[F], F]:
    """``--ca-file FILE``, ``--insecure-registry HOST[:PORT]`` (repeatable) and, with
    ``config_option``, ``--config FILE``.

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


#: the trust options plus ``--config FILE``, for every command that talks to a registry
config_options = trust_options(config_option=True)
#: the same without ``--config`` (``tank inspect --config`` prints the config blob; the file
#: comes from ``$TANK_CONFIG``)
inspect_trust_options = trust_options(config_option=False)


# -- what the options turn into ------------------------------------------------------------------


def credential_store() -> CredentialStore:
    """The machine's registry credentials (auth.json, docker config, helpers), read lazily."""
    from tank.auth.credentials import CredentialStore

    return CredentialStore()


def retry_policy(retries: int) -> RetryPolicy:
    """The default retry policy with ``--retries`` retries (so ``retries + 1`` attempts)."""
    from tank.retry import DEFAULT_RETRY

    return dataclasses.replace(DEFAULT_RETRY, attempts=retries + 1)


def reader(settings: Config, retries: int, reference: str) -> Reader:
    """The registry conversation of a read command for ``reference``: the endpoints the
    configuration gives it (mirrors, ``blocked``, insecure entries), the machine's credentials,
    the configuration's trust and timeouts, ``--retries``."""
    from tank._inspect import Reader
    from tank.reference import parse as parse_reference

    return Reader(
        parse_reference(reference), settings.transport(), retry_policy(retries),
        credential_store(), settings,
    )


def remote(settings: Config, retries: int) -> dict[str, Any]:
    """The ``transport``, ``retry`` and ``credentials`` keywords a registry command passes to
    the library."""
    return {
        "transport": settings.transport(),
        "retry": retry_policy(retries),
        "credentials": credential_store(),
        "config": settings,
    }
