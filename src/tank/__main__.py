"""``python -m tank`` runs the ``tank`` command."""

from tank.cli import main

main()
