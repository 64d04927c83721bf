"""``/keys``: API keys, for admins. A key is shown once, when it is made."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from ...errors import Forbidden
from ...store._keys import SCOPES
from .._auth import Principal, require
from .._deps import store_of

router = APIRouter(tags=["keys"])
Admin = Annotated[Principal, Depends(require("admin"))]

#: The operator's project: `execord serve` makes its first admin key here, and only an admin
#: of this project may make keys for other projects. An admin of any other project (a tenant)
#: makes keys for its own, so it cannot mint itself a way into another project.
OPERATOR_PROJECT = "default"


class NewKey(BaseModel):
    """A key to make."""

    project: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9._-]+$",
                                description="Default: the calling key's project.")
    scopes: list[str] = Field(..., min_length=1, max_length=len(SCOPES),
                              description=f"Any of {', '.join(SCOPES)}.")
    name: str | None = Field(None, max_length=200)


@router.post("/keys", status_code=201, summary="Make an API key (shown once)")
def create_key(request: Request, body: NewKey, p: Admin) -> Any:
    """An admin of the ``default`` project may make keys for any project; an admin of another
    project, for its own. The key sees only its own project."""
    project = body.project or p.project
    if project != p.project and p.project != OPERATOR_PROJECT:
        raise Forbidden(f"an admin key of project {p.project} makes keys for {p.project} only; a key for "
                        f"project {project} is made with an admin key of the {OPERATOR_PROJECT} project, or "
                        f"`execord keys create --project {project}` on the store")
    key, row = store_of(request).create_key(project, body.scopes, name=body.name, by=p.who)
    return {"key": key, **row}


@router.get("/keys", summary="The keys of the caller's project (never the keys themselves)")
def list_keys(request: Request, p: Admin) -> Any:
    return {"items": store_of(request).list_keys(p.project)}


@router.post("/keys/{key_id}/revoke", summary="Revoke a key, at once on this replica")
def revoke_key(request: Request, key_id: Annotated[str, Path(max_length=40, pattern="^ek_[0-9a-f]+$")],
               p: Admin) -> Any:
    row = store_of(request).revoke_key(key_id, project=p.project)
    request.app.state.keys.forget()
    return row
