"""``execord verify``: re-hash every stored event and check every seal."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ..errors import ConfigError
from ..store import verify_store
from ._common import (
    DbOption,
    FormatOption,
    check_format,
    console,
    err_console,
    print_json,
    store_from,
)


def verify(
    deep: Annotated[bool, typer.Option("--deep", help="Also parse every event and check its canonical (RFC 8785) form; slower.")] = False,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Re-hash every stored event and check every seal; exit 1 on any mismatch.

    Example: execord verify --db .execord/execord.db
    """
    fmt = check_format(fmt)
    store = store_from(db)
    if getattr(store, "remote", False):
        raise ConfigError("execord verify re-hashes a store itself, not through the API: pass --db with the "
                          "SQLite file or the postgresql:// URL of the server's store")
    t0 = time.perf_counter()
    report = verify_store(store, deep=deep)
    seconds = time.perf_counter() - t0
    if fmt == "json":
        print_json({
            "ok": report.ok,
            "executions": report.executions,
            "events": report.events,
            "seals": report.sealed,
            "seconds": round(seconds, 3),
            "problems": [
                {"execution_id": p.execution_id, "seq": p.seq, "message": p.message} for p in report.problems
            ],
        })
    else:
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "seal"
            err_console.print(f"[red]FAIL[/red] execution {p.execution_id} {where}: {p.message}")
        verdict = "[green]OK[/green]" if report.ok else f"[red]{len(report.problems)} failed[/red]"
        console.print(
            f"verified {report.executions} executions, {report.events} events, "
            f"{report.sealed} seals in {seconds:.2f}s: {verdict}"
        )
    if not report.ok:
        raise typer.Exit(1)
