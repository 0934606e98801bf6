"""The ``tank`` command.

Exit codes: 0 ok, 2 usage, 3 not found, 4 authentication or authorisation, 5 integrity
(digest/size mismatch), 6 network or registry unavailable, 1 any other tank error, 130
interrupted.
"""

from __future__ import annotations

import click

from tank import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="tank")
def main() -> None:
    """Fast, verified container-image pulls."""


if __name__ == "__main__":  # pragma: no cover
    main()
