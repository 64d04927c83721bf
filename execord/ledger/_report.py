"""The HTML report of one execution, for audit packages (``execord executions export --format html``).

A self-contained page (no scripts, no external files): the summary, the timeline, every
governance decision, the approvals, and the result of verifying the record there and then:
its chain and seal, and its ledger leaf against the newest signed checkpoint.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jinja2
import orjson

from ..record import chain_from_bodies, ledger_entry, root_from_leaf_hashes
from ..store import describe, relative_ms
from . import _log, merkle
from ._note import NoteError, Verifier, open_checkpoint

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("execord.ledger", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _verification(store: Any, eid: str, bodies: list[bytes]) -> dict[str, Any]:
    hashes, problem = chain_from_bodies(eid, bodies)
    out: dict[str, Any] = {"events": len(bodies), "chain_ok": problem is None,
                           "chain_problem": None if problem is None else f"seq {problem.seq}: {problem.message}"}
    seal = store.get_seal(eid)
    out["sealed"] = seal is not None
    if seal is None or problem is not None:
        return out
    root = root_from_leaf_hashes([hashlib.sha256(b"\x00" + h).digest() for h in hashes])
    out["seal_ok"] = (seal["event_count"] == len(bodies) and seal["events_root"] == root.hex()
                      and seal["last_hash"] == hashes[-1].hex())
    leaf = store.ledger_leaf(eid)
    if leaf is None:
        return out
    index, entry = leaf
    first, last = orjson.loads(bodies[0]), orjson.loads(bodies[-1])
    rebuilt = ledger_entry(execution_id=eid, status=last["attrs"].get("status"), event_count=len(bodies),
                           events_root=root, last_hash=hashes[-1],
                           governance_version=first["attrs"].get("governance_version"), sealed_at=last["ts"])
    out.update(ledger_index=index, leaf_ok=rebuilt == entry)
    cp = _log.latest_covering(store, index + 1)
    if cp is None:
        return out
    out["checkpoint"] = {"size": cp["tree_size"], "origin": cp["origin"], "key_id": cp["key_id"],
                         "root": cp["root"], "verifier_key": cp["verifier_key"]}
    try:
        open_checkpoint(cp["note"], Verifier.parse(cp["verifier_key"]))
        out["signature_ok"] = True
    except NoteError:
        out["signature_ok"] = False
    proof = _log.inclusion(store, eid, cp["tree_size"])
    out["inclusion_ok"] = merkle.verify_inclusion(merkle.leaf_hash(rebuilt), index, cp["tree_size"],
                                                  [bytes.fromhex(p) for p in proof["proof"]],
                                                  bytes.fromhex(cp["root"]))
    return out


def report_html(store: Any, execution_id: str) -> str:
    """The report page of one execution."""
    summary = store.get_execution(execution_id)
    rows = store.event_rows(execution_id)
    bodies = [body for _, _, _, body in rows]
    events = store.events(execution_id)
    names = {e.step_id: str(e.attrs.get("name")) for e in events if e.type == "step.started" and e.step_id}
    timeline = [{"seq": e.seq, "ms": ms, "type": e.type, "step": names.get(e.step_id or "", ""), "summary": describe(e)}
                for e, ms in zip(events, relative_ms(events), strict=True)]
    decisions = [{"seq": e.seq, "step": names.get(e.attrs.get("step_id") or "", ""), **e.attrs}
                 for e in events if e.type == "governance.decision"]
    approvals = [{"seq": e.seq, "type": e.type, **e.attrs}
                 for e in events if e.type in ("approval.requested", "approval.decided")]
    digests = sorted({v for e in events for v in _refs(e.attrs)})
    return _ENV.get_template("report.html").render(
        x=summary, timeline=timeline, decisions=decisions, approvals=approvals,
        verification=_verification(store, execution_id, bodies), erasures=list(store.erasures(digests).values()),
        ended=events[-1].attrs if events and events[-1].type == "execution.ended" else None,
    )


def _refs(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("$blob"), str):
            out.append(value["$blob"])
        for v in value.values():
            out.extend(_refs(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_refs(v))
    return out
