"""The viewer's security, without a browser: every route needs a session, every form post
needs its CSRF token, a key sees only its own project, and scopes decide what it may do.

Runs against a real server on each backend (SQLite and PostgreSQL); requests go through
httpx with cookies, as a browser (or an attacker's page) would send them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _helpers import Chain
from fastapi import routing

from execord.ui._session import COOKIE, Sessions, SignInRequired

UI_ROUTES = {  # every route of the viewer, and what it is
    ("GET", "/"), ("GET", "/signin"), ("POST", "/signin"), ("POST", "/signout"), ("GET", "/executions"),
    ("GET", "/executions/{execution_id}"), ("GET", "/executions/{execution_id}/stream"),
    ("POST", "/executions/{execution_id}/cancel"), ("GET", "/executions/{execution_id}/export.json"),
    ("GET", "/executions/{execution_id}/bundle.zip"), ("GET", "/executions/{execution_id}/report.html"),
    ("GET", "/approvals"), ("POST", "/approvals/{approval_id}/approve"), ("POST", "/approvals/{approval_id}/reject"),
    ("GET", "/governance"), ("GET", "/overview"),
}
OPEN = {("GET", "/"), ("GET", "/signin"), ("POST", "/signin")}  # answer without a session


@dataclass
class World:
    running: str  # an execution of project default, awaiting an approval
    approval: str
    ended: str
    foreign: str  # an execution of project "other"
    foreign_approval: str


def _start(server: Any, chain: Chain, key: str) -> None:
    r = server.client(key).post("/api/v1/ingest", json={"events": chain.wire(), "blobs": []})
    assert r.status_code == 200, r.text


def _waiting(server: Any, key: str, workflow: str) -> tuple[str, str]:
    c = Chain()
    c.start(workflow=workflow)
    aid = "0193a2b4-0000-7000-8000-" + c.id[-12:]
    c.next("approval.requested", {"approval_id": aid, "rule_id": "refunds", "step_id": None, "action_digest": "d",
                                  "approvers": ["finance"], "expires_at": "2099-01-01T00:00:00.000000Z",
                                  "message": "needs finance"})
    _start(server, c, key)
    return c.id, aid


@pytest.fixture
def world(server: Any) -> World:
    ingest = server.key("ingest")
    running, approval = _waiting(server, ingest, "refund")
    done = Chain()
    done.start(workflow="done")
    done.end()
    _start(server, done, ingest)
    foreign, foreign_approval = _waiting(server, server.key("ingest", project="other"), "secret-work")
    return World(running, approval, done.id, foreign, foreign_approval)


class Browser:
    """An httpx client that keeps cookies and reads CSRF tokens off pages."""

    def __init__(self, url: str):
        self.c = httpx.Client(base_url=url, follow_redirects=False, timeout=30)

    def csrf(self, path: str = "/ui/executions") -> str:
        r = self.c.get(path)
        assert r.status_code == 200, r.text
        return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]

    def sign_in(self, key: str, next_: str = "/ui/executions") -> httpx.Response:
        token = self.csrf("/ui/signin")
        return self.c.post("/ui/signin", data={"csrf": token, "api_key": key, "next": next_})


@pytest.fixture
def browser(server: Any) -> Iterator[Any]:
    made: list[Browser] = []

    def make(key: str | None = None) -> Browser:
        b = Browser(server.url)
        made.append(b)
        if key is not None:
            r = b.sign_in(key)
            assert r.status_code == 303 and r.headers["location"] == "/ui/executions", r.text
        return b

    yield make
    for b in made:
        b.c.close()


def _fill(path: str, w: World) -> str:
    return path.replace("{execution_id}", w.running).replace("{approval_id}", w.approval)


def test_the_route_table_is_complete(server: Any) -> None:
    (mount,) = [r for r in server.app.routes if getattr(r, "path", None) == "/ui"]
    found = set()
    for ctx in routing.iter_route_contexts(mount.app.routes):
        for m in (getattr(ctx, "methods", None) or set()) - {"HEAD"}:
            found.add((m, ctx.path))
    assert found == UI_ROUTES, found ^ UI_ROUTES


def test_nothing_without_sign_in(server: Any, world: World, browser: Any) -> None:
    b = browser()
    for method, path in sorted(UI_ROUTES - OPEN):
        url = "/ui" + _fill(path, world)
        r = b.c.request(method, url, data={"csrf": "x", "confirm": "yes"} if method == "POST" else None)
        if method == "GET" and not path.endswith("/stream"):
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/signin?next="), (url, r.status_code)
        else:
            assert r.status_code == 401, (method, url, r.status_code)
        assert world.running not in r.text or "next=" in r.text
    assert server.store.get_cancel(world.running) is None
    assert server.store.get_approval(world.approval)["status"] == "pending"


def test_a_forged_or_tampered_cookie_is_no_session(server: Any, world: World, browser: Any) -> None:
    b = browser(server.key("read"))
    good = b.c.cookies[COOKIE]
    body, _, mac = good.partition(".")
    for bad in (body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB"), "x" * 2000, "not-a-cookie", "a.b"):
        b.c.cookies.set(COOKIE, bad, path="/ui")
        r = b.c.get("/ui/executions")
        assert r.status_code == 303 and "/ui/signin" in r.headers["location"], bad
    # Signed by another server's secret: refused too.
    other = Sessions(server.store)
    row = server.store.list_keys("default")[0]
    b.c.cookies.set(COOKIE, other.issue(row), path="/ui")
    assert b.c.get("/ui/executions").status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(server: Any, world: World,
                                                                      browser: Any) -> None:
    ops = browser(server.key("read", "approve", "operate"))
    other = browser(server.key("read", "approve", "operate"))
    foreign_token = other.csrf()  # a real token, of another session
    for token in (None, "", "forged", foreign_token):
        data = {"confirm": "yes", "reason": "x", "comment": "y"} | ({"csrf": token} if token is not None else {})
        for url in (f"/ui/executions/{world.running}/cancel", f"/ui/approvals/{world.approval}/approve",
                    f"/ui/approvals/{world.approval}/reject", "/ui/signout"):
            r = ops.c.post(url, data=data)
            assert r.status_code == 403 and "reload the page" in r.text, (url, token, r.status_code)
    assert server.store.get_cancel(world.running) is None
    assert server.store.get_approval(world.approval)["status"] == "pending"
    assert ops.c.get("/ui/executions").status_code == 200  # still signed in: signout was refused too
    # Sign-in is protected as well: no pre-session cookie, no sign-in.
    fresh = httpx.Client(base_url=server.url)
    for guess in ("x", "-", ""):
        r = fresh.post("/ui/signin", data={"csrf": guess, "api_key": server.key("read")})
        assert r.status_code == 403 and COOKIE not in fresh.cookies, guess
    # With a sign-in page's cookie but another page's token: refused too.
    other_token = browser().csrf("/ui/signin")
    fresh.get("/ui/signin")
    r = fresh.post("/ui/signin", data={"csrf": other_token, "api_key": server.key("read")})
    assert r.status_code == 403 and COOKIE not in fresh.cookies
    fresh.close()


def test_with_the_token_the_same_posts_work(server: Any, world: World, browser: Any) -> None:
    ops = browser(server.key("read", "approve", "operate", name="oncall"))
    token = ops.csrf(f"/ui/executions/{world.running}")
    r = ops.c.post(f"/ui/approvals/{world.approval}/approve",
                   data={"csrf": token, "comment": "ok", "next": f"/ui/executions/{world.running}"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/executions/{world.running}?done=approved"
    decided = server.store.get_approval(world.approval)
    assert decided["status"] == "approved" and decided["reviewer"] == "key:oncall" and decided["comment"] == "ok"
    again = ops.c.post(f"/ui/approvals/{world.approval}/reject", data={"csrf": token})
    assert again.status_code == 409 and "already decided" in again.text
    r = ops.c.post(f"/ui/executions/{world.running}/cancel", data={"csrf": token, "reason": "stop"})
    assert r.headers["location"].endswith("done=cancel-not-confirmed") and server.store.get_cancel(world.running) is None
    r = ops.c.post(f"/ui/executions/{world.running}/cancel", data={"csrf": token, "reason": "stop", "confirm": "yes"})
    assert r.status_code == 303 and server.store.get_cancel(world.running)["by"] == "key:oncall"
    ended = ops.c.post(f"/ui/executions/{world.ended}/cancel", data={"csrf": token, "confirm": "yes"})
    assert ended.status_code == 409 and "ended" in ended.text
    out = ops.c.post("/ui/signout", data={"csrf": token})
    assert out.status_code == 303 and ops.c.get("/ui/executions").status_code == 303


def test_another_projects_things_are_invisible(server: Any, world: World, browser: Any) -> None:
    b = browser(server.key("read", "approve", "operate", "admin"))  # every scope, project default
    listing = b.c.get("/ui/executions").text
    assert world.running in listing and world.foreign not in listing and "secret-work" not in listing
    assert world.foreign_approval not in b.c.get("/ui/approvals").text
    token = b.csrf()
    for path in ("", "/export.json", "/bundle.zip", "/report.html", "/stream"):
        r = b.c.get(f"/ui/executions/{world.foreign}{path}")
        assert r.status_code == 404 and "secret-work" not in r.text, (path, r.status_code)
    r = b.c.post(f"/ui/executions/{world.foreign}/cancel", data={"csrf": token, "confirm": "yes"})
    assert r.status_code == 404 and server.store.get_cancel(world.foreign) is None
    r = b.c.post(f"/ui/approvals/{world.foreign_approval}/approve", data={"csrf": token})
    assert r.status_code == 404 and server.store.get_approval(world.foreign_approval)["status"] == "pending"
    assert world.foreign not in b.c.get("/ui/overview?window=24h").text
    assert "secret-work" not in b.c.get("/ui/overview?window=24h").text
    # Filters cannot reach it either.
    assert world.foreign not in b.c.get(f"/ui/executions?id={world.foreign[:13]}").text


def test_scopes_decide_what_the_viewer_may_do(server: Any, world: World, browser: Any) -> None:
    reader = browser(server.key("read"))
    page = reader.c.get(f"/ui/executions/{world.running}").text
    assert "Cancel execution" not in page and "lacks the approve scope" in page
    token = reader.csrf()
    r = reader.c.post(f"/ui/approvals/{world.approval}/approve", data={"csrf": token})
    assert r.status_code == 403 and "approve scope" in r.text
    r = reader.c.post(f"/ui/executions/{world.running}/cancel", data={"csrf": token, "confirm": "yes"})
    assert r.status_code == 403 and "operate scope" in r.text
    assert server.store.get_cancel(world.running) is None
    assert server.store.get_approval(world.approval)["status"] == "pending"
    # A key that may only ingest cannot sign in at all.
    r = browser().sign_in(server.key("ingest"))
    assert r.status_code == 401 and "do not include read" in r.text


def test_a_revoked_key_ends_its_sessions(server: Any, world: World, browser: Any) -> None:
    made = server.admin.post("/api/v1/keys", json={"project": "default", "scopes": ["read"]}).json()
    b = browser(made["key"])
    assert b.c.get("/ui/executions").status_code == 200
    assert server.admin.post(f"/api/v1/keys/{made['id']}/revoke").status_code == 200
    deadline = time.monotonic() + 5  # the key row is cached for 2 s at most
    while b.c.get("/ui/executions").status_code == 200:
        assert time.monotonic() < deadline, "the revoked key's session still works"
        time.sleep(0.2)
    assert "/ui/signin" in b.c.get("/ui/executions").headers["location"]


def test_sign_in_redirects_only_inside_the_viewer_and_sets_a_strict_cookie(server: Any, browser: Any) -> None:
    key = server.key("read")
    for target, expected in (("//evil.example/ui/x", "/ui/executions"), ("https://evil.example/", "/ui/executions"),
                             ("/ui/overview", "/ui/overview"), ("/\\evil.example", "/ui/executions")):
        r = browser().sign_in(key, target)
        assert r.status_code == 303 and r.headers["location"] == expected, target
    r = browser().sign_in(key)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/ui" in cookie
    assert key not in cookie and key.split("_")[2] not in cookie
    assert "wrong key" not in browser().sign_in("ek_000000000000_no-such-key-at-all-zzzz").text


def test_security_headers_and_the_session_expiry(server: Any, browser: Any) -> None:
    b = browser(server.key("read"))
    r = b.c.get("/ui/executions")
    assert "script-src 'self'" in r.headers["content-security-policy"] and "frame-ancestors 'none'" in \
        r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "<script>" not in r.text  # no inline script: the CSP forbids it
    sessions = Sessions(server.store, b"k" * 32)
    row = server.store.list_keys("default")[0]
    cookie = sessions.issue(row, now=1_000_000.0)
    assert sessions.open(cookie, now=1_000_010.0).key_id == row["id"]
    with pytest.raises(SignInRequired, match="expired"):
        sessions.open(cookie, now=1_000_000.0 + 13 * 3600)


def test_bad_input_gets_a_page_that_says_what_was_wrong(server: Any, world: World, browser: Any) -> None:
    b = browser(server.key("read"))
    for url, words in (("/ui/executions?status=exploded", "not a status"), ("/ui/executions?since=yesterday-ish", "since"),
                       ("/ui/executions?id=zz", "hex digits"), ("/ui/executions?cursor=%%%", "cursor"),
                       ("/ui/executions?label=nolabel", "label")):
        r = b.c.get(url)
        assert r.status_code == 200 and words in r.text, (url, r.text[:2000])
    r = b.c.get("/ui/executions/not-an-id")
    assert r.status_code == 404 and "not an execution id" in r.text and "Traceback" not in r.text
    r = b.c.get("/ui/governance?a=gv_0000&b=nonsense")
    assert r.status_code == 200 and "pick two versions" in r.text
    r = b.c.get(f"/ui/executions/{world.running}/stream", headers={"Last-Event-ID": "banana"})
    assert r.status_code == 404 and "seq" in r.text
