"""The ``tank`` command.

stdout carries only data (a summary line, or the ``--json`` document); progress, warnings and
errors go to stderr. Progress bars are drawn only when stderr is a terminal; otherwise one plain
line per finished blob; nothing with ``-q``.

Exit codes: 0 ok, 1 other error, 2 usage (bad arguments, references or platforms), 3 not found
(no such image, tag, platform; offline and not cached), 4 authentication or authorisation,
5 integrity (digest or size mismatch), 6 network or registry unavailable, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import click

from tank import __version__
from tank.errors import (
    AuthError,
    CacheMiss,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    NotFound,
    RegistryError,
    TankError,
    TransportError,
)

if TYPE_CHECKING:
    from tank.pull import ProgressEvent

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
  2    usage: bad arguments, reference or platform
  3    not found: image, tag or platform; offline and not cached
  4    authentication or authorisation failed
  5    integrity: digest or size mismatch
  6    network or registry unavailable
  130  interrupted (Ctrl-C)"""


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, InvalidReference | InvalidDigest):
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
    click.echo(f"tank: error: {exc}", err=True)
    sys.exit(exit_code(exc))


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


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, "--version", "-V", prog_name="tank")
def main() -> None:
    """Fast, verified container-image pulls."""


@main.command(epilog="\b\nExamples:\n  tank pull alpine\n  tank pull ghcr.io/o/app:1.2 "
              "-o oci:./app-layout --platform linux/arm64\n  tank pull alpine --json | jq "
              ".digest\n\n" + EXIT_CODES_HELP)
@click.argument("reference")
@click.option("-o", "--output", metavar="oci:DIR[:TAG] | docker-archive:FILE[:REF]",
              help="Also write the image as an OCI image layout in DIR, named TAG (default: "
                   "the reference's tag, or latest), or as a tar that docker load reads, "
                   "tagged REF (default: the reference).")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="The platform to take from a multi-platform image (default: this host's).")
@click.option("--all-platforms", is_flag=True,
              help="Take every platform of a multi-platform image (and its attestations); with "
                   "-o oci: the layout holds the whole index.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Blobs downloaded at once, each over its own connection.")
@click.option("--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE",
              help="The cache directory [env TANK_CACHE; default ~/.cache/tank].")
@click.option("--offline", is_flag=True, help="Never touch the network; use the cache only.")
@click.option("--refresh", is_flag=True, help="Re-fetch the manifest and blobs even if cached.")
@click.option("--copy", is_flag=True, help="Copy blobs into the layout instead of linking.")
@click.option("--retries", type=click.IntRange(0, 100), default=4, show_default=True,
              help="Retries of a failed request (resets, timeouts, 429, 5xx), with backoff.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document on stdout.")
def pull(
    reference: str, output: str | None, platform: str | None, all_platforms: bool, jobs: int,
    cache_dir: str | None, offline: bool, refresh: bool, copy: bool, retries: int, quiet: bool,
    as_json: bool,
) -> None:
    """Pull REFERENCE into the cache, verifying every byte, and optionally into a layout.

    An interrupted pull (Ctrl-C, a lost connection, a killed process) keeps what it downloaded;
    the next pull of the same image resumes each blob where it stopped.
    """
    from tank.pull import pull as do_pull
    from tank.retry import DEFAULT_RETRY

    progress = _Progress(quiet=quiet)
    policy = dataclasses.replace(DEFAULT_RETRY, attempts=retries + 1)
    try:
        image = do_pull(
            reference, platform=platform, all_platforms=all_platforms, output=output,
            cache=cache_dir, jobs=jobs, offline=offline, refresh=refresh, progress=progress,
            copy=copy, retry=policy,
        )
    except (TankError, KeyboardInterrupt) as exc:
        progress.close()
        _fail(exc)
    progress.close()
    if as_json:
        click.echo(json.dumps(image.to_json(), indent=2))
        return
    where = (
        f" -> {image.output_kind}:{image.output}:{image.output_tag}"
        if image.output is not None else ""
    )
    plat = f" {image.platform}" if image.platform else ""
    click.echo(
        f"{image.reference} {image.digest}{plat}: {len(image.layers)} layers, "
        f"{human_bytes(image.bytes_downloaded)} downloaded, "
        f"{human_bytes(image.bytes_cached)} cached, {image.seconds:.2f} s{where}"
    )


@main.group()
def cache() -> None:
    """Inspect and check the local cache."""


@cache.command()
@click.option("--cache", "cache_dir", metavar="DIR", envvar="TANK_CACHE",
              help="The cache directory [env TANK_CACHE; default ~/.cache/tank].")
def verify(cache_dir: str | None) -> None:
    """Re-hash every cached blob; exit 1 and name each one whose bytes do not match."""
    from tank.store import Store

    store = Store(cache_dir)
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


if __name__ == "__main__":  # pragma: no cover
    main()
