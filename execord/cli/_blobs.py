"""``execord blobs erase``: the right to erasure for content blobs."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ._common import (
    DbOption,
    FormatOption,
    LedgerKeyOption,
    check_format,
    console,
    print_json,
    store_from,
)

app = typer.Typer(help="Content blobs: the large or sensitive values events refer to by digest.",
                  no_args_is_help=True)

def _local(db: str | None, key: Path | None) -> tuple[Any, Any]:
    """The store the erasure changes and the ledger key that signs it."""
    from ..ledger import _log

    if key is None:
        raise ConfigError("an erasure is signed with the ledger key, so an auditor can tell it from a blob left "
                          "out of a bundle: pass --key ledger.key or set EXECORD_LEDGER_KEY (make one with "
                          "`execord ledger keygen`)")
    signer = _log.read_signer(key)
    store = store_from(db)
    if getattr(store, "remote", False):
        raise ConfigError("erasure changes the store itself: pass --db with the SQLite file or the "
                          "postgresql:// URL of the server's store")
    return store, signer


def _check_ledger_key(store: Any, signer: Any, key: Path | None) -> None:
    """Refuse, before anything is deleted, a key other than the one that signed the store's
    latest checkpoint: every bundle is checked under that checkpoint's key, and an erasure it
    did not sign fails them all, while the bytes are gone for good."""
    row = store.latest_checkpoint()
    if row is None or row["verifier_key"] == signer.verifier.text():
        return
    raise ConfigError(
        f"{key} is not this ledger's key: the store's latest checkpoint (of {row['tree_size']} leaves) is signed "
        f"by {row['origin']} key {row['key_id']}, and {key} is {signer.name} key {signer.verifier.key_id.hex()}; "
        "an erasure signed by another key makes every bundle fail verification, and the bytes cannot come back. "
        "Nothing was erased. Pass the key that signs the checkpoints; after a new ledger key, sign a checkpoint "
        "with it first (`execord ledger checkpoint --key NEW.key`), then erase with it"
    )


@app.command("erase")
def erase(
    digest: Annotated[str, typer.Argument(help="The blob's digest, sha256:<64 hex>.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the erasure entry), "
                                                               "e.g. a data-subject request number.")],
    by: Annotated[str | None, typer.Option(help="Who erases (default: the OS user).")] = None,
    key: LedgerKeyOption = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Delete a blob's bytes and append an erasure entry signed by the ledger key; every record still verifies.

    Example: execord blobs erase sha256:9f86d0… --reason "GDPR request 2291" --key ledger.key
    """
    from ..ledger import _log

    fmt = check_format(fmt)
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ConfigError(f"{digest[:80]!r} is not a blob digest: they look like sha256:<64 hex> "
                          "(see `execord executions export ID`)")
    store, signer = _local(db, key)
    _check_ledger_key(store, signer, key)
    entry = _log.erase(store, digest, reason=reason, by=by or getpass.getuser(), signer=signer)
    if fmt == "json":
        print_json(entry)
        return
    console.print(f"erased {digest} ({entry['size']} bytes) at {entry['erased_at']}, signed by {signer.name}: "
                  f"{entry['reason']}", markup=False)


@app.command("sign-erasures")
def sign_erasures(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Sign the erasures listed (without it, only list them).")] = False,
    key: LedgerKeyOption = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """List the erasures this ledger key has not signed, and with --yes sign them.

    Those are the erasures made before Execord signed them (a store upgraded from schema 6)
    and, after a new ledger key, those the old key signed. Read the list first: signing
    states, under the key, that each blob was erased when and why its entry says.

    Example: execord blobs sign-erasures --key ledger.key --yes
    """
    from ..ledger import _log

    fmt = check_format(fmt)
    store, signer = _local(db, key)
    pending = _log.unsigned_erasures(store, signer)
    signed = _log.sign_erasures(store, signer, [e["digest"] for e in pending]) if yes and pending else []
    if fmt == "json":
        print_json({"unsigned": [] if yes else pending, "signed": signed})
        return
    if not pending:
        console.print(f"every erasure is signed by {signer.name} ({signer.verifier.key_id.hex()})", markup=False)
        return
    for e in signed or pending:
        console.print(f"  {e['digest']} erased at {e['erased_at']} by {e['erased_by']}: {e['reason']}", markup=False)
    n = len(signed or pending)
    if yes:
        console.print(f"signed {n} erasure{'' if n == 1 else 's'} with {signer.name}", markup=False)
    else:
        console.print(f"{n} erasure{'' if n == 1 else 's'} not signed by {signer.name}: check them, then run "
                      "again with --yes to sign them", markup=False)
