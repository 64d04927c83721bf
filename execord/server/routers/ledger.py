"""``/ledger``: signed checkpoints and proofs; ``/bundles``: verifiable exports (DESIGN §1, §4).

The ledger is global (one log for every project), so checkpoints and consistency proofs
name no execution; an inclusion proof and a bundle are answered only for executions of the
key's project.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ...errors import ConfigError, LedgerError, NotFound
from ...ledger import _log
from ...ledger._bundle import bundle_bytes
from ...ledger._report import report_html
from .._auth import Principal, require
from .._deps import store_of
from .executions import ExecutionId

router = APIRouter(tags=["ledger"])
Read = Annotated[Principal, Depends(require("read"))]
Operate = Annotated[Principal, Depends(require("operate"))]
Size = Annotated[int | None, Query(ge=0, le=2**62, description="A tree size (default: the latest checkpoint's).")]
MAX_BUNDLE_EXECUTIONS = 10_000


def _latest(store: Any) -> dict[str, Any]:
    row = store.latest_checkpoint()
    if row is None:
        raise NotFound("no checkpoint has been signed yet: the server signs one every N seals or T seconds when "
                       "started with a ledger key (EXECORD_LEDGER_KEY), or POST /api/v1/ledger/checkpoint")
    return row


def _size(store: Any, size: int | None) -> int:
    return size if size is not None else _latest(store)["tree_size"]


@router.get("/ledger/checkpoint", summary="The latest signed checkpoint")
def get_checkpoint(request: Request, p: Read) -> Any:
    """The C2SP signed note (``note``), its origin, tree size, root and the verifier key."""
    return _log.checkpoint_view(_latest(store_of(request)))


@router.post("/ledger/checkpoint", summary="Sign a checkpoint now")
def post_checkpoint(request: Request, p: Operate) -> Any:
    """Signs the ledger as it is now with the server's key (409 when the server has none)."""
    signer = request.app.state.ledger_signer
    if signer is None:
        raise LedgerError("this server has no ledger key: start it with --ledger-key FILE or EXECORD_LEDGER_KEY "
                          "(make one with `execord ledger keygen`)")
    return _log.checkpoint_view(_log.make_checkpoint(store_of(request), signer))


@router.get("/ledger/proof/inclusion", summary="Inclusion proof of a sealed execution")
def inclusion(request: Request, p: Read,
              execution_id: Annotated[str, Query(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$")],
              size: Size = None) -> Any:
    """The RFC 9162 audit path of the execution's ledger leaf in the tree of ``size`` leaves."""
    store = store_of(request)
    store.get_execution(execution_id, project=p.project)  # 404 for another project's execution
    return _log.inclusion(store, execution_id, _size(store, size))


@router.get("/ledger/proof/consistency", summary="Consistency proof between two tree sizes")
def consistency(request: Request, p: Read,
                from_: Annotated[int, Query(alias="from", ge=0, le=2**62, description="The older tree size.")],
                to: Size = None) -> Any:
    """The RFC 9162 proof that the tree of ``from`` leaves is a prefix of the tree of ``to``."""
    if to is not None and from_ > to:
        raise ConfigError(f"from must not exceed to: a consistency proof goes from a smaller tree to a larger one "
                          f"({from_} → {to})")
    store = store_of(request)
    return _log.consistency(store, from_, _size(store, to))


class BundleRequest(BaseModel):
    execution_ids: list[Annotated[str, Field(min_length=36, max_length=36, pattern="^[0-9a-f-]{36}$")]] = Field(
        min_length=1, max_length=MAX_BUNDLE_EXECUTIONS)


@router.post("/bundles", summary="A verifiable bundle (zip) of sealed executions",
             response_class=Response, responses={200: {"content": {"application/zip": {}}}})
async def bundle(request: Request, body: BundleRequest, p: Read) -> Response:
    """The zip `execord verify` checks offline: events, proofs, blobs, governance documents,
    the signed checkpoint and the public key (docs/evidence.md)."""
    store = store_of(request)
    signer = request.app.state.ledger_signer

    def build() -> bytes:
        for eid in body.execution_ids:
            store.get_execution(eid, project=p.project)
        return bundle_bytes(store, body.execution_ids, signer=signer)

    data = await run_in_threadpool(build)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="execord-bundle.zip"'})


@router.get("/executions/{execution_id}/report", summary="An HTML report of one execution",
            response_class=Response, responses={200: {"content": {"text/html": {}}}})
def report(request: Request, execution_id: ExecutionId, p: Read) -> Response:
    """Summary, timeline, decisions, approvals and the verification result, as one HTML page."""
    store = store_of(request)
    store.get_execution(execution_id, project=p.project)
    return Response(report_html(store, execution_id), media_type="text/html; charset=utf-8")
