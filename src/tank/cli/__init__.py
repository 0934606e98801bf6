"""The ``tank`` command.

stdout carries only data (a summary line, or the ``--json`` document); progress, warnings and
errors go to stderr. Progress is drawn only when stderr is a terminal; otherwise one plain line
per finished blob; nothing with ``-q``.

Exit codes: 0 ok, 1 other error, 2 usage (bad arguments, references, platforms or
configuration), 3 not found (no such image, tag, platform, path in an image; offline and not
cached), 4 authentication or authorisation, 5 integrity (digest or size mismatch), 6 network or
registry unavailable, 130 interrupted.

The package: :mod:`~tank.cli.app` (the group, ``--debug``, ``--version``, lazy loading of the
commands), :mod:`~tank.cli.errors` (failures → exit codes and hints, in one place),
:mod:`~tank.cli.options` (the shared options), :mod:`~tank.cli.output` and
:mod:`~tank.cli.progress` (what the commands print), and one module per command group:
:mod:`~tank.cli.pull`, :mod:`~tank.cli.remote` (inspect, digest, tags, blob),
:mod:`~tank.cli.inside` (ls, cat, export, diff),
:mod:`~tank.cli.cache`, :mod:`~tank.cli.login` (login, logout), :mod:`~tank.cli.completion`.
Importing ``tank.cli`` loads only what ``tank --version`` needs.
"""

from __future__ import annotations

from tank.cli.app import main

__all__ = ["main"]
