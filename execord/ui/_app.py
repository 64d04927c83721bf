"""The viewer's routes: sign-in, executions, one execution, approvals, governance, overview.

Mounted by the server at ``/ui`` (`execord.server.create_app`). Pages are rendered on the
server; forms post and redirect back (so everything works without script), and one small
script swaps in fresh content while an execution runs, woken by the execution's stream.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .._format import fmt_cost
from ..errors import Conflict, ExecordError, ExecutionSealed, Forbidden, NotFound
from ..record import EXECUTION_ENDED, now_us
from ..store import describe, export_record
from ..store._query import encode_cursor
from . import _charts, _views
from ._session import COOKIE, PRE_COOKIE, SESSION_S, CsrfRefused, Sessions, SignInRequired, Viewer

log = logging.getLogger("execord.ui")
_ID = re.compile(r"^[0-9a-f-]{36}$")
_VERSION = re.compile(r"^gv_[0-9a-f]{4,64}$")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_WINDOWS = {"24h": (timedelta(hours=24), timedelta(hours=1)), "7d": (timedelta(days=7), timedelta(hours=6)),
            "30d": (timedelta(days=30), timedelta(days=1))}

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("execord.ui", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(ms=_views.fmt_ms, cost=fmt_cost, short=lambda s: (s or "")[:13],
                    when=lambda ts: (ts or "—").replace("T", " ")[:19],
                    json=lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode())
_ENV.globals.update(version=__version__, statuses=_views.STATUSES, failure_classes=_views.FAILURE_CLASSES)


def viewer_of(request: Request) -> Viewer:
    """The signed-in viewer of a request (`SignInRequired` without a valid session)."""
    return request.app.state.sessions.open(request.cookies.get(COOKIE))  # type: ignore[no-any-return]


Signed = Annotated[Viewer, Depends(viewer_of)]


def create_ui(store: Any, *, hub: Any, signer: Any = None, secret: str | bytes | None = None) -> FastAPI:
    """The viewer over ``store``; ``hub`` wakes live pages when events land."""
    sessions = Sessions.from_env(store, secret)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="Execord viewer")
    app.state.sessions = sessions
    static = resources.files("execord.ui") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        if not request.url.path.startswith("/ui/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def render(request: Request, name: str, status: int = 200, viewer: Viewer | None = None, **ctx: Any) -> HTMLResponse:
        html = _ENV.get_template(name).render(request=request, viewer=viewer, path=request.url.path, **ctx)
        return HTMLResponse(html, status_code=status)

    async def form_of(request: Request, v: Viewer) -> dict[str, str]:
        form = await request.form()
        sessions.check_csrf(v.csrf, str(form.get("csrf") or ""))
        return {k: str(val) for k, val in form.items() if isinstance(val, str)}

    def back(to: str, **flash: str) -> RedirectResponse:
        if flash:
            to += ("&" if "?" in to else "?") + "&".join(f"{k}={quote(v)}" for k, v in flash.items())
        return RedirectResponse(to, status_code=303)

    # -- errors ---------------------------------------------------------------------------------

    @app.exception_handler(SignInRequired)
    async def _signin(request: Request, exc: SignInRequired) -> Response:
        if request.method == "GET" and not request.url.path.endswith("/stream"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response: Response = back(f"/ui/signin?next={quote(target)}")
        else:
            response = render(request, "error.html", 401, title="Sign in required", message=str(exc))
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path="/ui")
        return response

    @app.exception_handler(ExecordError)
    async def _ours(request: Request, exc: ExecordError) -> Response:
        status = exc.status if 400 <= exc.status <= 599 else 500
        title = {403: "Not allowed", 404: "Not found", 409: "Conflict"}.get(status, "Something went wrong")
        return render(request, "error.html", status, viewer=_maybe(request), title=title, message=str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = f"there is no page {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return render(request, "error.html", exc.status_code, viewer=_maybe(request),
                      title="Not found" if exc.status_code == 404 else "Error", message=message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render(request, "error.html", 500, viewer=None, title="Something went wrong",
                      message="the server failed to show this page; the error is in its log")

    def _maybe(request: Request) -> Viewer | None:
        try:
            return viewer_of(request)
        except SignInRequired:
            return None

    # -- sign-in --------------------------------------------------------------------------------

    def _safe_next(target: str | None) -> str:
        if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
            return target
        return "/ui/executions"

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return back("/ui/executions")

    @app.get("/signin", response_class=HTMLResponse)
    def signin_page(request: Request, next: str | None = None, error: str | None = None) -> Response:
        nonce = request.cookies.get(PRE_COOKIE) or sessions.signin_nonce()
        response = render(request, "signin.html", 401 if error else 200, csrf=sessions.csrf_of(nonce),
                          next=_safe_next(next), error=error)
        response.set_cookie(PRE_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/ui",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get(PRE_COOKIE) or ""
        if not nonce:  # no sign-in form was served to this browser
            raise CsrfRefused("this sign-in did not come from the sign-in page; reload the page and try again")
        sessions.check_csrf(sessions.csrf_of(nonce), str(form.get("csrf") or ""))
        key = str(form.get("api_key") or "").strip()
        target = _safe_next(str(form.get("next") or ""))

        def fail(message: str) -> Response:
            return render(request, "signin.html", 401, csrf=sessions.csrf_of(nonce), next=target, error=message)

        if not key:
            return fail("paste an API key (create one with `execord keys create --scopes read,approve`)")
        if len(key) > 200:
            return fail("that is not an Execord API key")
        row = await run_in_threadpool(store.authenticate, key)
        if row is None:
            return fail("that API key is unknown or revoked")
        if not ({"read", "admin"} & set(row["scopes"])):
            return fail(f"this key's scopes ({','.join(row['scopes'])}) do not include read, which the viewer needs")
        response = back(target)
        response.set_cookie(COOKIE, sessions.issue(row), max_age=SESSION_S, httponly=True, samesite="strict",
                            path="/ui", secure=request.url.scheme == "https")
        response.delete_cookie(PRE_COOKIE, path="/ui")
        return response

    @app.post("/signout")
    async def signout(request: Request, v: Signed) -> Response:
        await form_of(request, v)
        response = back("/ui/signin")
        response.delete_cookie(COOKIE, path="/ui")
        return response

    # -- executions -----------------------------------------------------------------------------

    @app.get("/executions", response_class=HTMLResponse)
    def executions(request: Request, v: Signed) -> Response:
        q = _views.ListQuery.parse(request.query_params)
        flt = q.store_filter(v.project)
        rows: list[dict[str, Any]] = []
        next_url = None
        if flt is not None:
            rows = store.list_executions(flt)
            if len(rows) > q.limit:
                rows = rows[:q.limit]
                next_url = q.url(cursor=encode_cursor(rows[-1]))
        counts = store.count_by_status(v.project)
        return render(request, "executions.html", viewer=v, q=q, rows=rows, counts=counts, next_url=next_url,
                      total=sum(counts.values()), pending=len(store.list_approvals(project=v.project, limit=500)))

    def _execution_id(execution_id: str) -> str:
        if not _ID.match(execution_id):
            raise NotFound(f"{execution_id!r} is not an execution id; ids look like 0193a2b4-…")
        return execution_id

    @app.get("/executions/{execution_id}", response_class=HTMLResponse)
    def execution(request: Request, execution_id: str, v: Signed, done: str | None = None) -> Response:
        eid = _execution_id(execution_id)
        d = _views.detail(store, eid, v.project)
        from ..ledger._report import _verification

        rows = store.event_rows(eid)
        check = _verification(store, eid, [body for _, _, _, body in rows])
        return render(request, "execution.html", viewer=v, d=d, x=d["x"], check=check, done=done,
                      describe=describe, can_bundle=d["x"]["sealed"] and (signer is not None or "checkpoint" in check))

    @app.get("/executions/{execution_id}/stream")
    async def stream(request: Request, execution_id: str, v: Signed) -> EventSourceResponse:
        eid = _execution_id(execution_id)
        summary = await run_in_threadpool(store.get_execution, eid, project=v.project)
        given = request.headers.get("last-event-id") or request.query_params.get("after") or "-1"
        if not re.fullmatch(r"-1|\d{1,18}", given):
            raise NotFound("after must be the seq of the last event received")
        after = int(given)
        return EventSourceResponse(_events(request, eid, summary, after), ping=15,
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _events(request: Request, eid: str, summary: dict[str, Any], last: int) -> Any:
        wake = hub.subscribe(eid)
        try:
            while True:
                wake.clear()
                events = await run_in_threadpool(store.events, eid, after_seq=last, limit=200)
                for e in events:
                    last = e.seq
                    yield {"id": str(e.seq), "event": "append",
                           "data": orjson.dumps({"seq": e.seq, "type": e.type, "what": describe(e)}).decode()}
                    if e.type == EXECUTION_ENDED:
                        return
                if not events and summary["status"] in _views.TERMINAL:
                    return
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            hub.unsubscribe(eid, wake)

    @app.post("/executions/{execution_id}/cancel")
    async def cancel(request: Request, execution_id: str, v: Signed) -> Response:
        eid = _execution_id(execution_id)
        form = await form_of(request, v)
        if not v.has("operate"):
            raise Forbidden(f"this key lacks the operate scope a cancel needs ({_scopes(v)})")
        if form.get("confirm") != "yes":
            return back(f"/ui/executions/{eid}", done="cancel-not-confirmed")
        reason = (form.get("reason") or "").strip()[:2000] or None
        try:
            await run_in_threadpool(lambda: store.request_cancel(eid, by=v.who, reason=reason, project=v.project))
        except ExecutionSealed as exc:
            raise Conflict(f"execution {eid} has already ended ({exc.final_status}); there is nothing to cancel") from None
        hub.wake(eid)
        return back(f"/ui/executions/{eid}", done="cancel-requested")

    def _download(data: bytes, media: str, name: str) -> Response:
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/executions/{execution_id}/export.json")
    def export_json(execution_id: str, v: Signed) -> Response:
        eid = _execution_id(execution_id)
        store.get_execution(eid, project=v.project)
        return _download(orjson.dumps(export_record(store, eid), option=orjson.OPT_INDENT_2), "application/json",
                         f"execution-{eid}.json")

    @app.get("/executions/{execution_id}/bundle.zip")
    def export_bundle(execution_id: str, v: Signed) -> Response:
        from ..ledger._bundle import bundle_bytes

        eid = _execution_id(execution_id)
        store.get_execution(eid, project=v.project)
        return _download(bundle_bytes(store, [eid], signer=signer), "application/zip", f"execution-{eid}.zip")

    @app.get("/executions/{execution_id}/report.html")
    def export_report(execution_id: str, v: Signed) -> Response:
        from ..ledger._report import report_html

        eid = _execution_id(execution_id)
        store.get_execution(eid, project=v.project)
        return _download(report_html(store, eid).encode(), "text/html; charset=utf-8", f"execution-{eid}.html")

    # -- approvals ------------------------------------------------------------------------------

    @app.get("/approvals", response_class=HTMLResponse)
    def approvals(request: Request, v: Signed, done: str | None = None) -> Response:
        rows = [store.expire_if_due(r) for r in store.list_approvals(status="pending", project=v.project, limit=500)]
        rows = [r for r in rows if r["status"] == "pending"]
        return render(request, "approvals.html", viewer=v, rows=rows, done=done, now_us=now_us())

    async def _decide(request: Request, approval_id: str, v: Viewer, decision: str) -> Response:
        form = await form_of(request, v)
        if not _ID.match(approval_id):
            raise NotFound(f"{approval_id!r} is not an approval id")
        if not v.has("approve"):
            raise Forbidden(f"this key lacks the approve scope ({_scopes(v)})")
        comment = (form.get("comment") or "").strip()[:4000] or None

        def run() -> dict[str, Any]:
            row = store.expire_if_due(store.get_approval(approval_id, project=v.project))
            if row["status"] != "pending":
                from ..errors import ApprovalError

                raise ApprovalError(f"approval {approval_id} was already decided: {row['status']}")
            return dict(store.decide_approval(approval_id, decision, reviewer=v.who, comment=comment))

        row = await run_in_threadpool(run)
        hub.wake(row["execution_id"])
        return back(_safe_next(form.get("next")), done=f"{decision}")

    @app.post("/approvals/{approval_id}/approve")
    async def approve(request: Request, approval_id: str, v: Signed) -> Response:
        return await _decide(request, approval_id, v, "approved")

    @app.post("/approvals/{approval_id}/reject")
    async def reject(request: Request, approval_id: str, v: Signed) -> Response:
        return await _decide(request, approval_id, v, "rejected")

    # -- governance -----------------------------------------------------------------------------

    @app.get("/governance", response_class=HTMLResponse)
    def governance(request: Request, v: Signed, a: str | None = None, b: str | None = None) -> Response:
        versions = store.list_governance_versions(project=v.project)
        mine = {r["id"] for r in versions}
        active = store.active_governance(v.project)
        history = store.governance_history(v.project)
        diff, error = None, None
        if a or b:
            if not (a and b and _VERSION.match(a) and _VERSION.match(b)):
                error = "pick two versions to compare"
            elif a not in mine or b not in mine:
                error = "a version to compare is not one of this project's"
            else:
                diff = _views.governance_diff(store, a, b)
        if a is None and b is None and len(history) >= 2:
            a, b = history[-1]["from_version"], history[-1]["to_version"]
        return render(request, "governance.html", viewer=v, versions=versions, active=active,
                      history=list(reversed(history)), diff=diff, a=a, b=b, error=error)

    # -- overview -------------------------------------------------------------------------------

    @app.get("/overview", response_class=HTMLResponse)
    def overview(request: Request, v: Signed, window: str = "7d") -> Response:
        window = window if window in _WINDOWS else "7d"
        span, bucket = _WINDOWS[window]
        bucket_us = int(bucket.total_seconds() * 1e6)
        now = now_us()
        count = int(span / bucket)
        since = (now // bucket_us + 1) * bucket_us - count * bucket_us
        o = store.overview(v.project, since_us=since, until_us=now + 1, bucket_us=bucket_us)
        table: dict[int, dict[str, int]] = {}
        for start, status, n in o.buckets:
            table.setdefault(start, {})[status] = n
        return render(
            request, "overview.html", viewer=v, o=o, window=window, windows=list(_WINDOWS),
            status_chart=_charts.status_bars(o.buckets, since_us=since, bucket_us=bucket_us, count=count),
            workflow_chart=_charts.hbars(o.by_workflow, label=lambda r: r["workflow"] or "(none)", value="cost_micros",
                                         fmt=fmt_cost, title="Cost by workflow", ident="cw"),
            model_chart=_charts.hbars(o.by_model, label=lambda r: f"{r['provider']} {r['model']}", value="cost_micros",
                                      fmt=fmt_cost, title="Cost by model", ident="cm"),
            rule_chart=_charts.hbars(o.blocking_rules, label=lambda r: r["rule_id"], value="count", fmt=str,
                                     title="Rules that blocked most", ident="br"),
            table=sorted(table.items()),
            when=lambda us: datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M"),
        )

    return app


def _scopes(v: Viewer) -> str:
    return f"key {v.key_id} in project {v.project} has scopes {','.join(sorted(v.scopes))}"
