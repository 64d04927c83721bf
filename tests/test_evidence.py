"""Evidence, end to end: export bundles, ``execord verify``, signed checkpoints, proofs, erasure.

Everything runs the real ``execord`` command in child processes on real files: the store is
written by the real SDK (instrumented tools under a governance version made active with
``execord governance apply``), the key comes from ``execord ledger keygen``, checkpoints from
``execord ledger checkpoint --key``, bundles from ``execord executions export --bundle``.
Tampering is done the way an attacker would: by rewriting the zip with :mod:`zipfile` (with
and without fixing the manifest's digests), by writing a zip's bytes by hand (bombs, members
whose size or CRC is not the directory's), or the SQLite file with :mod:`sqlite3` after
dropping its append-only triggers. Nothing is mocked.

The store is built once per module; a test that changes a store works on its own copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile
import textwrap
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import run_cli

import execord
from execord.ledger import merkle
from execord.ledger._erasure import erasure_body
from execord.ledger._note import Signer, Verifier, open_checkpoint, split_note
from execord.record import canonical_json, events_root
from execord.runtime import set_default
from execord.store._ledger import backfill

pytestmark = pytest.mark.slow

AGENT = "support-bot"
ORIGIN = "evidence.example/execord"
GOVERNANCE = """
version: 1
policies:
  - id: watch-refunds
    on: [tool.request]
    when: tool.name == "issue_refund"
    effect: warn
    message: Refunds are watched.
budgets:
  execution:
    tool_calls: 20
"""
# Wide enough that rich never wraps a FAIL line when the output is piped.
WIDE = {"COLUMNS": "100000"}

LEDGER_TRIGGERS = ("events_no_update", "events_no_delete", "seals_no_update", "seals_no_delete",
                   "ledger_no_update", "ledger_no_delete", "ledger_nodes_no_update", "ledger_nodes_no_delete",
                   "checkpoints_no_update", "checkpoints_no_delete")


# -- the world: one store, one key, two checkpoints, one honest bundle -------------------------


@dataclass(frozen=True)
class World:
    dir: Path
    db: Path
    key: Path            # ledger.key (private)
    pub: Path            # ledger.pub (what the auditor trusts)
    early: Path          # the signed checkpoint of 2 leaves (A, B), as an auditor kept it
    c1: Path             # the signed checkpoint of 3 leaves (A, B, C): the latest
    a: str               # refunds A-1: governed, with tool input/output blobs
    b: str               # refunds B-2
    c: str               # escalation, sealed after the early checkpoint
    gv: str              # the governance version A and B name
    refund_output: str   # the digest of A's issue_refund output: a blob only A refers to
    bundle: Path         # an honest bundle of A and B


def ex(*args: str, db: Path | str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The real ``execord`` command, on ``db`` when given."""
    env = dict(WIDE)
    if db is not None:
        env["EXECORD_DB"] = str(db)
    env.update(kw.pop("env", {}))
    return run_cli(*args, env=env, **kw)


def clean(r: subprocess.CompletedProcess[str]) -> None:
    both = r.stdout + r.stderr
    assert "Traceback" not in both and "internal error" not in both, both


def ok(r: subprocess.CompletedProcess[str]) -> str:
    clean(r)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def ok_json(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(r))


def one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A user mistake: exit 1, one ``execord: …`` line on stderr naming the needles, no traceback."""
    clean(r)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("execord: "), r.stderr
    assert r.stdout.strip() == "", r.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@contextmanager
def recording(db: Path) -> Iterator[execord.Execord]:
    """The default recorder on ``db``, under the governance version active in the store;
    closed (everything committed and sealed) on the way out."""
    engine = execord.init(agent=AGENT, db=str(db), flush_interval_ms=5)
    try:
        yield engine
    finally:
        engine.close()
        set_default(None)


def refund(order: str, amount: int) -> str:
    """One governed execution: a lookup and a refund (warned by the active governance)."""

    @execord.tool
    def lookup(order: str) -> dict[str, str]:
        return {"order": order, "state": "delivered"}

    @execord.tool
    def issue_refund(order: str, amount: int) -> str:
        return f"refunded {amount} on {order}"

    with execord.execution("refunds", inputs={"order": order, "amount": amount}) as handle:
        lookup(order)
        issue_refund(order, amount)
    return handle.id


def escalate(reason: str) -> str:
    @execord.tool
    def notify(team: str, reason: str) -> str:
        return f"paged {team}: {reason}"

    with execord.execution("escalation", inputs={"reason": reason}) as handle:
        notify("ops", reason)
    return handle.id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    d = tmp_path_factory.mktemp("evidence")
    db = d / "execord.db"
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("EXECORD_"):
                mp.delenv(k)
        mp.chdir(d)
        (d / "governance.yaml").write_text(textwrap.dedent(GOVERNANCE).lstrip(), encoding="utf-8")
        applied = ok_json(ex("governance", "apply", str(d / "governance.yaml"), "--format", "json", db=db))
        gv = applied["version"]
        with recording(db):
            a, b = refund("A-1", 40), refund("B-2", 70)
        ok(ex("ledger", "keygen", "--name", ORIGIN, "--out", str(d)))
        early = d / "early.txt"
        early.write_text(ok(ex("ledger", "checkpoint", "--key", str(d / "ledger.key"), db=db)))
        with recording(db):
            c = escalate("refund loop")
        c1 = d / "c1.txt"
        c1.write_text(ok(ex("ledger", "checkpoint", "--key", str(d / "ledger.key"), db=db)))
        bundle = d / "honest.zip"
        ok(ex("executions", "export", a, b, "--bundle", str(bundle), db=db))
    files = members(bundle)
    events = [orjson.loads(x) for x in bodies(files, a)]
    refund_step = next(e["step_id"] for e in events
                       if e["type"] == "step.started" and e["attrs"]["name"] == "issue_refund")
    output = next(e["attrs"]["output"]["$blob"] for e in events
                  if e["type"] == "step.ended" and e["step_id"] == refund_step)
    assert events[0]["attrs"]["governance_version"] == gv
    yield World(dir=d, db=db, key=d / "ledger.key", pub=d / "ledger.pub", early=early, c1=c1,
                a=a, b=b, c=c, gv=gv, refund_output=output, bundle=bundle)


def copy_db(w: World, to: Path) -> Path:
    """A copy of the world's store to change (SQLite's backup API: the WAL comes along)."""
    with closing(sqlite3.connect(w.db)) as src, closing(sqlite3.connect(to)) as dst:
        src.backup(dst)
    return to


# -- zip surgery --------------------------------------------------------------------------------


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def repack(files: dict[str, bytes], out: Path, *, fix_manifest: bool) -> Path:
    """Write ``files`` as a zip; with ``fix_manifest``, first make the manifest list every file
    with its new digest (an attacker who covers their tracks)."""
    files = dict(files)
    if fix_manifest:
        manifest = orjson.loads(files["manifest.json"])
        manifest["files"] = {name: "sha256:" + hashlib.sha256(data).hexdigest()
                             for name, data in sorted(files.items()) if name != "manifest.json"}
        files["manifest.json"] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def events_file(eid: str) -> str:
    return f"executions/{eid}/events.jsonl"


def bodies(files: dict[str, bytes], eid: str) -> list[bytes]:
    raw = files[events_file(eid)]
    assert raw.endswith(b"\n")
    return raw[:-1].split(b"\n")


def with_bodies(files: dict[str, bytes], eid: str, new: list[bytes]) -> dict[str, bytes]:
    return {**files, events_file(eid): b"\n".join(new) + b"\n"}


def record_file(eid: str) -> str:
    return f"executions/{eid}/record.json"


def record(files: dict[str, bytes], eid: str) -> dict[str, Any]:
    return orjson.loads(files[record_file(eid)])


def with_record(files: dict[str, bytes], eid: str, new: dict[str, Any]) -> dict[str, bytes]:
    return {**files, record_file(eid): orjson.dumps(new, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"}


def blob_lines(files: dict[str, bytes]) -> list[bytes]:
    raw = files["blobs.jsonl"]
    assert raw.endswith(b"\n")
    return raw[:-1].split(b"\n")


def blob_line_of(files: dict[str, bytes], digest: str) -> int:
    """The 0-based index of the line of blobs.jsonl that holds this blob."""
    (n,) = [n for n, line in enumerate(blob_lines(files)) if orjson.loads(line)["digest"] == digest]
    return n


def with_blob_lines(files: dict[str, bytes], lines: list[bytes]) -> dict[str, bytes]:
    return {**files, "blobs.jsonl": b"".join(line + b"\n" for line in lines)}


def flip_digit(body: bytes, key: bytes) -> bytes:
    """The body with the first digit after ``key`` changed: one byte, still JSON."""
    at = body.index(key) + len(key)
    while not body[at:at + 1].isdigit():
        at += 1
    digit = b"1" if body[at:at + 1] != b"1" else b"2"
    return body[:at] + digit + body[at + 1:]


# -- verifying and reading its verdict ----------------------------------------------------------


def verify(w: World, bundle: Path, *extra: str, key: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["verify", str(bundle), *extra]
    if key:
        args += ["--key", str(w.pub)]
    return ex(*args)


def where(file: str, eid: str | None = None, seq: int | None = None) -> str:
    """How `execord verify` names the place of a failure."""
    if eid is None:
        return file
    return f"{file} (execution {eid}" + (f", seq {seq})" if seq is not None else ")")


def in_execution(file: str, eid: str) -> str:
    """The start of the place of any failure in this file of this execution, at any seq."""
    return f"{file} (execution {eid}"


def fail_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("FAIL ")]


def failed(r: subprocess.CompletedProcess[str], bundle: Path, *expected: tuple[str, str]) -> list[str]:
    """Exit 1, ``FAILED`` on stdout, and for each (place, words) a FAIL line at that place
    saying those words, and no other FAIL line."""
    clean(r)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = fail_lines(r)
    assert f"FAILED {bundle}: {len(lines)} problems" in r.stdout, r.stdout
    assert "VERIFIED" not in r.stdout
    for place, words in expected:
        open_ended = "(execution " in place and not place.endswith(")")  # from `in_execution`
        start = f"FAIL {place}" + ("" if open_ended else ": ")
        assert any(line.startswith(start) and words in line for line in lines), (
            f"no FAIL line at {place!r} saying {words!r}:\n" + "\n".join(lines))
    assert len(lines) == len(expected), "\n".join(lines)
    return lines


def ok_json_failed(r: subprocess.CompletedProcess[str]) -> Any:
    """A failed verification's JSON report (exit 1)."""
    clean(r)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    report = json.loads(r.stdout)
    assert report["ok"] is False and report["proven"] == []
    return report


def unusable(r: subprocess.CompletedProcess[str], bundle: Path, *needles: str) -> str:
    """Exit 2 and one line saying why the input cannot be checked at all."""
    clean(r)
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"execord: cannot verify {bundle}: "), r.stderr
    assert "VERIFIED" not in r.stdout
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# -- 1. an honest bundle ------------------------------------------------------------------------


def test_an_honest_bundle_verifies_and_says_what_it_proves(world: World) -> None:
    w = world
    n_a, n_b = len(bodies(members(w.bundle), w.a)), len(bodies(members(w.bundle), w.b))
    out = ok(verify(w, w.bundle))
    assert out.startswith(f"VERIFIED {w.bundle}: 2 executions, {n_a + n_b} events"), out
    assert "Existence: each of the 2 executions was sealed into the ledger" in out
    assert f"'{ORIGIN}' at or before the signed checkpoint of 3 leaves" in out
    assert "Order and integrity:" in out and "in seq order, nothing follows a seal" in out
    assert "Not proven: that what the events say is true" in out
    assert "Caution" not in out  # the auditor's own key was used

    report = ok_json(verify(w, w.bundle, "--format", "json"))
    assert report["ok"] is True and report["failures"] == []
    assert (report["executions"], report["events"]) == (2, n_a + n_b)
    assert report["checkpoint"]["tree_size"] == 3 and report["checkpoint"]["origin"] == ORIGIN
    assert report["key"] == w.pub.read_text().strip() and report["key_from_bundle"] is False
    assert any(p.startswith("Existence") for p in report["proven"])
    assert any(p.startswith("Not proven") for p in report["proven"])

    # What the bundle holds: each execution's events and record (its seal, and its ledger leaf
    # with the inclusion proof), its blobs as lines of blobs.jsonl, its governance document.
    files = members(w.bundle)
    assert not any(name.startswith("blobs/") or name.endswith("/proof.json") for name in files), sorted(files)
    cp = open_checkpoint(files["checkpoint.txt"], Verifier.parse(w.pub.read_text()))
    referenced: set[str] = set()
    for eid in (w.a, w.b):
        assert {events_file(eid), record_file(eid)} <= files.keys()
        rec = record(files, eid)
        ledger = rec["ledger"]
        assert set(ledger) == {"index", "tree_size", "entry", "leaf_hash", "proof"}
        assert ledger["tree_size"] == cp.size == 3 and ledger["index"] == [w.a, w.b].index(eid)
        leaf = merkle.leaf_hash(ledger["entry"].encode())
        assert leaf.hex() == ledger["leaf_hash"]
        assert merkle.verify_inclusion(leaf, ledger["index"], cp.size, [bytes.fromhex(h) for h in ledger["proof"]],
                                       cp.root)
        assert json.loads(ledger["entry"])["last_hash"] == rec["seal"]["last_hash"]
        referenced |= set(rec["blobs"])
    assert f"governance/{w.gv}.json" in files
    lines = blob_lines(files)
    digests = []
    for line in lines:
        item = orjson.loads(line)
        assert canonical_json(item) == line  # each line is a canonical JSON object
        assert set(item) == {"data", "digest", "size", "type"} and item["type"] in ("json", "text")
        data = item["data"].encode()
        assert item["digest"] == "sha256:" + hashlib.sha256(data).hexdigest() and item["size"] == len(data)
        digests.append(item["digest"])
    assert digests == sorted(set(digests)) and set(digests) == referenced  # each blob once, none missing
    assert w.refund_output in digests


def test_an_honest_bundle_extends_the_checkpoint_an_auditor_pinned(world: World) -> None:
    w = world
    out = ok(verify(w, w.bundle, "--pinned", str(w.early)))
    assert "Append-only: the checkpoint extends the pinned checkpoint of 2 leaves" in out
    report = ok_json(verify(w, w.bundle, "--pinned", str(w.early), "--format", "json"))
    assert report["ok"] is True and report["pinned"]["tree_size"] == 2
    # The same checkpoint pinned is trivially extended.
    assert "VERIFIED" in ok(verify(w, w.bundle, "--pinned", str(w.c1)))


def test_without_key_the_bundle_own_key_is_used_and_the_output_says_so(world: World) -> None:
    out = ok(verify(world, world.bundle, key=False))
    assert "VERIFIED" in out
    assert "Caution: the signature was checked with the public key inside the bundle" in out


# -- 2. tampering with the zip ------------------------------------------------------------------


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_one_byte_of_an_event_in_the_middle(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    w = world
    files = members(w.bundle)
    evs = bodies(files, w.a)
    k = len(evs) // 2
    evs[k] = flip_digit(evs[k], b'"ts":"')
    bad = repack(with_bodies(files, w.a, evs), tmp_path / "bad.zip", fix_manifest=fix_manifest)
    expected = [(where(events_file(w.a), w.a, k), f"seq {k} was changed: it hashes to")]
    if not fix_manifest:
        expected.append((events_file(w.a), "changed after export: its SHA-256 is not the manifest's"))
    lines = failed(verify(w, bad), bad, *expected)
    assert any(f"but seq {k + 1} records another prev_hash" in line for line in lines)


def _last_event_changed(w: World, tmp_path: Path) -> tuple[Path, int]:
    files = members(w.bundle)
    evs = bodies(files, w.a)
    last = len(evs) - 1
    assert b'"type":"execution.ended"' in evs[last]
    evs[last] = flip_digit(evs[last], b'"tool_calls":')  # the totals the seal vouches for
    return repack(with_bodies(files, w.a, evs), tmp_path / "last.zip", fix_manifest=True), last


def test_one_byte_of_the_last_event(world: World, tmp_path: Path) -> None:
    """No later event names its hash: the seal (and the signed leaf) in record.json must catch
    it, first naming the edited event, then the leaf, then the inclusion proof."""
    w = world
    bad, last = _last_event_changed(w, tmp_path)
    rec = record_file(w.a)
    expected = [(where(rec, w.a, last), f"seq {last} was changed: it does not hash to the seal's last_hash"),
                (where(rec, w.a), "the ledger leaf does not match the events: events_root, last_hash differ"),
                (where(rec, w.a), "the execution's ledger leaf (rebuilt from its events) is not in the signed "
                                  "tree: its inclusion proof does not reach the checkpoint root")]
    lines = failed(verify(w, bad), bad, *expected)
    assert [next(n for n, line in enumerate(lines) if words in line) for _, words in expected] == [0, 1, 2], lines


def test_one_byte_of_the_last_event_is_located_at_its_seq(world: World, tmp_path: Path) -> None:
    """When the last event is edited, every earlier event still chains, the count is the seal's
    and only the last hash differs, so the edited event is known to be seq N-1 (the store
    verifier says so too). Regression: `_record` once checked events_root before last_hash and
    gave neither failure a seq."""
    w = world
    bad, last = _last_event_changed(w, tmp_path)
    report = ok_json_failed(verify(w, bad, "--format", "json"))  # exit 1, ok false
    located = [f for f in report["failures"] if f["execution_id"] == w.a and f["seq"] == last]
    assert located, ("no failure names the edited last event (execution "
                     f"{w.a}, seq {last}); failures: {report['failures']}")


def test_a_damaged_last_event_that_is_no_longer_json_fails_cleanly(world: World, tmp_path: Path) -> None:
    """One damaged byte that breaks the last event's JSON (here its closing brace): exit 1 naming
    the event. Regression (execord/ledger/_verify.py, `_execution`): it once ran
    ``orjson.loads(bodies[-1])`` unguarded and crashed with "internal error (JSONDecodeError …)"."""
    w = world
    files = members(w.bundle)
    evs = bodies(files, w.a)
    last = len(evs) - 1
    evs[last] = evs[last][:-1] + b"]"  # one byte: '}' -> ']'
    bad = repack(with_bodies(files, w.a, evs), tmp_path / "damaged.zip", fix_manifest=False)
    r = verify(w, bad)
    assert "internal error" not in r.stderr, f"execord verify crashed on a damaged event: {r.stderr.strip()}"
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    lines = fail_lines(r)
    assert any(line.startswith(f"FAIL {where(events_file(w.a), w.a, last)}: ") for line in lines), lines


CHAIN_BUG = ("REGRESSION (execord/record/_verify.py, `chain_from_bodies`): `_check_fast` once tested prev_hash "
             "before seq, so a deleted or reordered event was reported as 'seq k-1 was changed' (an intact "
             "event) and the 'seq k is missing (deleted, or events reordered)' branch of `_explain` was "
             "unreachable.")


def test_a_deleted_event(world: World, tmp_path: Path) -> None:
    """Exit 1 naming the execution and the seq that is gone.

    Regression: see `CHAIN_BUG` (the message once blamed seq k-1)."""
    w = world
    files = members(w.bundle)
    evs = bodies(files, w.a)
    k = len(evs) // 2
    del evs[k]
    bad = repack(with_bodies(files, w.a, evs), tmp_path / "deleted.zip", fix_manifest=True)
    r = verify(w, bad)
    failed(r, bad, (in_execution(events_file(w.a), w.a), ""))  # exit 1, one failure, in A's events
    assert any(line.startswith(f"FAIL {where(events_file(w.a), w.a, k)}: position {k} holds seq {k + 1}: "
                               f"seq {k} is missing (deleted") for line in fail_lines(r)), (
        f"{CHAIN_BUG}\n" + r.stderr)


def test_two_events_swapped(world: World, tmp_path: Path) -> None:
    """Exit 1 naming the execution and the first seq out of order.

    Regression: see `CHAIN_BUG` (the message once said seq k-1 was changed)."""
    w = world
    files = members(w.bundle)
    evs = bodies(files, w.a)
    k = 2
    evs[k], evs[k + 1] = evs[k + 1], evs[k]
    bad = repack(with_bodies(files, w.a, evs), tmp_path / "swapped.zip", fix_manifest=True)
    r = verify(w, bad)
    failed(r, bad, (in_execution(events_file(w.a), w.a), ""))
    assert any(line.startswith(f"FAIL {where(events_file(w.a), w.a, k)}: position {k} holds seq {k + 1}: ")
               and "reordered" in line for line in fail_lines(r)), f"{CHAIN_BUG}\n" + r.stderr


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_an_execution_truncated(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    w = world
    files = members(w.bundle)
    evs = bodies(files, w.a)[:-2]  # the refund's step.ended and execution.ended are gone
    bad = repack(with_bodies(files, w.a, evs), tmp_path / "cut.zip", fix_manifest=fix_manifest)
    expected = [(where(events_file(w.a), w.a, len(evs) - 1),
                 f"the execution stops at seq {len(evs) - 1} without execution.ended: it was truncated")]
    if not fix_manifest:
        expected.append((events_file(w.a), "changed after export"))
    failed(verify(w, bad), bad, *expected)


def test_an_event_moved_to_another_execution(world: World, tmp_path: Path) -> None:
    """Exit 1: the execution it was put in says it belongs to the other one; the one it was
    taken from says that seq is missing.

    Regression: see `CHAIN_BUG` (B's failure once blamed its intact seq k-1)."""
    w = world
    files = members(w.bundle)
    a, b = bodies(files, w.a), bodies(files, w.b)
    k = 3
    a[k] = b.pop(k)  # B's event k replaces A's
    bad = repack(with_bodies(with_bodies(files, w.a, a), w.b, b), tmp_path / "moved.zip", fix_manifest=True)
    r = verify(w, bad)
    failed(r, bad,
           (where(events_file(w.a), w.a, k), f"the event at position {k} belongs to execution {w.b}, "
                                             f"not {w.a} (moved here)"),
           (in_execution(events_file(w.b), w.b), ""))
    assert any(line.startswith(f"FAIL {where(events_file(w.b), w.b, k)}: ") and f"seq {k} is missing" in line
               for line in fail_lines(r)), f"{CHAIN_BUG}\n" + r.stderr


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_a_governance_document_edited(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    w = world
    files = members(w.bundle)
    name = f"governance/{w.gv}.json"
    assert b"Refunds are watched." in files[name]
    files[name] = files[name].replace(b"Refunds are watched.", b"Refunds are welcome.")
    bad = repack(files, tmp_path / "gov.zip", fix_manifest=fix_manifest)
    edited = f"governance document {w.gv} was edited: it hashes to gv_"
    expected = [(where(name, w.a), edited), (where(name, w.b), edited)]
    if not fix_manifest:
        expected.append((name, "changed after export"))
    failed(verify(w, bad), bad, *expected)


def test_a_checkpoint_signature_with_one_byte_flipped(world: World, tmp_path: Path) -> None:
    w = world
    files = members(w.bundle)
    note = files["checkpoint.txt"].decode()
    text, dash, signature_line = note.rpartition("\n\u2014 ")  # "— <name> <base64(key id ‖ signature)>"
    name, blob = signature_line.strip().split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[20] ^= 0x01  # a byte of the Ed25519 signature, after the 4-byte key id
    files["checkpoint.txt"] = f"{text}{dash}{name} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    bad = repack(files, tmp_path / "flipped.zip", fix_manifest=False)
    failed(verify(w, bad), bad,
           ("checkpoint.txt", f"the checkpoint does not verify: the signature of {ORIGIN} does not verify"),
           ("checkpoint.txt", "changed after export"))


def test_a_checkpoint_signed_by_another_key_with_the_same_name(world: World, tmp_path: Path) -> None:
    """The forger signs the same checkpoint with their own key named like the log's, ships their
    public key as ledger.pub and fixes the manifest. The auditor's --key exposes it."""
    w = world
    forger = Signer.generate(ORIGIN)
    files = members(w.bundle)
    text, _ = split_note(files["checkpoint.txt"])
    files["checkpoint.txt"] = forger.sign(text).encode()
    files["ledger.pub"] = (forger.verifier.text() + "\n").encode()
    bad = repack(files, tmp_path / "forged.zip", fix_manifest=True)
    mine = Verifier.parse(w.pub.read_text())
    failed(verify(w, bad), bad,
           ("checkpoint.txt", f"the note carries no signature by key {ORIGIN} ({mine.key_id.hex()})"))
    # Without the auditor's key the bundle's own (forged) key is all there is: the output says
    # the signature was checked with a key from inside the bundle.
    out = ok(verify(w, bad, key=False))
    assert "Caution: the signature was checked with the public key inside the bundle" in out


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_a_bundle_with_a_blob_missing(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    """The line of a blob only A refers to is removed from blobs.jsonl (and no erasure says why)."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    del lines[blob_line_of(files, w.refund_output)]
    bad = repack(with_blob_lines(files, lines), tmp_path / "missing.zip", fix_manifest=fix_manifest)
    expected = [(where("blobs.jsonl", w.a), f"blob {w.refund_output} is missing and no erasure of it is recorded")]
    if not fix_manifest:
        expected.append(("blobs.jsonl", "changed after export: its SHA-256 is not the manifest's"))
    failed(verify(w, bad), bad, *expected)


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_a_bundle_with_a_blob_changed(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    """The bytes of the refund's output are edited in its line of blobs.jsonl: reported once,
    at its line, not again as missing from the execution that refers to it."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    n = blob_line_of(files, w.refund_output)
    item = orjson.loads(lines[n])
    assert item["data"] == '"refunded 40 on A-1"'
    lines[n] = canonical_json({**item, "data": '"refunded 4000 on A-1"', "size": item["size"] + 2})
    bad = repack(with_blob_lines(files, lines), tmp_path / "changed.zip", fix_manifest=fix_manifest)
    expected = [("blobs.jsonl", f"line {n + 1}: blob {w.refund_output} was changed: its bytes hash to "
                                "something else")]
    if not fix_manifest:
        expected.append(("blobs.jsonl", "changed after export: its SHA-256 is not the manifest's"))
    failed(verify(w, bad), bad, *expected)


def test_a_bundle_with_a_blob_line_damaged(world: World, tmp_path: Path) -> None:
    """A line of blobs.jsonl cut in half: the line is named, and the blob it held is missing."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    n = blob_line_of(files, w.refund_output)
    lines[n] = lines[n][:len(lines[n]) // 2]
    bad = repack(with_blob_lines(files, lines), tmp_path / "damaged.zip", fix_manifest=True)
    failed(verify(w, bad), bad,
           ("blobs.jsonl", f"line {n + 1} is not a blob entry (damaged)"),
           (where("blobs.jsonl", w.a), f"blob {w.refund_output} is missing and no erasure of it is recorded"))


def test_a_blob_line_in_base64_verifies_like_its_text(world: World, tmp_path: Path) -> None:
    """``data_base64`` (what the exporter writes for bytes that are not UTF-8) holds the same bytes."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    n = blob_line_of(files, w.refund_output)
    item = orjson.loads(lines[n])
    data = item.pop("data").encode()
    lines[n] = canonical_json({**item, "data_base64": base64.b64encode(data).decode()})
    good = repack(with_blob_lines(files, lines), tmp_path / "base64.zip", fix_manifest=True)
    assert "VERIFIED" in ok(verify(w, good))
    # ... and base64 of other bytes is a changed blob.
    lines[n] = canonical_json({**item, "data_base64": base64.b64encode(data + b" ").decode()})
    bad = repack(with_blob_lines(files, lines), tmp_path / "base64-bad.zip", fix_manifest=True)
    failed(verify(w, bad), bad, ("blobs.jsonl", f"line {n + 1}: blob {w.refund_output} was changed"))


@pytest.mark.parametrize("case", ["planted-line", "size-lie"])
def test_a_blob_line_nothing_checks_is_caught(world: World, tmp_path: Path, case: str) -> None:
    """blobs.jsonl is part of what a VERIFIED bundle vouches for ("every content blob in the
    bundle is the value the events refer to"), like the planted files of
    `test_a_bundle_with_an_extra_file_listed_in_the_manifest`: a line the attacker adds (a
    self-consistent blob no event names) or a line whose size is a lie must fail, naming
    blobs.jsonl."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    if case == "planted-line":
        data = b'"refund approved by the CFO"'
        lines.append(canonical_json({"data": data.decode(), "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                                     "size": len(data), "type": "json"}))
    else:
        n = blob_line_of(files, w.refund_output)
        lines[n] = canonical_json({**orjson.loads(lines[n]), "size": 999})
    bad = repack(with_blob_lines(files, lines), tmp_path / "blobs.zip", fix_manifest=True)
    r = verify(w, bad)
    clean(r)
    assert r.returncode == 1, f"a bundle with a blob line nothing checks verified:\n{r.stdout}{r.stderr}"
    assert any(line.startswith("FAIL blobs.jsonl") for line in fail_lines(r)), r.stderr


def test_a_changed_record_is_named_even_when_the_events_are_gone(world: World, tmp_path: Path) -> None:
    """Every listed file whose bytes are not the manifest's is named, as before the digest
    checks of executions' files moved into the per-execution check."""
    w = world
    files = members(w.bundle)
    del files[events_file(w.a)]
    files[record_file(w.a)] = files[record_file(w.a)].replace(b'"succeeded"', b'"failed"')
    bad = repack(files, tmp_path / "gone.zip", fix_manifest=False)
    failed(verify(w, bad), bad,
           (events_file(w.a), "listed in the manifest but missing from the bundle (removed)"),
           (where(events_file(w.a), w.a), "the execution's events are missing"),
           (record_file(w.a), "changed after export: its SHA-256 is not the manifest's"))


def _drop(*path: str) -> Any:
    def change(rec: dict[str, Any]) -> dict[str, Any]:
        at = rec
        for key in path[:-1]:
            at = at[key]
        del at[path[-1]]
        return rec
    return change


@pytest.mark.parametrize("case", ["missing", "no-ledger", "no-proof", "no-entry", "no-seal"])
def test_a_bundle_with_a_record_missing_or_malformed(world: World, tmp_path: Path, case: str) -> None:
    """B's record.json (its seal, ledger leaf and inclusion proof) removed, or lacking a part."""
    w = world
    files = members(w.bundle)
    name = record_file(w.b)
    if case == "missing":
        del files[name]
        words = "the execution's record (its seal and inclusion proof) is missing"
    else:
        path = {"no-ledger": ("ledger",), "no-proof": ("ledger", "proof"), "no-entry": ("ledger", "entry"),
                "no-seal": ("seal",)}[case]
        files = with_record(files, w.b, _drop(*path)(record(files, w.b)))
        words = "the record is malformed (no seal, or no ledger leaf and proof)"
    bad = repack(files, tmp_path / "norecord.zip", fix_manifest=True)
    failed(verify(w, bad), bad, (where(name, w.b), words))


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_a_bundle_with_an_inclusion_proof_changed(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    """One hash of B's inclusion proof in record.json is changed: the leaf no longer reaches the root."""
    w = world
    files = members(w.bundle)
    rec = record(files, w.b)
    first = rec["ledger"]["proof"][0]
    rec["ledger"]["proof"][0] = ("1" if first[0] != "1" else "2") + first[1:]
    bad = repack(with_record(files, w.b, rec), tmp_path / "proof.zip", fix_manifest=fix_manifest)
    expected = [(where(record_file(w.b), w.b), "the execution's ledger leaf (rebuilt from its events) is not in "
                                               "the signed tree: its inclusion proof does not reach the checkpoint "
                                               "root")]
    if not fix_manifest:
        expected.append((record_file(w.b), "changed after export: its SHA-256 is not the manifest's"))
    failed(verify(w, bad), bad, *expected)


@pytest.mark.parametrize("fix_manifest", [True, False], ids=["manifest-fixed", "plain-damage"])
def test_a_bundle_with_the_ledger_leaf_or_seal_edited(world: World, tmp_path: Path, fix_manifest: bool) -> None:
    """B's stated leaf and seal in record.json say "failed" instead of "succeeded": the leaf is
    not the one rebuilt from the events (the inclusion proof of the rebuilt one still holds)."""
    w = world
    files = members(w.bundle)
    rec = record(files, w.b)
    assert '"status":"succeeded"' in rec["ledger"]["entry"]
    rec["ledger"]["entry"] = rec["ledger"]["entry"].replace('"status":"succeeded"', '"status":"failed"')
    rec["seal"]["event_count"] += 1
    bad = repack(with_record(files, w.b, rec), tmp_path / "leaf.zip", fix_manifest=fix_manifest)
    n = rec["seal"]["event_count"] - 1
    expected = [(where(record_file(w.b), w.b), f"the seal counts {n + 1} events, {n} are in events.jsonl"),
                (where(record_file(w.b), w.b), "the ledger leaf does not match the events: status differ")]
    if not fix_manifest:
        expected.append((record_file(w.b), "changed after export: its SHA-256 is not the manifest's"))
    failed(verify(w, bad), bad, *expected)


def test_a_bundle_with_an_extra_file(world: World, tmp_path: Path) -> None:
    w = world
    files = members(w.bundle)
    name = f"executions/{w.a}/notes.txt"
    files[name] = b"the refund was fine\n"
    bad = repack(files, tmp_path / "extra.zip", fix_manifest=False)
    failed(verify(w, bad), bad, (name, "not listed in the manifest (added after export)"))


def test_a_bundle_with_an_extra_file_listed_in_the_manifest(world: World, tmp_path: Path) -> None:
    """A file the attacker adds *and* lists in the manifest, but that no checked execution refers
    to: here a whole fake execution folder (not in the manifest's ``executions``), which an
    auditor unzipping the bundle would read as part of a verified record. Exit 1 naming the
    unchecked file. Regression (execord/ledger/_verify.py, `verify_bundle` / `_files`): such a
    file was once never looked at, and the bundle printed VERIFIED."""
    w = world
    files = members(w.bundle)
    fake = str(uuid.UUID(int=0x01A00000_0000_7000_8000_000000000000))
    planted = {f"executions/{fake}/events.jsonl": bodies(files, w.a)[0] + b"\n",
               f"executions/{fake}/record.json": files[f"executions/{w.a}/record.json"]}
    bad = repack({**files, **planted}, tmp_path / "planted.zip", fix_manifest=True)
    r = verify(w, bad)
    clean(r)
    assert r.returncode == 1, (f"a bundle with files nothing checks verified (exit {r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")
    assert any(f"executions/{fake}/" in line for line in fail_lines(r)), r.stderr


# -- 3. history rewritten and re-signed with the same key ---------------------------------------


def _rewrite_history(db: Path, eid: str) -> None:
    """What an operator with the database and the signing key could do: change a governance
    decision of a sealed execution, recompute its chain and its seal, rebuild the ledger."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for trigger in LEDGER_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        rows = conn.execute("SELECT seq, body FROM events WHERE execution_id = ? ORDER BY seq", (eid,)).fetchall()
        target = next(seq for seq, body in rows if b'"decision":"warn"' in bytes(body))
        prev = hashlib.sha256(eid.encode()).digest()
        hashes = []
        conn.execute("BEGIN")
        for seq, body in rows:
            body = bytes(body)
            if seq == target:
                body = body.replace(b'"decision":"warn"', b'"decision":"allow"')
            if seq > target:
                at = body.rindex(b'"prev_hash":"') + len(b'"prev_hash":"')
                body = body[:at] + prev.hex().encode() + body[at + 64:]
            prev = hashlib.sha256(prev + body).digest()
            hashes.append(prev)
            conn.execute("UPDATE events SET body = ?, hash = ? WHERE execution_id = ? AND seq = ?",
                         (body, prev, eid, seq))
        conn.execute("UPDATE seals SET events_root = ?, last_hash = ? WHERE execution_id = ?",
                     (events_root(hashes), hashes[-1], eid))
        for table in ("ledger", "ledger_nodes", "checkpoints"):
            conn.execute(f"DELETE FROM {table}")
        backfill(conn)
        conn.execute("COMMIT")


def test_history_rewritten_and_resigned_is_caught_only_against_a_pinned_checkpoint(
        world: World, tmp_path: Path) -> None:
    w = world
    db = copy_db(w, tmp_path / "rewritten.db")
    _rewrite_history(db, w.a)
    # The rewritten store is self-consistent: it verifies, and the same key signs it.
    ok(ex("verify", "--db", str(db)))
    note = ok(ex("ledger", "checkpoint", "--key", str(w.key), db=db))
    assert note != w.c1.read_text() and note.split("\n")[1] == "3"
    same = tmp_path / "rewritten.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(same), db=db))
    assert b'"decision":"allow"' in members(same)[events_file(w.a)]

    # Alone, a rewrite signed with the same key cannot be told from the truth.
    assert "VERIFIED" in ok(verify(w, same))
    # Against the checkpoint the auditor kept before, it can.
    failed(verify(w, same, "--pinned", str(w.c1)), same,
           ("consistency.json", "history was rewritten: the pinned checkpoint and the bundle's have the "
                                "same size 3 and different roots"))

    # The log grows after the rewrite; its consistency proof starts from the rewritten tree.
    with recording(db):
        escalate("after the rewrite")
    assert ok(ex("ledger", "checkpoint", "--key", str(w.key), db=db)).split("\n")[1] == "4"
    grown = tmp_path / "grown.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(grown), db=db))
    assert "3" in orjson.loads(members(grown)["consistency.json"])["from"]
    assert "VERIFIED" in ok(verify(w, grown))
    failed(verify(w, grown, "--pinned", str(w.c1)), grown,
           ("consistency.json", "history was rewritten: the checkpoint of 4 leaves is not an append-only "
                                "extension of the pinned one of 3"))
    # The older pin: the rewriter threw away the checkpoint of 2, so no proof from it exists.
    failed(verify(w, grown, "--pinned", str(w.early)), grown,
           ("consistency.json", "carries no consistency proof from the pinned size 2 to 4, so it cannot "
                                "show the log only grew"))


# -- 4. unsafe input ----------------------------------------------------------------------------


def _zip_with(path: Path, names: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in names.items():
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # exactly as given: zipfile would not write such a name otherwise
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", ["absolute", "dotdot", "nested-dotdot", "not-a-zip", "no-manifest"])
def test_unsafe_input_is_refused_and_nothing_is_written(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = Path(tempfile.gettempdir()) / f"execord-evil-{uuid.uuid4().hex}.txt"
    honest = members(world.bundle)
    bundle = work / f"{case}.zip"
    if case == "absolute":
        _zip_with(bundle, {"manifest.json": honest["manifest.json"], str(outside): b"owned\n"})
        needles: tuple[str, ...] = ("unsafe path", str(outside)[:60], "nothing was extracted")
    elif case == "dotdot":
        _zip_with(bundle, {"manifest.json": honest["manifest.json"], "../evil.txt": b"owned\n"})
        needles = ("unsafe path '../evil.txt'", "nothing was extracted")
    elif case == "nested-dotdot":
        _zip_with(bundle, {"manifest.json": honest["manifest.json"], "blobs/../../../evil.txt": b"owned\n"})
        needles = ("unsafe path 'blobs/../../../evil.txt'",)
    elif case == "not-a-zip":
        bundle.write_bytes(b"%PDF-1.7 this is not a zip file\n" * 20)
        needles = ("is not a bundle (not a readable zip file",)
    else:
        _zip_with(bundle, {k: v for k, v in honest.items() if k != "manifest.json"})
        needles = ("has no manifest.json: it is not an Execord bundle",)
    before = _snapshot(tmp_path)
    unusable(verify(world, bundle), bundle, *needles)
    if case == "dotdot":
        r = verify(world, bundle, "--format", "json")
        report = json.loads(r.stdout)
        assert r.returncode == 2 and report["ok"] is False and set(report) == {"ok", "unusable"}
        assert "unsafe path '../evil.txt'" in report["unusable"]
    assert _snapshot(tmp_path) == before
    assert not outside.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


@dataclass(frozen=True)
class RawMember:
    """A zip member written by hand: what the directory declares, and the deflate stream."""

    name: str
    crc: int
    size: int                              # the uncompressed size the zip declares
    parts: tuple[tuple[bytes, int], ...]   # the deflate stream, as (bytes, times repeated)

    @property
    def compressed(self) -> int:
        return sum(len(data) * times for data, times in self.parts)


def raw_member(name: str, data: bytes, *, crc: int | None = None) -> RawMember:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return RawMember(name, zlib.crc32(data) if crc is None else crc, len(data),
                     ((c.compress(data) + c.flush(), 1),))


def zeros_member(name: str, size: int, *, declared: int | None = None) -> RawMember:
    """A member that inflates to ``size`` zero bytes, as a deflate stream of repeated fully
    flushed blocks (what zlib makes of zeros, without compressing gigabytes); the zip declares
    ``declared`` bytes (the true size unless given)."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    count = size // len(chunk)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return RawMember(name, crc, size if declared is None else declared, ((block, count), (tail, 1)))


def write_raw_zip(path: Path, entries: list[RawMember]) -> Path:
    """A zip of these members, local headers and central directory packed by hand."""
    central = b""
    with open(path, "wb") as fh:
        for m in entries:
            raw = m.name.encode()
            offset = fh.tell()
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, m.crc, m.compressed, m.size,
                                 len(raw), 0) + raw)
            for data, times in m.parts:
                for _ in range(times):
                    fh.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, m.crc, m.compressed,
                                   m.size, len(raw), 0, 0, 0, 0, 0o644 << 16, offset) + raw
        start = fh.tell()
        fh.write(central)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0))
    return path


def honest_with(w: World, extra: RawMember, *, listed: bool) -> list[RawMember]:
    """The honest bundle's members and ``extra`` (listed in the manifest, with a made-up digest,
    or not), the manifest first."""
    files = members(w.bundle)
    if listed:
        manifest = orjson.loads(files["manifest.json"])
        manifest["files"][extra.name] = "sha256:" + "0" * 64
        files["manifest.json"] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return [raw_member(name, data) for name, data in files.items()] + [extra]


# The child's peak memory, measured by a small Python process that starts it. Linux counts in a
# child's max RSS the memory of the process that forked it, at the moment of the exec: measured
# from the pytest process itself (hundreds of MiB late in a full run) the figure says nothing.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss * 1024))  # KiB on Linux
sys.exit(os.waitstatus_to_exitcode(status))
"""


def verify_measured(w: World, bundle: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`verify` in a child process of its own, and the most memory it held (bytes, max RSS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | WIDE
    args = [sys.executable, "-m", "execord", "verify", str(bundle), "--key", str(w.pub)]
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        r = subprocess.run([sys.executable, "-c", _MEASURE, str(rss_file), *args],
                           capture_output=True, text=True, env=env)
        rss = int(rss_file.read_text())
    return subprocess.CompletedProcess(args, r.returncode, r.stdout, r.stderr), rss


LITTLE_MEMORY = 256 << 20  # far less than any of the members below inflates to


@pytest.mark.parametrize("listed", [False, True], ids=["added", "listed"])
@pytest.mark.parametrize("size", [2 << 30, 64 << 20], ids=["over-the-size-limit", "over-the-ratio"])
def test_a_decompression_bomb_is_refused(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         size: int, listed: bool) -> None:
    """A member that declares it inflates to 2 GiB (over the member limit) or 64 MiB from ~64 KiB
    (over the ratio) is refused from its declared size: exit 2, before inflating any of it."""
    monkeypatch.chdir(tmp_path)
    name = "executions/zeros.bin"
    bomb_member = zeros_member(name, size)
    bomb = write_raw_zip(tmp_path / "bomb.zip", honest_with(world, bomb_member, listed=listed))
    assert bomb.stat().st_size < 4 << 20
    with zipfile.ZipFile(bomb) as z:  # a well-formed zip: gigabytes (or 64 MiB) inside a few MiB
        info = z.getinfo(name)
        assert (info.file_size, info.compress_size) == (size, bomb_member.compressed)
        with z.open(info) as fh:
            assert fh.read(1 << 20) == bytes(1 << 20)
    before = _snapshot(tmp_path)
    r, rss = verify_measured(world, bomb)
    unusable(r, bomb, f"the bundle member {name} would expand to {size:,} bytes from {bomb_member.compressed:,} "
                      "compressed (a decompression bomb?): refused")
    assert _snapshot(tmp_path) == before
    if size > LITTLE_MEMORY:
        assert rss < LITTLE_MEMORY, f"execord verify held {rss:,} bytes refusing a bomb: it inflated it"


def test_a_member_that_inflates_past_its_declared_size_is_refused(world: World, tmp_path: Path) -> None:
    """A bomb that lies: its directory says 1,000 bytes, its stream inflates to 2 GiB. Inflating
    stops just past the declared size, and the member is refused as damaged (exit 2)."""
    name = "executions/zeros.bin"
    liar = write_raw_zip(tmp_path / "liar.zip",
                         honest_with(world, zeros_member(name, 2 << 30, declared=1000), listed=True))
    r, rss = verify_measured(world, liar)
    unusable(r, liar, f"the bundle member {name} is damaged: its size or CRC is not the zip's")
    assert rss < LITTLE_MEMORY, f"execord verify held {rss:,} bytes: it inflated the member past its declared size"


def test_a_member_whose_crc_is_not_the_zips_is_refused(world: World, tmp_path: Path) -> None:
    files = members(world.bundle)
    entries = [raw_member(name, data, crc=zlib.crc32(data) ^ 1 if name == "checkpoint.txt" else None)
               for name, data in files.items()]
    damaged = write_raw_zip(tmp_path / "crc.zip", entries)
    unusable(verify(world, damaged), damaged, "the bundle member checkpoint.txt is damaged: its size or CRC is not "
                                              "the zip's")
    # The same members with their true CRCs verify: only the CRC was wrong.
    honest = write_raw_zip(tmp_path / "raw.zip", [raw_member(name, data) for name, data in files.items()])
    assert "VERIFIED" in ok(verify(world, honest))


# -- 5. erasure ---------------------------------------------------------------------------------


def test_an_erased_blob_leaves_every_record_verifiable(world: World, tmp_path: Path) -> None:
    w = world
    db = copy_db(w, tmp_path / "erased.db")
    digest = w.refund_output
    out = ok(ex("blobs", "erase", digest, "--reason", "GDPR 2291", "--key", str(w.key), db=db))
    assert out.startswith(f"erased {digest} (") and f"signed by {ORIGIN}: GDPR 2291" in out
    assert "OK" in ok(ex("verify", "--key", str(w.pub), db=db))

    bundle = tmp_path / "after-erasure.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), db=db))
    files = members(bundle)
    kept = [orjson.loads(line)["digest"] for line in blob_lines(files)]
    assert digest not in kept and digest not in files["blobs.jsonl"].decode()
    assert set(kept) == set(record(files, w.a)["blobs"]) - {digest}  # the other blobs are still there
    (entry,) = orjson.loads(files["erasures.json"])
    assert (entry["digest"], entry["reason"]) == (digest, "GDPR 2291")
    assert Verifier.parse(w.pub.read_text()).open(entry["note"]).startswith(f"{ORIGIN}\nexecord-erasure-v1\n")

    out = ok(verify(w, bundle))
    assert "VERIFIED" in out
    assert re.search(rf"erased: {re.escape(digest)} at \S+ by \S+: GDPR 2291", out), out
    report = ok_json(verify(w, bundle, "--format", "json"))
    assert [(e["digest"], e["reason"]) for e in report["erasures"]] == [(digest, "GDPR 2291")]
    # The HTML report lists it, with the key that signed it.
    html = tmp_path / "erased.html"
    ok(ex("executions", "export", w.a, "--format", "html", "-o", str(html), db=db))
    key_id = Verifier.parse(w.pub.read_text()).key_id.hex()
    row = re.search(r'<table id="erasures">.*?</table>', html.read_text(), re.S)
    assert row and digest in row.group(0) and "GDPR 2291" in row.group(0), html.read_text()[-2000:]
    assert f"by key {key_id}, at a ledger of 3" in row.group(0), row.group(0)

    # A second erasure of the same blob is refused, and says when the first one was.
    one_line_error(ex("blobs", "erase", digest, "--reason", "again", "--key", str(w.key), db=db), "already erased at")


def _erased_bundle(w: World, tmp_path: Path) -> dict[str, bytes]:
    """The members of a bundle of A exported after its refund output was erased (signed)."""
    db = copy_db(w, tmp_path / "erased.db")
    ok(ex("blobs", "erase", w.refund_output, "--reason", "GDPR 2291", db=db, env={"EXECORD_LEDGER_KEY": str(w.key)}))
    bundle = tmp_path / "erased.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), db=db))
    return members(bundle)


def _with_erasures(files: dict[str, bytes], entries: list[dict[str, Any]]) -> dict[str, bytes]:
    return {**files, "erasures.json": orjson.dumps(entries)}


def test_an_erasure_edited_in_the_bundle_fails(world: World, tmp_path: Path) -> None:
    """The erasure's reason is rewritten after export: its signature no longer covers it."""
    w = world
    files = _erased_bundle(w, tmp_path)
    (entry,) = orjson.loads(files["erasures.json"])
    assert "VERIFIED" in ok(verify(w, repack(files, tmp_path / "honest.zip", fix_manifest=True)))
    bad = repack(_with_erasures(files, [{**entry, "reason": "routine cleanup"}]), tmp_path / "edited.zip",
                 fix_manifest=True)
    failed(verify(w, bad), bad,
           ("erasures.json", f"the erasure of blob {w.refund_output} was changed after it was signed"))


def test_a_blob_left_out_behind_an_unsigned_or_forged_erasure_fails(world: World, tmp_path: Path) -> None:
    """Whoever repacks the bundle drops the refund's output and writes an erasure for it: with no
    signature, or signed by a key of the same name that is not the ledger's."""
    w = world
    files = members(w.bundle)
    lines = blob_lines(files)
    item = orjson.loads(lines.pop(blob_line_of(files, w.refund_output)))
    dropped = with_blob_lines(files, lines)
    claim = {"digest": w.refund_output, "size": item["size"], "type": item["type"], "reason": "GDPR 2291",
             "erased_by": "dpo", "erased_at": "2026-12-01T00:00:00.000000Z", "tree_size": 3}
    unsigned = repack(_with_erasures(dropped, [claim]), tmp_path / "unsigned.zip", fix_manifest=True)
    failed(verify(w, unsigned), unsigned, ("erasures.json", f"the erasure of blob {w.refund_output} is not signed"))

    forger = Signer.generate(ORIGIN)
    forged_note = forger.sign(erasure_body(ORIGIN, claim))
    forged = repack(_with_erasures(dropped, [{**claim, "note": forged_note}]), tmp_path / "forged.zip",
                    fix_manifest=True)
    mine = Verifier.parse(w.pub.read_text())
    failed(verify(w, forged), forged,
           ("erasures.json", f"the erasure of blob {w.refund_output} does not verify: the note carries no "
                             f"signature by key {ORIGIN} ({mine.key_id.hex()})"))
    # The same claim signed by the ledger key verifies: the signature is what the check rests on.
    real = Signer.parse(w.key.read_text())
    signed = repack(_with_erasures(dropped, [{**claim, "note": real.sign(erasure_body(ORIGIN, claim))}]),
                    tmp_path / "signed.zip", fix_manifest=True)
    assert "VERIFIED" in ok(verify(w, signed))


def test_a_new_ledger_key_signs_the_erasures_again(world: World, tmp_path: Path) -> None:
    """After `ledger keygen --force`, a bundle under the new key's checkpoint needs the
    erasures signed by it too: `sign-erasures --yes` does that, and both keys' bundles verify."""
    w = world
    db = copy_db(w, tmp_path / "rotated.db")
    ok(ex("blobs", "erase", w.refund_output, "--reason", "GDPR 2291", "--key", str(w.key), db=db))
    new = tmp_path / "new"
    ok(ex("ledger", "keygen", "--name", ORIGIN, "--out", str(new)))
    ok(ex("ledger", "checkpoint", "--key", str(new / "ledger.key"), db=db))
    bundle = tmp_path / "rotated.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), db=db))
    newer = Verifier.parse((new / "ledger.pub").read_text())
    failed(verify(w, bundle, "--key", str(new / "ledger.pub"), key=False), bundle,
           ("erasures.json", f"does not verify: the note carries no signature by key {ORIGIN} ({newer.key_id.hex()})"))
    assert "1 erasure not signed" in ok(ex("blobs", "sign-erasures", "--key", str(new / "ledger.key"), db=db))
    ok(ex("blobs", "sign-erasures", "--key", str(new / "ledger.key"), "--yes", db=db))
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), "--force", db=db))  # again, over the first
    assert "VERIFIED" in ok(verify(w, bundle, "--key", str(new / "ledger.pub"), key=False))
    assert "OK" in ok(ex("verify", "--key", str(new / "ledger.pub"), db=db))


def test_malformed_erasure_entries_fail_without_a_traceback(world: World, tmp_path: Path) -> None:
    w = world
    files = _erased_bundle(w, tmp_path)
    (entry,) = orjson.loads(files["erasures.json"])
    signed = json.dumps(entry)
    deep = "[" * 900 + '"x"' + "]" * 900  # JSON that parses, nested past what canonical JSON takes
    cases = {
        "deep": ("[" + signed[:-1] + ', "reason": ' + deep + "}]",
                 f"the erasure of blob {w.refund_output} was changed after it was signed"),
        "digest-list": (f'[{{"digest": [1]}}, {signed}]', "holds something that is not an erasure entry"),
        "twice": (f"[{signed}, {signed}]", f"lists blob {w.refund_output} twice"),
        "size-text": (json.dumps([{**entry, "size": str(entry["size"])}]),
                      f"the erasure of blob {w.refund_output} was changed after it was signed"),
    }
    # An erasure genuinely signed, of a blob no execution of A's bundle refers to.
    db = copy_db(w, tmp_path / "stray.db")
    referenced = set(record(files, w.a)["blobs"])
    with closing(sqlite3.connect(db)) as conn:
        stray = next(d for (d,) in conn.execute("SELECT digest FROM blobs ORDER BY digest") if d not in referenced)
    signed_stray = ok_json(ex("blobs", "erase", stray, "--reason", "other", "--key", str(w.key), "--format", "json",
                              db=db))
    cases["stray"] = (json.dumps([entry, signed_stray]),
                      f"the erasure of blob {stray} belongs to no execution of the manifest (added after export)")
    for name, (raw, words) in cases.items():
        bad = repack({**files, "erasures.json": raw.encode()}, tmp_path / f"{name}.zip", fix_manifest=True)
        r = verify(w, bad)
        failed(r, bad, ("erasures.json", words))
        # An entry that fails is not listed as an erasure.
        assert ("erased:" in r.stdout) == (name in ("twice", "digest-list", "stray")), (name, r.stdout)


def test_erasing_without_the_ledger_key_is_refused_and_erases_nothing(world: World, tmp_path: Path) -> None:
    w = world
    db = copy_db(w, tmp_path / "nokey.db")
    one_line_error(ex("blobs", "erase", w.refund_output, "--reason", "GDPR 2291", db=db),
                   "an erasure is signed with the ledger key", "--key ledger.key")
    one_line_error(ex("blobs", "erase", w.refund_output, "--reason", "GDPR 2291", "--key", str(tmp_path / "no.key"),
                      db=db), "cannot read the ledger key")
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM erasures").fetchone()[0] == 0
        assert conn.execute("SELECT data IS NOT NULL FROM blobs WHERE digest = ?", (w.refund_output,)).fetchone()[0]


def test_sign_erasures_signs_what_an_older_execord_erased(world: World, tmp_path: Path) -> None:
    """An erasure kept unsigned (as before schema 7): the store check and the bundle say so,
    and `execord blobs sign-erasures` fixes both."""
    w = world
    db = copy_db(w, tmp_path / "legacy.db")
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        size, type_ = conn.execute("SELECT size, type FROM blobs WHERE digest = ?", (w.refund_output,)).fetchone()
        conn.execute("UPDATE blobs SET data = NULL WHERE digest = ?", (w.refund_output,))
        conn.execute("INSERT INTO erasures VALUES (?,?,?,?,?,?)",
                     (w.refund_output, size, type_, "old request", "dpo", "2026-06-01T00:00:00.000000Z"))
    r = ex("verify", "--key", str(w.pub), db=db)
    assert r.returncode == 1 and "is not signed" in r.stdout + r.stderr, r.stdout + r.stderr
    bundle = tmp_path / "legacy.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), db=db))
    failed(verify(w, bundle), bundle, ("erasures.json", f"the erasure of blob {w.refund_output} is not signed"))

    # Listed first, signed only with --yes.
    listed = ok(ex("blobs", "sign-erasures", "--key", str(w.key), db=db))
    assert f"{w.refund_output} erased at 2026-06-01T00:00:00.000000Z by dpo: old request" in listed
    assert f"1 erasure not signed by {ORIGIN}: check them, then run again with --yes" in listed
    r = ex("verify", "--key", str(w.pub), db=db)
    assert r.returncode == 1 and "is not signed" in r.stdout + r.stderr  # the listing signed nothing
    assert ok(ex("blobs", "sign-erasures", "--key", str(w.key), "--yes", db=db)).splitlines()[-1] == \
        f"signed 1 erasure with {ORIGIN}"
    assert "every erasure is signed by" in ok(ex("blobs", "sign-erasures", "--key", str(w.key), db=db))
    assert "OK" in ok(ex("verify", "--key", str(w.pub), db=db))
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), "--force", db=db))  # again, over the first
    out = ok(verify(w, bundle))
    assert "VERIFIED" in out and f"erased: {w.refund_output} at 2026-06-01T00:00:00.000000Z by dpo: old request" in out


def test_erase_refuses_bad_input_in_one_line(world: World, tmp_path: Path) -> None:
    w = world
    db = copy_db(w, tmp_path / "erase-bad.db")
    key = ("--key", str(w.key))
    one_line_error(ex("blobs", "erase", w.refund_output, db=db), "Missing option '--reason'")
    unknown = "sha256:" + "0" * 64
    one_line_error(ex("blobs", "erase", unknown, "--reason", "GDPR 2291", *key, db=db), f"no blob with digest {unknown}")
    one_line_error(ex("blobs", "erase", "sha256:1234", "--reason", "GDPR 2291", *key, db=db),
                   "'sha256:1234' is not a blob digest", "sha256:<64 hex>")
    one_line_error(ex("blobs", "erase", w.refund_output, "--reason", "  ", *key, db=db), "say why the blob is erased")
    # Nothing was erased by any of them.
    assert "erased:" not in ok(ex("verify", db=db))
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM erasures").fetchone()[0] == 0
        assert conn.execute("SELECT data IS NOT NULL FROM blobs WHERE digest = ?", (w.refund_output,)).fetchone()[0]


# -- 6. a store whose ledger was changed --------------------------------------------------------


def _change_node(db: Path, level: int, idx: int) -> None:
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER ledger_nodes_no_update")
        assert conn.execute("UPDATE ledger_nodes SET hash = ? WHERE level = ? AND idx = ?",
                            (b"\x11" * 32, level, idx)).rowcount == 1


def _store_verify_fails_on_the_ledger(db: Path) -> str:
    r = ex("verify", db=db)
    clean(r)
    assert r.returncode == 1, f"execord verify passed a store whose ledger node was changed:\n{r.stdout}{r.stderr}"
    assert "FAIL ledger: the stored ledger tree is not the tree of its leaves: subtree (" in r.stderr
    assert "failed" in r.stdout
    report = json.loads(ex("verify", "--format", "json", db=db).stdout)
    assert report["ok"] is False and any("was changed (proofs built from it" in p["message"] for p in report["problems"])
    return r.stderr


def test_verify_store_catches_a_changed_ledger_node(world: World, tmp_path: Path) -> None:
    """Leaf 2's node is one of the two subtrees the root of 3 leaves is folded from."""
    db = copy_db(world, tmp_path / "node.db")
    _change_node(db, 0, 2)
    stderr = _store_verify_fails_on_the_ledger(db)
    # The signed root no longer matches the stored tree either.
    assert "checkpoint of size 3: the stored tree's root" in stderr and "(the ledger was rewritten)" in stderr


def test_verify_store_catches_a_changed_ledger_node_off_the_root_path(world: World, tmp_path: Path) -> None:
    """A changed node below the perfect subtrees the root of 3 leaves is folded from ((1, 0) and
    (0, 2)), here leaf 1's (level 0, idx 1): `_log.inclusion` serves proofs from it, so every
    bundle of execution A exported from this store fails verification, and `execord verify`
    on the store must fail too. Regression (execord/ledger/_log.py, `verify_ledger`): it once
    compared only `root_at(store, size)` with the root of the leaves and said "OK"."""
    w = world
    db = copy_db(w, tmp_path / "node.db")
    _change_node(db, 0, 1)
    bundle = tmp_path / "from-corrupt-store.zip"
    ok(ex("executions", "export", w.a, "--bundle", str(bundle), db=db))
    failed(verify(w, bundle), bundle,
           (where(record_file(w.a), w.a), "its inclusion proof does not reach the checkpoint root"))
    _store_verify_fails_on_the_ledger(db)


def test_verify_store_catches_a_changed_ledger_leaf(world: World, tmp_path: Path) -> None:
    w = world
    db = copy_db(w, tmp_path / "leaf.db")
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER ledger_no_update")
        (entry,) = conn.execute("SELECT entry FROM ledger WHERE execution_id = ?", (w.b,)).fetchone()
        forged = bytes(entry).replace(b'"succeeded"', b'"failed"')
        conn.execute("UPDATE ledger SET entry = ? WHERE execution_id = ?", (forged, w.b))
    r = ex("verify", db=db)
    clean(r)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"FAIL ledger {w.b}: ledger leaf 1 does not match the execution's seal" in r.stderr


# -- 7. the HTML report -------------------------------------------------------------------------


def test_an_html_export_is_a_report_with_its_verification(world: World, tmp_path: Path) -> None:
    w = world
    out = tmp_path / "report.html"
    assert f"wrote {out}" in ok(ex("executions", "export", w.a, "--format", "html", "-o", str(out), db=w.db))
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert f"<h1>Execution <code>{w.a}</code></h1>" in page
    assert w.gv in page
    n = len(bodies(members(w.bundle), w.a))

    def section(element_id: str) -> str:
        m = re.search(rf'<table id="{element_id}">(.*?)</table>', page, re.S)
        assert m, f"no {element_id} table in the report"
        return m.group(1)

    timeline = section("timeline")
    for kind in ("execution.started", "step.started", "governance.decision", "step.ended", "execution.ended"):
        assert f"<td>{kind}</td>" in timeline
    assert timeline.count("<tr>") == n + 1  # a header and one row per event
    assert "tool issue_refund" in timeline
    decisions = section("decisions")
    assert "<td>warn</td>" in decisions and "watch-refunds (warn): Refunds are watched." in decisions
    verification = section("verification")
    assert f"Hash chain ({n} events)" in verification
    assert verification.count('<span class="ok">verified</span>') == 4  # chain, seal, signature, inclusion
    assert "matches the events" in verification and "FAILED" not in verification
    assert f"{ORIGIN}, 3 leaves" in verification
    assert "<script" not in page


# -- 8. proofs from `execord ledger proof` ------------------------------------------------------


def test_ledger_proofs_check_out_against_the_signed_checkpoint(world: World) -> None:
    w = world
    latest = ok_json(ex("ledger", "checkpoint", "--latest", "--format", "json", db=w.db))
    cp = open_checkpoint(latest["note"], Verifier.parse(w.pub.read_text()))  # signed by the log's key
    assert cp.size == latest["tree_size"] == 3 and cp.root.hex() == latest["root"]

    incl = ok_json(ex("ledger", "proof", w.b, "--format", "json", db=w.db))
    assert (incl["execution_id"], incl["index"], incl["tree_size"]) == (w.b, 1, 3)
    leaf = merkle.leaf_hash(incl["entry"].encode())
    assert leaf.hex() == incl["leaf_hash"]
    path = [bytes.fromhex(h) for h in incl["proof"]]
    assert merkle.verify_inclusion(leaf, incl["index"], cp.size, path, cp.root)
    assert not merkle.verify_inclusion(leaf, 0, cp.size, path, cp.root)  # the proof is for its index only
    assert json.loads(incl["entry"])["execution_id"] == w.b

    first = ok_json(ex("ledger", "proof", w.a, "--format", "json", db=w.db))
    cons = ok_json(ex("ledger", "proof", "--from", "1", "--format", "json", db=w.db))
    assert (cons["from"], cons["to"], cons["to_root"]) == (1, 3, cp.root.hex())
    assert cons["from_root"] == first["leaf_hash"]  # the tree of one leaf is A's leaf
    proof = [bytes.fromhex(h) for h in cons["proof"]]
    assert merkle.verify_consistency(1, 3, bytes.fromhex(cons["from_root"]), cp.root, proof)
    assert not merkle.verify_consistency(1, 3, bytes.fromhex(incl["leaf_hash"]), cp.root, proof)


# -- 9. export errors ---------------------------------------------------------------------------


def test_export_bundle_of_a_running_execution_says_what_to_do(engine: Any, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "running.zip"
    with engine.execution("long-running") as handle:
        one_line_error(cli("executions", "export", handle.id, "--bundle", str(out)),
                              f"execution {handle.id} is running, not sealed",
                              "a bundle holds sealed executions only")
    assert not out.exists() and not Path(f"{out}.tmp").exists()


def test_export_bundle_without_a_checkpoint_or_key_says_what_to_do(engine: Any, cli: Any, tmp_path: Path) -> None:
    with engine.execution("quick") as handle:
        pass
    out = tmp_path / "unsigned.zip"
    one_line_error(cli("executions", "export", handle.id, "--bundle", str(out)),
                   "no checkpoint has been signed yet", "run `execord ledger checkpoint --key ledger.key`",
                   "(or pass --key", "and export again")
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    # Doing what it says works.
    ok(cli("ledger", "keygen", "--name", ORIGIN, "--out", str(tmp_path)))
    ok(cli("executions", "export", handle.id, "--bundle", str(out), "--key", str(tmp_path / "ledger.key")))
    r = run_cli("verify", str(out), "--key", str(tmp_path / "ledger.pub"))
    assert "VERIFIED" in ok(r)

