"""``execord keys …``: API keys of the server, bound to one project with scopes."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..store._keys import SCOPES, parse_scopes
from ._common import DbOption, FormatOption, check_format, console, print_json, store_from
from ._governance import _user

app = typer.Typer(help="Create, list and revoke the server's API keys.", no_args_is_help=True)


@app.command("create")
def create(
    project: Annotated[str | None, typer.Option(help="The project the key is bound to (default: 'default'; "
                                                "through a server: the calling key's).", show_default=False)] = None,
    scopes: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(SCOPES)}.")] = "read",
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by.")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Make an API key. The key is printed once: only its SHA-256 is kept.

    Example: execord keys create --project support --scopes read,approve --name reviewers
    """
    fmt = check_format(fmt)
    chosen = parse_scopes(scopes)
    store = store_from(db, create=True)
    if project is None:
        project = "" if getattr(store, "remote", False) else "default"
    key, row = store.create_key(project, chosen, name=name, by=f"cli:{_user()}")
    if fmt == "json":
        print_json({"key": key, **row})
        return
    console.print(f"created key {row['id']} for project {escape(row['project'])} with scopes {','.join(row['scopes'])}")
    console.print("the key (shown only now):")
    console.print(key, soft_wrap=True)


@app.command("list")
def list_keys(
    project: Annotated[str | None, typer.Option(help="Only this project's keys (local store only).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """List keys (never the keys themselves).

    Example: execord keys list --format json
    """
    fmt = check_format(fmt)
    rows = store_from(db).list_keys(project)
    if fmt == "json":
        print_json(rows)
        return
    if not rows:
        console.print("no API keys (the first `execord serve` makes an admin key)")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "PROJECT", "NAME", "SCOPES", "CREATED (UTC)", "REVOKED"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["id"], escape(r["project"]), escape(r["name"] or ""), ",".join(r["scopes"]),
                      r["created_at"][:19].replace("T", " "), (r["revoked_at"] or "")[:19].replace("T", " "))
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (ek_…), as `execord keys list` shows it.")],
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Revoke a key: it is refused from now on (within seconds on other replicas).

    Example: execord keys revoke ek_1a2b3c4d5e6f
    """
    fmt = check_format(fmt)
    whole = re.match(r"(ek_[0-9a-f]{6,32})_.", key_id.strip())
    if whole:  # never repeat the secret: it would land in the terminal's scrollback and in logs
        raise ConfigError(f"that looks like a whole key; pass its id {whole.group(1)} (`execord keys list` shows "
                          "the ids)")
    row = store_from(db).revoke_key(key_id)
    if fmt == "json":
        print_json(row)
    else:
        console.print(f"revoked key {row['id']} (project {escape(row['project'])}) at {row['revoked_at']}")
