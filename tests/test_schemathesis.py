"""Property-based testing of the whole API from its own OpenAPI document (schemathesis).

Every operation of ``/openapi.json`` is called, with the admin key, against a real server on
SQLite that holds a few real things (an ended execution, one awaiting an approval, a decided
approval, a blob, a governance version, a spare key):

1. schemathesis's coverage cases: deterministic boundary and invalid values for every
   parameter and body (too long, too short, wrong type, missing, unexpected methods…);
2. Hypothesis fuzzing from the schema, valid (positive) and invalid (negative) inputs.

Both run with generated ids and again with the path parameters fixed to the real things, so
the query strings, headers and bodies reach past the 404.

A 5xx is a bug: bad input must be a 4xx problem. Every 5xx (and every answer that broke off)
is collected and reported at once with the operation, the status, the body and a request.
`EDGES` pins the inputs that once made the server fail.

The SSE stream of a running execution stays open, so the stream is only called with ids that
do not exist (404) and with the ended execution (its stream closes after ``execution.ended``);
every call has a 20 s timeout besides. Fuzzing is derandomized so that a run is repeatable.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import schemathesis.specs.openapi.schemas  # noqa: F401 - see below
from _server import ADMIN_KEY, live_server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

# schemathesis imports its OpenAPI modules lazily, on the first `from_url`. Done then, with the
# server's thread running, pytest's assertion rewriting of them can hit CPython 3.11's
# "AST constructor recursion depth mismatch" (a race in compile); importing them here, at
# collection, before any thread starts, avoids it.
from execord.record import TOTALS_KEYS, build_event, genesis_hash, make_blob, now_ts, uuid7

API = "/api/v1"
# Examples per operation per generation mode (and again with real path parameters).
EXAMPLES = 10
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
STREAM = f"{API}/unified/executions/{{execution_id}}/stream"

_STARTED = {
    "agent": {"name": "a", "version": None, "roles": []}, "workflow": {"name": "w", "version": None},
    "execution_type": "workflow", "parent_execution_id": None, "labels": {"env": "dev"}, "inputs": None,
    "governance_version": None, "sdk": {}, "host": {"hostname": "h", "pid": 1}, "lease_s": 3600,
}


def _wire(execution_id: str, steps: list[tuple[str, dict[str, Any]]]) -> list[dict[str, str]]:
    out, prev = [], genesis_hash(execution_id)
    for seq, (type_, attrs) in enumerate(steps):
        e = build_event(execution_id, seq, type_, now_ts(), attrs, prev)
        prev = e.hash
        out.append({"body": e.body.decode(), "hash": e.hash.hex()})
    return out


@pytest.fixture
def live(db_path: str) -> Iterator[tuple[Any, dict[str, str], dict[tuple[str, str], dict[str, str]]]]:
    """A server on SQLite with real things in it, and the path parameters that name them."""
    with live_server(db_path) as server:
        admin = server.admin
        ended, running, decided_in, decided = uuid7(), uuid7(), uuid7(), str(uuid.uuid4())
        blob = make_blob(b'{"a": 1}', "json")
        asked = {"rule_id": "r", "step_id": None, "action_digest": "00" * 32, "approvers": [],
                 "expires_at": "2099-01-01T00:00:00.000000Z", "message": None}
        approval = str(uuid.uuid4())
        events = _wire(ended, [
            ("execution.started", dict(_STARTED)),
            ("step.started", {"kind": "tool", "name": "t", "input": {"x": 1}}),
            ("step.ended", {"status": "ok", "output": "done", "error": None,
                            "usage": {"input_tokens": 0, "output_tokens": 0}, "cost_micros": 0,
                            "price_source": None, "latency_ms": 3}),
            ("execution.ended", {"status": "succeeded", "error": None, "halt": None, "cancel": None,
                                 "totals": dict.fromkeys(TOTALS_KEYS, 0)}),
        ]) + _wire(running, [
            ("execution.started", dict(_STARTED)),
            ("approval.requested", {"approval_id": approval, **asked}),
        ]) + _wire(decided_in, [
            ("execution.started", dict(_STARTED)),
            ("approval.requested", {"approval_id": decided, **asked}),
        ])
        r = admin.post(f"{API}/ingest", json={
            "events": events, "blobs": [{"digest": blob.digest, "type": "json", "data": '{"a": 1}'}]})
        assert r.status_code == 200 and r.json()["stored"] == len(events), r.text
        r = admin.post(f"{API}/governance/apply", json={"source": "version: 1\npolicies: []\n"})
        assert r.status_code == 200, r.text
        spare = admin.post(f"{API}/keys", json={"scopes": ["read"], "name": "spare"})
        assert spare.status_code == 201, spare.text
        r2 = admin.post(f"{API}/approvals/{decided}/reject")
        assert r2.status_code == 200, r2.text
        real = {"execution_id": ended, "approval_id": approval, "version_id": r.json()["version_id"],
                "digest": blob.digest, "key_id": spare.json()["id"]}
        # Cancel a running execution (an ended one is only ever 409); read a decided approval
        # (a pending one would hold every ?wait=30 long-poll for its full 30 s).
        overrides = {("POST", f"{API}/unified/executions/{{execution_id}}/cancel"): {"execution_id": running},
                     ("GET", f"{API}/approvals/{{approval_id}}"): {"approval_id": decided}}
        yield server, real, overrides


class Findings:
    """Every 5xx (or broken-off answer), by operation, request and answer."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()  # one connection, not one per call
        self.found: dict[tuple[str, str, str], list[str]] = {}
        self.calls = 0

    def call(self, label: str, case: Any) -> None:
        body = "" if type(case.body).__name__ == "NotSet" else f" body={str(case.body)[:200]}"
        where = f"{case.method} {case.formatted_path} query={case.query}{body}"
        self.calls += 1
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers=AUTH, timeout=20)
        except requests.RequestException as exc:  # a 200 stream that broke off, a reset, a hang
            self.found.setdefault((label, "no complete answer", repr(exc)[:300]), []).append(where)
            self.session.close()  # the server may have dropped the connection
            return
        if response.status_code >= 500:
            self.found.setdefault((label, str(response.status_code), response.text[:500]), []).append(where)

    def report(self) -> str:
        lines = [f"{len(self.found)} distinct server failures in {self.calls} requests:"]
        for (label, status, body), wheres in self.found.items():
            lines.append(f"- {label} -> {status} (x{len(wheres)}): {body}\n    e.g. {wheres[0]}")
        return "\n".join(lines)


def test_no_input_makes_the_server_fail(live: Any) -> None:
    server, real, overrides = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25, "the OpenAPI document lists too few operations"
    findings = Findings(server.url)

    def real_parameters(operation: Any) -> dict[str, str]:
        fixed = {p.name: real[p.name] for p in operation.path_parameters if p.name in real}
        if fixed:
            fixed.update(overrides.get((operation.method.upper(), operation.path), {}))
            assert operation.path != STREAM or fixed["execution_id"] == real["execution_id"], \
                "only the ended execution's stream closes by itself"
        return fixed

    try:
        run_all(schema, operations, findings, real_parameters)
    finally:
        findings.session.close()
    assert findings.calls > 1000, f"only {findings.calls} requests were made"
    assert not findings.found, findings.report()


def run_all(schema: Any, operations: list[Any], findings: Findings, real_parameters: Any) -> None:
    """Both phases over every operation; each answer goes to ``findings``."""
    modes = list(schemathesis.GenerationMode)
    # 1. Coverage: schemathesis's deterministic boundary values (min/max, too long, wrong types,
    #    missing required, unexpected methods…), with generated ids and again with real ones.
    for operation in operations:
        generation = schema.config.generation_for(operation=operation, phase="coverage")
        fixed = real_parameters(operation)
        for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=generation):
            findings.call(operation.label, case)
            if fixed and set(case.path_parameters or {}) == set(fixed):
                case.path_parameters = dict(fixed)
                findings.call(operation.label, case)

    # 2. Fuzzing: Hypothesis, valid and invalid inputs, then valid ones about real things.
    def fuzz(operation: Any, mode: Any, path_parameters: dict[str, str] | None) -> None:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def run(case: Any) -> None:
            findings.call(operation.label, case)

        try:
            run()
        except Unsatisfiable:
            # Nothing can be invalid about an operation without inputs (GET /healthz).
            if mode is not schemathesis.GenerationMode.NEGATIVE:
                raise

    for operation in operations:
        fixed = real_parameters(operation)
        for mode in modes:
            fuzz(operation, mode, None)
        if fixed:
            fuzz(operation, schemathesis.GenerationMode.POSITIVE, fixed)


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Inputs that once made the server fail (found fuzzing it): each must now be a 4xx problem.
EDGES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/executions/{execution_id}/events", {"params": {"after_seq": 2**63}}),
    ("GET", "/unified/executions/{execution_id}/stream", {"params": {"after_seq": 2**63}}),
    ("GET", "/unified/executions/{execution_id}/stream", {"headers": {"Last-Event-ID": str(10**19)}}),
    ("GET", "/unified/executions/{execution_id}/stream", {"headers": {"Last-Event-ID": "-5"}}),
    ("POST", "/heartbeat", {"json": {"executions": {"{execution_id}": {"totals": {"steps": 2**63}}}}}),
    ("GET", "/executions", {"params": {"since": "99999999d"}}),
    ("GET", "/unified/executions", {"params": {"until": "999999999w"}}),
    ("GET", "/executions", {"params": {"cursor": _cursor(f"{10**30}:x")}}),
]


@pytest.mark.parametrize(("method", "path", "kw"), EDGES, ids=[f"{m} {p} {sorted(k)}" for m, p, k in EDGES])
def test_edge_inputs_are_a_4xx_problem(live: Any, method: str, path: str, kw: dict[str, Any]) -> None:
    server, real, _ = live
    eid = real["execution_id"]
    kw = json.loads(json.dumps(kw).replace("{execution_id}", eid))
    with httpx.Client(base_url=server.url + API, headers=AUTH, timeout=20) as client:
        r = client.request(method, path.format(execution_id=eid), **kw)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
