"""``execord ledger keygen|checkpoint|proof``: the signing key, signed checkpoints, proofs."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError, LedgerError
from ..ledger import _log
from ..ledger._note import NoteError, Signer
from ._common import (
    DbOption,
    FormatOption,
    LedgerKeyOption,
    check_format,
    console,
    print_json,
    store_from,
)

app = typer.Typer(help="The ledger: its signing key, signed checkpoints and proofs.", no_args_is_help=True)

def _default_name() -> str:
    host = "".join(ch for ch in socket.gethostname().lower() if ch.isalnum() or ch in "-.") or "localhost"
    return f"{host}/execord"


@app.command("keygen")
def keygen(
    name: Annotated[str | None, typer.Option("--name", help="The log's name, used as its checkpoint origin "
                                                             "(default: <hostname>/execord).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write ledger.key and ledger.pub in.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Replace existing key files.")] = False,
    fmt: FormatOption = "table",
) -> None:
    """Make the Ed25519 key that signs checkpoints: ledger.key (mode 0600) and ledger.pub.

    Example: execord ledger keygen --name acme.example/execord --out /etc/execord
    """
    fmt = check_format(fmt)
    try:
        signer = Signer.generate(name or _default_name())
    except NoteError as exc:
        raise ConfigError(str(exc)) from None
    key, pub = _log.write_keys(signer, out, force=force)
    if fmt == "json":
        print_json({"name": signer.name, "key_id": signer.verifier.key_id.hex(), "private_key_file": str(key),
                    "public_key_file": str(pub), "verifier_key": signer.verifier.text()})
        return
    console.print(f"wrote {key} (private, mode 0600: keep it secret; the server and `ledger checkpoint` sign with it)")
    console.print(f"wrote {pub} (public: publish it; auditors verify bundles with it)")
    console.print(signer.verifier.text(), markup=False, soft_wrap=True)


def _remote(store: Any) -> bool:
    return bool(getattr(store, "remote", False))


@app.command("checkpoint")
def checkpoint(
    key: LedgerKeyOption = None,
    latest: Annotated[bool, typer.Option("--latest", help="Show the latest kept checkpoint; sign nothing.")] = False,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Sign a checkpoint of the ledger as it is now, keep it, and print the signed note.

    Example: execord ledger checkpoint --key ledger.key
    """
    fmt = check_format(fmt)
    store = store_from(db)
    if _remote(store):
        view = store.api.call("GET" if latest else "POST", "ledger/checkpoint")
    else:
        if latest:
            row = store.latest_checkpoint()
            if row is None:
                raise LedgerError("no checkpoint has been signed yet: run `execord ledger checkpoint --key ledger.key`")
        else:
            if key is None:
                raise ConfigError("signing needs the ledger key: pass --key ledger.key or set EXECORD_LEDGER_KEY "
                                  "(make one with `execord ledger keygen`); --latest shows the last one")
            row = _log.make_checkpoint(store, _log.read_signer(key))
        view = _log.checkpoint_view(row)
    if fmt == "json":
        print_json(view)
        return
    sys.stdout.write(view["note"])  # exactly as signed: a wrapped line would not verify


@app.command("proof")
def proof(
    execution_id: Annotated[str | None, typer.Argument(help="A sealed execution (id or unique prefix): "
                                                            "its inclusion proof.", show_default=False)] = None,
    size: Annotated[int | None, typer.Option("--size", min=0, help="Prove inclusion in the tree of this "
                                                                   "many leaves (default: the latest checkpoint's).")] = None,
    from_: Annotated[int | None, typer.Option("--from", min=0, help="Consistency proof from this tree size.")] = None,
    to: Annotated[int | None, typer.Option("--to", min=0, help="… to this tree size (default: the latest "
                                                               "checkpoint's).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Print an inclusion proof (for an execution) or a consistency proof (--from N --to M).

    Example: execord ledger proof 01a2b3 --format json
    """
    fmt = check_format(fmt)
    if (execution_id is None) == (from_ is None):
        raise ConfigError("give an execution id for an inclusion proof, or --from N [--to M] for a consistency "
                          "proof (not both)")
    store = store_from(db)
    if execution_id is not None:
        eid = store.resolve_id(execution_id)
        if _remote(store):
            out = store.api.call("GET", "ledger/proof/inclusion", params={"execution_id": eid, "size": size})
        else:
            out = _log.inclusion(store, eid, _default_size(store, size))
    elif _remote(store):
        out = store.api.call("GET", "ledger/proof/consistency", params={"from": from_, "to": to})
    else:
        out = _log.consistency(store, from_ or 0, _default_size(store, to))
    if fmt == "json":
        print_json(out)
        return
    for k, v in out.items():
        if k == "proof":
            console.print(f"{k}:", markup=False)
            for h in v:
                console.print(f"  {h}", markup=False, soft_wrap=True)
        else:
            console.print(f"{k}: {v}", markup=False, soft_wrap=True)


def _default_size(store: Any, size: int | None) -> int | None:
    """An explicit size, else the latest checkpoint's (what an auditor can check), else the whole log."""
    if size is not None:
        return size
    row = store.latest_checkpoint()
    return None if row is None else row["tree_size"]
