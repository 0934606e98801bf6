"""The ``tank`` group: its global options (``--debug``, ``--version``), its commands, and the
one place where a failing command is reported.

Invariants:

- Start-up stays lean: this module imports click and :mod:`tank.cli.errors` only; each command's
  module is imported when that command runs (or when ``--help`` and completion list them), and
  the library inside the command.
- Every command runs inside :meth:`TankGroup.invoke`, which hands what escapes it
  (:data:`tank.cli.errors.HANDLED`) to :func:`tank.cli.errors.fail`. Commands never catch
  errors to report them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from tank._version import __version__
from tank.cli import errors
from tank.cli.options import CACHE_META

#: command name → ``module:attribute`` of its click command (one module per command group)
COMMANDS = {
    "artifact": "tank.cli.artifact:artifact",
    "blob": "tank.cli.remote:blob",
    "cache": "tank.cli.cache:cache",
    "cat": "tank.cli.inside:cat",
    "completion": "tank.cli.completion:completion",
    "copy": "tank.cli.copy:copy",
    "delete": "tank.cli.copy:delete",
    "diff": "tank.cli.inside:diff",
    "digest": "tank.cli.remote:digest",
    "export": "tank.cli.inside:export",
    "inspect": "tank.cli.remote:inspect",
    "login": "tank.cli.login:login",
    "logout": "tank.cli.login:logout",
    "ls": "tank.cli.inside:ls",
    "pull": "tank.cli.pull:pull",
    "referrers": "tank.cli.trust:referrers",
    "push": "tank.cli.copy:push",
    "sync": "tank.cli.copy:sync",
    "tag": "tank.cli.copy:tag",
    "tags": "tank.cli.remote:tags",
    "verify": "tank.cli.trust:verify",
}

MAIN_EXAMPLES = """\b
Examples:
  tank pull alpine -o oci:./alpine
  tank inspect alpine --platform linux/arm64
  tank digest ghcr.io/owner/app:1.2
  tank tags alpine --max 20
  tank copy alpine registry.local:5000/alpine --all-platforms
  tank blob alpine sha256:<hex> -o layer.tar.gz
  tank verify ghcr.io/o/app:1.2 --verify-key cosign.pub
  tank cat debian:12 /etc/os-release
  tank cache du
  eval "$(tank completion bash)"

"""


class TankGroup(click.Group):
    """The root group: loads each command's module on first use, and maps every failure that
    escapes a command to its exit code and one line on stderr (:mod:`tank.cli.errors`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted (as ``--help`` lists them)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name``, its module imported now; ``None`` if unknown."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :data:`~tank.cli.errors.HANDLED` failure exits with its code."""
        try:
            return super().invoke(ctx)
        except errors.HANDLED as exc:
            errors.fail(exc, debug=bool(ctx.params.get("debug")),
                        cache_dir=ctx.meta.get(CACHE_META))


def _set_debug(on: bool) -> None:
    """Turn on ``--debug``: full error detail, and the library's debug log (retries) on stderr.

    The log goes to whatever ``sys.stderr`` is when a record is written: the progress display
    redirects it above its bars while it runs.
    """
    if not on:
        return
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:
                self.handleError(record)

    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("tank: debug: %(name)s: %(message)s"))
    log = logging.getLogger("tank")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


@click.group(
    cls=TankGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=MAIN_EXAMPLES + errors.EXIT_CODES_HELP,
)
@click.version_option(__version__, "--version", "-V", prog_name="tank")
@click.option("--debug", is_flag=True, envvar="TANK_DEBUG",
              help="On failure print the full detail (the error's chain and traceback, the "
                   "registry's error body), and log retries [env TANK_DEBUG].")
def main(debug: bool) -> None:
    """Fast, verified container-image transfers."""
    _set_debug(debug)
