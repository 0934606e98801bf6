"""The one place where a failure becomes an exit code, a line on stderr and a hint.

Every command runs inside :class:`tank.cli.app.TankGroup`'s ``invoke``, which hands whatever
escapes a command to :func:`fail`; no command catches errors to report them itself.

Invariants:

- The exit code depends on the exception's class only, and on ``status`` for a
  :class:`~tank.errors.RegistryError` (429 and 5xx mean "unavailable"): see :func:`exit_code`
  and :data:`EXIT_CODES_HELP`.
- The hint depends on the class and the error's attributes (``status``, ``codes``, ``available``,
  ``reference``, ``errno``, ``path``, ``permanent``, the exception it was raised from), and on
  the cache directory the command used; never on the message's text (:func:`hint`).
- Without ``--debug`` a failure is exactly one line, ``tank: error: MESSAGE[; HINT]``. With it,
  the class, the registry's fields and error body, the retries and the traceback follow.
- Ctrl-C exits 130 at once (``os._exit``): worker threads may sit in a socket read, and what was
  downloaded is already on disk. A closed stdout (``tank tags | head``) exits 1 without a word.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from tank.errors import (
    AuthError,
    CacheMiss,
    ConfigError,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    NotFound,
    PathNotFound,
    PlatformNotFound,
    PolicyRefused,
    RegistryError,
    StorageError,
    TankError,
    TLSError,
    TransportError,
    printable,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_INTEGRITY = 5
EXIT_UNAVAILABLE = 6
EXIT_POLICY = 7
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
  0    ok
  1    other error
  2    usage: bad arguments, reference, platform or configuration
  3    not found: image, tag, platform, path in an image; offline, not cached
  4    authentication or authorisation failed
  5    integrity: digest or size mismatch
  6    network or registry unavailable
  7    refused by the signature policy
  130  interrupted (Ctrl-C)"""

#: what :func:`fail` maps; anything else is a bug and keeps its traceback
HANDLED: tuple[type[BaseException], ...] = (TankError, OSError, KeyboardInterrupt)


def exit_code(exc: BaseException) -> int:
    """The exit code for ``exc``: by its class, and for a registry's answer by its status."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, InvalidReference | InvalidDigest | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, NotFound | CacheMiss | PathNotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(exc, TransportError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, PolicyRefused):
        return EXIT_POLICY
    if isinstance(exc, RegistryError) and _unavailable(exc.status):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def _unavailable(status: int | None) -> bool:
    """A status that says "not now" rather than "no": 429 and 5xx."""
    return status is not None and (status == 429 or status >= 500)


def _where(exc: RegistryError) -> str:
    """``domain/repository`` as a user types it (``docker.io``, not the API host), or ``""``."""
    if not (exc.registry and exc.repository):
        return ""
    domain = "docker.io" if exc.registry == "registry-1.docker.io" else exc.registry
    return f"{domain}/{exc.repository}"


def _not_found_hint(exc: NotFound) -> str:
    """What to check after a 404: the registry's error code says what was missing; without
    one, the reference that was asked for does (a digest, the tag list's ``""``, or a tag)."""
    if isinstance(exc, PlatformNotFound):
        if not exc.available:
            return "the index offers no runnable image"
        return "choose one of those with --platform"
    codes = exc.codes
    if "BLOB_UNKNOWN" in codes:
        return "check the digest: the repository has no blob by that name"
    if "NAME_UNKNOWN" in codes or exc.reference == "":
        return "check the repository name (and that you may see it: tank login)"
    if exc.reference and ":" in exc.reference:
        return "check the repository name and the digest"
    where = _where(exc)
    return "check the repository name and the tag" + (
        f" (`tank tags {where}` lists the tags)" if where else ""
    )


def _auth_hint(exc: AuthError) -> str | None:
    """What to try after an authentication failure.

    A 401 needs none: every 401 the registry client raises names its cause and fix (log in
    with ``tank login HOST``; the credentials of X were refused; a challenge tank cannot
    answer). Without a status the failure is local (a credential helper, an unreadable
    credentials file) and its message names the helper or file; raised from a network failure,
    the token endpoint was out of reach.
    """
    if isinstance(exc.__cause__, TLSError):
        return None  # the transport's message names the fix
    if isinstance(exc.__cause__, TransportError):
        return "check the network: the token endpoint could not be reached"
    if exc.status is None or exc.status == 401:
        return None
    if _unavailable(exc.status):
        return "the registry's token endpoint is failing: try again later"
    where = _where(exc)
    host = f" {where.split('/', 1)[0]}" if where else ""
    return f"if the image is private, log in first: tank login{host}"


def _storage_hint(exc: StorageError, cache_dir: str | None) -> str:
    """No space; the cache directory (``exc.path`` under it); or another directory."""
    if exc.errno == errno.ENOSPC:
        return "free some space (tank cache prune), or choose another cache with --cache DIR"
    if exc.path is not None and _inside(Path(exc.path), _cache_root(cache_dir)):
        return "check the cache directory's permissions, or choose another with --cache DIR"
    return "check that the directory exists and that you may write there"


def _cache_root(cache_dir: str | None) -> Path | None:
    """The cache directory the command used (``--cache``, ``$TANK_CACHE``, or the default)."""
    if cache_dir:
        return Path(cache_dir).absolute()
    try:
        from tank.store import default_cache_dir

        return default_cache_dir()
    except Exception:  # no home directory: then nothing is "the cache"
        return None


def _inside(path: Path, root: Path | None) -> bool:
    if root is None:
        return False
    path = path.absolute()
    return path == root or root in path.parents


def hint(exc: BaseException, *, cache_dir: str | None = None) -> str | None:
    """What to try after ``exc``, in a few words; ``None`` when there is nothing useful to say.

    :param cache_dir: the ``--cache`` the command was given (``None``: the default), to tell a
        failing cache from another failing directory.
    """
    if isinstance(exc, NotFound):
        return _not_found_hint(exc)
    if isinstance(exc, AuthError):
        return _auth_hint(exc)
    if isinstance(exc, TLSError):
        return None  # the transport's message names the fix: certs.d, --ca-file, ...
    if isinstance(exc, TransportError):
        if exc.permanent:  # no retry cures it; the message says why
            return None
        return "check the registry's address and the network (--retries N tries longer)"
    if isinstance(exc, RegistryError) and exc.status == 429:
        return "the registry limits requests: wait and try again (logging in raises the limit)"
    if isinstance(exc, RegistryError) and _unavailable(exc.status):
        return "the registry is failing: try again later"
    if isinstance(exc, IntegrityError):
        return ("try again; if it persists, the registry or a proxy serves corrupt data "
                "(--debug shows the detail)")
    if isinstance(exc, PathNotFound) and exc.path.strip("/"):
        parent = exc.path.rstrip("/").rpartition("/")[0] or "/"
        parent = parent.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return printable(f"`tank ls {exc.reference or 'REF'} {parent}` lists what is there")
    if isinstance(exc, CacheMiss):
        return "run it without --offline to fetch what is missing"
    if isinstance(exc, InvalidReference):
        return "a reference is [REGISTRY/]REPOSITORY[:TAG][@DIGEST], e.g. alpine:3.19"
    if isinstance(exc, InvalidDigest):
        return "a digest is sha256: followed by 64 lower-case hex characters"
    if isinstance(exc, StorageError):
        return _storage_hint(exc, cache_dir)
    if isinstance(exc, PolicyRefused):
        return "nothing was written; check the policy's keys and signedIdentity (see docs/trust.md)"
    return None


def explain(exc: BaseException, *, debug: bool = False, cache_dir: str | None = None) -> None:
    """One line on stderr: what failed and what to try; with ``debug`` the full detail too."""
    tip = hint(exc, cache_dir=cache_dir)
    click.echo(f"tank: error: {exc}" + (f"; {tip}" if tip else ""), err=True)
    if not debug:
        return
    import traceback

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
    click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)


def fail(exc: BaseException, *, debug: bool = False, cache_dir: str | None = None) -> NoReturn:
    """Report ``exc`` (one of :data:`HANDLED`) and exit with its code."""
    if isinstance(exc, KeyboardInterrupt):
        click.echo("tank: interrupted; what was downloaded is kept and the next pull resumes",
                   err=True)
        sys.stderr.flush()
        _flush_stdout()
        os._exit(EXIT_INTERRUPTED)
    if isinstance(exc, BrokenPipeError):  # the reader went away (| head): not tank's failure
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    explain(exc, debug=debug, cache_dir=cache_dir)
    sys.exit(exit_code(exc))


def _flush_stdout() -> None:
    with contextlib.suppress(OSError):  # a closed pipe: nothing more to say there
        sys.stdout.flush()
