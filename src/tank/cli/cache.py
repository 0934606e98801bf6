"""``tank cache ls | du | prune | verify``: the local cache, looked at, checked and pruned.

Invariants: stdout carries the listing (or the ``--json`` document); the one-line summary goes
to stderr. ``verify`` exits 1 when a blob is corrupt (and, with ``--fix``, when one could not be
removed). None of them talks to a registry.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from tank.cli.errors import EXIT_ERROR
from tank.cli.options import cache_option, json_option
from tank.cli.output import age, human_bytes, print_json, table

if TYPE_CHECKING:
    from tank.store import Store


@click.group(epilog="\b\nExamples:\n  tank cache ls\n  tank cache du --json\n  tank cache "
                    "prune --older-than 7d\n  tank cache verify --fix")
def cache() -> None:
    """Inspect, check and prune the local cache."""


@cache.command("ls", epilog="\b\nExamples:\n  tank cache ls\n  tank cache ls --json | jq -r "
               "'.images[].reference'")
@cache_option
@json_option
def cache_ls(cache_dir: str | None, as_json: bool) -> None:
    """List what the cache holds: images by reference, root filesystems, partial downloads.

    Each image shows the digest its tag last resolved to, the platforms wholly cached, the size
    of its blobs in the cache and when it was last pulled.
    """
    from tank.store.maintenance import listing

    found = listing(cache_dir)
    if as_json:
        print_json(found.to_json())
        return
    if found.images:
        rows = [["IMAGE", "DIGEST", "SIZE", "PULLED", "PLATFORMS"]] + [
            [i.reference, i.digest[:19] if i.cached else "(manifest missing)",
             human_bytes(i.size), i.updated[:19].replace("T", " "),
             ", ".join(i.platforms) or "-"]
            for i in found.images
        ]
        for line in table(rows, right=(2,), min_widths=(0, 19, 9, 20)):
            click.echo(line)
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
@cache_option
@json_option
def cache_du(cache_dir: str | None, as_json: bool) -> None:
    """Show how much disk the cache takes: blobs (used and unused), partial downloads, root
    filesystems."""
    from tank.store.maintenance import usage

    found = usage(cache_dir)
    if as_json:
        print_json(found.to_json())
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
@cache_option
@click.option("--all", "all_images", is_flag=True,
              help="Forget every recorded image, so that all of it goes.")
@click.option("--older-than", metavar="DURATION",
              help="Forget images last pulled longer ago than DURATION (7d, 12h, 30m, 1h30m), "
                   "and keep only what changed within it (instead of the last 10 minutes).")
@click.option("--dry-run", is_flag=True, help="Remove nothing; print what would go.")
@json_option
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
    result = prune(cache_dir, all_images=all_images, older_than=seconds, dry_run=dry_run)
    if as_json:
        print_json(result.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    for ref in result.images:
        click.echo(f"{verb} image {ref}")
    for kind, part in (("blob", result.blobs), ("ingest", result.ingest),
                       ("rootfs", result.rootfs)):
        for d, size in part:
            click.echo(f"{verb} {kind} {d} {human_bytes(size)}")
    for path, size in result.scratch:
        click.echo(f"{verb} scratch {path} {human_bytes(size)}")
    click.echo(
        f"tank: {verb} {len(result.images)} images, {len(result.blobs)} blobs, "
        f"{len(result.ingest)} partial downloads, {len(result.rootfs)} root filesystems and "
        f"{len(result.scratch)} leftover files: "
        f"{human_bytes(result.freed)}", err=True,
    )
    if result.in_use:
        click.echo(f"tank: kept {len(result.in_use)} that a running pull is using", err=True)
    if result.recent:
        click.echo(f"tank: kept {len(result.recent)} unused ones changed in the last "
                   f"{age(result.window)} (a pull may still need them; --older-than 0s "
                   "removes them too)", err=True)


@cache.command(epilog="\b\nExamples:\n  tank cache verify\n  tank cache verify --fix\n  "
                      "TANK_CACHE=/srv/tank tank cache verify")
@cache_option
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
    bad = store.verify()
    for entry in bad:
        click.echo(f"{entry.digest} {entry.reason} ({entry.path})")
    total = sum(1 for _ in store.iter_blobs())
    if bad:
        click.echo(f"tank: {len(bad)} of {total} cached blobs are corrupt", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"tank: {total} cached blobs verified", err=True)


def _verify_fix(store: Store) -> None:
    """``tank cache verify --fix``: remove each corrupt blob; exit 1 if one could not be."""
    from tank.store.maintenance import fix

    fixed = fix(store)
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
