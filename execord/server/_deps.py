"""What the routers share: the store of the app, the list filters, page limits, cursors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Query, Request

from ..errors import ConfigError
from ..store import ExecutionFilter
from ..store._query import decode_cursor, parse_labels, parse_when

STATUSES = ("running", "awaiting_approval", "succeeded", "failed", "halted", "cancelled", "interrupted")
FAILURE_CLASSES = ("policy_block", "approval", "approval_pending", "provider_failure", "connector_failure",
                   "logic_error", "cancelled", "interrupted")
MAX_PAGE = 500


@dataclass(frozen=True)
class Limits:
    """Size limits on every input (docs/api.md, "Limits")."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_head_bytes: int = 64 * 1024
    max_batch_events: int = 10_000
    max_event_bytes: int = 1024 * 1024
    max_blob_bytes: int = 16 * 1024 * 1024
    max_page: int = MAX_PAGE
    max_wait_s: float = 30.0


def store_of(request: Request) -> Any:
    """The app's store."""
    return request.app.state.store


def execution_filter(
    status: list[str] | None = Query(None, description="Only these statuses (repeatable)."),
    workflow: str | None = Query(None, max_length=256),
    agent: str | None = Query(None, max_length=256),
    failure_class: str | None = Query(None, max_length=64),
    execution_type: str | None = Query(None, max_length=64),
    since: str | None = Query(None, max_length=64, description="Started at or after: 15m, 2h, 7d or ISO 8601."),
    until: str | None = Query(None, max_length=64, description="Started before: 15m, 2h, 7d or ISO 8601."),
    label: list[str] | None = Query(None, description="key=value; every one must match (repeatable)."),
    id_prefix: str | None = Query(None, max_length=36, pattern="^[0-9a-fA-F-]*$"),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    cursor: str | None = Query(None, max_length=200),
) -> ExecutionFilter:
    """The executions-list filters of the API (the CLI's, plus cursor pagination)."""
    for s in status or []:
        if s not in STATUSES:
            raise ConfigError(f"status {s!r} is not a status; use one of: {', '.join(STATUSES)}")
    if failure_class is not None and failure_class not in FAILURE_CLASSES:
        raise ConfigError(f"failure_class {failure_class!r} is unknown; use one of: {', '.join(FAILURE_CLASSES)}")
    if label and len(label) > 20:
        raise ConfigError("at most 20 label filters")
    if label and any(len(x) > 1281 for x in label):
        raise ConfigError("a label filter is key=value with a key of at most 256 characters and a value of at "
                          "most 1024 (what a label may hold)")
    return ExecutionFilter(
        statuses=status or None, workflow=workflow, agent=agent, failure_class=failure_class,
        execution_type=execution_type,
        since_us=parse_when(since, option="since") if since else None,
        until_us=parse_when(until, option="until") if until else None,
        labels=parse_labels(label), id_prefix=id_prefix.lower() if id_prefix else None,
        before=decode_cursor(cursor) if cursor else None, limit=limit,
    )
