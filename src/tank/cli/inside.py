"""The commands that look inside images without unpacking them: ``ls``, ``cat``, ``export``,
``diff``.

Invariants: stdout carries only what was asked for (a listing, a JSON document, a file's bytes, a
tar, a list of changes) and only once every layer it comes from verified; progress goes to stderr
(:class:`~tank.cli.progress.PullProgress`) and is closed before anything reaches stdout. Every
name read from an image is escaped before it reaches a terminal (:func:`tank.cli.output.clean`).
``tank diff`` exits 0 when the trees are the same and 1 when they differ, as ``diff`` does;
errors keep their usual codes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

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
from tank.cli.output import clean, print_json


def show(name: str) -> str:
    """A name from an image, safe for a terminal: bytes that are not UTF-8 as ``\\xNN``,
    control characters escaped."""
    return clean(name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))

if TYPE_CHECKING:
    from tank._inside import Options
    from tank.config import Config
    from tank.inside import Change, FileEntry

F = TypeVar("F", bound=Callable[..., Any])


def image_options(f: F) -> F:
    """``--platform``, ``--cache``, ``--offline``, ``-q``, ``--retries`` and the trust options:
    what a command that reads an image through the cache takes."""
    for option in reversed((
        platform_option("From a multi-platform image, use this platform's image (default: the "
                        "config's platform, else this host's)."),
        cache_option,
        click.option("--offline", is_flag=True, help="Never touch the network; use the cache "
                                                     "only."),
        quiet_option,
        retries_option,
        config_options,
    )):
        f = option(f)
    return f


def _library(
    settings: Config, *, platform: str | None, cache_dir: str | None, offline: bool,
    retries: int, progress: Any,
) -> Options:
    """The keywords every ``tank.inside`` call takes, from the options."""
    from tank._inside import Options

    return Options(
        platform=platform, cache=cache_dir, offline=offline, jobs=None, progress=progress,
        retry=retry_policy(retries), transport=None, credentials=registry_credentials(),
        config=settings,
    )


# -- ls ------------------------------------------------------------------------------------------

LS_EXAMPLES = """\b
Examples:
  tank ls alpine
  tank ls alpine /etc -l
  tank ls debian:12 /usr/bin -R
  tank ls alpine --layer -1 -R -l
  tank ls alpine /etc --json | jq -r '.entries[].path'

"""


@click.command(epilog=LS_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.argument("path", default="/", required=False)
@click.option("-l", "long", is_flag=True,
              help="Long format: type and mode, links, owner, size, time (UTC), layer, name.")
@click.option("-R", "--recursive", is_flag=True, help="Everything under PATH, as full paths.")
@click.option("--layer", type=int, metavar="N",
              help="List one layer as its tar has it, whiteouts included (0 is the base layer, "
                   "-1 the top one); only that layer is fetched.")
@json_option
@image_options
def ls(
    reference: str, path: str, long: bool, recursive: bool, layer: int | None, as_json: bool,
    platform: str | None, cache_dir: str | None, offline: bool, quiet: bool, retries: int,
    settings: Config,
) -> None:
    """List PATH (default /) in the final filesystem of REFERENCE's image.

    The image's layers are read (pulled into the cache first, every byte verified) and merged
    as an unpack merges them: whiteouts and opaque directories applied, nothing written to disk.
    Symlinks are followed inside the image, never on the host; with -l a symlink PATH is shown
    itself (end it with / to list where it leads).
    """
    from tank._inside import list_files
    from tank.cli.progress import PullProgress

    follow = not long or path.endswith("/")
    with PullProgress(quiet=quiet, cache_dir=cache_dir) as progress:
        options = _library(settings, platform=platform, cache_dir=cache_dir, offline=offline,
                           retries=retries, progress=progress)
        found = list_files(reference, path, options, recursive=recursive, follow=follow,
                           layer=layer)
        entries = found if not as_json else list(found)
    if as_json:
        print_json({"reference": reference, "path": path, "layer": layer,
                    "entries": [e.to_json() for e in entries]})
        return
    print_listing(entries, long=long, full=recursive or layer is not None)


def print_listing(entries: Iterable[FileEntry], *, long: bool, full: bool) -> None:
    """One line per entry: the name (``full``: the path), or the long format; written a
    thousand lines at a time (a listing may have millions)."""
    lines: list[str] = []
    for entry in entries:
        name = entry.path if full else entry.name
        lines.append(long_line(entry, name) if long else show(name))
        if len(lines) >= 1000:
            click.echo("\n".join(lines))
            lines.clear()
    if lines:
        click.echo("\n".join(lines))


def long_line(entry: FileEntry, name: str) -> str:
    """``-rw-r--r--   1 0/0        43 2023-11-14 22:13  L2  os-release``."""
    size = f"{entry.devices[0]}, {entry.devices[1]}" if entry.devices else str(entry.size)
    when = entry.mtime.replace("T", " ")[:16]
    owner = f"{entry.uid}/{entry.gid}"
    line = (f"{entry.mode_string} {entry.nlink:>3} {owner:<11} {size:>12} {when} "
            f"L{entry.layer:<3} {show(name)}")
    if entry.kind == "symlink":
        line += f" -> {show(entry.link_target)}"
    elif entry.kind == "hardlink":
        line += f" link to {show(entry.link_target)}"
    return line


# -- cat -----------------------------------------------------------------------------------------

CAT_EXAMPLES = """\b
Examples:
  tank cat debian:12 /etc/os-release
  tank cat alpine /etc/passwd /etc/group
  tank cat ghcr.io/o/app:1.2 /app/config.yaml > config.yaml

"""


@click.command(epilog=CAT_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@image_options
def cat(
    reference: str, paths: tuple[str, ...], platform: str | None, cache_dir: str | None,
    offline: bool, quiet: bool, retries: int, settings: Config,
) -> None:
    """Write the content of each file PATH of REFERENCE's image to stdout.

    Layers are fetched and read from the top down; the search for a file stops at the first
    layer that has it or deletes it, so a file in the top layer needs only that layer.
    Symlinks are resolved inside the image's root, never on the host. A missing file, a
    deleted one or a symlink leading nowhere in the image exits 3; every PATH is found before
    anything is written. Large files stream.
    """
    from tank._inside import locate
    from tank.cli.progress import PullProgress

    with PullProgress(quiet=quiet, cache_dir=cache_dir) as progress:
        options = _library(settings, platform=platform, cache_dir=cache_dir, offline=offline,
                           retries=retries, progress=progress)
        finder, located = locate(reference, paths, options)
    out = sys.stdout.buffer
    for item in located:
        finder.write(item, out)
    out.flush()


# -- export --------------------------------------------------------------------------------------

EXPORT_EXAMPLES = """\b
Examples:
  tank export alpine -o alpine.tar
  tank export alpine --gzip -o alpine.tar.gz
  tank export alpine | tar -tv
  mkdir root && tank export alpine | tar -xp -C root

"""


@click.command(epilog=EXPORT_EXAMPLES + EXIT_CODES_HELP)
@click.argument("reference", shell_complete=complete_cached_ref)
@click.option("-o", "--output", metavar="FILE|-", default="-", show_default=True,
              help="Write the tar to FILE (which appears only once complete), or to stdout.")
@click.option("--gzip", "use_gzip", is_flag=True, help="Compress it with gzip.")
@click.option("--scratch", metavar="DIR",
              help="Where the unnamed scratch files holding file contents go while the layers "
                   "are read (default: the cache directory); they need up to the image's "
                   "uncompressed size.")
@image_options
def export(
    reference: str, output: str, use_gzip: bool, scratch: str | None, platform: str | None,
    cache_dir: str | None, offline: bool, quiet: bool, retries: int, settings: Config,
) -> None:
    """Write the flattened root filesystem of REFERENCE's image as one tar.

    Entries come in a stable order (a directory before its content, names sorted by their
    bytes); hard links stay hard links; there are no whiteouts and nothing an upper layer
    removed. GNU tar's extraction of it is the tree `tank pull -o rootfs:` writes. Nothing is
    written before every layer verified.
    """
    from tank._inside import prepare_export
    from tank.cli.progress import PullProgress

    if output == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write a tar to a terminal: use -o FILE, or a pipe")
    with PullProgress(quiet=quiet, cache_dir=cache_dir) as progress:
        options = _library(settings, platform=platform, cache_dir=cache_dir, offline=offline,
                           retries=retries, progress=progress)
        exporting = prepare_export(reference, options, scratch=scratch)
    try:
        exporting.write(sys.stdout.buffer if output == "-" else output, gzip=use_gzip)
    finally:
        exporting.close()


# -- diff ----------------------------------------------------------------------------------------

DIFF_EXAMPLES = """\b
Examples:
  tank diff app:1.0 app:1.1
  tank diff alpine:3.18 alpine:3.19 --json | jq -r '.changes[].path'
  tank diff app:1.0 app:1.1 >/dev/null || echo "the files differ"

"""


@click.command(epilog=DIFF_EXAMPLES + "\b\nExit 0 when the trees are the same, 1 when they "
               "differ (as diff does).\n\n" + EXIT_CODES_HELP)
@click.argument("reference_a", metavar="REF_A", shell_complete=complete_cached_ref)
@click.argument("reference_b", metavar="REF_B", shell_complete=complete_cached_ref)
@json_option
@image_options
@click.pass_context
def diff(
    ctx: click.Context, reference_a: str, reference_b: str, as_json: bool,
    platform: str | None, cache_dir: str | None, offline: bool, quiet: bool, retries: int,
    settings: Config,
) -> None:
    """List the files added, removed and changed from REF_A's image to REF_B's.

    Changed means another type, content, mode, owner or symlink target (modification times do
    not count). Output is sorted by path. A layer both images have is read once.
    """
    from tank._inside import views_of
    from tank.cli.progress import PullProgress
    from tank.inside.diff import compare

    with PullProgress(quiet=quiet, cache_dir=cache_dir) as progress:
        options = _library(settings, platform=platform, cache_dir=cache_dir, offline=offline,
                           retries=retries, progress=progress)
        a, b = views_of(reference_a, reference_b, options)
    changes = compare(a, b)
    if as_json:
        found = [c.to_json() for c in changes]
        print_json({"a": reference_a, "b": reference_b, "changes": found})
        ctx.exit(1 if found else 0)
    differ = print_changes(changes)
    ctx.exit(1 if differ else 0)


def print_changes(changes: Iterable[Change]) -> bool:
    """One line per change; whether there was any."""
    any_change = False
    for change in changes:
        any_change = True
        detail = change.describe()
        line = f"{change.change:<8} {show(change.path)}"
        click.echo(f"{line}  ({show(detail)})" if detail else line)
    return any_change
