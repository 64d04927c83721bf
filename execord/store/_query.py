"""Finding executions: the filter, its SQL, and the summary shape."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..errors import ConfigError
from ..record import parse_ts, ts_to_us

SUMMARY_KEYS = (
    "id", "status", "agent", "workflow", "execution_type", "started_at", "ended_at",
    "duration_ms", "totals", "halt", "error", "failure_class", "governance_version", "sealed",
    "labels", "parent_execution_id", "cancel",
)


@dataclass
class ExecutionFilter:
    """What `list_executions` returns: every field narrows; None means any.

    Attributes:
        statuses: any of these statuses.
        workflow: this workflow name.
        agent: this agent name.
        failure_class: this failure class.
        execution_type: this execution type.
        since_us: started at or after (µs since the epoch).
        until_us: started before (µs since the epoch).
        labels: every one of these label key=value pairs.
        id_prefix: ids starting with this.
        before: a cursor, (started_us, id) of the last row of the previous page.
        limit: at most this many rows.
        project: the project the rows belong to.
    """

    statuses: list[str] | None = None
    workflow: str | None = None
    agent: str | None = None
    failure_class: str | None = None
    execution_type: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    id_prefix: str | None = None
    before: tuple[int, str] | None = None
    limit: int = 50
    project: str = "default"


def list_sql(f: ExecutionFilter) -> tuple[str, list[Any]]:
    """The SELECT for a filter: newest first, ties broken by id, stable under inserts."""
    where = ["project = ?"]
    params: list[Any] = [f.project]
    if f.statuses:
        where.append(f"status IN ({','.join('?' * len(f.statuses))})")
        params.extend(f.statuses)
    for column, value in (
        ("workflow", f.workflow), ("agent", f.agent), ("failure_class", f.failure_class),
        ("execution_type", f.execution_type),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.since_us is not None:
        where.append("started_us >= ?")
        params.append(f.since_us)
    if f.until_us is not None:
        where.append("started_us < ?")
        params.append(f.until_us)
    for key, value in f.labels.items():
        where.append(
            "EXISTS (SELECT 1 FROM execution_labels l WHERE l.execution_id = executions.id"
            " AND l.key = ? AND l.value = ?)"
        )
        params.extend([key, value])
    if f.id_prefix:
        where.append("id LIKE ? ESCAPE '\\'")
        params.append(f.id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if f.before is not None:
        # The same rows as (started_us < ? OR (started_us = ? AND id < ?)), with a plain bound
        # first: the OR alone gives the index no range, so a page deep in a big store scanned
        # every newer row (docs/benchmarks.md, listing).
        where.append("started_us <= ? AND (started_us < ? OR id < ?)")
        params.extend([f.before[0], f.before[0], f.before[1]])
    sql = (
        f"SELECT * FROM executions WHERE {' AND '.join(where)}"
        " ORDER BY started_us DESC, id DESC LIMIT ?"
    )
    params.append(f.limit)
    return sql, params


def encode_cursor(summary: dict[str, Any]) -> str:
    """The opaque cursor after a summary: its (started_us, id), base64url."""
    raw = f"{ts_to_us(summary['started_at'])}:{summary['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (started_us, id) inside a cursor; a bad one is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        us, _, eid = raw.partition(":")
        if not eid or len(eid) > 64 or not -(2**63) <= int(us) < 2**63:
            raise ValueError(raw)
        return int(us), eid
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("cursor is not one this server handed out; pass next_cursor from the previous page") from None



def _loads(value: Any) -> Any:
    return None if value is None else orjson.loads(value)


def summary_from_row(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    """The stable JSON summary of an execution (docs/cli.md) from its table row."""
    r = dict(zip(columns, row, strict=True))
    return {
        "id": r["id"],
        "status": r["status"],
        "agent": r["agent"],
        "workflow": r["workflow"],
        "execution_type": r["execution_type"],
        "started_at": r["started_at"],
        "ended_at": r["ended_at"],
        "duration_ms": r["duration_ms"],
        "totals": {
            "steps": r["steps"],
            "llm_calls": r["llm_calls"],
            "tool_calls": r["tool_calls"],
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "cost_micros": r["cost_micros"],
        },
        "halt": _loads(r["halt"]),
        "error": _loads(r["error"]),
        "failure_class": r["failure_class"],
        "governance_version": r["governance_version"],
        "sealed": bool(r["sealed"]),
        "labels": _loads(r["labels"]) or {},
        "parent_execution_id": r["parent_execution_id"],
        "cancel": _loads(r["cancel"]),
    }


_REL = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, option: str = "since") -> int:
    """``15m``/``2h``/``7d`` ago, or an ISO 8601 time, as µs since the epoch."""
    m = _REL.match(text)
    if m:
        try:
            when = datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:
            raise ConfigError(f"{option} {text!r} reaches before the year 1") from None
    else:
        try:
            when = parse_ts(text)
        except OverflowError:
            raise ConfigError(f"{option} {text!r} is out of range: in UTC it falls outside the years 1 to 9999") from None
        except ValueError:
            raise ConfigError(
                f"{option} {text!r} is neither a duration like 15m, 2h, 7d nor an ISO time like 2026-11-01T09:00"
            ) from None
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def parse_labels(items: list[str] | None) -> dict[str, str]:
    """``k=v`` pairs into a dict."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"label {item!r} must look like key=value")
        out[key] = value
    return out
