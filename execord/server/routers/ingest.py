"""What agents send: ``/ingest`` (batches of events), ``/executions/start`` (admission) and
``/heartbeat`` (leases; pending cancels and window budgets back)."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, NamedTuple

import orjson
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from ...errors import (
    ApprovalError,
    ConfigError,
    EventError,
    ExecordError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from ...record import Blob, Event, check_event, make_blob, now_ts, now_us, ts_to_us
from ...record._errors import InvalidEvent
from ...record._ids import UUID_PATTERN
from ...runtime._governed import (
    Governed,
    Pinned,
    decision_to_dict,
    exhausted_windows,
    load_pinned,
    recorded_inputs,
    static_context,
    window_usage,
)
from .._auth import Principal, require
from .._deps import store_of

router = APIRouter(tags=["ingest"])
Ingest = Annotated[Principal, Depends(require("ingest"))]

_INGEST_SCHEMA = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {"type": "array", "maxItems": 10000, "items": {
            "type": "object", "required": ["body", "hash"],
            "properties": {"body": {"type": "string", "description": "The event's canonical JSON, exactly as hashed."},
                           "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
        "blobs": {"type": "array", "items": {
            "type": "object", "required": ["digest", "type", "data"],
            "properties": {"digest": {"type": "string"}, "type": {"type": "string", "enum": ["json", "text"]},
                           "data": {"type": "string"}}}},
    },
}


class _Pins:
    """Compiled governance versions, by id (versions are immutable, so never stale)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Pinned] = {}

    def get(self, store: Any, version_id: str) -> Pinned:
        with self._lock:
            hit = self._cache.get(version_id)
        if hit is None:
            hit = load_pinned(store, version_id)
            with self._lock:
                self._cache[version_id] = hit
        return hit


PINS = _Pins()


#: How far ahead of the server's clock an event's ``ts`` may be. More is a broken clock or a
#: forged time: such an execution would sort first in every list and never lapse.
MAX_CLOCK_AHEAD_S = 600


class Batch(NamedTuple):
    events: list[Event]  # the well-formed events of executions with no malformed one
    blobs: list[Blob]
    rejected: list[dict[str, Any]]  # one per execution with a malformed event
    size: int  # how many events the batch held


def _parse_batch(raw: bytes, limits: Any) -> Batch:
    """The batch's well-formed events, its blobs, and a rejection for each execution that has an
    event that is not one.

    A body that is not the documented JSON is refused whole (400). An event that is not a
    valid event refuses its execution (listed in ``rejected``, with its index), not the batch.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the body is not JSON: {exc}") from None
    if type(doc) is not dict or type(doc.get("events")) is not list:
        raise ConfigError('the body must be {"events": [{"body": "<canonical JSON>", "hash": "<hex>"}, …], '
                          '"blobs": [...]}')
    items, blob_items = doc["events"], doc.get("blobs")
    if blob_items is None:
        blob_items = []
    if len(items) > limits.max_batch_events:
        raise PayloadTooLarge(f"a batch holds at most {limits.max_batch_events} events, not {len(items)}")
    if type(blob_items) is not list:
        raise ConfigError("blobs must be a list of {\"digest\", \"type\", \"data\"} (or left out)")
    events: list[Event] = []
    bad: dict[Any, dict[str, Any]] = {}  # execution id -> its first rejection
    ahead = now_us() + MAX_CLOCK_AHEAD_S * 1_000_000
    for i, item in enumerate(items):
        if type(item) is not dict or type(item.get("body")) is not str or type(item.get("hash")) is not str:
            raise ConfigError(f"events[{i}] must be {{\"body\": str, \"hash\": hex}}")
        body = item["body"].encode()
        if len(body) > limits.max_event_bytes:
            raise PayloadTooLarge(f"events[{i}] is {len(body)} bytes; at most {limits.max_event_bytes}")
        try:
            digest = bytes.fromhex(item["hash"])
        except ValueError:
            raise ConfigError(f"events[{i}].hash is not hex") from None
        if len(digest) != 32:
            raise ConfigError(f"events[{i}].hash must be 64 hex digits (SHA-256)")
        try:
            e = check_event(body, digest)
            if ts_to_us(e.ts) > ahead:
                raise InvalidEvent(f"ts {e.ts} is more than {MAX_CLOCK_AHEAD_S} s ahead of the server's clock "
                                   f"({now_ts()}): check the agent host's clock")
        except InvalidEvent as exc:
            eid = _stated_id(body)
            bad.setdefault(eid, {"execution_id": eid, "seq": _stated_seq(body), "type": exc.type,
                                 "status": exc.status, "detail": f"events[{i}]: {exc}"})
            continue
        events.append(e)
    blobs = []
    for i, b in enumerate(blob_items):
        if type(b) is not dict or type(b.get("data")) is not str or b.get("type") not in ("json", "text"):
            raise ConfigError(f"blobs[{i}] must be {{\"digest\", \"type\": json|text, \"data\": str}}")
        data = b["data"].encode()
        if len(data) > limits.max_blob_bytes:
            raise PayloadTooLarge(f"blobs[{i}] is {len(data)} bytes; at most {limits.max_blob_bytes}")
        blob = make_blob(data, b["type"])
        if b.get("digest") != blob.digest:
            raise ConfigError(f"blobs[{i}].digest does not match its data (expected {blob.digest})")
        blobs.append(blob)
    if bad:  # an execution with one malformed event is refused whole: its chain would break there
        events = [e for e in events if e.execution_id not in bad]
    return Batch(events, blobs, list(bad.values()), len(items))


def _stated_id(body: bytes) -> str | None:
    """The execution id a malformed event states, when it states one as a short string."""
    try:
        eid = orjson.loads(body).get("execution_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return eid if type(eid) is str and len(eid) <= 64 else None


def _stated_seq(body: bytes) -> int | None:
    try:
        seq = orjson.loads(body).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return seq if type(seq) is int else None


def _rejection(exc: ExecordError, group: list[Event]) -> dict[str, Any]:
    return {"execution_id": getattr(exc, "execution_id", None) or group[0].execution_id,
            "seq": getattr(exc, "seq", None), "type": exc.type, "status": exc.status, "detail": str(exc)}


@router.post("/ingest", summary="Append batches of events (idempotent on execution_id and seq)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _INGEST_SCHEMA}}}})
async def ingest(request: Request, p: Ingest) -> Any:
    """Each event continues its execution's chain. The same event sent again is accepted
    without change (retries are safe); an execution whose events break the record's rules
    is listed under ``rejected`` and the rest of the batch is still stored."""
    from fastapi.concurrency import run_in_threadpool

    raw = await request.body()
    return await run_in_threadpool(_ingest, request, p, raw)


def _ingest(request: Request, p: Principal, raw: bytes) -> Any:
    state = request.app.state
    t0 = time.perf_counter()
    events, blobs, rejected, size = _parse_batch(raw, state.limits)
    for r in rejected:
        state.metrics.ingest_rejected.labels(r["type"]).inc()
    store = store_of(request)
    try:
        fresh = store.append(events, blobs, project=p.project)
    except (EventError, NotFound, InvalidInput):
        # Store what is valid: one transaction per execution, each judged on its own.
        fresh = []
        store.append([], blobs)
        groups: dict[str, list[Event]] = {}
        for e in events:
            groups.setdefault(e.execution_id, []).append(e)
        for group in groups.values():
            try:
                fresh.extend(store.append(group, project=p.project))
            except (EventError, NotFound, InvalidInput) as exc:
                rejected.append(_rejection(exc, group))
                state.metrics.ingest_rejected.labels(exc.type).inc(len(group))
    state.metrics.ingest_latency.observe(time.perf_counter() - t0)
    state.metrics.ingest_batches.inc()
    state.metrics.ingest_events.inc(len(fresh))
    state.metrics.observe(fresh)
    governed = {e.execution_id for e in fresh if e.type == "governance.decision"}
    for e in fresh:
        if e.type == "execution.ended":
            state.audit.submit(e.execution_id, e.execution_id in governed)
    last: dict[str, int] = {}
    for e in events:
        last[e.execution_id] = max(last.get(e.execution_id, -1), e.seq)
    for r in rejected:
        last.pop(r["execution_id"], None)
    for eid in last:
        state.hub.wake(eid)
    return {"received": size, "stored": len(fresh), "acked": last, "rejected": rejected}


# -- admission ------------------------------------------------------------------------------------


_UUID = f"^{UUID_PATTERN}$"


class AgentInfo(BaseModel):
    name: str = Field(..., min_length=1, max_length=256)
    version: str | None = Field(None, max_length=256)
    roles: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=50)


class WorkflowInfo(BaseModel):
    name: str = Field(..., min_length=1, max_length=256)
    version: str | None = Field(None, max_length=256)


class StartBody(BaseModel):
    """Who is about to run what: the facts admission rules see."""

    execution_id: str = Field(..., min_length=36, max_length=36, pattern=_UUID)
    agent: AgentInfo
    workflow: WorkflowInfo
    execution_type: str = Field("workflow", max_length=64)
    parent_execution_id: str | None = Field(None, max_length=36, pattern=_UUID)
    labels: dict[Annotated[str, Field(min_length=1, max_length=256)], Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=50)


@router.post("/executions/start", summary="Admission: the pinned governance version and its decision")
def start(request: Request, body: StartBody, p: Ingest) -> Any:
    """Pins the project's active governance version and evaluates the ``admission`` phase
    (window budgets included, from every replica's executions). The agent records the
    decision as its first ``governance.decision`` and, on a deny, ends the execution
    ``halted`` with zero steps."""
    store = store_of(request)
    version_id = store.active_governance(p.project)
    if version_id is None:
        return {"governance_version": None, "decision": None, "windows": {}, "inputs": None}
    pinned = PINS.get(store, version_id)
    static = static_context(
        agent=body.agent.name, agent_version=body.agent.version, roles=body.agent.roles,
        workflow=body.workflow.name, workflow_version=body.workflow.version, execution_id=body.execution_id,
        execution_type=body.execution_type, parent_execution_id=body.parent_execution_id, labels=body.labels,
    )
    gov = Governed(pinned, static)
    gov.load_windows(store, body.agent.name, body.workflow.name, body.execution_id, project=p.project)
    if not gov.active:
        return {"governance_version": version_id, "decision": None, "windows": gov.windows_used, "inputs": None}
    ctx = gov.context()
    decision = gov.evaluate("admission", ctx)
    return {
        "governance_version": version_id,
        "decision": decision_to_dict(decision) if decision is not None else None,
        "windows": gov.windows_used,
        "inputs": recorded_inputs(ctx, {}, gov.windows_used) if decision is not None else None,
    }


# -- heartbeat ------------------------------------------------------------------------------------


class Live(BaseModel):
    lease_s: int = Field(30, ge=1, le=86400)
    totals: dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = Field(
        None, max_length=20, description="steps, llm_calls, tool_calls, input_tokens, output_tokens, cost_micros")


class HeartbeatBody(BaseModel):
    """The executions this agent process is running, with their running totals."""

    executions: dict[Annotated[str, Field(min_length=36, max_length=36, pattern=_UUID)], Live] = Field(
        ..., max_length=10_000)


@router.post("/heartbeat", summary="Extend leases; learn of cancels and exhausted window budgets")
def heartbeat(request: Request, body: HeartbeatBody, p: Ingest) -> Any:
    store = store_of(request)
    now = now_us()
    leases = {eid: now + live.lease_s * 1_000_000 for eid, live in body.executions.items()}
    progress = {eid: _totals(live.totals) for eid, live in body.executions.items() if live.totals is not None}
    cancels = {eid: v["cancel"] for eid, v in store.heartbeat(leases, progress, project=p.project).items()}
    windows: dict[str, Any] = {}
    exhausted: list[dict[str, Any]] = []
    for eid in body.executions:
        try:
            s = store.get_execution(eid, project=p.project)
        except NotFound:
            continue
        if not s["governance_version"] or s["sealed"]:
            continue
        pinned = PINS.get(store, s["governance_version"])
        if not pinned.policy.spec.windows:
            continue
        used = window_usage(pinned, store, s["agent"] or "", s["workflow"] or "", eid, project=p.project)
        windows[eid] = used
        own = progress.get(eid) or {}
        exhausted.extend({"execution_id": eid, **x} for x in exhausted_windows(pinned, used, own))
    return {"cancels": cancels, "windows": windows, "exhausted": exhausted}


def _totals(t: dict[str, int]) -> dict[str, int]:
    keys = ("steps", "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cost_micros")
    return {k: int(t.get(k) or 0) for k in keys}


@router.post("/approvals/{approval_id}/expire", summary="An agent reports its approval's timeout",
             tags=["approvals"])
def expire(request: Request, approval_id: Annotated[str, Path(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$")],
           p: Ingest) -> Any:
    """Past its expiry, or once its execution was cancelled (the action will never run), the
    approval is closed as ``expired``; otherwise nothing changes."""
    store = store_of(request)
    row = store.get_approval(approval_id, project=p.project)
    cancel = store.get_cancel(row["execution_id"]) if row["status"] == "pending" else None
    if cancel is not None:
        try:
            return store.decide_approval(approval_id, "expired", reviewer="execord:cancel",
                                         comment=f"the execution was cancelled by {cancel['by']}")
        except ApprovalError:
            return store.get_approval(approval_id)
    return store.expire_if_due(row)
