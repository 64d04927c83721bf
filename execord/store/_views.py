"""Read models shared by the CLI, the API and the viewer: steps, details and exports."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import NotFound
from ..record import STEP_ENDED, STEP_STARTED, Event, ts_to_us
from ._protocol import Store

EXPORT_FORMAT = "execord-export"
EXPORT_VERSION = 1


def steps_from_events(events: list[Event]) -> list[dict[str, Any]]:
    """Pair ``step.started`` / ``step.ended`` into steps, in start order.

    A step that has started but not ended has ``status`` None (still running, or cut off by
    an interruption).
    """
    steps: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.type == STEP_STARTED and e.step_id:
            a = e.attrs
            steps[e.step_id] = {
                "step_id": e.step_id,
                "parent_step_id": e.parent_step_id,
                "kind": a.get("kind"),
                "name": a.get("name"),
                "status": None,
                "started_at": e.ts,
                "ended_at": None,
                "latency_ms": None,
                "input": a.get("input"),
                "output": None,
                "error": None,
                "usage": None,
                "cost_micros": None,
                "price_source": None,
                "provider": a.get("provider"),
                "model": a.get("model"),
                "started_seq": e.seq,
                "ended_seq": None,
            }
        elif e.type == STEP_ENDED and e.step_id in steps:
            a = e.attrs
            steps[e.step_id].update(
                status=a.get("status"), ended_at=e.ts, latency_ms=a.get("latency_ms"),
                output=a.get("output"), error=a.get("error"), usage=a.get("usage"),
                cost_micros=a.get("cost_micros"), price_source=a.get("price_source"),
                ended_seq=e.seq,
            )
    return list(steps.values())


def step_depths(steps: list[dict[str, Any]]) -> dict[str, int]:
    """How deeply each step is nested (0 for top-level steps)."""
    parents = {s["step_id"]: s["parent_step_id"] for s in steps}
    depth: dict[str, int] = {}
    for sid in parents:
        d, cur, seen = 0, parents.get(sid), set()
        while cur is not None and cur in parents and cur not in seen:
            seen.add(cur)
            d += 1
            cur = parents[cur]
        depth[sid] = d
    return depth


def execution_detail(store: Store, execution_id: str) -> dict[str, Any]:
    """``{execution, steps, event_count}``: the shape of ``execord executions get``."""
    summary = store.get_execution(execution_id)
    events = store.events(execution_id)
    return {"execution": summary, "steps": steps_from_events(events), "event_count": len(events)}


def relative_ms(events: list[Event]) -> list[float]:
    """Each event's time after the first event, in milliseconds."""
    if not events:
        return []
    t0 = ts_to_us(events[0].ts)
    return [round((ts_to_us(e.ts) - t0) / 1000, 3) for e in events]


def blob_value(store: Store, ref: Any) -> Any:
    """The value behind a ``{"$blob": …}`` reference (or the value itself if it is none)."""
    if not (isinstance(ref, dict) and "$blob" in ref):
        return ref
    blob = store.get_blob(ref["$blob"])
    if blob is None:
        raise NotFound(f"blob {ref['$blob']} is not in the store")
    if blob.data is None:
        return {"$erased": ref["$blob"]}
    if blob.type == "json":
        return orjson.loads(blob.data)
    return blob.data.decode("utf-8", "replace")


def _blob_refs(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        if "$blob" in value and isinstance(value["$blob"], str):
            out.add(value["$blob"])
        for v in value.values():
            _blob_refs(v, out)
    elif isinstance(value, list):
        for v in value:
            _blob_refs(v, out)


def export_record(store: Store, execution_id: str) -> dict[str, Any]:
    """One execution as a self-contained JSON document: summary, seal, events, blobs.

    ``events`` are the stored events with their hashes; each event's canonical bytes are
    recomputable from it, so the export can be re-verified (docs/cli.md).
    """
    summary = store.get_execution(execution_id)
    events = store.events(execution_id)
    refs: set[str] = set()
    for e in events:
        _blob_refs(e.attrs, refs)
    blobs = {}
    for digest in sorted(refs):
        blob = store.get_blob(digest)
        if blob is None:
            continue
        data = None if blob.data is None else blob.data.decode("utf-8", "replace")
        blobs[digest] = {"type": blob.type, "size": blob.size, "data": data}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "execution": summary,
        "seal": store.get_seal(execution_id),
        "events": [e.to_dict() for e in events],
        "blobs": blobs,
    }


def describe(e: Event) -> str:
    """One line saying what an event records."""
    a = e.attrs
    t = e.type
    if t == "execution.started":
        return f"agent={a['agent'].get('name')} workflow={a['workflow'].get('name')}"
    if t == "step.started":
        extra = f" model={a['model']}" if a.get("model") else ""
        return f"{a['kind']} {a['name']}{extra}"
    if t == "step.ended":
        err = a.get("error")
        tail = f" {err['type']}: {err['message']}" if err else ""
        return f"{a['status']} in {a['latency_ms']}ms{tail}"
    if t == "governance.decision":
        hits = [r["id"] for r in a.get("rules") or [] if r.get("matched")]
        return f"{a['phase']} → {a['decision']}" + (f" ({', '.join(hits)})" if hits else "")
    if t == "approval.requested":
        return f"approval {a['approval_id']} by {a['approvers']} for rule {a['rule_id']}"
    if t == "approval.decided":
        return f"approval {a['approval_id']} {a['decision']} by {a['reviewer']}"
    if t == "cancel.requested":
        return f"by {a['by']}: {a['reason']}"
    if t == "log":
        return f"[{a['level']}] {a['message']}"
    if t == "execution.ended":
        err = a.get("error")
        return a["status"] + (f" {err['type']}: {err['message']}" if err else "")
    return ""
