"""What every command shares: the --db, --format and ledger --key options, opening the store, output."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from ..errors import ConfigError
from ..record import format_ts

if TYPE_CHECKING:
    from ..store import Store

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="EXECORD_DB", help="The SQLite file or a postgresql:// URL (default: ./.execord/execord.db; env EXECORD_DB).", show_default=False),
]
FormatOption = Annotated[
    str, typer.Option("--format", "-f", help="Output format: table or json.", case_sensitive=False)
]
LedgerKeyOption = Annotated[
    Path | None,
    typer.Option("--key", "-k", envvar="EXECORD_LEDGER_KEY", show_default=False,
                 help="The ledger's private key file (from `execord ledger keygen`; env EXECORD_LEDGER_KEY)."),
]

# Piped output is read by scripts and grep: give tables room instead of the default 80 columns.
_PIPE_WIDTH = max(int(os.environ.get("COLUMNS") or 0), 220)


class _LazyConsole:
    """A `rich.console.Console`, made (and rich imported) when a command first prints with it."""

    def __init__(self, *, stderr: bool):
        self._stderr = stderr
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            self._console = Console(stderr=self._stderr, highlight=False,
                                    width=None if stream.isatty() else _PIPE_WIDTH)
        return getattr(self._console, name)


console: Any = _LazyConsole(stderr=False)
err_console: Any = _LazyConsole(stderr=True)



def check_format(fmt: str) -> str:
    """Accept ``table`` or ``json``; anything else is a usage error."""
    low = fmt.lower()
    if low not in ("table", "json"):
        raise ConfigError(f"unknown --format {fmt!r}: use table or json")
    return low


def store_from(db: str | None, *, create: bool = False) -> Store:
    """Open the store for a command, sealing executions of dead processes first.

    With ``EXECORD_URL`` set (and no ``--db``/``EXECORD_DB``), the command talks to that
    server with ``EXECORD_API_KEY`` instead.
    """
    url = os.environ.get("EXECORD_URL")
    if db is None and url:
        from ..runtime._remote import RemoteStore

        key = os.environ.get("EXECORD_API_KEY")
        if not key:
            raise ConfigError("EXECORD_URL is set but EXECORD_API_KEY is not: export the API key to use the server")
        return RemoteStore(url, key)  # type: ignore[return-value]
    from ..runtime import reap
    from ..store import DEFAULT_DB, open_store

    store = open_store(db or DEFAULT_DB, create=create)
    reap(store)
    return store


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def fmt_time(ts: str | None) -> str:
    """An event timestamp shortened for tables (UTC, to the second)."""
    if not ts:
        return "-"
    return ts[:19].replace("T", " ")


STATUS_STYLE = {
    "running": "cyan",
    "awaiting_approval": "magenta",
    "succeeded": "green",
    "failed": "red",
    "halted": "yellow",
    "cancelled": "bright_black",
    "interrupted": "red3",
}


def status_text(status: str) -> str:
    """A status wrapped in its colour markup."""
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def now_iso() -> str:
    """The current time as an event timestamp."""
    return format_ts(int(datetime.now(UTC).timestamp() * 1_000_000))


def is_tty() -> bool:
    """True when stdin and stdout are terminals (interactive use)."""
    return sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("CI") is None
