"""The REST API's contract, on SQLite and on PostgreSQL (one suite, parametrised by backend).

Every test talks HTTP to a real uvicorn server over a real store; agents record through it
with the real SDK in server mode (spool, shipper, heartbeats).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import Chain

from execord.record import build_event, genesis_hash, uuid7
from execord.runtime import Execord

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert PROBLEM_KEYS <= set(body) and body["status"] == status and body["detail"], body
    return body


def _agent(server: Any, tmp_path: Path, key: str | None = None, **kw: Any) -> Execord:
    key = key or server.key("ingest")
    return Execord(agent="api-bot", url=server.url, api_key=key, spool_dir=str(tmp_path / "spool"),
                   lease_s=kw.pop("lease_s", 30), heartbeat_s=kw.pop("heartbeat_s", 1), **kw)


def _run(ex: Execord, workflow: str = "support", steps: int = 2, **kw: Any) -> str:
    @ex.tool
    def lookup(i: int) -> dict[str, int]:
        return {"i": i}

    with ex.execution(workflow, **kw) as h:
        for i in range(steps):
            lookup(i)
    assert ex.flush(15)
    return h.id


def _batch(*events: Any) -> dict[str, Any]:
    return {"events": [{"body": e.body.decode(), "hash": e.hash.hex()} for e in events], "blobs": []}


# -- health, docs, errors ----------------------------------------------------------------------


def test_health_ready_openapi_and_docs_need_no_key(server: Any) -> None:
    c = server.client(None)
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.get("/readyz").json()["status"] == "ready"
    spec = c.get("/openapi.json").json()
    assert "/api/v1/executions" in spec["paths"] and "/api/v1/ingest" in spec["paths"]
    assert c.get("/docs").status_code == 200


def test_errors_are_problem_json_with_a_clear_detail(server: Any) -> None:
    c = server.client(None)
    body = _problem(c.get("/api/v1/executions"), 401)
    assert "Bearer" in body["detail"]
    _problem(server.client("ek_000000000000_nope-nope-nope-nope-nope").get("/api/v1/executions"), 401)
    _problem(server.admin.get("/api/v1/nothing-here"), 404)
    missing = _problem(server.admin.get(f"/api/v1/executions/{uuid7()}"), 404)
    assert "no execution" in missing["detail"]
    bad = _problem(server.admin.get("/api/v1/executions", params={"status": "exploded"}), 400)
    assert "not a status" in bad["detail"]
    _problem(server.admin.get("/api/v1/executions", params={"limit": 501}), 422)
    _problem(server.admin.get("/api/v1/executions", params={"cursor": "!!!"}), 400)


# -- reading executions ----------------------------------------------------------------------------


def test_an_agent_records_through_the_server_and_every_view_shows_it(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    eid = _run(ex, steps=3, labels={"env": "prod"}, inputs={"ticket": "T-1"})
    ex.close()
    a = server.admin
    detail = a.get(f"/api/v1/executions/{eid}").json()
    assert detail["execution"]["status"] == "succeeded" and detail["execution"]["sealed"] is True
    assert detail["execution"]["labels"] == {"env": "prod"}
    assert detail["event_count"] == 8 and len(detail["steps"]) == 3
    assert [s["name"] for s in a.get(f"/api/v1/executions/{eid}/steps").json()["items"]] == ["lookup"] * 3
    timeline = a.get(f"/api/v1/executions/{eid}/timeline").json()["items"]
    assert [e["seq"] for e in timeline] == list(range(8)) and timeline[0]["t_ms"] == 0
    events = a.get(f"/api/v1/executions/{eid}/events", params={"after_seq": 5}).json()["items"]
    assert [e["seq"] for e in events] == [6, 7] and all(len(e["hash"]) == 64 for e in events)
    seal = a.get(f"/api/v1/executions/{eid}/seal").json()
    assert seal["event_count"] == 8 and seal["last_hash"] == timeline[-1]["hash"]
    export = a.get(f"/api/v1/executions/{eid}/export").json()
    assert export["execution"]["id"] == eid and len(export["events"]) == 8
    digest = next(iter(export["blobs"]))
    blob = a.get(f"/api/v1/blobs/{digest}").json()
    assert blob["digest"] == digest and blob["data"] == export["blobs"][digest]["data"]


def test_list_filters_as_the_cli_does(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    a_id = _run(ex, "billing", labels={"env": "prod"})
    b_id = _run(ex, "support", labels={"env": "dev"})
    ex.close()
    get = server.admin.get
    ids = lambda **p: [r["id"] for r in get("/api/v1/executions", params=p).json()["items"]]  # noqa: E731
    assert ids() == [b_id, a_id]
    assert ids(workflow="billing") == [a_id]
    assert ids(label="env=dev") == [b_id]
    assert ids(status="succeeded", agent="api-bot") == [b_id, a_id]
    assert ids(status="failed") == []
    assert ids(since="1h") == [b_id, a_id] and ids(until="1h") == []
    assert ids(id_prefix=a_id[:30]) == [a_id]


def test_cursor_pages_stay_stable_while_new_executions_arrive(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    first = [_run(ex, steps=0) for _ in range(5)]
    page1 = server.admin.get("/api/v1/executions", params={"limit": 2}).json()
    assert [r["id"] for r in page1["items"]] == first[::-1][:2] and page1["next_cursor"]
    newer = [_run(ex, steps=0) for _ in range(3)]  # arrive between two pages
    seen = [r["id"] for r in page1["items"]]
    cursor = page1["next_cursor"]
    while cursor:
        page = server.admin.get("/api/v1/executions", params={"limit": 2, "cursor": cursor}).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
    assert seen == first[::-1], "a page repeated or skipped an execution"
    assert not set(newer) & set(seen)
    ex.close()


def test_unified_status_shows_what_is_open_and_cancel_is_409_once_ended(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    with ex.execution("long") as h:
        with ex.step("thinking", kind="custom"):
            ex.flush(10)
            live = server.admin.get(f"/api/v1/unified/executions/{h.id}").json()
            assert live["status"] == "running"
            assert live["live"]["current_step"]["name"] == "thinking"
            listed = server.admin.get("/api/v1/unified/executions").json()["items"]
            assert listed[0]["id"] == h.id and listed[0]["live"]["current_step"] is not None
    ex.flush(10)
    ended = server.admin.get(f"/api/v1/unified/executions/{h.id}").json()
    assert ended["live"]["current_step"] is None and ended["live"]["last_seq"] == 3
    r = server.client(server.key("operate")).post(f"/api/v1/unified/executions/{h.id}/cancel", json={"reason": "x"})
    assert "ended" in _problem(r, 409)["detail"] or "sealed" in r.json()["detail"]
    ex.close()


# -- ingest ------------------------------------------------------------------------------------------


def test_ingest_is_idempotent_on_execution_and_seq(server: Any) -> None:
    c = server.client(server.key("ingest"))
    chain = Chain()
    batch = _batch(chain.start(), chain.end())
    first = c.post("/api/v1/ingest", json=batch).json()
    again = c.post("/api/v1/ingest", json=batch).json()
    assert first["stored"] == 2 and again["stored"] == 0 and again["rejected"] == []
    assert first["acked"] == {chain.id: 1}
    assert len(server.admin.get(f"/api/v1/executions/{chain.id}/events").json()["items"]) == 2


def test_ingest_stores_what_is_valid_and_names_what_is_not(server: Any) -> None:
    c = server.client(server.key("ingest"))
    good, bad = Chain(), Chain()
    bad.start()
    gap = bad.next("log", {"level": "info", "message": "m", "data": None})
    answer = c.post("/api/v1/ingest", json=_batch(good.start(), gap, good.end())).json()
    assert answer["stored"] == 2
    assert [(r["execution_id"], r["seq"]) for r in answer["rejected"]] == [(bad.id, 1)]
    assert "gap" in answer["rejected"][0]["detail"]
    sealed = c.post("/api/v1/ingest", json=_batch(good.next("log", {"level": "info", "message": "late", "data": None})))
    assert sealed.json()["rejected"][0]["type"] == "execution-sealed"


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"not json", 400, "not JSON"),
    (b'{"events": 3}', 400, "must be"),
    (b'{"events": [{"body": "{}", "hash": "zz"}]}', 400, "hex"),
    (b'{"events": [{"body": "{}", "hash": "00"}]}', 400, "64 hex digits"),
])
def test_ingest_refuses_malformed_batches(server: Any, body: bytes, status: int, words: str) -> None:
    c = server.client(server.key("ingest"))
    r = c.post("/api/v1/ingest", content=body, headers={"Content-Type": "application/json"})
    assert words in _problem(r, status)["detail"]


def test_every_body_has_a_size_limit(server: Any) -> None:
    c = server.client(server.key("ingest"))
    huge = b'{"events": [' + b" " * (33 * 1024 * 1024) + b"]}"
    assert "limit" in _problem(c.post("/api/v1/ingest", content=huge), 413)["detail"]
    many = {"events": [{"body": "{}", "hash": "00" * 32}] * 10_001}
    _problem(c.post("/api/v1/ingest", json=many), 413)


def test_another_projects_execution_cannot_be_written_or_read(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    eid = _run(ex, steps=1)
    ex.close()
    other = server.client(server.key("ingest", "read", "operate", project="other"))
    assert other.get("/api/v1/executions").json()["items"] == []
    _problem(other.get(f"/api/v1/executions/{eid}"), 404)
    _problem(other.post(f"/api/v1/unified/executions/{eid}/cancel", json={}), 404)
    events = server.admin.get(f"/api/v1/executions/{eid}/events").json()["items"]
    from _server import ADMIN_KEY  # noqa: F401 - the admin's events, replayed by another project

    from execord.runtime._remote import event_from_dict

    replay = [event_from_dict(e) for e in events]
    answer = other.post("/api/v1/ingest", json=_batch(*replay)).json()
    assert answer["stored"] == 0 and answer["rejected"][0]["status"] == 404


# -- admission, heartbeat, cancel ---------------------------------------------------------------------


GOVERNANCE = """
version: 1
policies:
  - id: no-nightly
    on: [admission]
    when: workflow.name == "nightly"
    effect: deny
    message: Nightly runs are paused.
  - id: no-shell
    on: [tool.request]
    when: tool.name == "shell"
    effect: deny
"""


def test_governance_applied_through_the_api_decides_admission_at_the_server(server: Any, tmp_path: Path) -> None:
    import execord

    applied = server.admin.post("/api/v1/governance/apply", json={"source": GOVERNANCE}).json()
    vid = applied["version_id"]
    assert applied["activation"]["to_version"] == vid
    assert server.admin.get("/api/v1/governance/active").json()["version_id"] == vid
    assert [v["id"] for v in server.admin.get("/api/v1/governance/versions").json()["items"]] == [vid]
    assert server.admin.get(f"/api/v1/governance/versions/{vid}").json()["document"]["policies"]
    assert server.admin.get("/api/v1/governance/history").json()["items"][0]["to_version"] == vid
    bad = _problem(server.admin.post("/api/v1/governance/apply", json={"source": "version: 1\npolicies: 3\n"}), 422)
    assert bad["problems"]
    ex = _agent(server, tmp_path)
    with pytest.raises(execord.Halted) as info:
        with ex.execution("nightly"):
            pass
    assert info.value.rule_id == "no-nightly" and info.value.phase == "admission"
    ex.flush(10)
    halted = server.admin.get("/api/v1/executions", params={"workflow": "nightly"}).json()["items"][0]
    assert halted["status"] == "halted" and halted["governance_version"] == vid
    assert halted["halt"]["rule_id"] == "no-nightly" and halted["totals"]["steps"] == 0
    ok = _run(ex, "daytime", steps=1)
    assert server.admin.get(f"/api/v1/executions/{ok}").json()["execution"]["governance_version"] == vid
    ex.close()


def test_a_cancel_reaches_the_agent_through_its_heartbeat(server: Any, tmp_path: Path) -> None:
    import execord

    ex = _agent(server, tmp_path, heartbeat_s=1)

    @ex.tool
    def tick() -> None:
        time.sleep(0.05)

    operator = server.client(server.key("operate", name="oncall"))
    with pytest.raises(execord.Cancelled) as info:
        with ex.execution("looping") as h:
            ex.flush(10)
            r = operator.post(f"/api/v1/unified/executions/{h.id}/cancel", json={"reason": "runaway loop"})
            assert r.status_code == 202 and r.json()["cancel"]["by"] == "key:oncall"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                tick()
    assert info.value.by == "key:oncall" and info.value.reason == "runaway loop"
    ex.flush(10)
    s = server.admin.get(f"/api/v1/executions/{h.id}").json()
    assert s["execution"]["status"] == "cancelled" and s["execution"]["failure_class"] == "cancelled"
    assert s["execution"]["cancel"] == {"by": "key:oncall", "reason": "runaway loop"}
    types = [e["type"] for e in server.admin.get(f"/api/v1/executions/{h.id}/events").json()["items"]]
    assert "cancel.requested" in types and types[-1] == "execution.ended"
    ex.close()


def test_heartbeat_extends_leases_and_returns_pending_cancels(server: Any) -> None:
    c = server.client(server.key("ingest"))
    chain = Chain()
    c.post("/api/v1/ingest", json=_batch(chain.start()))
    server.store.request_cancel(chain.id, by="ops", reason="stop")
    before = server.store.unsealed()[0]["lease_expires_us"]
    answer = c.post("/api/v1/heartbeat", json={"executions": {chain.id: {"lease_s": 600}}}).json()
    assert answer["cancels"][chain.id]["by"] == "ops"
    assert server.store.unsealed()[0]["lease_expires_us"] > before + 500 * 1_000_000


# -- approvals over the network --------------------------------------------------------------------------


APPROVAL = """
version: 1
policies:
  - id: refunds-need-approval
    on: [tool.request]
    when: tool.name == "issue_refund"
    effect: require_approval
    approvers: [finance]
    timeout: 5m
"""


def test_an_approval_decided_through_the_api_resumes_the_agent_exactly_once(server: Any, tmp_path: Path) -> None:
    import threading

    server.admin.post("/api/v1/governance/apply", json={"source": APPROVAL})
    ex = _agent(server, tmp_path)
    ran: list[int] = []

    @ex.tool
    def issue_refund(amount: int) -> str:
        ran.append(amount)
        return "ok"

    reviewer = server.client(server.key("approve", name="finance-ana"))
    decided: dict[str, Any] = {}

    def review() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = reviewer.get("/api/v1/approvals").json()["items"]
            if pending:
                decided.update(reviewer.post(f"/api/v1/approvals/{pending[0]['id']}/approve",
                                             json={"comment": "verified"}).json())
                return
            time.sleep(0.1)

    t = threading.Thread(target=review)
    t.start()
    with ex.execution("refund") as h:
        assert issue_refund(50) == "ok"
    t.join()
    assert ran == [50] and decided["status"] == "approved" and decided["reviewer"] == "key:finance-ana"
    again = reviewer.post(f"/api/v1/approvals/{decided['id']}/approve", json={})
    assert "already decided" in _problem(again, 409)["detail"]
    ex.flush(10)
    events = server.admin.get(f"/api/v1/executions/{h.id}/events").json()["items"]
    decisions = [e["attrs"] for e in events if e["type"] == "approval.decided"]
    assert decisions == [{"approval_id": decided["id"], "decision": "approved", "reviewer": "key:finance-ana",
                          "comment": "verified"}]
    assert server.admin.get(f"/api/v1/executions/{h.id}").json()["execution"]["status"] == "succeeded"
    ex.close()


# -- keys -----------------------------------------------------------------------------------------------


def test_keys_are_shown_once_stored_as_digests_and_revoked_at_once(server: Any) -> None:
    made = server.admin.post("/api/v1/keys", json={"scopes": ["read"], "name": "dash"})
    assert made.status_code == 201
    key, key_id = made.json()["key"], made.json()["id"]
    listed = server.admin.get("/api/v1/keys").json()["items"]
    assert key_id in [k["id"] for k in listed] and all("key" not in k and "sha256" not in k for k in listed)
    rows = server.store._read("SELECT sha256 FROM api_keys WHERE id = ?", (key_id,))
    import hashlib

    assert rows[0][0] == hashlib.sha256(key.encode()).hexdigest() and key not in str(rows)
    reader = server.client(key)
    assert reader.get("/api/v1/executions").status_code == 200
    assert server.admin.post(f"/api/v1/keys/{key_id}/revoke").json()["revoked_at"]
    _problem(reader.get("/api/v1/executions"), 401)
    _problem(server.admin.post("/api/v1/keys", json={"scopes": ["root"]}), 400)


def test_metrics_count_what_was_ingested(server: Any, tmp_path: Path) -> None:
    ex = _agent(server, tmp_path)
    _run(ex, "billing", steps=2)
    ex.close()
    text = server.client(None).get("/metrics").text
    assert 'execord_executions_ended_total{failure_class="",status="succeeded",workflow="billing"} 1.0' in text
    assert 'execord_tool_call_duration_seconds_count{tool="lookup"} 2.0' in text
    assert "execord_ingest_events_total" in text and "execord_approvals_pending 0.0" in text


def test_the_server_evaluates_every_recorded_decision_again_and_flags_a_mismatch(server: Any, tmp_path: Path) -> None:
    server.admin.post("/api/v1/governance/apply", json={"source": GOVERNANCE})
    ex = _agent(server, tmp_path)
    honest = _run(ex, "daytime", steps=2)
    ex.close()
    server.app.state.audit.drain()
    check = server.admin.get(f"/api/v1/unified/executions/{honest}").json()["live"]["decision_check"]
    assert check["decisions"] >= 1 and check["mismatches"] == []
    # An agent that lies: it records an allow where the pinned version denies.
    c = server.client(server.key("ingest"))
    events = server.admin.get(f"/api/v1/executions/{honest}/events").json()["items"]
    liar, prev, seq = uuid7(), None, 0
    forged = []
    for d in events:
        attrs = d["attrs"]
        if d["type"] == "execution.started":
            attrs = {**attrs, "workflow": {"name": "nightly", "version": None}}  # denied; the agent says allow
        e = build_event(liar, seq, d["type"], d["ts"], attrs, prev or genesis_hash(liar), step_id=d.get("step_id"),
                        parent_step_id=d.get("parent_step_id"))
        forged.append(e)
        prev, seq = e.hash, seq + 1
    assert c.post("/api/v1/ingest", json=_batch(*forged)).json()["rejected"] == []
    server.app.state.audit.drain()
    check = server.admin.get(f"/api/v1/unified/executions/{liar}").json()["live"]["decision_check"]
    assert [(m["recorded"], m["server"], m["rule"]) for m in check["mismatches"]] == [("allow", "deny", "no-nightly")]
    assert 'execord_decision_checks_total{result="mismatch"} 1.0' in server.client(None).get("/metrics").text


def test_a_cancel_while_waiting_for_approval_closes_the_approval(server: Any, tmp_path: Path) -> None:
    import execord

    server.admin.post("/api/v1/governance/apply", json={"source": APPROVAL})
    ex = _agent(server, tmp_path, heartbeat_s=1)
    ran: list[int] = []

    @ex.tool
    def issue_refund(amount: int) -> str:
        ran.append(amount)
        return "ok"

    operator = server.client(server.key("operate", "approve", name="oncall"))
    import threading

    def cancel_when_waiting() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pending = operator.get("/api/v1/approvals").json()["items"]
            if pending:
                operator.post(f"/api/v1/unified/executions/{pending[0]['execution_id']}/cancel",
                              json={"reason": "customer withdrew"})
                return
            time.sleep(0.1)

    t = threading.Thread(target=cancel_when_waiting)
    t.start()
    with pytest.raises(execord.Cancelled):
        with ex.execution("refund") as h:
            issue_refund(80)
    t.join()
    ex.flush(10)
    assert ran == []
    approval = server.admin.get("/api/v1/approvals", params={"status": "any"}).json()["items"][0]
    assert approval["status"] == "expired" and approval["reviewer"] == "execord:cancel"
    late = operator.post(f"/api/v1/approvals/{approval['id']}/approve", json={})
    assert "already decided" in _problem(late, 409)["detail"]
    s = server.admin.get(f"/api/v1/executions/{h.id}").json()["execution"]
    assert s["status"] == "cancelled" and s["cancel"]["reason"] == "customer withdrew"
    ex.close()


def test_a_value_the_database_cannot_hold_is_refused_for_its_execution_only(server: Any, backend: str) -> None:
    c = server.client(server.key("ingest"))
    good, odd = Chain(), Chain()
    good.start()
    odd.start(agent="a\x00b")
    answer = c.post("/api/v1/ingest", json=_batch(good.events[0], odd.events[0])).json()
    assert server.admin.get(f"/api/v1/executions/{good.id}").status_code == 200
    if backend == "postgres":  # PostgreSQL text cannot hold NUL: a 4xx for that execution, never a 5xx
        assert [(r["execution_id"], r["type"], r["status"]) for r in answer["rejected"]] == [
            (odd.id, "invalid-input", 400)]
    else:
        assert answer["rejected"] == [] and answer["stored"] == 2
    r = server.admin.get("/api/v1/executions", params={"workflow": "w\x00"})
    assert r.status_code < 500
    assert "ApiKey" in server.client(None).get("/openapi.json").json()["components"]["securitySchemes"]
