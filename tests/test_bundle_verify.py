"""verify_bundle in-process: the forked workers report exactly what one process does, and
blobs travel as lines of blobs.jsonl (text and non-UTF-8 alike)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_store import Chain

from execord.ledger import _log
from execord.ledger import _verify as V
from execord.ledger._bundle import write_bundle
from execord.ledger._note import Signer
from execord.record import make_blob
from execord.store import SQLiteStore

SIGNER = Signer.generate("test.example/bundle")


def _store(tmp_path: Path, n: int = 12) -> tuple[SQLiteStore, list[str], list[str]]:
    s = SQLiteStore(tmp_path / "x.db")
    ids, digests = [], []
    for k in range(n):
        c = Chain()
        text = make_blob(f"note {k}".encode(), "text")
        raw = make_blob(b"\xff\xfe not utf-8 " + bytes([k]), "text")
        c.start()
        c.next("log", {"level": "info", "message": "m", "data": {"a": text.ref(), "b": raw.ref()}})
        c.log()
        c.end()
        s.append(c.events, [text, raw])
        ids.append(c.id)
        digests += [text.digest, raw.digest]
    _log.make_checkpoint(s, SIGNER)
    return s, ids, digests


def _tampered(path: Path, eid: str, out: Path) -> Path:
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    name = f"executions/{eid}/events.jsonl"
    lines = files[name].split(b"\n")
    lines[1] = lines[1].replace(b'"message":"m"', b'"message":"M"')
    files[name] = b"\n".join(lines)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in files.items():
            z.writestr(n, data)
    out.write_bytes(buf.getvalue())
    return out


def _run(path: Path, parallel: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(V, "_PARALLEL_MIN", 2 if parallel else 10**9)
        m.setattr(V.threading, "active_count", lambda: 1)  # pytest's threads would keep it in-process
        return V.verify_bundle(str(path), key=SIGNER.verifier)


def test_workers_and_one_process_agree_on_an_honest_and_a_tampered_bundle(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s, ids, _ = _store(tmp_path)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    for path in (bundle, _tampered(bundle, ids[7], tmp_path / "bad.zip")):
        serial, forked = _run(path, False, monkeypatch), _run(path, True, monkeypatch)
        assert (serial.ok, serial.events, serial.executions) == (forked.ok, forked.events, forked.executions)
        assert serial.failures == forked.failures
    assert serial.ok is False
    assert [(f.execution_id, f.seq) for f in serial.failures if f.seq is not None] == [(ids[7], 1)]
    assert "seq 1 was changed" in serial.failures[-1].message or any(
        "seq 1 was changed" in f.message for f in serial.failures)
    s.close()


def test_blobs_are_lines_of_blobs_jsonl_and_non_utf8_ones_are_base64(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    s, ids, digests = _store(tmp_path, 2)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    with zipfile.ZipFile(bundle) as z:
        lines = [orjson.loads(x) for x in z.read("blobs.jsonl").splitlines()]
        assert not [n for n in z.namelist() if n.startswith("blobs/")]
    assert sorted(b["digest"] for b in lines) == sorted(digests)
    assert {("data" in b, "data_base64" in b) for b in lines} == {(True, False), (False, True)}
    assert _run(bundle, False, monkeypatch).ok
    s.close()


# -- how bundles are stored and read fast, and that it changes no verdict ---------------------


def _rezip(path: Path, out: Path, *, method: int = zipfile.ZIP_DEFLATED, comment: bytes = b"",
           directory: bool = False) -> Path:
    """The same members, every one with ``method`` (bundles before stored members were all
    deflated), optionally with an archive comment or a directory entry."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(out, "w", method) as z:
        if directory:
            z.writestr("executions/", b"")
        for n, data in files.items():
            z.writestr(n, data)
        z.comment = comment
    return out


def test_new_bundles_store_each_executions_files_and_deflate_the_rest(tmp_path: Path) -> None:
    s, ids, _ = _store(tmp_path, 2)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    with zipfile.ZipFile(bundle) as z:
        methods = {i.filename: i.compress_type for i in z.infolist()}
    for eid in ids:
        assert methods.pop(f"executions/{eid}/events.jsonl") == zipfile.ZIP_STORED
        assert methods.pop(f"executions/{eid}/record.json") == zipfile.ZIP_STORED
    assert set(methods.values()) == {zipfile.ZIP_DEFLATED}, methods
    s.close()


@pytest.mark.parametrize("parallel", [False, True], ids=["one-process", "forked"])
def test_a_deflated_bundle_and_unusual_zips_get_the_verdict_of_the_stored_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool) -> None:
    """A bundle written before members were stored (all deflated), or a zip that the fast
    directory reader hands to `zipfile` (a comment, a directory entry), verifies exactly
    like the bundle as written, honest or tampered."""
    s, ids, _ = _store(tmp_path)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    bad = _tampered(bundle, ids[7], tmp_path / "bad.zip")
    with zipfile.ZipFile(bad) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    for path in (bundle, bad):
        reference = _run(path, parallel, monkeypatch)
        with V.open_members(str(path)) as members:
            assert type(next(iter(members.infos.values()))) is V._Entry  # read by the fast path
        for variant in (_rezip(path, tmp_path / "deflated.zip"),
                        _rezip(path, tmp_path / "comment.zip", method=zipfile.ZIP_STORED, comment=b"hello"),
                        _rezip(path, tmp_path / "dir.zip", directory=True)):
            got = _run(variant, parallel, monkeypatch)
            assert (got.ok, got.events, got.executions, got.failures) == (
                reference.ok, reference.events, reference.executions, reference.failures), variant.name
    assert reference.ok is False and any(f.seq == 1 and f.execution_id == ids[7] for f in reference.failures)
    with V.open_members(str(tmp_path / "comment.zip")) as members:
        assert type(next(iter(members.infos.values()))) is zipfile.ZipInfo  # handed to zipfile
    s.close()


def test_a_stored_member_edited_in_place_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte of a stored events.jsonl changed inside the zip file itself: with the CRC left
    as it was the member is damaged (exit 2); with the CRC fixed too, the chain names the event."""
    s, ids, _ = _store(tmp_path, 3)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    name = f"executions/{ids[1]}/events.jsonl"
    with zipfile.ZipFile(bundle) as z:
        info = z.getinfo(name)
        body = z.read(name)
    raw = bytearray(bundle.read_bytes())
    start = info.header_offset + 30 + len(name.encode())
    assert raw[start:start + len(body)] == body  # stored: the bytes are there as they are
    at = start + body.index(b'"message":"m"') + len(b'"message":"')
    raw[at:at + 1] = b"M"
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(V.BundleUnusable, match=f"the bundle member {name} is damaged: its size or CRC"):
        _run(damaged, False, monkeypatch)
    crc = zlib.crc32(bytes(raw[start:start + len(body)]))
    struct.pack_into("<I", raw, info.header_offset + 14, crc)
    central = 0
    while True:  # the central directory entry of this member
        central = bytes(raw).index(b"PK\x01\x02", central)
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46:central + 46 + n] == name.encode():
            break
        central += 4
    struct.pack_into("<I", raw, central + 16, crc)
    edited = tmp_path / "edited.zip"
    edited.write_bytes(bytes(raw))
    report = _run(edited, False, monkeypatch)
    assert not report.ok
    assert [(f.file, f.execution_id, f.seq) for f in report.failures] == [
        (name, None, None), (name, ids[1], 1)], report.failures
    assert "changed after export" in report.failures[0].message
    assert "seq 1 was changed" in report.failures[1].message
    s.close()


def test_a_worker_that_meets_unusable_input_makes_the_whole_bundle_unusable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last execution (checked by a forked worker) has a member whose CRC is wrong: the
    worker's refusal reaches the caller as it would in one process."""
    s, ids, _ = _store(tmp_path)
    bundle = tmp_path / "b.zip"
    write_bundle(s, ids, bundle)
    name = f"executions/{ids[-1]}/record.json"
    with zipfile.ZipFile(bundle) as z:
        info = z.getinfo(name)
    raw = bytearray(bundle.read_bytes())
    raw[info.header_offset + 30 + len(name) + 5] ^= 0x20
    bad = tmp_path / "crc.zip"
    bad.write_bytes(bytes(raw))
    for parallel in (False, True):
        with pytest.raises(V.BundleUnusable, match=f"the bundle member {name} is damaged"):
            _run(bad, parallel, monkeypatch)
    s.close()


def test_chain_from_jsonl_says_what_chain_from_bodies_says() -> None:
    """The fast path accepts exactly what the per-event check accepts, and otherwise hands
    over to it: on an honest execution and on every kind of damage, the same answer."""
    from execord.record import chain_from_bodies
    from execord.record._verify import chain_from_jsonl

    c = Chain()
    c.start()
    for k in range(6):
        c.next("log", {"level": "info", "message": f"m{k}", "data": {"execution_id": "x", "seq": k}})
    c.end()
    bodies = [e.body for e in c.events]
    other = Chain()
    other.start()
    cases = {"honest": list(bodies)}
    cases["deleted"] = bodies[:3] + bodies[4:]
    cases["swapped"] = bodies[:2] + [bodies[3], bodies[2]] + bodies[4:]
    cases["edited"] = [*bodies[:2], bodies[2].replace(b'"m1"', b'"m9"'), *bodies[3:]]
    cases["moved"] = [other.events[0].body, *bodies[1:]]
    cases["hash member"] = [bodies[0].replace(b'","prev_hash"', b'","hash":"00","prev_hash"'), *bodies[1:]]
    cases["seq at end"] = [bodies[0].replace(b'"seq":0,', b'"seq":0}'), *bodies[1:]]
    cases["no prev_hash"] = [bodies[0].replace(b'"prev_hash":', b'"prevhash":'), *bodies[1:]]
    cases["empty line"] = [bodies[0], b"", *bodies[1:]]
    for case, lines in cases.items():
        for data in (b"\n".join(lines) + b"\n", b"\n".join(lines)):
            got_bodies, hashes, problem = chain_from_jsonl(c.id, data)
            expected = data.split(b"\n")
            if expected[-1] == b"":
                expected.pop()
            assert got_bodies == expected, case
            assert (hashes, problem) == chain_from_bodies(c.id, expected), case
    assert chain_from_jsonl(c.id, b"\n".join(bodies) + b"\n")[2] is None


def test_the_memoized_inclusion_check_answers_like_merkle() -> None:
    import random

    from execord.ledger import merkle

    rng = random.Random(5)
    entries = [bytes([k % 251]) * (k % 7 + 1) + k.to_bytes(4, "big") for k in range(37)]
    root = merkle.root(entries)
    memo: dict[bytes, bytes] = {}
    for index in range(len(entries)):
        leaf = merkle.leaf_hash(entries[index])
        proof = merkle.inclusion_proof(entries, index)
        cases = [(leaf, index, proof, root), (leaf, index + 1, proof, root), (leaf, index, proof[:-1], root),
                 (leaf, index, [*proof, leaf], root), (leaf, True if index == 1 else index, proof, root)]
        if proof:
            k = rng.randrange(len(proof))
            flipped = bytearray(proof[k])
            flipped[rng.randrange(32)] ^= 1 << rng.randrange(8)
            cases.append((leaf, index, [*proof[:k], bytes(flipped), *proof[k + 1:]], root))
        for lf, i, pr, rt in cases:
            assert V._included(lf, i, len(entries), pr, rt, memo) == merkle.verify_inclusion(
                lf, i, len(entries), pr, rt), (index, i)
