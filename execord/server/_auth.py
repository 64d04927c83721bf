"""API keys on every request: who is asking, for which project, with which scopes (DESIGN §7).

``Authorization: Bearer <key>``. Only the key's SHA-256 is stored and it is compared in
constant time (`KeyTables.authenticate`). ``admin`` holds every scope. A key sees only its
own project: another project's execution is answered 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import Forbidden, Unauthorized
from ..store._keys import Principal, Recent, key_digest


class KeyCache:
    """Authenticated keys for a few seconds, so a busy ingest does not read the key per batch.

    A revocation made through this server is seen at once; one made on another replica is
    seen within ``ttl`` seconds.
    """

    def __init__(self, store: Any, ttl: float):
        self.store = store
        self.ttl = ttl
        self._recent = Recent(ttl)

    def principal(self, key: str) -> Principal | None:
        return self._recent.get(key_digest(key), lambda: self._lookup(key))  # type: ignore[no-any-return]

    def _lookup(self, key: str) -> Principal | None:
        row = self.store.authenticate(key)
        return None if row is None else Principal(row["id"], row["project"], frozenset(row["scopes"]),
                                                  row["name"] or row["id"])

    def forget(self) -> None:
        self._recent.forget()


def authenticate(request: Request) -> Principal:
    """The caller of a request, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>' "
                           "(create one with `execord keys create`)")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    key = key.strip()
    if len(key) > 200:
        raise Unauthorized("that is not an Execord API key")
    principal = request.app.state.keys.principal(key)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    return principal


# Declared so that the OpenAPI document (and the Authorize button of /docs) knows the scheme;
# the header itself is read by `authenticate`, which gives our own 401s.
BEARER = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An Execord API key: `Authorization: Bearer ek_…` (execord keys create).")


def require(*scopes: str) -> Any:
    """A FastAPI dependency: the caller, who must hold one of ``scopes``."""

    def dependency(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Principal:
        p = authenticate(request)
        if not p.has(*scopes):
            raise Forbidden(
                f"this key (project {p.project}, scopes {','.join(sorted(p.scopes))}) lacks the "
                f"{' or '.join(scopes)} scope this request needs"
            )
        return p

    dependency.__name__ = f"require_{'_or_'.join(scopes)}"
    return dependency
