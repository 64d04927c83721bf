"""Bad input from clients, on SQLite and on PostgreSQL: each gets a clear 4xx that names what
was wrong, nothing malformed is stored (so every stored record still lists and verifies), and
a tenant's admin key cannot reach into another project."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson
import pytest
from _helpers import Chain
from _server import ADMIN_KEY, ServerProcess

from execord.record import canonical_json, format_ts, genesis_hash, now_us, uuid7
from execord.store import open_store
from execord.store._verify import verify_store


def _wire(obj: dict[str, Any], prev: bytes, raw: tuple[str, str] | None = None) -> dict[str, str]:
    """One event as a foreign client sends it: any JSON object (its canonical bytes, or those
    bytes with ``raw`` replaced), hashed as the chain wants."""
    body = canonical_json(obj)
    if raw is not None:
        assert raw[0].encode() in body
        body = body.replace(raw[0].encode(), raw[1].encode())
    return {"body": body.decode(), "hash": hashlib.sha256(prev + body).hexdigest()}


def _started(eid: str, **change: Any) -> dict[str, Any]:
    obj = orjson.loads(Chain().start().body)  # a valid execution.started…
    obj.update(execution_id=eid, prev_hash=genesis_hash(eid).hex() if isinstance(eid, str) else "00" * 32)
    attrs = change.pop("attrs", {})
    obj["attrs"].update(attrs)
    obj.update(change)  # …then what the case breaks
    return {k: v for k, v in obj.items() if v is not ...}


def _prev(obj: dict[str, Any]) -> bytes:
    eid = obj.get("execution_id")
    return genesis_hash(eid) if isinstance(eid, str) else bytes(32)


CASES = [  # (what is broken, the change, words the rejection must hold)
    ("seq as text", {"seq": "0"}, "seq must be a whole number"),
    ("seq null", {"seq": None}, "seq must be a whole number"),
    ("seq false", {"seq": False}, "seq must be a whole number"),
    ("seq 0.0", {"raw": ('"seq":0,', '"seq":0.0,')}, "seq must be a whole number"),
    ("seq past the 32-bit range", {"seq": 2**31}, "seq must be a whole number"),
    ("an integer execution id", {"execution_id": 5}, "execution_id must be an execution id"),
    ("a path as execution id", {"execution_id": "../../etc/passwd"}, "execution_id must be an execution id"),
    ("an upper-case execution id", {"execution_id": uuid7().upper()}, "execution_id must be an execution id"),
    ("ts yesterday", {"ts": "yesterday"}, "ts must be RFC 3339 UTC with microseconds"),
    ("ts as a number", {"ts": 5}, "ts must be RFC 3339"),
    ("ts out of range", {"ts": "0001-01-01T00:00:00+14:00"}, "ts must be RFC 3339"),
    ("ts in the far future", {"ts": "9999-12-31T23:59:59.000000Z"}, "ahead of the server's clock"),
    ("schema version 99", {"v": 99}, "v must be 1"),
    ("no schema version", {"v": ...}, "v must be 1"),
    ("an object as step id", {"step_id": {}}, "step_id must be"),
    ("an integer step id", {"step_id": 5}, "step_id must be"),
    ("an unknown member", {"hash": "00" * 32}, "unknown member"),
    ("a short prev_hash", {"prev_hash": "00"}, "prev_hash must be 64 lowercase hex digits"),
    ("lease_s 1e30", {"attrs": {"lease_s": 1e30}}, "lease_s must be a whole number of seconds"),
    ("a negative lease", {"attrs": {"lease_s": -5}}, "lease_s must be"),
    ("agent as text", {"attrs": {"agent": "x"}}, "attr agent must be an object"),
    ("agent name a number", {"attrs": {"agent": {"name": 5, "version": None, "roles": []}}}, "attr agent must be"),
    ("a label that is not text", {"attrs": {"labels": {"tier": 3}}}, "attr labels must be"),
    ("a made-up parent id", {"attrs": {"parent_execution_id": "nope"}}, "attr parent_execution_id must be"),
]


@pytest.mark.parametrize(("case", "change", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_malformed_event_refuses_its_execution_and_the_rest_is_stored(
        server: Any, case: str, change: dict[str, Any], words: str) -> None:
    c = server.client(server.key("ingest"))
    good = Chain()
    good.start()
    good.end()
    change = dict(change)  # the case is shared by both backends' runs
    raw = change.pop("raw", None)
    bad = _started(uuid7(), **change)
    batch = {"events": [*good.wire(), _wire(bad, _prev(bad), raw)], "blobs": []}
    r = c.post("/api/v1/ingest", json=batch)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["received"] == 3 and answer["stored"] == 2 and answer["acked"] == {good.id: 1}, answer
    [rejection] = answer["rejected"]
    assert rejection["status"] == 422 and rejection["type"] == "invalid-event", rejection
    assert rejection["detail"].startswith("events[2]: ") and words in rejection["detail"], rejection
    # Nothing of the bad execution was stored; every stored record lists and verifies.
    listed = server.admin.get("/api/v1/executions", params={"limit": 500}).json()["items"]
    assert [x["id"] for x in listed] == [good.id]
    assert verify_store(server.store, workers=1).ok


def test_an_approval_with_a_bad_expiry_or_a_taken_id_is_refused_for_its_execution(server: Any) -> None:
    c = server.client(server.key("ingest"))
    first, second, third = Chain(), Chain(), Chain()
    approval = {"approval_id": uuid7(), "rule_id": "r", "step_id": None, "action_digest": "0" * 64,
                "approvers": ["ops"], "expires_at": format_ts(now_us() + 60_000_000), "message": "ok?"}
    for chain in (first, second, third):
        chain.start()
    first.next("approval.requested", approval)
    second.next("approval.requested", approval)  # the same approval id in another execution
    third.next("approval.requested", {**approval, "approval_id": uuid7(), "expires_at": "soon"})
    answer = c.post("/api/v1/ingest", json={"events": first.wire() + second.wire() + third.wire()}).json()
    rejected = {r["execution_id"]: r for r in answer["rejected"]}
    assert set(rejected) == {second.id, third.id}, answer
    assert "approval id" in rejected[second.id]["detail"] and "taken" in rejected[second.id]["detail"]
    assert rejected[second.id]["status"] == 422
    assert "expires_at must be a timestamp" in rejected[third.id]["detail"]
    got = server.admin.get(f"/api/v1/approvals/{approval['approval_id']}").json()
    assert got["execution_id"] == first.id and got["status"] == "pending"


def test_the_same_event_twice_in_one_batch_is_stored_once(server: Any) -> None:
    c = server.client(server.key("ingest"))
    chain = Chain()
    chain.start()
    chain.end()
    wire = chain.wire()
    answer = c.post("/api/v1/ingest", json={"events": [wire[0], wire[0], wire[1], wire[1]]}).json()
    assert (answer["stored"], answer["rejected"], answer["acked"]) == (2, [], {chain.id: 1}), answer
    # Two different events at one seq in one batch: the execution is refused, as across batches.
    eid = uuid7()
    one, two = _started(eid), _started(eid, attrs={"lease_s": 60})
    answer = c.post("/api/v1/ingest", json={"events": [_wire(one, _prev(one)), _wire(two, _prev(two))]}).json()
    [rejection] = answer["rejected"]
    assert rejection["execution_id"] == eid and "two different events at seq 0" in rejection["detail"], answer
    assert server.admin.get(f"/api/v1/executions/{eid}").status_code == 404


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_date_filter_beyond_the_calendar_is_a_400(server: Any, when: str) -> None:
    for path in ("/api/v1/executions", "/api/v1/unified/executions"):
        for option in ("since", "until"):
            r = server.admin.get(path, params={option: when})
            assert r.status_code == 400, r.text
            assert "out of range" in r.json()["detail"]


def test_heartbeat_and_admission_bodies_have_limits(server: Any) -> None:
    c = server.client(server.key("ingest"))
    for body in ({"executions": {"x" * 5000: {"lease_s": 30}}},
                 {"executions": {uuid7(): {"lease_s": 30, "totals": {f"k{i}": 1 for i in range(21)}}}}):
        assert c.post("/api/v1/heartbeat", json=body).status_code == 422
    start = {"execution_id": uuid7(), "agent": {"name": "a", "roles": ["r" * 257]}, "workflow": {"name": "w"}}
    assert c.post("/api/v1/executions/start", json=start).status_code == 422
    start = {**start, "agent": {"name": "a"}, "labels": {"k": "v" * 1025}}
    assert c.post("/api/v1/executions/start", json=start).status_code == 422
    assert c.post("/api/v1/executions/start", json={**start, "labels": {"k": "v"}}).status_code == 200
    r = server.admin.get("/api/v1/executions", params={"label": "k=" + "v" * 2000})
    assert r.status_code == 400 and "label filter" in r.json()["detail"]
    assert server.admin.get("/api/v1/approvals", params={"execution_id": "z" * 36}).status_code == 422


def test_a_tenant_admin_makes_keys_for_its_own_project_only(server: Any) -> None:
    tenant = server.client(server.key("admin", project="acme"))
    before = {k["id"] for k in server.admin.get("/api/v1/keys").json()["items"]}
    r = tenant.post("/api/v1/keys", json={"project": "default", "scopes": ["admin"], "name": "escalate"})
    assert r.status_code == 403, r.text
    assert "makes keys for acme only" in r.json()["detail"]
    assert {k["id"] for k in server.admin.get("/api/v1/keys").json()["items"]} == before
    assert tenant.post("/api/v1/keys", json={"project": "globex", "scopes": ["read"]}).status_code == 403
    own = tenant.post("/api/v1/keys", json={"scopes": ["read"], "name": "acme-readers"})
    assert own.status_code == 201 and own.json()["project"] == "acme"
    # The operator's admin key (project default) still makes keys for any project.
    made = server.admin.post("/api/v1/keys", json={"project": "globex", "scopes": ["read"]})
    assert made.status_code == 201 and made.json()["project"] == "globex"


def test_a_request_head_over_its_limit_is_431(server: Any) -> None:
    for headers in ({"X-Big": "x" * 70_000}, {f"X-H{i}": "v" for i in range(6_000)}):
        r = server.admin.get("/api/v1/executions", headers=headers)
        assert r.status_code == 431, r.text
        assert "over the 65536-byte limit; send fewer or shorter headers" in r.json()["detail"]
    assert server.admin.get("/api/v1/executions", headers={"X-Fine": "x" * 1000}).status_code == 200


def test_execord_serve_stops_reading_a_huge_request_head(tmp_path: Any) -> None:
    """h11, as `execord serve` runs it, refuses a head that grows past the limit before it
    is read whole (httptools would buffer 50 MB of headers)."""
    db = str(tmp_path / "s.db")
    open_store(db).close()
    proc = ServerProcess(db, cwd=tmp_path).start()
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
            try:
                status = c.get("/api/v1/executions", headers={"X-Huge": "x" * 50_000_000}).status_code
            except httpx.HTTPError:  # the server may close the connection while we still send
                status = None
            assert status in (None, 400, 431)
            assert c.get("/api/v1/executions").status_code == 200  # and it still serves
    finally:
        proc.stop()


def test_small_answers_to_odd_values(server: Any) -> None:
    c = server.client(server.key("ingest", "read"))
    chain = Chain()
    chain.start()
    assert c.post("/api/v1/ingest", json={"events": chain.wire(), "blobs": None}).json()["stored"] == 1
    for blobs in ({}, 0, "", False):
        r = c.post("/api/v1/ingest", json={"events": [], "blobs": blobs})
        assert r.status_code == 400 and "blobs must be a list" in r.json()["detail"], r.text
    stream = f"/api/v1/unified/executions/{chain.id}/stream"
    for given in ("1_0", "+1", "1" * 30):
        r = c.get(stream, headers={"Last-Event-ID": given})
        assert r.status_code == 400 and "Last-Event-ID must be the seq" in r.json()["detail"], (given, r.text)
    r = c.get("/api/v1/ledger/proof/consistency", params={"from": 3, "to": 2})
    assert r.status_code == 400 and "from must not exceed to" in r.json()["detail"], r.text


def test_a_key_reads_only_the_blobs_its_own_project_refers_to(server: Any) -> None:
    from execord.record import blob_ref, make_blob

    mine, theirs = server.client(server.key("read", "ingest")), server.client(server.key("read", project="globex"))
    secret = make_blob(b'{"order":"A-1001","refund_usd":40}')
    chain = Chain()
    chain.start()
    chain.next("step.started", {"kind": "tool", "name": "refund",
                                "input": blob_ref(secret.digest.split(":")[1], secret.size, "json")})
    batch = {"events": chain.wire(), "blobs": [{"digest": secret.digest, "type": "json",
                                               "data": secret.data.decode()}]}
    assert mine.post("/api/v1/ingest", json=batch).json()["stored"] == 2
    got = mine.get(f"/api/v1/blobs/{secret.digest}")
    assert got.status_code == 200 and got.json()["data"] == secret.data.decode()
    # Another project's key that guesses (or holds) the content learns nothing: 404, as for none.
    other = theirs.get(f"/api/v1/blobs/{secret.digest}")
    missing = theirs.get(f"/api/v1/blobs/sha256:{'0' * 64}")
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"] == f"no blob {secret.digest}"


def test_a_bug_is_one_logged_500_and_the_connection_stays_usable(server: Any, monkeypatch: Any,
                                                                 caplog: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    ports: set[Any] = set()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      event_hooks={"response": [lambda r: ports.add(
                          r.extensions["network_stream"].get_extra_info("client_addr"))]}) as c:
        monkeypatch.setattr(server.store, "list_keys", broken)  # a bug injected into one endpoint
        with caplog.at_level("ERROR"):
            r = c.get("/api/v1/keys")
        assert r.status_code == 500 and r.json()["type"].endswith("/internal") and "a bug" not in r.text
        monkeypatch.undo()
        assert c.get("/api/v1/keys").status_code == 200  # the same kept-alive connection
    assert len(ports) == 1, ports
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert len(logged) == 1 and "unexpected error on GET /api/v1/keys" in logged[0].getMessage()
