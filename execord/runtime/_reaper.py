"""Sealing the executions whose process is gone (DESIGN §2, ``interrupted``).

Whoever opens a store runs `reap`: the SDK at its first write, the CLI before it reads.
An execution is left alone while its process lives: on this host, the recorded pid exists
and started when it was recorded; elsewhere, its lease has not lapsed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import EventError, StoreError
from ..record import (
    EXECUTION_ENDED,
    STEP_ENDED,
    build_event,
    failure_class_for,
    now_ts,
    now_us,
    ts_to_us,
)
from ..store import Store
from ._host import hostname, process_alive

log = logging.getLogger("execord")


def why_dead(row: dict[str, Any], *, now: int | None = None) -> str | None:
    """Why an unsealed execution's process is considered gone, or None if it may live."""
    now = now_us() if now is None else now
    pid, host = row.get("pid"), row.get("host")
    if host == hostname() and isinstance(pid, int):
        if pid == os.getpid():
            return None
        if process_alive(pid, row.get("proc_start")):
            return None
        return f"process {pid} on {host} is gone"
    expires = row.get("lease_expires_us")
    if expires is not None and expires < now:
        return f"its lease lapsed (no heartbeat from {host} pid {pid})"
    return None


def reap(store: Store) -> list[str]:
    """Seal as ``interrupted`` every execution whose process is gone; return their ids."""
    sealed = []
    try:
        rows = store.unsealed()
    except StoreError as exc:
        log.warning("execord could not look for interrupted executions: %s", exc)
        return sealed
    for row in rows:
        reason = why_dead(row)
        if reason is None:
            continue
        try:
            if seal_interrupted(store, row["id"], reason):
                sealed.append(row["id"])
        except (EventError, StoreError) as exc:
            # Another process sealed it first, or the store is busy: leave it to them.
            log.info("execord did not seal %s: %s", row["id"], exc)
    return sealed


def seal_interrupted(store: Store, execution_id: str, reason: str) -> bool:
    """Append ``execution.ended`` (interrupted) after the last stored event, with the seal."""
    tip = store.tip(execution_id)
    if tip is None or tip.terminal:
        return False
    events = store.events(execution_id)
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_micros": 0, "llm_calls": 0,
              "tool_calls": 0, "steps": 0, "duration_ms": 0}
    kinds: dict[str, str] = {}
    for e in events:
        if e.type == "step.started" and e.step_id:
            kinds[e.step_id] = e.attrs.get("kind", "custom")
        elif e.type == STEP_ENDED and e.attrs.get("status") != "blocked":
            totals["steps"] += 1
            kind = kinds.get(e.step_id or "")
            totals["llm_calls"] += kind == "llm"
            totals["tool_calls"] += kind == "tool"
            usage = e.attrs.get("usage") or {}
            totals["input_tokens"] += int(usage.get("input_tokens") or 0)
            totals["output_tokens"] += int(usage.get("output_tokens") or 0)
            totals["cost_micros"] += int(e.attrs.get("cost_micros") or 0)
    ts = now_ts()
    # The process died somewhere after its last event: that is the last moment known alive.
    totals["duration_ms"] = max(0, (ts_to_us(events[-1].ts) - ts_to_us(events[0].ts)) // 1000)
    open_steps = [sid for sid in kinds if sid not in {e.step_id for e in events if e.type == STEP_ENDED}]
    attrs = {
        "status": "interrupted",
        "error": {"type": "Interrupted", "message": f"execution interrupted: {reason}",
                  "step_id": open_steps[-1] if open_steps else None,
                  "step_kind": kinds.get(open_steps[-1]) if open_steps else None},
        "halt": None,
        "cancel": None,
        "totals": totals,
        "failure_class": failure_class_for("interrupted"),
        "sealed_by": {"hostname": hostname(), "pid": os.getpid(), "reason": reason},
    }
    end = build_event(execution_id, tip.seq + 1, EXECUTION_ENDED, ts, attrs, tip.hash)
    store.append([end])
    return True
