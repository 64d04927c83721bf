"""``/healthz`` (the process answers), ``/readyz`` (and its store does), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ... import __version__
from ...errors import ExecordError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> Any:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Readiness: the store answers", responses={503: {"description": "Store unavailable"}})
def readyz(request: Request) -> Any:
    store = request.app.state.store
    try:
        store._read("SELECT 1")
    except ExecordError as exc:
        from .._problems import problem

        return problem(503, "not-ready", f"the store does not answer: {exc}")
    return {"status": "ready", "backend": store.backend}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
