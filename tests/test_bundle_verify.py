"""verify_bundle in-process: the forked workers report exactly what one process does, and
blobs travel as lines of blobs.jsonl (text and non-UTF-8 alike)."""

from __future__ import annotations

import io
import zipfile
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
