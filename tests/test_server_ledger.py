"""The ledger over the API: the checkpointer, checkpoints, proofs, bundles and reports,
against a real server on each backend, with project isolation."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import pytest
from test_server_auth import _STARTED, API, Chain

from execord.ledger import merkle
from execord.ledger._note import Signer, Verifier, open_checkpoint
from execord.ledger._verify import verify_bundle
from execord.record import TOTALS_KEYS

SIGNER = Signer.generate("test.example/server")


def _sealed(client: Any, n: int = 1) -> list[str]:
    ids, events = [], []
    for _ in range(n):
        c = Chain()
        c.next("execution.started", dict(_STARTED))
        c.next("log", {"level": "info", "message": "hello", "data": None})
        c.next("execution.ended", {"status": "succeeded", "error": None, "halt": None, "cancel": None,
                                   "totals": dict.fromkeys(TOTALS_KEYS, 0)})
        ids.append(c.id)
        events += c.wire()
    r = client.post(f"{API}/ingest", json={"events": events})
    assert r.status_code == 200 and r.json()["stored"] == 3 * n, r.text
    return ids


@pytest.fixture
def ledger_server(store_url: str) -> Any:
    from _server import live_server

    with live_server(store_url, ledger_signer=SIGNER, checkpoint_every=3, checkpoint_interval_s=0.3) as live:
        yield live


def _wait_checkpoint(client: Any, size: int, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"{API}/ledger/checkpoint")
        if r.status_code == 200 and r.json()["tree_size"] >= size:
            return r.json()
        assert time.monotonic() < deadline, f"no checkpoint of {size} leaves in {timeout}s: {r.text}"
        time.sleep(0.05)


def test_the_server_signs_checkpoints_as_executions_are_sealed(ledger_server: Any) -> None:
    admin = ledger_server.admin
    assert admin.get(f"{API}/ledger/checkpoint").status_code == 404
    _sealed(admin, 3)
    cp = _wait_checkpoint(admin, 3)
    parsed = open_checkpoint(cp["note"], SIGNER.verifier)
    assert parsed.size == cp["tree_size"] == 3 and parsed.root.hex() == cp["root"]
    assert base64.b64decode(cp["root_base64"]).hex() == cp["root"]
    assert Verifier.parse(cp["verifier_key"]) == SIGNER.verifier
    # One more seal is signed by the interval, not held back until three more arrive.
    _sealed(admin, 1)
    assert _wait_checkpoint(admin, 4)["tree_size"] == 4


def test_proofs_from_the_api_verify(ledger_server: Any) -> None:
    admin = ledger_server.admin
    ids = _sealed(admin, 5)
    cp = _wait_checkpoint(admin, 5)
    root = bytes.fromhex(cp["root"])
    for eid in ids:
        r = admin.get(f"{API}/ledger/proof/inclusion", params={"execution_id": eid})
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["tree_size"] == cp["tree_size"]
        assert merkle.verify_inclusion(merkle.leaf_hash(p["entry"].encode()), p["index"], p["tree_size"],
                                       [bytes.fromhex(h) for h in p["proof"]], root)
    old = open_checkpoint(cp["note"], SIGNER.verifier)
    _sealed(admin, 2)
    new = _wait_checkpoint(admin, 7)
    r = admin.get(f"{API}/ledger/proof/consistency", params={"from": old.size})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["from"] == old.size and c["to"] == new["tree_size"] and c["from_root"] == cp["root"]
    assert merkle.verify_consistency(old.size, c["to"], old.root, bytes.fromhex(new["root"]),
                                     [bytes.fromhex(h) for h in c["proof"]])
    bad = admin.get(f"{API}/ledger/proof/consistency", params={"from": 99, "to": 3})
    assert bad.status_code == 400 and "smaller tree to a larger" in bad.json()["detail"]  # a bad value, not a conflict


def test_a_bundle_from_the_api_verifies_offline(ledger_server: Any, tmp_path: Any) -> None:
    admin = ledger_server.admin
    ids = _sealed(admin, 3)
    r = admin.post(f"{API}/bundles", json={"execution_ids": ids})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    path = tmp_path / "b.zip"
    path.write_bytes(r.content)
    report = verify_bundle(str(path), key=SIGNER.verifier)
    assert report.ok, report.failures
    assert report.executions == 3 and report.events == 9
    html = admin.get(f"{API}/executions/{ids[0]}/report")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert ids[0] in html.text and "verified" in html.text


def test_a_running_execution_has_no_proof_and_no_bundle(ledger_server: Any) -> None:
    admin = ledger_server.admin
    c = Chain()
    c.next("execution.started", dict(_STARTED))
    assert admin.post(f"{API}/ingest", json={"events": c.wire()}).status_code == 200
    _sealed(admin, 1)
    _wait_checkpoint(admin, 1)
    r = admin.get(f"{API}/ledger/proof/inclusion", params={"execution_id": c.id})
    assert r.status_code == 409 and "not sealed" in r.json()["detail"]
    r = admin.post(f"{API}/bundles", json={"execution_ids": [c.id]})
    assert r.status_code == 409 and "not sealed" in r.json()["detail"]


def test_another_project_gets_no_proof_bundle_or_report(ledger_server: Any) -> None:
    admin = ledger_server.admin
    [eid] = _sealed(admin, 1)
    _wait_checkpoint(admin, 1)
    other = ledger_server.client(ledger_server.key("read", project="other", name="other"))
    for r in (other.get(f"{API}/ledger/proof/inclusion", params={"execution_id": eid}),
              other.post(f"{API}/bundles", json={"execution_ids": [eid]}),
              other.get(f"{API}/executions/{eid}/report")):
        assert r.status_code == 404, r.text
        assert eid in r.json()["detail"] or "no execution" in r.json()["detail"]
    # The global checkpoint names no execution: any reader may see it.
    assert other.get(f"{API}/ledger/checkpoint").status_code == 200


def test_post_checkpoint_signs_now_and_bundle_limits(ledger_server: Any) -> None:
    admin = ledger_server.admin
    operate = ledger_server.client(ledger_server.key("operate", name="op"))
    _sealed(admin, 1)
    r = operate.post(f"{API}/ledger/checkpoint")
    assert r.status_code == 200 and r.json()["tree_size"] == 1, r.text
    too_many = admin.post(f"{API}/bundles", json={"execution_ids": ["0" * 8 + "-0000-7000-8000-" + "0" * 12] * 10_001})
    assert too_many.status_code in (413, 422)
    assert admin.post(f"{API}/bundles", json={"execution_ids": []}).status_code == 422


def test_post_checkpoint_without_a_ledger_key_is_409(server: Any) -> None:
    r = server.admin.post(f"{API}/ledger/checkpoint")
    assert r.status_code == 409 and "ledger key" in r.json()["detail"]
    assert r.headers["content-type"].startswith("application/problem+json")


def test_the_bundle_zip_names_only_safe_paths(ledger_server: Any) -> None:
    import zipfile

    ids = _sealed(ledger_server.admin, 2)
    data = ledger_server.admin.post(f"{API}/bundles", json={"execution_ids": ids}).content
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names[0] == "manifest.json"
    assert {"checkpoint.txt", "ledger.pub", "consistency.json", "erasures.json", "blobs.jsonl"} <= set(names)
    assert all(not n.startswith("/") and ".." not in n for n in names)
    assert {f"executions/{i}/{f}" for i in ids for f in ("events.jsonl", "record.json")} <= set(names)
