"""The summary row and the seal, projected from events inside the append transaction.

The summary of an execution is never written directly: it is what its events say, updated
in the same transaction that stores them, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..record import (
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    Event,
    Status,
    check_transition,
    events_root,
    failure_class_for,
    now_us,
    ts_to_us,
)
from ..record._errors import InvalidEvent


class Tip(NamedTuple):
    """The last stored event of an execution, and the execution's status after it."""

    seq: int
    hash: bytes
    terminal: bool
    status: str


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def project(c: Any, e: Event, tip: Tip, owner: str | None = None) -> Tip:
    """Apply one freshly inserted event to the summary (and seal); return the new tip.

    ``owner`` is the project a new execution is filed under (the server passes its API
    key's); without it, the ``project`` attr of ``execution.started`` or ``default``.
    """
    if e.type == EXECUTION_STARTED:
        return _started(c, e, tip, owner)
    handler = _HANDLERS.get(e.type)
    if handler is None:
        return tip
    return handler(c, e, tip)


def _started(c: Any, e: Event, tip: Tip, owner: str | None = None) -> Tip:
    a = e.attrs
    agent = a.get("agent") or {}
    workflow = a.get("workflow") or {}
    host = a.get("host") or {}
    labels = a.get("labels") or {}
    c.execute(
        "INSERT INTO executions (id, project, agent, agent_version, workflow, workflow_version,"
        " execution_type, parent_execution_id, status, started_at, started_us, governance_version,"
        " labels, host, pid, proc_start, lease_s, lease_expires_us)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            e.execution_id, owner or a.get("project") or "default", agent.get("name"), agent.get("version"),
            workflow.get("name"), workflow.get("version"), a.get("execution_type") or "workflow",
            a.get("parent_execution_id"), Status.RUNNING.value, e.ts, ts_to_us(e.ts),
            a.get("governance_version"), _json(labels), host.get("hostname"), host.get("pid"),
            host.get("proc_start"), a.get("lease_s"),
            # From when the store learns of it, not from the event's own time: an execution
            # shipped late (a spool after an outage) or from a skewed clock gets a whole lease.
            max(ts_to_us(e.ts), now_us()) + int(a.get("lease_s") or 0) * 1_000_000,
        ),
    )
    if labels:
        c.executemany(
            "INSERT INTO execution_labels (execution_id, key, value) VALUES (?,?,?)",
            [(e.execution_id, str(k), str(v)) for k, v in labels.items()],
        )
    return Tip(e.seq, e.hash, False, Status.RUNNING.value)


def _approval_requested(c: Any, e: Event, tip: Tip) -> Tip:
    """File the approval where reviewers find it, then wait (awaiting_approval)."""
    a = e.attrs
    if c.execute("SELECT 1 FROM approvals WHERE id = ?", (a["approval_id"],)).fetchone() is not None:
        raise InvalidEvent(f"approval id {a['approval_id']} is taken: each approval.requested needs a new id "
                           "(a UUID)")
    project = c.execute("SELECT project FROM executions WHERE id = ?", (e.execution_id,)).fetchone()
    c.execute(
        "INSERT INTO approvals (id, project, execution_id, step_id, rule_id, action_digest, approvers, message,"
        " action, status, requested_at, requested_us, expires_at, expires_us, on_timeout)"
        " VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?,?,?,?)",
        (
            a["approval_id"], project[0] if project else "default", e.execution_id, a.get("step_id"), a["rule_id"],
            a["action_digest"], _json(a.get("approvers") or []), a.get("message"), _json(a.get("action")),
            e.ts, ts_to_us(e.ts), a["expires_at"], ts_to_us(a["expires_at"]), a.get("on_timeout") or "reject",
        ),
    )
    return _status_change(Status.AWAITING_APPROVAL.value)(c, e, tip)


def _status_change(new: str) -> Any:
    def handler(c: Any, e: Event, tip: Tip) -> Tip:
        if tip.status == new:
            return tip._replace(seq=e.seq, hash=e.hash)
        check_transition(tip.status, new)
        c.execute(
            "UPDATE executions SET status = ?, failure_class = ? WHERE id = ?",
            (new, failure_class_for(new), e.execution_id),
        )
        return Tip(e.seq, e.hash, False, new)

    return handler


def _ended(c: Any, e: Event, tip: Tip) -> Tip:
    a = e.attrs
    status = a["status"]
    check_transition(tip.status, status)
    totals = a["totals"]
    failure_class = a.get("failure_class")
    if failure_class is None and status != "succeeded":
        # Computed at sealing when the writer did not say (DESIGN §2).
        failure_class = failure_class_for(status, halt_reason=(a.get("halt") or {}).get("reason"),
                                          error_step_kind=(a.get("error") or {}).get("step_kind"))
    hashes = [
        r[0]
        for r in c.execute(
            "SELECT hash FROM events WHERE execution_id = ? ORDER BY seq", (e.execution_id,)
        )
    ]
    governance_version = c.execute(
        "SELECT governance_version FROM executions WHERE id = ?", (e.execution_id,)
    ).fetchone()
    c.execute(
        "UPDATE executions SET status = ?, failure_class = ?, ended_at = ?, duration_ms = ?,"
        " steps = ?, llm_calls = ?, tool_calls = ?, input_tokens = ?, output_tokens = ?,"
        " cost_micros = ?, halt = ?, error = ?, cancel = ?, lease_expires_us = NULL, sealed = 1"
        " WHERE id = ?",
        (
            status, failure_class, e.ts, totals["duration_ms"], totals["steps"],
            totals["llm_calls"], totals["tool_calls"], totals["input_tokens"],
            totals["output_tokens"], totals["cost_micros"], _json(a["halt"]), _json(a["error"]),
            _json(a["cancel"]), e.execution_id,
        ),
    )
    # The seal is written in the same transaction as execution.ended (DESIGN §1).
    c.execute(
        "INSERT INTO seals (execution_id, status, event_count, events_root, last_hash,"
        " governance_version, sealed_at) VALUES (?,?,?,?,?,?,?)",
        (
            e.execution_id, status, len(hashes), events_root(hashes), e.hash,
            governance_version[0] if governance_version else None, e.ts,
        ),
    )
    return Tip(e.seq, e.hash, True, status)


_HANDLERS = {
    APPROVAL_REQUESTED: _approval_requested,
    APPROVAL_DECIDED: _status_change(Status.RUNNING.value),
    EXECUTION_ENDED: _ended,
}
