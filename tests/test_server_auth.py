"""Who may call what (DESIGN §7, "Auth"): every route of the server against every scope.

The expectation table `EXPECT` names, for each ``/api/v1`` route, the scopes that may call it
(``admin`` holds every scope, so it is always added), how to fill its path parameters and a
minimal valid body. The routes themselves are read from the app, so a route added without an
entry here fails `test_every_route_has_an_expectation` (and the matrix) until someone decides
who may call it. Routes outside ``/api/v1`` must be listed in `PUBLIC`, or in `SIGNED_IN`
(the web viewer, a mount with its own sign-in: tests/test_ui_security.py checks each of its routes).

- A key with an allowed scope gets an answer that is neither 401 nor 403 (nor 404/422/5xx:
  the request is well formed and names things that exist), a key without one gets 403 with a
  problem+json body, and a refused request changes nothing.
- No key, a garbage key, another scheme and a revoked key are 401 (with ``WWW-Authenticate``).
- A key of another project, holding every scope, gets 404 for project ``default``'s
  executions, approvals, governance versions and keys (a 404 exactly like a missing one, never
  a 403 that would confirm they exist), and its lists show none of them.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from _helpers import Chain
from fastapi import routing

from execord.record import TOTALS_KEYS, blob_ref, make_blob, uuid7

SCOPES = ("ingest", "read", "approve", "operate", "admin")
API = "/api/v1"

# Outside /api/v1 every route answers without a key.
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

# Mounts whose routes need a viewer session instead of an API key.
SIGNED_IN = frozenset({"/ui"})

GOVERNANCE = "version: 1\npolicies: []\n"
# What the matrix applies: another version than the seeded one, so that applying it shows.
MATRIX_GOVERNANCE = "version: 1\npolicies:\n  - id: r1\n    on: [tool.request]\n    effect: deny\n"


@dataclass(frozen=True)
class Rule:
    """Who may call one route, and how to make a valid request to it."""

    scopes: frozenset[str]
    body: Callable[[World], Any] | None = None
    query: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # path param -> World attribute, over PARAMS

    @property
    def allowed(self) -> frozenset[str]:
        return self.scopes | {"admin"}


def rule(*scopes: str, **kw: Any) -> Rule:
    return Rule(frozenset(scopes), **kw)


def _start_body(w: World) -> dict[str, Any]:
    return {"execution_id": uuid7(), "agent": {"name": "a"}, "workflow": {"name": "w"}}


EXPECT: dict[tuple[str, str], Rule] = {
    # executions: replay and export
    ("GET", "/api/v1/executions"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}/steps"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}/timeline"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}/events"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}/seal"): rule("read"),
    ("GET", "/api/v1/executions/{execution_id}/export"): rule("read"),
    ("GET", "/api/v1/blobs/{digest}"): rule("read", "ingest"),
    # unified: live status, stream (of an ended execution, so it closes), cancel
    ("GET", "/api/v1/unified/executions"): rule("read"),
    ("GET", "/api/v1/unified/executions/{execution_id}"): rule("read"),
    ("GET", "/api/v1/unified/executions/{execution_id}/stream"): rule("read"),
    ("POST", "/api/v1/unified/executions/{execution_id}/cancel"): rule(
        "operate", body=lambda w: {"reason": "matrix"}, params={"execution_id": "running"}),
    # approvals
    ("GET", "/api/v1/approvals"): rule("read", "approve"),
    ("GET", "/api/v1/approvals/{approval_id}"): rule("read", "approve", "ingest"),
    ("POST", "/api/v1/approvals/{approval_id}/approve"): rule("approve", body=lambda w: {"comment": "ok"}),
    ("POST", "/api/v1/approvals/{approval_id}/reject"): rule("approve", body=lambda w: {"comment": "no"}),
    ("POST", "/api/v1/approvals/{approval_id}/expire"): rule("ingest"),
    # governance
    ("GET", "/api/v1/governance/active"): rule("read", "ingest"),
    ("GET", "/api/v1/governance/versions"): rule("read"),
    ("GET", "/api/v1/governance/versions/{version_id}"): rule("read", "ingest"),
    ("GET", "/api/v1/governance/history"): rule("read"),
    ("POST", "/api/v1/governance/apply"): rule(body=lambda w: {"source": MATRIX_GOVERNANCE}),
    # what agents send
    ("POST", "/api/v1/ingest"): rule("ingest", body=lambda w: {"events": []}),
    ("POST", "/api/v1/executions/start"): rule("ingest", body=_start_body),
    ("POST", "/api/v1/heartbeat"): rule("ingest", body=lambda w: {"executions": {}}),
    # keys
    ("POST", "/api/v1/keys"): rule(body=lambda w: {"scopes": ["read"], "name": "matrix"}),
    ("GET", "/api/v1/keys"): rule(),
    ("POST", "/api/v1/keys/{key_id}/revoke"): rule(),
    # the ledger (409 for POST checkpoint: this server has no ledger key) and bundles
    ("GET", "/api/v1/ledger/checkpoint"): rule("read"),
    ("POST", "/api/v1/ledger/checkpoint"): rule("operate"),
    ("GET", "/api/v1/ledger/proof/inclusion"): rule("read", query={"execution_id": "{ended}"}),
    ("GET", "/api/v1/ledger/proof/consistency"): rule("read", query={"from": 0}),
    ("POST", "/api/v1/bundles"): rule("read", body=lambda w: {"execution_ids": [w.ended]}),
    ("GET", "/api/v1/executions/{execution_id}/report"): rule("read"),
}

# How a path parameter is filled by default: the World attribute holding an existing thing.
PARAMS = {"execution_id": "ended", "approval_id": "approval", "version_id": "version",
          "key_id": "spare_key_id", "digest": "digest"}
# Path parameters not scoped to a project: none. (Blobs are stored once by digest, but a key
# reads only those its own project's executions refer to: executions.get_blob.)
SHARED_PARAMS: frozenset[str] = frozenset()
# Lists that must show none of another project's things, with the World attributes that the
# owner's admin key does see there (the positive control that makes the check mean something).
LISTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "/api/v1/executions": ({}, ("ended", "running")),
    "/api/v1/unified/executions": ({}, ("ended", "running")),
    "/api/v1/approvals": ({"status": "any"}, ("approval",)),
    "/api/v1/governance/active": ({}, ("version",)),
    "/api/v1/governance/versions": ({}, ("version",)),
    "/api/v1/governance/history": ({}, ("version",)),
    "/api/v1/keys": ({}, ("spare_key_id",)),
}


# -- the routes of the app ------------------------------------------------------------------------


def app_routes(app: Any) -> list[tuple[str, str, bool]]:
    """(method, path, is_api_route) of every route of the app, with router prefixes applied."""
    out = []
    for ctx in routing.iter_route_contexts(app.routes):
        methods = getattr(ctx, "methods", None) or {"*"}
        is_api = isinstance(ctx.original_route, routing.APIRoute)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            out.append((method, ctx.path, is_api))
    return out


def undeclared(app: Any) -> list[str]:
    """Routes that the tables above say nothing about."""
    missing = []
    for method, path, is_api in app_routes(app):
        if path.startswith(API + "/") or path == API:
            if (method, path) not in EXPECT:
                missing.append(f"route {method} {path} has no expected scope: add it to EXPECT in {__name__}")
        elif path not in PUBLIC and path not in SIGNED_IN:
            kind = "API route" if is_api else "route"
            missing.append(f"{kind} {method} {path} is outside {API} but not in PUBLIC: declare it public "
                           f"there, or move it under {API} and give it a scope in EXPECT")
    return missing


def api_routes(app: Any) -> list[tuple[str, str]]:
    """The /api/v1 routes; each must have its rule in EXPECT."""
    missing = undeclared(app)
    assert not missing, "\n".join(missing)
    routes = [(m, p) for m, p, _ in app_routes(app) if p.startswith(API + "/")]
    assert routes, "no /api/v1 routes found: has the way routes are enumerated changed?"
    return routes


# -- what exists in project default ---------------------------------------------------------------


_STARTED = {
    "agent": {"name": "a", "version": None, "roles": []}, "workflow": {"name": "w", "version": None},
    "execution_type": "workflow", "parent_execution_id": None, "labels": {}, "inputs": None,
    "governance_version": None, "sdk": {}, "host": {"hostname": "h", "pid": 1}, "lease_s": 3600,
}


@dataclass
class World:
    """Project default's things, made through the API with the admin key."""

    ended: str  # a succeeded execution
    running: str  # an execution awaiting an approval
    running_chain: Chain
    approval: str
    version: str
    digest: str
    spare_key: str  # a read key, for revoke
    spare_key_id: str
    keys: dict[str, str] = field(default_factory=dict)  # scope -> a key with only that scope

    def ids(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ("ended", "running", "approval", "version", "spare_key_id", "digest")}


def seed(server: Any) -> World:
    admin = server.admin
    ended = Chain()
    ended.next("execution.started", dict(_STARTED))
    blob = make_blob(b'{"secret": 1}', "json")
    ended.next("log", {"level": "info", "message": "hi", "data": blob_ref(blob.digest[7:], blob.size, "json")})
    ended.next("execution.ended", {"status": "succeeded", "error": None, "halt": None, "cancel": None,
                                   "totals": dict.fromkeys(TOTALS_KEYS, 0)})
    running = Chain()
    approval = str(uuid.uuid4())
    running.next("execution.started", dict(_STARTED))
    running.next("approval.requested", {
        "approval_id": approval, "rule_id": "r", "step_id": None, "action_digest": "00" * 32,
        "approvers": [], "expires_at": "2099-01-01T00:00:00.000000Z", "message": None})
    r = admin.post(f"{API}/ingest", json={
        "events": ended.wire() + running.wire(),
        "blobs": [{"digest": blob.digest, "type": "json", "data": '{"secret": 1}'}]})
    assert r.status_code == 200 and r.json()["stored"] == 5, r.text
    r = admin.post(f"{API}/governance/apply", json={"source": GOVERNANCE})
    assert r.status_code == 200, r.text
    version = r.json()["version_id"]
    r = admin.post(f"{API}/keys", json={"scopes": ["read"], "name": "spare"})
    assert r.status_code == 201, r.text
    w = World(ended=ended.id, running=running.id, running_chain=running, approval=approval, version=version,
              digest=blob.digest, spare_key=r.json()["key"], spare_key_id=r.json()["id"])
    w.keys = {s: server.key(s, name=f"only-{s}") for s in SCOPES}
    # A signed checkpoint, so the ledger routes have something to answer with.
    from execord.ledger import _log
    from execord.ledger._note import Signer

    _log.make_checkpoint(server.store, Signer.generate("test.example/matrix"))
    return w


def request(client: httpx.Client, w: World, method: str, path: str) -> httpx.Response:
    """A valid request to a route, per its rule."""
    r = EXPECT[(method, path)]
    names = re.findall(r"{(\w+)}", path)
    values = {}
    for name in names:
        attr = r.params.get(name) or PARAMS.get(name)
        assert attr is not None, f"{method} {path}: no way to fill path parameter {name!r}; add it to PARAMS"
        values[name] = getattr(w, attr)
    url = path.format(**values)
    body = r.body(w) if r.body is not None else None
    query = {k: v.format(**w.ids()) if isinstance(v, str) else v for k, v in r.query.items()}
    return client.request(method, url, params=query, json=body)


def problem_errors(r: httpx.Response, status: int) -> list[str]:
    """What is wrong with an answer that should be an RFC 9457 problem with this status."""
    errs = []
    if r.status_code != status:
        errs.append(f"status {r.status_code}, expected {status}")
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        errs.append(f"content-type {r.headers.get('content-type')!r}, expected application/problem+json")
    try:
        body = r.json()
    except ValueError:
        return [*errs, f"body is not JSON: {r.text[:200]!r}"]
    if not isinstance(body, dict):
        return [*errs, f"body is not an object: {body!r}"]
    for k in ("type", "title", "detail"):
        if not isinstance(body.get(k), str) or not body[k]:
            errs.append(f"problem member {k!r} missing or not a string")
    if body.get("status") != r.status_code:
        errs.append(f"problem status {body.get('status')!r} != HTTP status {r.status_code}")
    return errs


def _anonymised(r: httpx.Response, w: World) -> tuple[int, str]:
    text = r.text
    for attr, value in w.ids().items():
        text = text.replace(value, f"<{attr}>")
    return r.status_code, text


@pytest.fixture
def world(server: Any) -> World:
    return seed(server)


@pytest.fixture
def clients(server: Any) -> Iterator[Callable[[str | None], httpx.Client]]:
    made: list[httpx.Client] = []

    def make(key: str | None) -> httpx.Client:
        c = server.client(key)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# -- the tests ----------------------------------------------------------------------------------------


def test_every_route_has_an_expectation(db_path: str) -> None:
    from execord.server import create_app
    from execord.store import open_store

    store = open_store(db_path)
    try:
        app = create_app(store)
        assert not undeclared(app), "\n".join(undeclared(app))
        routes = set(api_routes(app))
        stale = sorted(set(EXPECT) - routes)
        assert not stale, f"EXPECT names routes the app does not have: {stale}"
        documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops
                      if p.startswith(API + "/")}
        assert documented == routes, f"routes and OpenAPI differ: {sorted(documented ^ routes)}"
    finally:
        store.close()


def test_public_routes_answer_without_a_key(server: Any, clients: Any) -> None:
    anonymous = clients(None)
    for method, path, _ in app_routes(server.app):
        if path in PUBLIC:
            r = anonymous.request("GET" if method == "*" else method, path)  # "*": a mount
            assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text[:300]}"


def test_scope_matrix(server: Any, world: World, clients: Any) -> None:
    """Every route x every single-scope key: refusals first (and they change nothing), then
    the allowed calls."""
    routes = api_routes(server.app)
    by_scope = {s: clients(world.keys[s]) for s in SCOPES}
    admin = server.admin
    keys_before = len(admin.get(f"{API}/keys").json()["items"])
    history_before = len(admin.get(f"{API}/governance/history").json()["items"])
    failures: list[str] = []

    for method, path in routes:
        for scope in SCOPES:
            if scope in EXPECT[(method, path)].allowed:
                continue
            r = request(by_scope[scope], world, method, path)
            errs = problem_errors(r, 403)
            if errs:
                failures.append(f"{method} {path} with a {scope!r} key must be refused 403: "
                                f"{'; '.join(errs)}: {r.text[:300]}")

    # Nothing a refused request asked for happened.
    assert admin.get(f"{API}/approvals/{world.approval}").json()["status"] == "pending"
    assert admin.get(f"{API}/unified/executions/{world.running}").json()["live"]["cancel_requested"] is None
    assert clients(world.spare_key).get(f"{API}/executions").status_code == 200
    assert len(admin.get(f"{API}/keys").json()["items"]) == keys_before, "a refused POST /keys made a key"
    assert len(admin.get(f"{API}/governance/history").json()["items"]) == history_before

    for method, path in routes:
        for scope in SCOPES:
            if scope not in EXPECT[(method, path)].allowed:
                continue
            r = request(by_scope[scope], world, method, path)
            # 409: an approval decided by an earlier allowed call of this loop.
            if not (r.status_code < 400 or r.status_code == 409):
                failures.append(f"{method} {path} with a {scope!r} key must be allowed, got "
                                f"{r.status_code}: {r.text[:300]}")

    assert not failures, f"{len(failures)} authorization failures:\n" + "\n".join(failures)
    # The allowed calls did what they say.
    assert admin.get(f"{API}/approvals/{world.approval}").json()["status"] == "approved"
    assert admin.get(f"{API}/unified/executions/{world.running}").json()["live"]["cancel_requested"]
    assert clients(world.spare_key).get(f"{API}/executions").status_code == 401
    assert len(admin.get(f"{API}/governance/history").json()["items"]) == history_before + 1
    assert len(admin.get(f"{API}/keys").json()["items"]) == keys_before + 1


def test_requests_without_a_valid_key_are_401(server: Any, world: World, clients: Any) -> None:
    revoked = server.key("admin", name="to-revoke")
    revoked_client = clients(revoked)
    assert revoked_client.get(f"{API}/keys").status_code == 200
    key_id = next(k["id"] for k in server.admin.get(f"{API}/keys").json()["items"] if k["name"] == "to-revoke")
    assert server.admin.post(f"{API}/keys/{key_id}/revoke").status_code == 200

    callers = {
        "no Authorization header": clients(None),
        "a garbage key": clients("ek_000000000000_not-a-key-anyone-made"),
        "a revoked key": revoked_client,
        "an over-long key": clients("ek_" + "x" * 500),
        "the Basic scheme": httpx.Client(base_url=server.url, headers={"Authorization": f"Basic {world.keys['admin']}"}),
        "Bearer without a key": httpx.Client(base_url=server.url, headers={"Authorization": "Bearer"}),
    }
    failures = []
    try:
        for method, path in api_routes(server.app):
            for who, client in callers.items():
                r = request(client, world, method, path)
                errs = problem_errors(r, 401)
                if not r.headers.get("www-authenticate", "").startswith("Bearer"):
                    errs.append(f"WWW-Authenticate is {r.headers.get('www-authenticate')!r}")
                if errs:
                    failures.append(f"{method} {path} with {who}: {'; '.join(errs)}: {r.text[:200]}")
    finally:
        for c in callers.values():
            c.close()
    assert not failures, f"{len(failures)} authentication failures:\n" + "\n".join(failures)
    # The refused requests changed nothing either.
    assert server.admin.get(f"{API}/approvals/{world.approval}").json()["status"] == "pending"


def test_another_projects_key_sees_nothing_of_default(server: Any, world: World, clients: Any) -> None:
    """A key of project "other" holding every scope: default's things are 404 (as if missing),
    its lists show none of them, and its writes cannot reach them."""
    other = clients(server.key(*SCOPES, project="other", name="other"))
    owner = server.admin
    nowhere = dataclasses.replace(world, ended=uuid7(), running=uuid7(), approval=str(uuid.uuid4()),
                                  version="gv_0123456789abcdef", spare_key_id="ek_0123456789ab",
                                  digest="sha256:" + "0" * 64)
    failures = []
    for method, path in api_routes(server.app):
        names = set(re.findall(r"{(\w+)}", path))
        if not names or names <= SHARED_PARAMS:
            continue
        r = request(other, world, method, path)
        errs = problem_errors(r, 404)
        # Exactly the answer about a thing that does not exist (ids aside): no hint that it does.
        missing = request(other, nowhere, method, path)
        if not errs and _anonymised(r, world) != _anonymised(missing, nowhere):
            errs.append(f"the answer differs from the one for a missing thing: {missing.text[:300]}")
        if errs:
            failures.append(f"{method} {path}: {'; '.join(errs)}: {r.text[:300]}")

    for path, (query, shown) in LISTS.items():
        assert ("GET", path) in EXPECT, path
        mine = owner.get(path, params=query)
        assert mine.status_code == 200, mine.text
        for attr in shown:
            assert getattr(world, attr) in mine.text, f"positive control: {path} does not show default's {attr}"
        r = other.get(path, params=query)
        if r.status_code != 200:
            failures.append(f"GET {path}: {r.status_code} {r.text[:300]}")
            continue
        leaked = [a for a, v in world.ids().items() if v in r.text]
        if leaked:
            failures.append(f"GET {path} shows project default's {leaked}: {r.text[:300]}")
    assert not failures, f"{len(failures)} cross-project failures:\n" + "\n".join(failures)

    # Nothing happened to default's things.
    assert owner.get(f"{API}/approvals/{world.approval}").json()["status"] == "pending"
    assert owner.get(f"{API}/unified/executions/{world.running}").json()["live"]["cancel_requested"] is None
    assert clients(world.spare_key).get(f"{API}/executions").status_code == 200

    # Its ingest cannot continue default's execution; its heartbeat learns nothing of it.
    chain = world.running_chain
    n = len(chain.events)
    chain.next("log", {"level": "info", "message": "forged by another project", "data": None})
    r = other.post(f"{API}/ingest", json={"events": chain.wire(n)})
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert r.json()["stored"] == 0 and r.json()["rejected"], r.text
    events = owner.get(f"{API}/executions/{world.running}/events").json()["items"]
    assert len(events) == n, "another project's key appended to default's execution"
    assert owner.post(f"{API}/unified/executions/{world.running}/cancel").status_code == 202
    r = other.post(f"{API}/heartbeat", json={"executions": {world.running: {"lease_s": 30}}})
    assert r.status_code == 200, r.text
    assert world.running not in r.json()["cancels"], r.text
