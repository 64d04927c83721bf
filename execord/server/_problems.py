"""Every error answer is one RFC 9457 problem+json body, built here and nowhere else.

An `ExecordError` carries its HTTP ``status`` and problem ``type``; its data attributes
(execution id, seq, rule id…) become extension members, so clients read fields rather than
parse messages.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ExecordError

log = logging.getLogger("execord.server")

PROBLEM_BASE = "https://execord.dev/problems/"
MEDIA_TYPE = "application/problem+json"
_FIELDS = ("execution_id", "seq", "reason", "rule_id", "budget_id", "phase", "expected", "got", "prefix",
           "matches", "final_status", "by", "found", "supported")
_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
           409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
           429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}


def problem(status: int, type_: str, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": PROBLEM_BASE + type_, "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(exc: ExecordError) -> JSONResponse:
    """The problem body of one of our errors, with its data attributes."""
    extra = {k: getattr(exc, k) for k in _FIELDS if getattr(exc, k, None) is not None}
    problems = getattr(exc, "problems", None)
    if problems:
        extra["problems"] = [{"where": str(w), "message": m, "hint": h} for w, m, h in problems]
    headers = {"WWW-Authenticate": 'Bearer realm="execord"'} if exc.status == 401 else None
    status = exc.status if 400 <= exc.status <= 599 else 500
    return problem(status, exc.type, str(exc), headers=headers, **extra)


def install(app: FastAPI) -> None:
    """Route every error through `problem`: ours, FastAPI's validation, Starlette's, the rest."""

    @app.exception_handler(ExecordError)
    async def _ours(request: Request, exc: ExecordError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
                  for e in exc.errors()]
        first = errors[0] if errors else {"where": "request", "message": "invalid"}
        return problem(422, "invalid-request", f"{first['where']}: {first['message']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint {request.url.path}; the API is under /api/v1 (see /docs)"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, slug, detail, headers=getattr(exc, "headers", None))

    app.add_middleware(Unexpected)


class Unexpected:
    """A bug's exception becomes a problem+json 500 and one traceback in the log.

    Starlette's handler for ``Exception`` answers and then raises again, so the server logged
    each bug twice and dropped the client's kept-alive connection; this answers and returns.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            if started:  # half an answer is out: nothing better can be sent
                raise
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            response = problem(500, "internal", "the server failed to handle this request; the error is in its log")
            await response(scope, receive, send)
