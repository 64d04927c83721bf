"""The FastAPI app: one store, its routers, auth, problem+json errors, streams, reaper, metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ._audit import DecisionAudit
from ._auth import KeyCache
from ._checkpointer import Checkpointer
from ._deps import Limits
from ._hub import Hub
from ._metrics import Metrics
from ._problems import install, problem
from ._reaper import Reaper
from .routers import approvals, executions, governance, health, ingest, keys, ledger

log = logging.getLogger("execord.server")


@dataclass
class ServerSettings:
    """How the server behaves; `execord serve` sets them from its flags."""

    reap_interval_s: float = 2.0
    key_cache_s: float = 2.0
    keepalive_s: float = 15.0
    poll_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    reaper: bool = True
    #: The ledger key (`execord.ledger._note.Signer`): with it the server signs checkpoints
    #: every ``checkpoint_every`` seals or ``checkpoint_interval_s`` seconds.
    ledger_signer: Any = None
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 60.0
    #: Serve the web viewer at ``/ui`` (docs/viewer.md).
    ui: bool = True
    #: The secret that signs viewer sessions (default ``EXECORD_UI_SECRET``, else random per start).
    ui_secret: str | None = None


class BodyLimit:
    """Refuse a request body over the limit with 413, before the app reads it (also when chunked),
    and a request line and headers over theirs with 431."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_head_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.max_head_bytes = max_head_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(k) + len(v) + 4 for k, v in headers)
        if head > self.max_head_bytes:
            response = problem(431, "too-large", f"the request line and headers take {head} bytes, over the "
                                                 f"{self.max_head_bytes}-byte limit; send fewer or shorter headers")
            await response(scope, receive, send)
            return
        declared = dict(headers).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes, scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counting, send)
        except _BodyTooLarge:
            await _too_large(self.max_bytes, scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem(413, "too-large", f"the request body is over the {limit}-byte limit; send smaller batches")
    await response(scope, receive, send)


def create_app(store: Any, settings: ServerSettings | None = None) -> FastAPI:
    """The Execord server over ``store`` (an open SQLite or PostgreSQL store).

    The reaper and the PostgreSQL listener start with the app's lifespan and stop with it.
    """
    settings = settings or ServerSettings()
    hub = Hub()
    metrics = Metrics(store, hub)
    audit = DecisionAudit(store, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.listen(store)
        reaper = None
        if settings.reaper:
            reaper = Reaper(store, interval=settings.reap_interval_s, on_sealed=_sealed(store, hub, metrics, audit))
            reaper.start()
            app.state.reaper = reaper
        checkpointer = None
        if settings.ledger_signer is not None:
            checkpointer = Checkpointer(store, settings.ledger_signer, every=settings.checkpoint_every,
                                        interval_s=settings.checkpoint_interval_s)
            checkpointer.start()
        try:
            yield
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            if reaper is not None:
                reaper.stop()
            audit.stop()
            hub.close()

    app = FastAPI(
        title="Execord", version=__version__, lifespan=lifespan,
        description="The durable, verifiable execution record of AI agents: executions, streams, cancel, "
                    "approvals, governance versions and ingest. Every error is RFC 9457 problem+json.",
        docs_url="/docs", openapi_url="/openapi.json",
    )
    app.state.store = store
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.audit = audit
    app.state.keys = KeyCache(store, settings.key_cache_s)
    app.state.limits = settings.limits
    app.state.keepalive_s = settings.keepalive_s
    app.state.poll_s = settings.poll_s
    app.state.ledger_signer = settings.ledger_signer
    install(app)
    app.include_router(health.router)
    for module in (executions, approvals, governance, ingest, keys, ledger):
        app.include_router(module.router, prefix="/api/v1")
    if settings.ui:
        from ..ui import create_ui

        app.mount("/ui", create_ui(store, hub=hub, signer=settings.ledger_signer, secret=settings.ui_secret))
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes,
                       max_head_bytes=settings.limits.max_head_bytes)
    return app


def _sealed(store: Any, hub: Hub, metrics: Metrics, audit: DecisionAudit) -> Any:
    def on_sealed(execution_id: str) -> None:
        metrics.reaped.inc()
        audit.submit(execution_id)
        metrics.observe(store.events(execution_id, after_seq=(store.tip(execution_id).seq - 1)))
        hub.wake(execution_id)

    return on_sealed
