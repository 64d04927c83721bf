"""``execord verify``: check a bundle offline, or re-hash every record in a store."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ..errors import ConfigError, ExecordError
from ._common import (
    DbOption,
    FormatOption,
    check_format,
    console,
    err_console,
    print_json,
    store_from,
    visible,
)


def verify(
    bundle: Annotated[Path | None, typer.Argument(help="An export bundle (.zip) to check offline; without it, "
                                                       "the store is checked.", show_default=False)] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="The ledger's public key (a .pub file or its "
                                                                "text) to check the checkpoint signature with.")] = None,
    pinned: Annotated[Path | None, typer.Option("--pinned", help="An older signed checkpoint you kept: the "
                                                                 "bundle's must extend it.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Store: also parse every event and check its canonical (RFC 8785) form; slower.")] = False,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Check a bundle offline (exit 0 verified, 1 failed, 2 unusable), or the whole store.

    Example: execord verify incident-4312.zip --key ledger.pub
    """
    try:
        fmt = check_format(fmt)
    except ConfigError as exc:
        _unusable(str(exc), "table")
    if key is not None and not key.strip():
        _unusable("--key is empty (was the variable holding it unset?): give the ledger's .pub file or its "
                  "one-line text, or leave --key out", fmt)
    if bundle is not None:
        # EXECORD_DB in the environment is not a --db given with the bundle.
        stray = [name for name, given in (("--deep", deep), ("--db", db is not None and db != os.environ.get("EXECORD_DB")))
                 if given]
        if stray:
            _unusable(f"{' and '.join(stray)} {'applies' if len(stray) == 1 else 'apply'} to checking a store, not a "
                      "bundle: with a bundle give --key, --pinned and --format (or leave the bundle out to check "
                      "the store)", fmt)
        _verify_bundle(bundle, key, pinned, fmt)
        return
    try:
        _verify_store(key, pinned, deep, db, fmt)
    except ExecordError as exc:  # the store or the key cannot be used: no verdict on the record
        _unusable(str(exc), fmt)


def _unusable(message: str, fmt: str) -> NoReturn:
    """Nothing could be checked: say why, exit 2 (1 says the record failed)."""
    if fmt == "json":
        print_json({"ok": False, "unusable": message})
    else:
        _say(f"execord: {message}", err=True)
    raise typer.Exit(2)


def _verify_store(key: str | None, pinned: Path | None, deep: bool, db: str | None, fmt: str) -> None:
    if pinned is not None:
        raise ConfigError("--pinned checks a bundle: give the bundle file too")
    from ..ledger import _log
    from ..store import verify_store

    store = store_from(db)
    if getattr(store, "remote", False):
        raise ConfigError("execord verify re-hashes a store itself, not through the API: pass --db with the "
                          "SQLite file or the postgresql:// URL of the server's store")
    verifier = _log.read_verifier(key) if key is not None else None
    t0 = time.perf_counter()
    report = verify_store(store, deep=deep)
    ledger = _log.verify_ledger(store, verifier)
    seconds = time.perf_counter() - t0
    ok = report.ok and not ledger["problems"]
    if fmt == "json":
        print_json({
            "ok": ok,
            "executions": report.executions,
            "events": report.events,
            "seals": report.sealed,
            "ledger": {"leaves": ledger["leaves"], "checkpoint": ledger["checkpoint"]},
            "seconds": round(seconds, 3),
            "problems": [
                {"execution_id": p.execution_id, "seq": p.seq, "message": p.message} for p in report.problems
            ] + [{"execution_id": eid, "seq": None, "message": m} for eid, m in ledger["problems"]],
        })
    else:
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "seal"
            err_console.print(f"[red]FAIL[/red] execution {p.execution_id} {where}: {p.message}", soft_wrap=True)
        for eid, message in ledger["problems"]:
            err_console.print(f"[red]FAIL[/red] ledger{'' if eid is None else ' ' + eid}: {message}", soft_wrap=True)
        count = len(report.problems) + len(ledger["problems"])
        verdict = "[green]OK[/green]" if ok else f"[red]{count} failed[/red]"
        cp = ("no checkpoint signed yet" if ledger["checkpoint"] is None
              else f"checkpoint of {ledger['checkpoint']} checked")
        console.print(
            f"verified {report.executions} executions, {report.events} events, "
            f"{report.sealed} seals, {ledger['leaves']} ledger leaves ({cp}) in {seconds:.2f}s: {verdict}"
        )
    if not ok:
        raise typer.Exit(1)


def _say(line: str, *, err: bool = False) -> None:
    """One line of plain text, as written (no markup, no wrapping), its control characters
    shown as escapes: a bundle's text (an erasure's reason, say) cannot drive the terminal."""
    (sys.stderr if err else sys.stdout).write(visible(line) + "\n")


def _verify_bundle(bundle: Path, key: str | None, pinned: Path | None, fmt: str) -> None:
    # Only the verifier is imported (not the store, governance or the SDK runtime), and the
    # report is plain text: this command's start is part of what an auditor waits for.
    from ..ledger import _log
    from ..ledger._verify import BundleUnusable, verify_bundle

    try:
        verifier = _log.read_verifier(key) if key is not None else None
        pin = pinned.read_bytes() if pinned is not None else None
        report = verify_bundle(str(bundle), key=verifier, pinned=pin)
    except (BundleUnusable, ConfigError) as exc:
        if fmt == "json":
            print_json({"ok": False, "unusable": str(exc)})
        else:
            _say(f"execord: cannot verify {bundle}: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        _say(f"execord: cannot read {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    if fmt == "json":
        print_json(report.to_dict())
    else:
        for f in report.failures:
            where = f.file
            if f.execution_id:
                where += f" (execution {f.execution_id}" + (f", seq {f.seq})" if f.seq is not None else ")")
            _say(f"FAIL {where}: {f.message}", err=True)
        if report.ok:
            _say(f"VERIFIED {bundle}: {report.executions} executions, {report.events} events "
                 f"in {report.seconds:.2f}s")
            for line in report.proven():
                _say(f"  - {line}")
        else:
            _say(f"FAILED {bundle}: {len(report.failures)} problems")
        for e in report.erasures:
            _say(f"  erased: {e.get('digest')} at {e.get('erased_at')} by {e.get('erased_by')}: {e.get('reason')}")
        sys.stdout.flush()
    if not report.ok:
        raise typer.Exit(1)
