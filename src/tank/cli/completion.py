"""``tank completion bash|zsh|fish``: click's own completion script for the ``tank`` command.

Invariant: the script only sets ``_TANK_COMPLETE`` and calls ``tank`` again; what completes
(commands, options, platforms, the images recorded in the cache) is decided by the commands'
own definitions at completion time.
"""

from __future__ import annotations

import click


@click.command(epilog="\b\nExamples:\n  eval \"$(tank completion bash)\"      # in ~/.bashrc\n"
               "  eval \"$(tank completion zsh)\"       # in ~/.zshrc\n  tank completion fish > "
               "~/.config/fish/completions/tank.fish")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    It completes commands, options, platforms and the images recorded in the cache. It is
    click's own mechanism: the script calls tank with _TANK_COMPLETE set.
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice above lists what click knows
        raise click.UsageError(f"no completion for {shell}")
    root = ctx.find_root().command
    click.echo(cls(root, {}, "tank", "_TANK_COMPLETE").source())
