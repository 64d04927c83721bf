"""``/approvals``: the queue reviewers work, and the long-poll an agent waits on."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ...errors import ApprovalError
from ...record._ids import UUID_PATTERN
from .._auth import Principal, require
from .._deps import store_of

router = APIRouter(tags=["approvals"])
ApprovalId = Annotated[str, Path(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$")]
_POLL_S = 0.2


@router.get("/approvals", summary="Approvals, oldest first (pending by default)")
def list_approvals(request: Request, p: Annotated[Principal, Depends(require("read", "approve"))],
                   status: Literal["pending", "approved", "rejected", "expired", "any"] = "pending",
                   execution_id: str | None = Query(None, min_length=36, max_length=36,
                                                    pattern=f"^{UUID_PATTERN}$"),
                   limit: int = Query(100, ge=1, le=500)) -> Any:
    store = store_of(request)
    rows = store.list_approvals(status=None if status == "any" else status, project=p.project,
                                execution_id=execution_id, limit=limit)
    return {"items": [store.expire_if_due(r) for r in rows]}


@router.get("/approvals/{approval_id}", summary="One approval; with wait, hold until it is decided")
async def get_approval(request: Request, approval_id: ApprovalId,
                       p: Annotated[Principal, Depends(require("read", "approve", "ingest"))],
                       wait: float = Query(0, ge=0, le=30, description="Seconds to wait for a decision (long-poll).")
                       ) -> Any:
    """An agent waiting for a reviewer long-polls here; the answer comes as soon as the
    approval is decided on any replica (or it expires)."""
    store = store_of(request)
    deadline = time.monotonic() + wait

    def look() -> dict[str, Any]:
        return store.expire_if_due(store.get_approval(approval_id, project=p.project))

    while True:
        row = await run_in_threadpool(look)
        if row["status"] != "pending" or time.monotonic() >= deadline:
            return row
        await asyncio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))


class Decide(BaseModel):
    """A reviewer's comment."""

    comment: str | None = Field(None, max_length=4000)


def _decide(request: Request, approval_id: str, p: Principal, decision: str, body: Decide | None) -> Any:
    store = store_of(request)
    row = store.expire_if_due(store.get_approval(approval_id, project=p.project))
    if row["status"] != "pending":
        raise ApprovalError(f"approval {approval_id} was already decided: {row['status']}")
    decided = store.decide_approval(approval_id, decision, reviewer=p.who, comment=body.comment if body else None)
    request.app.state.hub.wake(row["execution_id"])
    return decided


@router.post("/approvals/{approval_id}/approve", summary="Approve: the waiting action runs, once")
def approve(request: Request, approval_id: ApprovalId, p: Annotated[Principal, Depends(require("approve"))],
            body: Decide | None = None) -> Any:
    return _decide(request, approval_id, p, "approved", body)


@router.post("/approvals/{approval_id}/reject", summary="Reject: the execution halts (approval_rejected)")
def reject(request: Request, approval_id: ApprovalId, p: Annotated[Principal, Depends(require("approve"))],
           body: Decide | None = None) -> Any:
    return _decide(request, approval_id, p, "rejected", body)
