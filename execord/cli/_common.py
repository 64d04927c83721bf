"""What every command shares: the --db, --format and ledger --key options, opening the store, output."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
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


# Terminal control characters: C0 but newline and tab (layout, not commands), DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with every terminal control character shown as its escape (ESC as ``\\x1b``):
    a value someone recorded cannot recolour, move the cursor in, or rewrite a terminal."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _LazyConsole:
    """A `rich.console.Console`, made (and rich imported) when a command first prints with it.

    Every string it prints, table cells included, goes through `visible` first; only the
    styles rich adds itself reach the terminal as escape sequences. What is stored is unchanged.
    """

    def __init__(self, *, stderr: bool):
        self._stderr = stderr
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            class _Visible(Console):
                def render_str(self, text: str, **kw: Any) -> Any:  # every str printed or in a cell
                    return super().render_str(visible(text), **kw)

            stream = sys.stderr if self._stderr else sys.stdout
            self._console = _Visible(stderr=self._stderr, highlight=False,
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


ForceOption = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")]


def debug_enabled() -> bool:
    """``EXECORD_DEBUG`` asks for tracebacks: set, and not 0, false, no, off or empty."""
    return os.environ.get("EXECORD_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _store_files(store: Any) -> list[str]:
    """The files of a local SQLite store (the database and its journals)."""
    path = getattr(store, "path", None) if getattr(store, "backend", None) == "sqlite" else None
    if not path or path == ":memory:":
        return []
    return [path + suffix for suffix in ("", "-wal", "-shm", "-journal")]


def check_output(path: Path, *, force: bool, store: Any = None) -> None:
    """Refuse to write onto the store's own files (whatever ``force`` says) and to replace an
    existing file unless ``force``: an export must never lose what was recorded."""
    for own in _store_files(store):
        same = os.path.realpath(own) == os.path.realpath(path)
        if not same and os.path.exists(path) and os.path.exists(own):
            try:
                same = os.path.samefile(own, path)
            except OSError:
                pass
        if same:
            raise ConfigError(f"{path} is the store's own file ({own}): writing there would destroy the record; "
                              "choose another output file")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the file to write, e.g. {path / 'export.zip'}")
    if os.path.lexists(path) and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it")


def write_atomic(path: Path, write: Any, *, replace: bool = False) -> int:
    """Write a file through a temporary one in the same folder, moved to ``path`` once
    complete: a failed write leaves no half file (and the old file, if any, as it was).
    Without ``replace``, a file that appeared at ``path`` meanwhile is not replaced either.
    ``write`` is bytes, or a function writing to a binary file; returns the bytes written."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(write, bytes | bytearray):
                fh.write(write)
            else:
                write(fh)
            size = fh.tell()
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would have made it, not mkstemp's 0600
        _move(tmp, path, replace=replace)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return size


def _move(tmp: str, path: Path, *, replace: bool) -> None:
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists: nothing is replaced that appeared meanwhile
    except FileExistsError:
        raise ConfigError(f"{path} exists; pass --force to replace it") from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise ConfigError(f"{path} exists; pass --force to replace it") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


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
