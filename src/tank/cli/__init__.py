"""The ``tank`` command.

stdout carries only data (a summary line, or the ``--json`` document); progress, warnings and
errors go to stderr. Progress bars are drawn only when stderr is a terminal; otherwise one plain
line per finished blob; nothing with ``-q``.

Exit codes: 0 ok, 1 other error, 2 usage (bad arguments, references, platforms or
configuration), 3 not found (no such image, tag, platform; offline and not cached),
4 authentication or authorisation, 5 integrity (digest or size mismatch), 6 network or registry
unavailable, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

from tank._version import __version__
from tank.errors import (
    AuthError,
    CacheMiss,
    ConfigError,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    NotFound,
    RegistryError,
    TankError,
    TransportError,
)

if TYPE_CHECKING:
    from tank._pull import ProgressEvent
    from tank.auth.credentials import CredentialStore
    from tank.config import Config

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_INTEGRITY = 5
EXIT_UNAVAILABLE = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
  0    ok
  1    other error
  2    usage: bad arguments, reference, platform or configuration
  3    not found: image, tag or platform; offline and not cached
  4    authentication or authorisation failed
  5    integrity: digest or size mismatch
  6    network or registry unavailable
  130  interrupted (Ctrl-C)"""


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, InvalidReference | InvalidDigest | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, NotFound | CacheMiss):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, TransportError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, RegistryError) and exc.status is not None and (
        exc.status == 429 or exc.status >= 500
    ):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def _fail(exc: BaseException) -> NoReturn:
    if isinstance(exc, KeyboardInterrupt):
        click.echo("tank: interrupted; what was downloaded is kept and the next pull resumes",
                   err=True)
        sys.stderr.flush()
        sys.stdout.flush()
        # Worker threads may sit in a socket read until its timeout; ingest files are on disk
        # and locks die with the process, so leave now rather than wait for them.
        os._exit(EXIT_INTERRUPTED)
    _explain(exc)
    sys.exit(exit_code(exc))


# -- errors in words, --debug ---------------------------------------------------------------------

_debug = False


def _set_debug(on: bool) -> None:
    """Turn on ``--debug``: full error detail, and the library's debug log (retries) on stderr."""
    global _debug
    _debug = on
    if on:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tank: debug: %(name)s: %(message)s"))
        log = logging.getLogger("tank")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


def _hint(exc: BaseException) -> str | None:
    """What to try after ``exc``, in a few words; ``None`` when there is nothing useful to say."""
    import errno

    from tank.errors import (
        InvalidDigest,
        PlatformNotFound,
        StorageError,
        TLSError,
    )

    text = str(exc)
    where = ""
    if isinstance(exc, RegistryError) and exc.registry and exc.repository:
        domain = "docker.io" if exc.registry == "registry-1.docker.io" else exc.registry
        where = f"{domain}/{exc.repository}"
    if isinstance(exc, PlatformNotFound):
        if not exc.available:
            return "the index offers no runnable image"
        return "choose one of those with --platform"
    if isinstance(exc, NotFound):
        if "blob" in text:
            return "check the digest: the repository has no blob by that name"
        if "tag list" in text:
            return "check the repository name (and that you may see it: tank login)"
        if exc.reference and ":" in exc.reference:
            return "check the repository name and the digest"
        return "check the repository name and the tag" + (
            f" (`tank tags {where}` lists the tags)" if where else ""
        )
    if isinstance(exc, AuthError):
        if "tank login" in text:
            return None
        host = f" {where.split('/', 1)[0]}" if where else ""
        return f"if the image is private, log in first: tank login{host}"
    if isinstance(exc, TLSError):
        if "--ca-file" in text:  # the transport already said how
            return None
        return "if the registry's certificate comes from a private CA, pass --ca-file FILE"
    if isinstance(exc, TransportError):
        return "check the registry's address and the network (--retries N tries longer)"
    if isinstance(exc, RegistryError) and exc.status == 429:
        return "the registry limits requests: wait and try again (logging in raises the limit)"
    if isinstance(exc, RegistryError) and exc.status is not None and exc.status >= 500:
        return "the registry is failing: try again later"
    if isinstance(exc, IntegrityError):
        return ("try again; if it persists, the registry or a proxy serves corrupt data "
                "(--debug shows the detail)")
    if isinstance(exc, CacheMiss):
        return "run it without --offline to fetch what is missing"
    if isinstance(exc, InvalidReference):
        return "a reference is [REGISTRY/]REPOSITORY[:TAG][@DIGEST], e.g. alpine:3.19"
    if isinstance(exc, InvalidDigest):
        return "a digest is sha256: followed by 64 lower-case hex characters"
    if isinstance(exc, StorageError):
        if exc.errno == errno.ENOSPC:
            return "free some space (tank cache prune), or choose another cache with --cache DIR"
        if " cache " in text:
            return "check the cache directory's permissions, or choose another with --cache DIR"
        return "check that the directory exists and that you may write there"
    return None


def _explain(exc: BaseException) -> None:
    """One line on stderr: what failed and what to try; with ``--debug`` the full detail too."""
    hint = _hint(exc)
    click.echo(f"tank: error: {exc}" + (f"; {hint}" if hint else ""), err=True)
    if _debug:
        import traceback

        detail = "".join(traceback.format_exception(exc)).rstrip()
        click.echo(f"tank: debug: {type(exc).__module__}.{type(exc).__qualname__}", err=True)
        if isinstance(exc, RegistryError):
            click.echo(
                f"tank: debug: registry={exc.registry} repository={exc.repository} "
                f"reference={exc.reference} status={exc.status} codes={list(exc.codes)}",
                err=True,
            )
            for error in exc.errors:
                click.echo(f"tank: debug: {error.code}: {error.message} "
                           f"detail={json.dumps(error.detail, default=str)}", err=True)
        if isinstance(exc, TankError) and exc.retried is not None:
            click.echo(f"tank: debug: tried {exc.retried[0]} times over {exc.retried[1]:.1f} s",
                       err=True)
        click.echo(detail, err=True)


def human_bytes(n: int | float) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units, as registries and docker print sizes)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


class _Progress:
    """Renders pull events on stderr: bars on a terminal, plain lines otherwise, or nothing."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._tqdm: Any = None
        if self.tty:
            from tqdm import tqdm  # only on a terminal: keeps start-up fast elsewhere

            self._tqdm = tqdm

    def __call__(self, event: ProgressEvent) -> None:
        if self.quiet:
            return
        short = event.digest.split(":", 1)[-1][:12]
        with self._lock:
            if event.kind == "manifest":
                if not self.tty:
                    click.echo(f"{event.what} {event.digest}", err=True)
                return
            if self.tty:
                self._draw(event, short)
            elif event.kind in ("finished", "cached"):
                state = "downloaded" if event.kind == "finished" else "cached"
                size = human_bytes(event.size or 0)
                click.echo(f"{event.what} {event.digest} {size} {state}", err=True)

    def _draw(self, event: ProgressEvent, short: str) -> None:
        bar = self._bars.get(event.digest)
        if bar is None:
            bar = self._tqdm(
                total=event.size, unit="B", unit_scale=True, unit_divisor=1000,
                desc=f"{event.what} {short}", file=sys.stderr, position=len(self._bars),
                leave=True, ncols=min(shutil.get_terminal_size().columns, 120),
                mininterval=0.1,
            )
            self._bars[event.digest] = bar
        if event.kind == "bytes":
            bar.update(event.amount)
        elif event.kind == "restarted":
            bar.reset(total=event.size)
        elif event.kind == "cached":
            bar.set_postfix_str("cached")
            bar.update((event.size or 0) - bar.n)
            bar.close()
        elif event.kind == "finished":
            bar.update((event.size or 0) - bar.n)
            bar.close()

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()


MAIN_EXAMPLES = """\b
Examples:
  tank pull alpine -o oci:./alpine
  tank inspect alpine --platform linux/arm64
  tank digest ghcr.io/owner/app:1.2
  tank tags alpine --max 20
  tank blob alpine sha256:<hex> -o layer.tar.gz
  tank cache du
  eval "$(tank completion bash)"

"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=MAIN_EXAMPLES + EXIT_CODES_HELP,
)
@click.version_option(__version__, "--version", "-V", prog_name="tank")
@click.option("--debug", is_flag=True, envvar="TANK_DEBUG",
              help="On failure print the full detail (the error's chain and traceback, the "
                   "registry's error body), and log retries [env TANK_DEBUG].")
def main(debug: bool) -> None:
    """Fast, verified container-image pulls."""
    _set_debug(debug)


# -- configuration, trust and insecure registries: options for every command that talks to a
# registry (tank.config, tank.transport) --------------------------------------------------------

_Cmd = TypeVar("_Cmd", bound="Callable[..., Any]")


def _trust_options(*, config_option: bool) -> Callable[[_Cmd], _Cmd]:
    """``--ca-file FILE``, ``--insecure-registry HOST[:PORT]`` (repeatable) and, with
    ``config_option``, ``--config FILE``.

    The command receives them as one ``settings`` argument: the configuration files
    (:func:`tank.config.load`) with the options applied, a :class:`tank.config.Config`. Pass it
    on as ``config=settings`` (``tank.pull``) or use ``settings.transport()`` for a
    :class:`~tank.transport.Transport`. A configuration that cannot be used exits 2.
    """

    def decorate(f: _Cmd) -> _Cmd:
        @functools.wraps(f)
        def wrapper(
            *args: Any, ca_file: str | None, insecure_registries: tuple[str, ...],
            config_file: str | None = None, **kwargs: Any,
        ) -> Any:
            from tank.config import load

            try:
                settings = load(config_file).with_options(
                    ca_file=ca_file, insecure_registries=insecure_registries
                )
            except TankError as exc:
                _fail(exc)
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
        return cast("_Cmd", command)

    return decorate


#: the trust options plus ``--config FILE``, for every command that talks to a registry
_config_options = _trust_options(config_option=True)
#: the same without ``--config`` (``tank inspect --config`` prints the config blob; the file
#: comes from ``$TANK_CONFIG``)
_inspect_trust_options = _trust_options(config_option=False)


@main.command(epilog="\b\nExamples:\n  tank pull alpine\n  tank pull ghcr.io/o/app:1.2 "
              "-o oci:./app-layout --platform linux/arm64\n"
              "  tank pull alpine -o rootfs:./alpine-root\n"
              "  tank pull alpine -o docker-archive:alpine.tar\n  tank pull alpine --json | jq "
              ".digest\n\n" + EXIT_CODES_HELP)
@click.argument("reference")
@click.option("-o", "--output", metavar="oci:DIR[:TAG] | docker-archive:FILE[:REF] | rootfs:DIR",
              help="Also write the image as an OCI image layout in DIR, named TAG (default: "
                   "the reference's tag, or latest); as a tar that docker load reads, "
                   "tagged REF (default: the reference); or unpacked as a root filesystem "
                   "into DIR (new or empty).")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="The platform to take from a multi-platform image (default: the config's "
                   "platform, else this host's).")
@click.option("--all-platforms", is_flag=True,
              help="Take every platform of a multi-platform image (and its attestations); with "
                   "-o oci: the layout holds the whole index.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              show_default="4, or the config's jobs",
              help="Blobs downloaded at once, each over its own connection.")
@click.option("--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE",
              help="The cache directory [env TANK_CACHE; default ~/.cache/tank].")
@click.option("--offline", is_flag=True, help="Never touch the network; use the cache only.")
@click.option("--refresh", is_flag=True, help="Re-fetch the manifest and blobs even if cached.")
@click.option("--copy", is_flag=True, help="Copy blobs into the layout instead of linking.")
@click.option("--no-rootfs-cache", is_flag=True,
              help="With -o rootfs:DIR, unpack straight into DIR instead of building the root "
                   "filesystem once in the cache and copying it out.")
@click.option("--retries", type=click.IntRange(0, 100), default=4, show_default=True,
              help="Retries of a failed request (resets, timeouts, 429, 5xx), with backoff.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
@_config_options
def pull(
    reference: str, output: str | None, platform: str | None, all_platforms: bool,
    jobs: int | None, cache_dir: str | None, offline: bool, refresh: bool, copy: bool,
    no_rootfs_cache: bool, retries: int, quiet: bool, as_json: bool, settings: Config,
) -> None:
    """Pull REFERENCE into the cache, verifying every byte; optionally write it out.

    An interrupted pull (Ctrl-C, a lost connection, a killed process) keeps what it downloaded;
    the next pull of the same image resumes each blob where it stopped.
    """
    from tank._pull import pull as do_pull
    from tank.retry import DEFAULT_RETRY

    progress = _Progress(quiet=quiet)
    policy = dataclasses.replace(DEFAULT_RETRY, attempts=retries + 1)
    try:
        image = do_pull(
            reference, platform=platform, all_platforms=all_platforms, output=output,
            cache=cache_dir, jobs=jobs, offline=offline, refresh=refresh, progress=progress,
            copy=copy, retry=policy, credentials=_credential_store(), config=settings,
            rootfs_cache=not no_rootfs_cache,
        )
    except (TankError, KeyboardInterrupt) as exc:
        progress.close()
        _fail(exc)
    progress.close()
    if as_json:
        click.echo(json.dumps(image.to_json(), indent=2))
        return
    where = f" -> {image.to_json()['output']}" if image.output is not None else ""
    plat = f" {image.platform}" if image.platform else ""
    click.echo(
        f"{image.reference} {image.digest}{plat}: {len(image.layers)} layers, "
        f"{human_bytes(image.bytes_downloaded)} downloaded, "
        f"{human_bytes(image.bytes_cached)} cached, {image.seconds:.2f} s{where}"
    )


def _credential_store() -> CredentialStore:
    """The machine's registry credentials (auth.json, docker config, helpers), read lazily."""
    from tank.auth.credentials import CredentialStore

    return CredentialStore()


def _registry_arg(value: str) -> str:
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


@main.command(epilog="\b\nExamples:\n  tank login registry.example.com -u alice\n  echo \"$TOKEN\" "
              "| tank login ghcr.io -u alice --password-stdin\n\n" + EXIT_CODES_HELP)
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for on a terminal when missing).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password (or access token) from stdin instead of asking for it.")
def login(registry: str, username: str | None, password_stdin: bool) -> None:
    """Check credentials against REGISTRY, then store them where docker would.

    The check is a GET /v2/ answering the registry's challenge with them (Basic, or a token from
    its token server, asking for a refresh token as docker does). They are stored with the
    config's credential helper (credHelpers, else credsStore) when one is set, else in
    $DOCKER_CONFIG/config.json (~/.docker/config.json), mode 0600, its other keys kept. When the
    token server grants a refresh token, that is stored instead of the password.
    """
    from tank.auth.credentials import Credentials
    from tank.registry import check_login

    host = _registry_arg(registry)
    if password_stdin and not username:
        raise click.UsageError("--password-stdin needs -u/--username")
    if not username:
        if not sys.stdin.isatty():
            raise click.UsageError("give -u/--username (stdin is not a terminal)")
        username = str(click.prompt("Username", err=True))
    if password_stdin:
        password = sys.stdin.read()
        password = password.removesuffix("\n").removesuffix("\r")
    else:
        if not sys.stdin.isatty():
            raise click.UsageError("give the password with --password-stdin (stdin is not a "
                                   "terminal)")
        password = str(click.prompt("Password", hide_input=True, err=True))
    if not password:
        raise click.UsageError("the password is empty")
    store = _credential_store()
    try:
        checked = check_login(host, Credentials(username, password))
        where = store.store(host, checked)
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    click.echo(f"tank: login succeeded; the credentials for {host} are in {where}", err=True)
    try:
        found = _credential_store().lookup(host)
    except TankError:
        found = None
    if found is not None and found.source != where:
        click.echo(f"tank: warning: {found.source} also holds credentials for {host}, and is "
                   "read first (by tank, skopeo and podman)", err=True)


@main.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Remove the credentials stored for REGISTRY (with its helper's erase, or from the docker
    config file, keeping its other keys)."""
    host = _registry_arg(registry)
    store = _credential_store()
    try:
        erased = store.erase(host)
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    if erased:
        click.echo(f"tank: removed the credentials for {host}", err=True)
    else:
        click.echo(f"tank: not logged in to {host}", err=True)
    try:
        left = _credential_store().lookup(host)
    except TankError:
        left = None
    if left is not None:
        click.echo(f"tank: note: {left.source} still holds credentials for {host}", err=True)


@main.group(epilog="\b\nExamples:\n  tank cache ls\n  tank cache du --json\n  tank cache "
                    "prune --older-than 7d\n  tank cache verify --fix")
def cache() -> None:
    """Inspect, check and prune the local cache."""


@cache.command(epilog="\b\nExamples:\n  tank cache verify\n  tank cache verify --fix\n  "
                      "TANK_CACHE=/srv/tank tank cache verify")
@click.option("--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE",
              help="The cache directory [env TANK_CACHE; default ~/.cache/tank].")
@click.option("--fix", is_flag=True,
              help="Remove each corrupt blob it finds (the next pull fetches it again); exit 0 "
                   "when all of them were removed.")
def verify(cache_dir: str | None, fix: bool) -> None:
    """Re-hash every cached blob; exit 1 and name each one whose bytes do not match."""
    from tank.store import Store

    store = Store(cache_dir)
    if fix:
        _verify_fix(store)
        return
    try:
        bad = store.verify()
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    for entry in bad:
        click.echo(f"{entry.digest} {entry.reason} ({entry.path})")
    total = sum(1 for _ in store.iter_blobs())
    if bad:
        click.echo(f"tank: {len(bad)} of {total} cached blobs are corrupt", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"tank: {total} cached blobs verified", err=True)


# -- inspect, digest, tags, blob, cache ls/du/prune, completion ----------------------------------

if TYPE_CHECKING:
    from collections.abc import Callable

_F = TypeVar("_F", bound="Callable[..., Any]")

_COMMON_PLATFORMS = (
    "linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le",
    "linux/s390x", "linux/riscv64", "windows/amd64",
)


def _complete_platform(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[str]:
    """Shell completion for --platform: the usual platforms."""
    return [p for p in _COMMON_PLATFORMS if p.startswith(incomplete)]


def _complete_cached_ref(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[str]:
    """Shell completion for REF: the images recorded in the cache."""
    try:
        from tank.store.maintenance import listing

        refs = [i.reference for i in listing(ctx.params.get("cache_dir")).images]
    except Exception:  # completion must never fail loudly
        return []
    return [r for r in refs if r.startswith(incomplete)]


def _retries_option(f: _F) -> _F:
    """``--retries N``, for the commands that talk to a registry."""
    option = click.option(
        "--retries", type=click.IntRange(0, 100), default=4, show_default=True,
        help="Retries of a failed request (resets, timeouts, 429, 5xx), with backoff.",
    )
    return option(f)


def _remote(settings: Config, retries: int) -> dict[str, Any]:
    """The transport, retry policy and credentials a registry command passes to the library."""
    from tank.retry import DEFAULT_RETRY

    return {
        "transport": settings.transport(),
        "retry": dataclasses.replace(DEFAULT_RETRY, attempts=retries + 1),
        "credentials": _credential_store(),
    }


def _clean(text: object) -> str:
    """A registry's string made safe for a terminal: control characters escaped."""
    out = []
    for ch in str(text):
        code = ord(ch)
        out.append(ch if code >= 0x20 and not 0x7F <= code < 0xA0 else f"\\x{code:02x}")
    return "".join(out)


def _short_type(media_type: str) -> str:
    """``application/vnd.oci.image.layer.v1.tar+gzip`` → ``oci tar+gzip``."""
    for prefix, name in (
        ("application/vnd.oci.image.layer.v1.", "oci "),
        ("application/vnd.docker.image.rootfs.diff.", "docker "),
        ("application/vnd.oci.image.", "oci "),
        ("application/vnd.docker.distribution.", "docker "),
    ):
        if media_type.startswith(prefix):
            return name + media_type[len(prefix):]
    return media_type


def _write_stdout(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def _print_inspection(info: Any) -> None:
    """The readable form of an :class:`tank.inspect.Inspection`."""
    def row(label: str, value: object) -> None:
        click.echo(f"{label + ':':<12} {value}")

    row("Reference", info.reference)
    row("Digest", info.digest)
    if info.kind == "index":
        row("Media type", f"{info.media_type} (multi-platform index)")
        sized = any(e.image_size is not None for e in info.platforms)
        click.echo("Platforms:" + ("  (image sizes)" if sized else "  (manifest sizes; "
                                    "--sizes for image sizes)"))
        width = max([len(str(e.platform or "-")) for e in info.platforms] + [8])
        for e in info.platforms:
            size = human_bytes(e.image_size if e.image_size is not None else e.size)
            note = "  (attestation)" if e.attestation else ""
            plat = str(e.platform or "-")
            click.echo(f"  {plat:<{width}}  {e.digest}  {size:>9}{note}")
        return
    if info.index_digest:
        row("Index", info.index_digest)
    row("Media type", info.media_type)
    row("Platform", info.platform or "-")
    row("Created", _clean(info.created or "-"))
    row("Size", f"{human_bytes(info.total_size)} ({len(info.layers)} layers, compressed)")
    row("Entrypoint", _clean(json.dumps(info.entrypoint)) if info.entrypoint else "-")
    row("Cmd", _clean(json.dumps(info.cmd)) if info.cmd else "-")
    row("User", _clean(info.user or "-"))
    row("Workdir", _clean(info.working_dir or "-"))
    row("Ports", _clean(", ".join(info.exposed_ports)) or "-")
    if info.env:
        click.echo("Env:")
        for item in info.env:
            click.echo(f"  {_clean(item)}")
    if info.labels:
        click.echo("Labels:")
        for key, value in sorted(info.labels.items()):
            click.echo(f"  {_clean(key)}={_clean(value)}")
    click.echo("Layers:")
    for layer in info.layers:
        created = f"  {_clean(layer.created_by)}" if layer.created_by else ""
        click.echo(f"  {layer.digest}  {human_bytes(layer.size):>9}  "
                   f"{_short_type(layer.media_type)}{created}")


@main.command(epilog="\b\nExamples:\n  tank inspect alpine\n  tank inspect alpine --platform "
              "linux/arm64\n  tank inspect alpine --raw | sha256sum\n  tank inspect "
              "ghcr.io/o/app:1.2 --config | jq .config.Env\n  tank inspect alpine --json | jq "
              "'.platforms[].platform'\n\n" + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=_complete_cached_ref)
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", shell_complete=_complete_platform,
              help="From a multi-platform index, inspect this platform's image.")
@click.option("--raw", is_flag=True,
              help="Print the manifest exactly as served (its sha256 is the digest).")
@click.option("--config", "show_config", is_flag=True,
              help="Print the image's config blob (from an index: this host's platform, or "
                   "--platform).")
@click.option("--sizes", is_flag=True,
              help="For an index, also read each platform's manifest for its image size (one "
                   "more request each; Docker Hub counts them against its rate limit).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
@_retries_option
@_inspect_trust_options
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
    from tank._inspect import inspect as do_inspect
    from tank.platform import host_platform

    if sum((raw, show_config, as_json)) > 1:
        raise click.UsageError("choose one of --raw, --config and --json")
    want = platform or (str(host_platform()) if show_config else None)
    try:
        info = do_inspect(
            reference, platform=want, children=sizes and not (raw or show_config),
            **_remote(settings, retries),
        )
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    if raw:
        _write_stdout(info.raw)
    elif show_config:
        _write_stdout(info.config_raw or b"")
    elif as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        _print_inspection(info)


@main.command(epilog="\b\nExamples:\n  tank digest alpine\n  tank digest alpine --platform "
              "linux/arm64\n  tank pull \"alpine@$(tank digest alpine)\"\n\n" + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=_complete_cached_ref)
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", shell_complete=_complete_platform,
              help="Print the digest of this platform's image in the index instead.")
@_retries_option
@_config_options
def digest(reference: str, platform: str | None, retries: int, settings: Config) -> None:
    """Print the digest REFERENCE resolves to, and nothing else.

    That is the index's digest for a multi-platform image (with --platform, the chosen
    platform's image). Without --platform it costs one HEAD request when the registry sends
    Docker-Content-Digest (Docker Hub does not count HEADs against its rate limit), else the
    manifest is fetched and hashed.
    """
    from tank._inspect import resolve_digest

    try:
        found = resolve_digest(reference, platform=platform, **_remote(settings, retries))
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    click.echo(found)


@main.command(epilog="\b\nExamples:\n  tank tags alpine\n  tank tags ghcr.io/owner/app --max "
              "10\n  tank tags quay.io/org/repo --json | jq '.tags | length'\n\n"
              + EXIT_CODES_HELP)
@click.argument("repository")
@click.option("--max", "limit", type=click.IntRange(0), metavar="N",
              help="Print at most N tags (no further page is fetched).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
@_retries_option
@_config_options
def tags(
    repository: str, limit: int | None, as_json: bool, retries: int, settings: Config
) -> None:
    """List the tags of REPOSITORY, one per line, in the registry's order.

    Every page is fetched, following the registry's Link headers to the end.
    """
    from tank._inspect import list_tags, parse_repository

    try:
        repo = parse_repository(repository)
        found = list_tags(repo, limit=limit, **_remote(settings, retries))
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"repository": repo.name, "tags": found}, indent=2))
        return
    for tag in found:
        click.echo(tag)


@main.command(epilog="\b\nExamples:\n  tank blob alpine sha256:<hex> -o layer.tar.gz\n  tank "
              "blob alpine sha256:<hex> | tar -tz\n  tank blob ghcr.io/o/app "
              "\"$(tank inspect ghcr.io/o/app --json | jq -r .config.digest)\" | jq .\n\n"
              + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=_complete_cached_ref)
@click.argument("blob_digest", metavar="DIGEST")
@click.option("-o", "--output", metavar="FILE",
              help="Write the blob to FILE, which appears only once it verified (default: "
                   "stdout).")
@_retries_option
@_config_options
def blob(
    reference: str, blob_digest: str, output: str | None, retries: int, settings: Config
) -> None:
    """Fetch one blob of REFERENCE's repository, verified against DIGEST.

    To stdout the bytes stream as they arrive and are verified at the end: on a mismatch tank
    exits 5 and what was written must be discarded. With -o the file appears only when the
    blob verified. A broken-off download resumes where it stopped.
    """
    from tank.digest import Digest
    from tank.reference import parse as parse_reference
    from tank.registry import download_blob

    try:
        ref = parse_reference(reference)
        want = Digest.parse(blob_digest)
        remote = _remote(settings, retries)
        if output is not None and output != "-":
            download_blob(ref.registry, ref.repository, want, None, output, **remote)
        else:
            _stream_blob(ref.registry, ref.repository, want, remote)
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    except BrokenPipeError:  # the reader went away (| head): not tank's failure
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except OSError as exc:  # -o into a directory that is missing or not writable
        from tank.errors import StorageError

        _fail(StorageError(f"cannot write {output}: {exc.strerror or exc}", path=output,
                           errno=exc.errno))


def _stream_blob(registry: str, repo: str, digest: str, remote: dict[str, Any]) -> None:
    """Copy a blob to stdout, resuming with Range when it breaks off; verified at the end."""
    import time

    from tank.registry import open_blob
    from tank.retry import is_retryable

    policy = remote["retry"]
    out = sys.stdout.buffer
    written = 0
    hasher = None
    attempt = 1
    started = time.monotonic()
    while True:
        stream = None
        try:
            offset = written if hasher is not None else 0
            with open_blob(
                registry, repo, digest, None, offset=offset, hasher=hasher, **remote
            ) as stream:
                skip = written - stream.offset  # bytes already written that come again
                for chunk in stream:
                    if skip:
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if chunk:
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            return
        except TankError as exc:
            if not is_retryable(exc) or attempt >= policy.attempts:
                if attempt > 1:
                    exc.retried = (attempt, time.monotonic() - started)
                raise
            delay = policy.delay(attempt, exc)
            attempt += 1
            if stream is not None and stream.hasher.size == written:
                hasher = stream.hasher.copy()  # resume from the last byte written
            else:
                hasher = None  # start over, skipping what stdout already has
            time.sleep(delay)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


_cache_option = click.option(
    "--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE",
    help="The cache directory [env TANK_CACHE; default ~/.cache/tank].",
)


@cache.command("ls", epilog="\b\nExamples:\n  tank cache ls\n  tank cache ls --json | jq -r "
               "'.images[].reference'")
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List what the cache holds: images by reference, root filesystems, partial downloads.

    Each image shows the digest its tag last resolved to, the platforms wholly cached, the size
    of its blobs in the cache and when it was last pulled.
    """
    from tank.store.maintenance import listing

    try:
        found = listing(cache_dir)
    except (TankError, OSError, KeyboardInterrupt) as exc:
        _fail(exc if not isinstance(exc, OSError) else TankError(str(exc)))
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    if found.images:
        width = max(len(i.reference) for i in found.images)
        click.echo(f"{'IMAGE':<{width}}  {'DIGEST':<19}  {'SIZE':>9}  {'PULLED':<20}  PLATFORMS")
        for i in found.images:
            digest = i.digest[:19] if i.cached else "(manifest missing)"
            click.echo(f"{i.reference:<{width}}  {digest:<19}  {human_bytes(i.size):>9}  "
                       f"{i.updated[:19].replace('T', ' '):<20}  {', '.join(i.platforms) or '-'}")
    for r in found.rootfs:
        notes = [n for n, on in (("building", r.building), ("rootless", r.rootless),
                                 ("unused", not r.used and not r.building)) if on]
        state = f"  ({', '.join(notes)})" if notes else ""
        click.echo(f"rootfs {r.digest}  {human_bytes(r.size):>9}{state}")
    for g in found.ingest:
        state = "downloading" if g.active else "partial"
        click.echo(f"ingest {g.digest}  {human_bytes(g.size):>9}  ({state})")
    unused = [b for b in found.blobs if not b.used]
    click.echo(
        f"tank: {len(found.images)} images, {len(found.blobs)} blobs "
        f"({human_bytes(sum(b.size for b in found.blobs))}; {len(unused)} unused, "
        f"{human_bytes(sum(b.size for b in unused))}), {len(found.rootfs)} root filesystems, "
        f"{len(found.ingest)} partial downloads in {found.root}", err=True,
    )


@cache.command("du", epilog="\b\nExamples:\n  tank cache du\n  tank cache du --json | jq .total")
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
def cache_du(cache_dir: str | None, as_json: bool) -> None:
    """Show how much disk the cache takes: blobs (used and unused), partial downloads, root
    filesystems."""
    from tank.store.maintenance import usage

    try:
        found = usage(cache_dir)
    except (TankError, OSError, KeyboardInterrupt) as exc:
        _fail(exc if not isinstance(exc, OSError) else TankError(str(exc)))
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    rows = [
        ("blobs", found.blobs, ""),
        ("  used", found.used, f"by {found.images} recorded images"),
        ("  unused", found.unused, "tank cache prune removes them"),
        ("ingest", found.ingest, "partial downloads"),
        ("rootfs", found.rootfs, "assembled root filesystems"),
    ]
    for name, (count, size), note in rows:
        click.echo(f"{name:<8} {count:>7}  {human_bytes(size):>9}  {note}".rstrip())
    click.echo(f"{'total':<8} {'':>7}  {human_bytes(found.total):>9}  {found.root}")


@cache.command("prune", epilog="\b\nExamples:\n  tank cache prune\n  tank cache prune "
               "--older-than 7d\n  tank cache prune --all --dry-run\n  tank cache prune "
               "--older-than 0s   # no safety window either")
@_cache_option
@click.option("--all", "all_images", is_flag=True,
              help="Forget every recorded image, so that all of it goes.")
@click.option("--older-than", metavar="DURATION",
              help="Forget images last pulled longer ago than DURATION (7d, 12h, 30m, 1h30m), "
                   "and keep only what changed within it (instead of the last 10 minutes).")
@click.option("--dry-run", is_flag=True, help="Remove nothing; print what would go.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
def cache_prune(
    cache_dir: str | None, all_images: bool, older_than: str | None, dry_run: bool,
    as_json: bool,
) -> None:
    """Remove what no recorded image uses: blobs, stale partial downloads, root filesystems.

    Safe while pulls run: nothing a pull is writing is touched, nor any image it is
    downloading, nor anything written in the last 10 minutes (--older-than sets that window).
    """
    from tank.store.maintenance import parse_duration, prune

    if all_images and older_than is not None:
        raise click.UsageError("choose --all or --older-than, not both")
    seconds: float | None = None
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        result = prune(cache_dir, all_images=all_images, older_than=seconds, dry_run=dry_run)
    except (TankError, OSError, KeyboardInterrupt) as exc:
        _fail(exc if not isinstance(exc, OSError) else TankError(str(exc)))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for ref in result.images:
        click.echo(f"{verb} image {ref}")
    for kind, part in (("blob", result.blobs), ("ingest", result.ingest),
                       ("rootfs", result.rootfs)):
        for d, size in part:
            click.echo(f"{verb} {kind} {d} {human_bytes(size)}")
    click.echo(
        f"tank: {verb} {len(result.images)} images, {len(result.blobs)} blobs, "
        f"{len(result.ingest)} partial downloads and {len(result.rootfs)} root filesystems: "
        f"{human_bytes(result.freed)}", err=True,
    )
    if result.in_use:
        click.echo(f"tank: kept {len(result.in_use)} that a running pull is using", err=True)
    if result.recent:
        click.echo(f"tank: kept {len(result.recent)} unused ones changed in the last "
                   f"{_age(result.window)} (a pull may still need them; --older-than 0s "
                   "removes them too)", err=True)


def _verify_fix(store: Any) -> None:
    """``tank cache verify --fix``: remove each corrupt blob; exit 1 if one could not be."""
    from tank.store.maintenance import fix

    try:
        fixed = fix(store)
    except (TankError, KeyboardInterrupt) as exc:
        _fail(exc)
    for f in fixed:
        state = "removed" if f.removed else f"kept: {f.note}"
        click.echo(f"{f.problem.digest} {f.problem.reason} ({f.problem.path}) {state}")
    total = sum(1 for _ in store.iter_blobs())
    left = [f for f in fixed if not f.removed]
    if not fixed:
        click.echo(f"tank: {total} cached blobs verified", err=True)
    elif left:
        click.echo(f"tank: removed {len(fixed) - len(left)} corrupt blobs; {len(left)} could "
                   "not be removed", err=True)
        sys.exit(EXIT_ERROR)
    else:
        click.echo(f"tank: removed {len(fixed)} corrupt blobs ({total} good ones left); the "
                   "next pull fetches them again", err=True)


@main.command(epilog="\b\nExamples:\n  eval \"$(tank completion bash)\"      # in ~/.bashrc\n"
              "  eval \"$(tank completion zsh)\"       # in ~/.zshrc\n  tank completion fish > "
              "~/.config/fish/completions/tank.fish")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes commands, options, platforms and the images recorded in the cache. It is
    click's own mechanism: the script calls tank with _TANK_COMPLETE set.
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice above lists what click knows
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(main, {}, "tank", "_TANK_COMPLETE").source())


if __name__ == "__main__":  # pragma: no cover
    main()
