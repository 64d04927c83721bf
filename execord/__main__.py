"""``python -m execord`` runs the CLI."""

from .cli import main

main()
