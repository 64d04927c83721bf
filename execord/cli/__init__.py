"""The ``execord`` command: verb → noun, a table by default, ``--format json`` everywhere."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import ExecordError
from . import _approvals, _blobs, _executions, _governance, _keys, _ledger
from ._demo import demo
from ._serve import serve
from ._verify import verify

# Typer ships its own copy of click; take its exception classes from there, whichever it is.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
_UsageError = _click_exceptions.UsageError
_NoArgsIsHelp = getattr(_click_exceptions, "NoArgsIsHelpError", None) or type("_Never", (Exception,), {})
_Abort = typer.Abort

app = typer.Typer(
    name="execord",
    help="Execord: the durable, verifiable execution record of your AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_executions.app, name="executions")
app.add_typer(_governance.app, name="governance")
app.add_typer(_approvals.app, name="approvals")
app.add_typer(_keys.app, name="keys")
app.add_typer(_ledger.app, name="ledger")
app.add_typer(_blobs.app, name="blobs")
app.command("verify")(verify)
app.command("demo")(demo)
app.command("serve")(serve)


def main() -> None:
    """Run the CLI; a known failure is one line on stderr and exit code 1, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except _NoArgsIsHelp:
        sys.exit(0)  # typer has printed the help already
    except _UsageError as exc:
        # Typer's own checks (a bad option value, a missing argument): one line, like ours.
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        sys.stderr.write(f"execord: {exc.format_message()}{where}\n")
        sys.exit(1)
    except _Abort:
        sys.stderr.write("execord: aborted\n")
        sys.exit(130)
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
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
