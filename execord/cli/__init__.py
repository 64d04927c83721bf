"""The ``execord`` command: verb → noun, a table by default, ``--format json`` everywhere."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import ExecordError
from . import _executions
from ._demo import demo
from ._verify import verify

app = typer.Typer(
    name="execord",
    help="Execord: the durable, verifiable execution record of your AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_executions.app, name="executions")
app.command("verify")(verify)
app.command("demo")(demo)


def main() -> None:
    """Run the CLI; a known failure is one line on stderr and exit code 1, never a traceback."""
    try:
        app()
    except ExecordError as exc:
        sys.stderr.write(f"execord: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("execord: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("EXECORD_DEBUG"):
            raise
        sys.stderr.write(
            f"execord: internal error ({type(exc).__name__}: {exc}); "
            "rerun with EXECORD_DEBUG=1 for the traceback and report it\n"
        )
        sys.exit(2)


__all__ = ["app", "main"]
