"""``/executions`` (replay and export) and ``/unified/executions`` (status, stream, cancel)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from ...errors import ConfigError
from ...record import EXECUTION_ENDED, STEP_ENDED, STEP_STARTED, ts_to_us
from ...store import (
    ExecutionFilter,
    execution_detail,
    export_record,
    steps_from_events,
)
from ...store._query import encode_cursor
from .._auth import Principal, require
from .._deps import execution_filter, store_of

router = APIRouter(tags=["executions"])
ExecutionId = Annotated[str, Path(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$",
                                  description="The execution's full id (UUIDv7).")]
Read = Annotated[Principal, Depends(require("read"))]
TERMINAL = {"succeeded", "failed", "halted", "cancelled", "interrupted"}
MAX_SEQ = 2**63 - 1  # the stores' 64-bit integers; a larger seq is a 422, not a failed query


def _page(store: Any, flt: ExecutionFilter, p: Principal) -> tuple[list[dict[str, Any]], str | None]:
    flt.project = p.project
    want = flt.limit
    flt.limit = want + 1  # one more tells whether there is a next page
    rows = store.list_executions(flt)
    more = len(rows) > want
    rows = rows[:want]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def _owned(store: Any, execution_id: str, p: Principal) -> dict[str, Any]:
    """The summary, or 404 when it is missing or another project's."""
    return dict(store.get_execution(execution_id, project=p.project))


@router.get("/executions", summary="List executions, newest first")
def list_executions(request: Request, p: Read, flt: Annotated[ExecutionFilter, Depends(execution_filter)]) -> Any:
    """Filters as in ``execord executions list``; pages with ``next_cursor`` stay stable while
    new executions arrive (keyset on start time and id)."""
    rows, cursor = _page(store_of(request), flt, p)
    return Response(orjson.dumps({"items": rows, "next_cursor": cursor}), media_type="application/json")


@router.get("/executions/{execution_id}", summary="One execution: summary and steps")
def get_execution(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    return execution_detail(store, execution_id)


@router.get("/executions/{execution_id}/steps", summary="The steps of an execution, nested")
def get_steps(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    return {"items": steps_from_events(store.events(execution_id))}


@router.get("/executions/{execution_id}/timeline", summary="Every event, with its time from the start")
def get_timeline(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    rows = store.event_rows(execution_id)
    t0 = ts_to_us(rows[0][1]) if rows else 0
    # The stored canonical bytes are passed on as they are, with the hash and the time from
    # the start added: no parse, no re-encode (docs/benchmarks.md, timeline).
    items = [_with(body, h, t_ms=round((ts_to_us(ts) - t0) / 1000, 3)) for _, ts, h, body in rows]
    return Response(b'{"items":[' + b",".join(items) + b"]}", media_type="application/json")


def _with(body: bytes, h: bytes, **extra: float) -> bytes:
    """A stored event's JSON object with ``hash`` (and ``extra``) added (DESIGN §3 shape)."""
    tail = b"".join(b',"%s":%s' % (k.encode(), orjson.dumps(v)) for k, v in extra.items())
    return body[:-1] + b',"hash":"' + h.hex().encode() + b'"' + tail + b"}"


@router.get("/executions/{execution_id}/events", summary="Stored events after a seq, with their hashes")
def get_events(request: Request, execution_id: ExecutionId, p: Read,
               after_seq: int = Query(-1, ge=-1, le=MAX_SEQ), limit: int = Query(1000, ge=1, le=10_000)) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    rows = store.event_rows(execution_id, after_seq=after_seq, limit=limit)
    return Response(b'{"items":[' + b",".join(_with(body, h) for _, _, h, body in rows) + b"]}",
                    media_type="application/json")


@router.get("/executions/{execution_id}/seal", summary="The seal of an ended execution (null while it runs)")
def get_seal(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    return store.get_seal(execution_id)


@router.get("/blobs/{digest}", summary="A content blob by digest (data null once erased)")
def get_blob(request: Request, digest: Annotated[str, Path(pattern="^sha256:[0-9a-f]{64}$")],
             p: Annotated[Principal, Depends(require("read", "ingest"))]) -> Any:
    """A blob an execution of the key's project refers to; any other is 404, like a missing
    one, so that holding some content cannot confirm that another project recorded it."""
    blob = store_of(request).get_blob(digest, project=p.project)
    if blob is None:
        from ...errors import NotFound

        raise NotFound(f"no blob {digest}")
    data = None if blob.data is None else blob.data.decode("utf-8", "replace")
    return {"digest": blob.digest, "size": blob.size, "type": blob.type, "data": data, "erased": blob.data is None}


@router.get("/executions/{execution_id}/export", summary="One execution as a self-contained JSON record")
def export(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    _owned(store, execution_id, p)
    return export_record(store, execution_id)


# -- unified: live status, stream, cancel ---------------------------------------------------------


def unified_status(store: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """A summary plus what an operator needs while it runs: the open step, the pending
    approval, a pending cancel, the last seq."""
    eid = summary["id"]
    live: dict[str, Any] = {"current_step": None, "pending_approval": None, "cancel_requested": None,
                            "last_seq": None, "decision_check": None}
    tip = store.tip(eid)
    live["last_seq"] = tip.seq if tip else None
    if summary["status"] not in TERMINAL:
        open_steps: dict[str, dict[str, Any]] = {}
        for e in store.events(eid):
            if e.type == STEP_STARTED and e.step_id:
                open_steps[e.step_id] = {"step_id": e.step_id, "kind": e.attrs.get("kind"),
                                         "name": e.attrs.get("name"), "started_at": e.ts}
            elif e.type == STEP_ENDED:
                open_steps.pop(e.step_id or "", None)
        live["current_step"] = list(open_steps.values())[-1] if open_steps else None
        pending = store.list_approvals(status="pending", project=store.project_of(eid) or "default",
                                       execution_id=eid, limit=1)
        live["pending_approval"] = pending[0] if pending else None
        live["cancel_requested"] = store.get_cancel(eid)
    elif summary["governance_version"]:
        live["decision_check"] = store.get_decision_check(eid)
    return {**summary, "live": live}


@router.get("/unified/executions", summary="Executions with their live status")
def list_unified(request: Request, p: Read, flt: Annotated[ExecutionFilter, Depends(execution_filter)]) -> Any:
    store = store_of(request)
    rows, cursor = _page(store, flt, p)
    return {"items": [unified_status(store, r) for r in rows], "next_cursor": cursor}


@router.get("/unified/executions/{execution_id}", summary="One execution's live status")
def get_unified(request: Request, execution_id: ExecutionId, p: Read) -> Any:
    store = store_of(request)
    return unified_status(store, _owned(store, execution_id, p))


class CancelBody(BaseModel):
    """Why the execution should stop."""

    reason: str | None = Field(None, max_length=2000)


@router.post("/unified/executions/{execution_id}/cancel", status_code=202,
             summary="Ask a running execution to stop (409 when it has ended)")
def cancel(request: Request, execution_id: ExecutionId,
           p: Annotated[Principal, Depends(require("operate"))], body: CancelBody | None = None) -> Any:
    """The execution's process learns of it at its next heartbeat (every few seconds), records
    ``cancel.requested`` and stops at its next governed action with ``execord.Cancelled``."""
    store = store_of(request)
    cancel_ = store.request_cancel(execution_id, by=p.who, reason=body.reason if body else None, project=p.project)
    request.app.state.hub.wake(execution_id)
    return {"execution_id": execution_id, "cancel": cancel_}


@router.get("/unified/executions/{execution_id}/stream", summary="Server-sent events: status, then every event",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."}})
async def stream(request: Request, execution_id: ExecutionId, p: Read,
                 last_event_id: Annotated[str | None, Header(max_length=64)] = None,
                 after_seq: int | None = Query(None, ge=-1, le=MAX_SEQ, description="Resume after this seq (as Last-Event-ID).")
                 ) -> EventSourceResponse:
    """First a ``status`` event with the full state; then each event as it is appended
    (``id:`` is its ``seq``, ``event:`` its type); a keepalive comment every 15 s; closed after
    ``execution.ended``. Reconnect with ``Last-Event-ID`` to resume where it stopped."""
    store = store_of(request)
    summary = await run_in_threadpool(_owned, store, execution_id, p)
    last = -1
    if last_event_id is not None:
        if not re.fullmatch(r"-1|[0-9]{1,10}", last_event_id) or int(last_event_id) > MAX_SEQ:
            raise ConfigError("Last-Event-ID must be the seq of the last event received (a whole number)")
        last = int(last_event_id)
    elif after_seq is not None:
        last = after_seq
    app = request.app
    return EventSourceResponse(_events(app, store, summary, last, request), ping=app.state.keepalive_s,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(app: Any, store: Any, summary: dict[str, Any], last: int, request: Request) -> Any:
    eid = summary["id"]
    hub = app.state.hub
    wake = hub.subscribe(eid)
    try:
        status = await run_in_threadpool(unified_status, store, summary)
        yield {"event": "status", "data": orjson.dumps(status).decode()}
        while True:
            wake.clear()
            events = await run_in_threadpool(store.events, eid, after_seq=last, limit=500)
            for e in events:
                last = e.seq
                yield {"id": str(e.seq), "event": e.type, "data": orjson.dumps(e.to_dict()).decode()}
                if e.type == EXECUTION_ENDED:
                    return
            if len(events) == 500:
                continue
            if not events and summary["status"] in TERMINAL:
                return  # resumed after the end: nothing more will come
            if await request.is_disconnected():
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=app.state.poll_s)
            except TimeoutError:
                pass
    finally:
        hub.unsubscribe(eid, wake)
