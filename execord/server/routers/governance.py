"""``/governance``: versions, the active pointer, its history, and applying a file."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from ...errors import GovernanceFileError
from ...governance import build_version, load_spec
from ...record import canonical_json, make_blob
from .._auth import Principal, require
from .._deps import store_of

router = APIRouter(tags=["governance"])
VersionId = Annotated[str, Path(min_length=3, max_length=40, pattern="^gv_[0-9a-f]+$")]


@router.get("/governance/active", summary="The project's active governance version")
def active(request: Request, p: Annotated[Principal, Depends(require("read", "ingest"))]) -> Any:
    return {"project": p.project, "version_id": store_of(request).active_governance(p.project)}


@router.get("/governance/versions", summary="Versions ever activated in the project")
def versions(request: Request, p: Annotated[Principal, Depends(require("read"))]) -> Any:
    store = store_of(request)
    active_id = store.active_governance(p.project)
    rows = store.list_governance_versions(project=p.project)
    return {"items": [{**r, "active": r["id"] == active_id} for r in rows]}


@router.get("/governance/versions/{version_id}", summary="One version, with its document")
def version(request: Request, version_id: VersionId,
            p: Annotated[Principal, Depends(require("read", "ingest"))]) -> Any:
    from ...errors import NotFound

    store = store_of(request)
    # Resolved among the project's own versions only, so that another project's version (or
    # an id prefix that only other projects' versions share) is the same 404 as a missing one.
    mine = sorted(v["id"] for v in store.list_governance_versions(project=p.project) if v["id"].startswith(version_id))
    if version_id in mine:
        mine = [version_id]
    if len(mine) > 1:
        raise NotFound(f"governance version prefix {version_id!r} is ambiguous; give more characters")
    if not mine:
        raise NotFound(f"no governance version {version_id} in project {p.project}")
    return store.get_governance_version(mine[0])


@router.get("/governance/history", summary="Every activation: who, when, from, to")
def history(request: Request, p: Annotated[Principal, Depends(require("read"))]) -> Any:
    return {"items": store_of(request).governance_history(p.project)}


class Apply(BaseModel):
    """A governance file to validate, store as a version and activate."""

    source: str = Field(..., max_length=1_000_000, description="The file's text (YAML).")
    filename: str = Field("execord.yaml", max_length=200, pattern=r"^[\w.-]+\.(ya?ml|json)$")


@router.post("/governance/apply", summary="Validate a governance file, store its version, make it active")
def apply(request: Request, body: Apply, p: Annotated[Principal, Depends(require("admin"))]) -> Any:
    """A file that does not validate is a 422 listing every problem with its line."""
    with tempfile.TemporaryDirectory() as tmp:
        # A fixed name on disk: the caller's name may be longer in bytes than the filesystem allows.
        path = os.path.join(tmp, "execord.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(body.source)
        try:
            spec = load_spec(path)
        except GovernanceFileError as exc:
            # Name the file the caller sent, not this server's temporary path.
            problems = [(str(w).replace(path, body.filename), m, h) for w, m, h in exc.problems]
            raise GovernanceFileError.from_problems(problems) from None
    store = store_of(request)
    version, table = build_version(spec)
    store.append([], [make_blob(canonical_json(table.document()), "json")])
    created = store.put_governance_version(version.id, version.digest, version.canonical, by=p.who)
    activation = store.activate_governance(version.id, project=p.project, by=p.who, source=f"api:{body.filename}")
    return {"version_id": version.id, "digest": version.digest, "created": created, "activation": activation}
