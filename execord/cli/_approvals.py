"""``execord approvals …``: list what waits for a reviewer, approve or reject it."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from ..record import now_us
from ._common import DbOption, FormatOption, check_format, console, print_json, store_from
from ._governance import _user

app = typer.Typer(help="List pending approvals, approve or reject them.", no_args_is_help=True)

ApprovalArg = Annotated[str, typer.Argument(help="An approval id, or a unique prefix of one.", show_default=False)]
CommentOption = Annotated[str | None, typer.Option("--comment", "-m", help="Why (recorded with the decision).")]
ReviewerOption = Annotated[str | None, typer.Option(help="Who decides (default: the OS user).")]


@app.command("list")
def list_approvals(
    status: Annotated[str, typer.Option(help="pending, approved, rejected, expired or all.")] = "pending",
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """List approvals, oldest first (pending ones by default).

    Example: execord approvals list --format json
    """
    fmt = check_format(fmt)
    if status not in ("pending", "approved", "rejected", "expired", "all"):
        from ..errors import ConfigError

        raise ConfigError(f"--status {status!r}: use pending, approved, rejected, expired or all")
    rows = store_from(db).list_approvals(status=None if status == "all" else status)
    if fmt == "json":
        print_json(rows)
        return
    if not rows:
        console.print(f"no {'' if status == 'all' else status + ' '}approvals")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "EXECUTION", "RULE", "ACTION", "APPROVERS", "REQUESTED (UTC)", "EXPIRES IN", "STATUS"):
        table.add_column(col, overflow="fold")
    for r in rows:
        action = r["action"] or {}
        args = orjson.dumps(action.get("input")).decode()
        left = max(0, (r["expires_us"] - now_us()) // 1_000_000)
        table.add_row(r["id"], r["execution_id"], escape(r["rule_id"]),
                      escape(f"{action.get('kind')} {action.get('name')}({args[:60]})"),
                      escape(", ".join(r["approvers"])), r["requested_at"][:19].replace("T", " "),
                      f"{left // 60}m{left % 60:02d}s" if r["status"] == "pending" else "-", r["status"])
    console.print(table)


#: A decision cannot be undone: a prefix must be long enough that it names the approval meant,
#: not whichever happens to be the only pending one.
MIN_PREFIX = 6


def _decide(approval_id: str, decision: str, reviewer: str | None, comment: str | None, db: str | None, fmt: str) -> None:
    fmt = check_format(fmt)
    if len(approval_id.replace("-", "")) < MIN_PREFIX:
        from ..errors import ConfigError

        raise ConfigError(f"give at least {MIN_PREFIX} characters of the approval id, not {approval_id!r}: a decision "
                          "cannot be undone (`execord approvals list` shows the ids)")
    store = store_from(db)
    full = store.get_approval(approval_id)["id"]
    row = store.decide_approval(full, decision, reviewer=reviewer or _user(), comment=comment)
    if fmt == "json":
        print_json(row)
    else:
        console.print(f"{decision} approval {row['id']} (rule {escape(row['rule_id'])}, execution {row['execution_id']})"
                      f" as {escape(row['reviewer'])}")


@app.command("approve")
def approve(approval_id: ApprovalArg, comment: CommentOption = None, reviewer: ReviewerOption = None,
            db: DbOption = None, fmt: FormatOption = "table") -> None:
    """Approve a pending action: the waiting execution runs it, exactly once.

    Example: execord approvals approve 01a2b3 --comment "customer verified by phone"
    """
    _decide(approval_id, "approved", reviewer, comment, db, fmt)


@app.command("reject")
def reject(approval_id: ApprovalArg, comment: CommentOption = None, reviewer: ReviewerOption = None,
           db: DbOption = None, fmt: FormatOption = "table") -> None:
    """Reject a pending action: the waiting execution halts (approval_rejected).

    Example: execord approvals reject 01a2b3 --comment "amount over the customer's limit"
    """
    _decide(approval_id, "rejected", reviewer, comment, db, fmt)
