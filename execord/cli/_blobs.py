"""``execord blobs erase``: the right to erasure for content blobs."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from ..errors import ConfigError
from ._common import DbOption, FormatOption, check_format, console, print_json, store_from

app = typer.Typer(help="Content blobs: the large or sensitive values events refer to by digest.",
                  no_args_is_help=True)


@app.command("erase")
def erase(
    digest: Annotated[str, typer.Argument(help="The blob's digest, sha256:<64 hex>.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the erasure entry), "
                                                               "e.g. a data-subject request number.")],
    by: Annotated[str | None, typer.Option(help="Who erases (default: the OS user).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Delete a blob's bytes and append an erasure entry; every record still verifies.

    Example: execord blobs erase sha256:9f86d0… --reason "GDPR request 2291"
    """
    fmt = check_format(fmt)
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ConfigError(f"{digest[:80]!r} is not a blob digest: they look like sha256:<64 hex> "
                          "(see `execord executions export ID`)")
    store = store_from(db)
    if getattr(store, "remote", False):
        raise ConfigError("erasure changes the store itself: pass --db with the SQLite file or the "
                          "postgresql:// URL of the server's store")
    entry = store.erase_blob(digest, reason=reason, by=by or getpass.getuser())
    if fmt == "json":
        print_json(entry)
        return
    console.print(f"erased {digest} ({entry['size']} bytes) at {entry['erased_at']}: {entry['reason']}", markup=False)
