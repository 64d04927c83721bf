"""The ``execord`` command, run for real in child processes against stores the SDK wrote.

Every test here starts the real CLI (``python -m execord``) in a child process; the stores
are written by the real SDK in this process (``Execord(db=...)``), by a child process, or
by ``execord demo``. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import queue
import re
import select
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from execord.record import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    build_event,
    canonical_json,
    events_root,
    format_ts,
    genesis_hash,
    now_us,
    uuid7,
)
from execord.runtime import Execord
from execord.store import open_store

pytestmark = pytest.mark.slow

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

# The documented shape of one `executions list` row (issue #2, docs/cli.md).
SUMMARY_KEYS = {
    "id", "status", "agent", "workflow", "execution_type", "started_at", "ended_at",
    "duration_ms", "totals", "halt", "error", "failure_class", "governance_version", "sealed",
}
TOTALS_KEYS = {"steps", "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cost_micros"}
EVENT_KEYS = {"v", "execution_id", "seq", "type", "ts", "attrs", "prev_hash", "hash"}


# --- helpers ----------------------------------------------------------------------------


def _json(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    return r.stdout


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """Exit code 1 (``code``: 2 for `execord verify`, whose 1 means a record that fails), one
    line on stderr naming what is wrong, nothing on stdout, no traceback."""
    both = r.stdout + r.stderr
    assert "Traceback" not in both, both
    assert r.returncode == code, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    assert r.stdout.strip() == "", f"nothing expected on stdout, got:\n{r.stdout}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_chain(events: list[dict[str, Any]], execution_id: str) -> None:
    """Each event has the DESIGN §3 keys, seq 0..n-1, and re-hashes (DESIGN §4)."""
    assert events, "no events"
    prev = hashlib.sha256(execution_id.encode()).hexdigest()
    for i, ev in enumerate(events):
        assert EVENT_KEYS <= ev.keys(), f"event {i} lacks {EVENT_KEYS - ev.keys()}"
        assert ev["v"] == 1
        assert ev["execution_id"] == execution_id
        assert ev["seq"] == i
        assert isinstance(ev["type"], str) and ev["type"]
        assert TS_RE.match(ev["ts"]), ev["ts"]
        assert isinstance(ev["attrs"], dict)
        assert ev["prev_hash"] == prev, f"event {i} does not chain"
        without_hash = {k: v for k, v in ev.items() if k != "hash"}
        recomputed = hashlib.sha256(bytes.fromhex(ev["prev_hash"]) + canonical_json(without_hash)).hexdigest()
        assert ev["hash"] == recomputed, f"event {i} does not re-hash"
        prev = ev["hash"]
    assert events[0]["type"] == EXECUTION_STARTED


def unique_prefix(target: str, ids: list[str]) -> str:
    """The shortest prefix of ``target`` that no other id starts with."""
    others = [i for i in ids if i != target]
    for n in range(1, len(target) + 1):
        if not any(o.startswith(target[:n]) for o in others):
            return target[:n]
    raise AssertionError("ids are not distinct")


def _old_execution(db: str, started_us: int, workflow: str) -> tuple[str, str]:
    """A sealed execution that started in the past (hand-built through the record API)."""
    eid = uuid7()
    ts0 = format_ts(started_us)
    e0 = build_event(
        eid, 0, EXECUTION_STARTED, ts0,
        {
            "agent": {"name": "archiver", "version": None, "roles": []},
            "workflow": {"name": workflow, "version": None},
            "execution_type": "workflow", "parent_execution_id": None, "labels": {"env": "old"},
            "inputs": None, "governance_version": None,
            "sdk": {"name": "execord-python", "version": "0"},
            "host": {"hostname": "a-host-that-is-gone", "pid": 1}, "lease_s": 30,
        },
        genesis_hash(eid),
    )
    e1 = build_event(
        eid, 1, EXECUTION_ENDED, format_ts(started_us + 2000),
        {
            "status": "succeeded", "error": None, "halt": None, "cancel": None,
            "totals": {"input_tokens": 0, "output_tokens": 0, "cost_micros": 0, "llm_calls": 0,
                       "tool_calls": 0, "steps": 0, "duration_ms": 2},
            "failure_class": None,
        },
        e0.hash,
    )
    s = open_store(db)
    try:
        s.append([e0, e1])
    finally:
        s.close()
    return eid, ts0


# --- a store with a bit of everything, shared by the read-only tests ---------------------


class Dataset:
    def __init__(self, db: str, ids: dict[str, str], started: dict[str, str]):
        self.db = db
        self.ids = ids  # name -> execution id
        self.started = started  # name -> started_at
        self.by_id = {v: k for k, v in ids.items()}

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--db", self.db, **kw)

    def prefix(self, name: str) -> str:
        return unique_prefix(self.ids[name], list(self.ids.values()))


# Oldest first: the order the executions were started in.
ORDER = ["old10d", "old3h", "ok1", "conn", "logic", "intr", "ok2"]


def _populate(db: str) -> Dataset:
    now = now_us()
    ids: dict[str, str] = {}
    started: dict[str, str] = {}
    ids["old10d"], started["old10d"] = _old_execution(db, now - 10 * 86_400_000_000, "archive")
    ids["old3h"], started["old3h"] = _old_execution(db, now - 3 * 3_600_000_000, "archive")

    ex = Execord(agent="alpha", db=db)
    try:
        @ex.tool
        def lookup(order_id: str) -> dict[str, Any]:
            return {"order_id": order_id, "carrier": "Pelican-Express"}

        @ex.tool
        def charge(amount: int) -> None:
            raise ConnectionError(f"bank did not answer for {amount}")

        with ex.execution("triage", labels={"env": "prod", "team": "ops"}, inputs={"ticket": "T-77"}) as h:
            with ex.step("plan", kind="agent", input={"goal": "find order"}):
                lookup("ZX-4312")
        ids["ok1"] = h.id

        with pytest.raises(ConnectionError):
            with ex.execution("refund", labels={"env": "prod", "team": "web"}) as h:
                ids["conn"] = h.id
                charge(10)

        with pytest.raises(ValueError):
            with ex.execution("triage", agent="beta", labels={"env": "dev"}) as h:
                ids["logic"] = h.id
                raise ValueError("no template named digest-v2")

        with pytest.raises(KeyboardInterrupt):
            with ex.execution("digest", agent="beta") as h:
                ids["intr"] = h.id
                raise KeyboardInterrupt

        with ex.execution("digest") as h:
            ex.log("all quiet")
        ids["ok2"] = h.id
    finally:
        ex.close()

    s = open_store(db, create=False)
    try:
        for name in ORDER[2:]:
            started[name] = s.get_execution(ids[name])["started_at"]
    finally:
        s.close()
    return Dataset(db, ids, started)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("EXECORD_"):
                mp.delenv(key)
        yield _populate(str(tmp_path_factory.mktemp("dataset") / "execord.db"))


def _iso_minute(dt: datetime) -> str:
    """A naive ISO time to the minute (taken as UTC), the way people type it."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


# name -> (arguments built from the dataset, expected names newest first)
LIST_CASES: dict[str, tuple[Callable[[Dataset], list[str]], list[str]]] = {
    "all": (lambda d: [], ["ok2", "intr", "logic", "conn", "ok1", "old3h", "old10d"]),
    "status": (lambda d: ["--status", "failed"], ["logic", "conn"]),
    "status-repeated": (lambda d: ["--status", "failed", "--status", "interrupted"], ["intr", "logic", "conn"]),
    "workflow": (lambda d: ["--workflow", "triage"], ["logic", "ok1"]),
    "agent": (lambda d: ["--agent", "beta"], ["intr", "logic"]),
    "failure-class-connector": (lambda d: ["--failure-class", "connector_failure"], ["conn"]),
    "failure-class-logic": (lambda d: ["--failure-class", "logic_error"], ["logic"]),
    "since-15m": (lambda d: ["--since", "15m"], ["ok2", "intr", "logic", "conn", "ok1"]),
    "since-2h": (lambda d: ["--since", "2h"], ["ok2", "intr", "logic", "conn", "ok1"]),
    "since-7d": (lambda d: ["--since", "7d"], ["ok2", "intr", "logic", "conn", "ok1", "old3h"]),
    "until-2h": (lambda d: ["--until", "2h"], ["old3h", "old10d"]),
    "until-7d": (lambda d: ["--until", "7d"], ["old10d"]),
    "since+until-iso": (lambda d: ["--since", d.started["ok1"], "--until", d.started["logic"]], ["conn", "ok1"]),
    "since-iso-minute": (
        lambda d: ["--since", _iso_minute(datetime.now(UTC) - timedelta(days=1))],
        ["ok2", "intr", "logic", "conn", "ok1", "old3h"],
    ),
    "until-iso-offset": (
        # the same instant as 1 hour ago, written in +02:00
        lambda d: ["--until", (datetime.now(UTC) - timedelta(hours=1)).astimezone(
            timezone(timedelta(hours=2))).isoformat()],
        ["old3h", "old10d"],
    ),
    "label": (lambda d: ["--label", "env=prod"], ["conn", "ok1"]),
    "label-all-must-match": (lambda d: ["--label", "env=prod", "--label", "team=ops"], ["ok1"]),
    "limit": (lambda d: ["--limit", "2"], ["ok2", "intr"]),
}


@pytest.fixture(scope="module")
def list_results(ds: Dataset) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every `executions list` case, run concurrently (each is its own process)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(ds.cli, "executions", "list", "--format", "json", *make_args(ds))
            for name, (make_args, _) in LIST_CASES.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", list(LIST_CASES))
def test_list_filters_newest_first(case: str, ds: Dataset, list_results: dict[str, Any]) -> None:
    rows = _json(list_results[case])
    got = [ds.by_id.get(r["id"], r["id"]) for r in rows]
    assert got == LIST_CASES[case][1], f"args {LIST_CASES[case][0](ds)}"


def test_list_json_shape(ds: Dataset, list_results: dict[str, Any]) -> None:
    rows = _json(list_results["all"])
    assert len(rows) == len(ORDER)
    for r in rows:
        assert SUMMARY_KEYS <= r.keys(), f"missing {SUMMARY_KEYS - r.keys()}"
        assert isinstance(r["id"], str) and isinstance(r["status"], str)
        assert isinstance(r["agent"], str) and isinstance(r["workflow"], str)
        assert r["execution_type"] == "workflow"
        assert TS_RE.match(r["started_at"]) and TS_RE.match(r["ended_at"])
        assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 0
        assert set(r["totals"]) >= TOTALS_KEYS
        for k in TOTALS_KEYS:
            assert type(r["totals"][k]) is int, (k, r["totals"][k])
        assert r["halt"] is None
        assert r["error"] is None or isinstance(r["error"], dict)
        assert r["failure_class"] is None or isinstance(r["failure_class"], str)
        assert r["governance_version"] is None or isinstance(r["governance_version"], str)
        assert r["sealed"] is True
        # The extra keys the code documents too.
        assert isinstance(r.get("labels"), dict)
        assert "parent_execution_id" in r and "cancel" in r
    by = {ds.by_id[r["id"]]: r for r in rows}
    assert by["ok1"]["status"] == "succeeded" and by["ok1"]["failure_class"] is None
    assert by["ok1"]["error"] is None
    assert by["ok1"]["totals"]["steps"] == 2 and by["ok1"]["totals"]["tool_calls"] == 1
    assert by["ok1"]["labels"] == {"env": "prod", "team": "ops"}
    assert by["conn"]["status"] == "failed" and by["conn"]["failure_class"] == "connector_failure"
    assert by["conn"]["error"]["type"] == "ConnectionError"
    assert "bank did not answer" in by["conn"]["error"]["message"]
    assert by["logic"]["failure_class"] == "logic_error" and by["logic"]["agent"] == "beta"
    assert by["intr"]["status"] == "interrupted" and by["intr"]["failure_class"] == "interrupted"


def test_list_table(ds: Dataset) -> None:
    out = _ok(ds.cli("executions", "list", "--workflow", "triage"))
    assert ds.ids["ok1"] in out and ds.ids["logic"] in out
    assert ds.ids["conn"] not in out
    assert out.index(ds.ids["logic"]) < out.index(ds.ids["ok1"])  # newest first
    assert "logic_error" in out and "succeeded" in out


# --- get / steps / timeline -----------------------------------------------------------------


def test_get_steps_timeline_by_prefix(ds: Dataset) -> None:
    eid = ds.ids["ok1"]
    prefix = ds.prefix("ok1")
    assert len(prefix) < len(eid)
    with ThreadPoolExecutor(max_workers=5) as pool:
        f_get = pool.submit(ds.cli, "executions", "get", prefix, "--format", "json")
        f_steps = pool.submit(ds.cli, "executions", "steps", prefix, "--format", "json")
        f_tl = pool.submit(ds.cli, "executions", "timeline", prefix, "--format", "json")
        f_list = pool.submit(ds.cli, "executions", "list", "--format", "json")
        f_get_table = pool.submit(ds.cli, "executions", "get", prefix)
    detail = _json(f_get.result())
    steps = _json(f_steps.result())
    timeline = _json(f_tl.result())
    summaries = {r["id"]: r for r in _json(f_list.result())}

    assert set(detail) == {"execution", "steps", "event_count"}
    assert detail["execution"] == summaries[eid]
    assert detail["event_count"] == len(timeline)

    # Two steps, the tool nested in the agent step, in start order.
    assert steps == detail["steps"]
    assert [(s["name"], s["kind"], s["status"]) for s in steps] == [("plan", "agent", "ok"), ("lookup", "tool", "ok")]
    assert steps[0]["parent_step_id"] is None
    assert steps[1]["parent_step_id"] == steps[0]["step_id"]

    assert_chain(timeline, eid)
    assert [e["type"] for e in timeline] == [
        "execution.started", "step.started", "step.started", "step.ended", "step.ended", "execution.ended",
    ]
    assert timeline[2]["parent_step_id"] == timeline[1]["step_id"]
    assert timeline[-1]["attrs"]["status"] == "succeeded"
    # The stored bytes are what re-hashes: compare with the store, read independently.
    s = open_store(ds.db, create=False)
    try:
        stored = s.events(eid)
    finally:
        s.close()
    assert [e.hash.hex() for e in stored] == [e["hash"] for e in timeline]

    table = _ok(f_get_table.result())
    assert eid in table and "succeeded" in table and "plan" in table and "lookup" in table


def test_steps_and_timeline_tables(ds: Dataset) -> None:
    prefix = ds.prefix("conn")
    steps_out = _ok(ds.cli("executions", "steps", prefix))
    assert "charge" in steps_out and "ConnectionError" in steps_out
    tl = _ok(ds.cli("executions", "timeline", prefix))
    for t in ("execution.started", "step.started", "step.ended", "execution.ended"):
        assert t in tl
    assert "+0.0ms" in tl  # times relative to the start


def test_full_id_is_accepted(ds: Dataset) -> None:
    eid = ds.ids["logic"]
    full = _json(ds.cli("executions", "get", eid, "--format", "json"))
    assert full["execution"]["id"] == eid
    assert full["execution"]["error"]["message"] == "no template named digest-v2"


# --- watch ----------------------------------------------------------------------------------

_WATCHED = textwrap.dedent(
    """
    import pathlib, sys, time
    import execord

    db, d = sys.argv[1], pathlib.Path(sys.argv[2])
    execord.init(agent="watched-agent", db=db)

    def wait_for(name):
        deadline = time.monotonic() + 30
        while not (d / name).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(name)
            time.sleep(0.01)

    @execord.tool
    def stage(i):
        if i == 0:
            (d / "id.tmp").write_text(execord.current().id)
            (d / "id.tmp").rename(d / "id")
        wait_for(f"go{i}")
        return {"stage": i}

    @execord.workflow(name="watched")
    def run():
        for i in range(3):
            stage(i)
        return "done"

    run()
    """
)


def _wait_for_file(path: Path, proc: subprocess.Popen[Any], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited {proc.returncode} before {path.name} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.01)
    return path.read_text()


def _cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}


def test_watch_follows_a_live_execution(db_path: str, tmp_path: Path) -> None:
    d = tmp_path / "ctl"
    d.mkdir()
    script = tmp_path / "watched.py"
    script.write_text(_WATCHED)
    child_err = open(tmp_path / "child.err", "wb")  # noqa: SIM115
    child = subprocess.Popen([sys.executable, str(script), db_path, str(d)], env=_cli_env(),
                             stdout=subprocess.DEVNULL, stderr=child_err)
    watch: subprocess.Popen[str] | None = None
    try:
        eid = _wait_for_file(d / "id", child)
        watch = subprocess.Popen(
            [sys.executable, "-m", "execord", "executions", "watch", eid[:24], "--db", db_path,
             "--format", "json", "--interval", "0.05", "--timeout", "40"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(),
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert watch is not None and watch.stdout is not None
            for line in watch.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[dict[str, Any]] = []

        def read_until_seq(seq: int, timeout: float = 20) -> None:
            deadline = time.monotonic() + timeout
            while not seen or seen[-1]["seq"] < seq:
                try:
                    line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    raise AssertionError(f"watch printed no seq {seq} within {timeout}s; saw {len(seen)}") from None
                if line is None:
                    raise AssertionError(f"watch ended before seq {seq}; saw {[e['seq'] for e in seen]}")
                if line.strip():
                    seen.append(json.loads(line))

        # What existed when watch started: execution.started and the first step.started.
        read_until_seq(1)
        assert [e["type"] for e in seen[:2]] == ["execution.started", "step.started"]
        # Everything from here on lands after watch started; release the steps one by one.
        (d / "go0").touch()
        read_until_seq(3)
        (d / "go1").touch()
        read_until_seq(5)
        (d / "go2").touch()
        assert child.wait(timeout=30) == 0, (tmp_path / "child.err").read_text()
        rc = watch.wait(timeout=30)
        while True:  # drain what is left
            line = lines.get(timeout=10)
            if line is None:
                break
            if line.strip():
                seen.append(json.loads(line))
        assert rc == 0, watch.stderr.read() if watch.stderr else ""
    finally:
        for p in (child, watch):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if watch is not None:
            for stream in (watch.stdout, watch.stderr):
                if stream is not None:
                    stream.close()
        child_err.close()

    assert [e["seq"] for e in seen] == list(range(8))
    assert [e["type"] for e in seen] == [
        "execution.started",
        "step.started", "step.ended",
        "step.started", "step.ended",
        "step.started", "step.ended",
        "execution.ended",
    ]
    assert seen[-1]["attrs"]["status"] == "succeeded"
    assert_chain(seen, eid)
    s = open_store(db_path, create=False)
    try:
        assert [e.hash.hex() for e in s.events(eid)] == [e["hash"] for e in seen]
    finally:
        s.close()


def test_watch_of_a_finished_execution_prints_it_and_exits(ds: Dataset) -> None:
    out = _ok(ds.cli("executions", "watch", ds.prefix("ok2"), "--format", "json", "--timeout", "20"))
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert_chain(events, ds.ids["ok2"])
    assert events[-1]["type"] == "execution.ended"


# --- replay ---------------------------------------------------------------------------------


def test_replay_no_interactive_shows_inputs_and_outputs(ds: Dataset) -> None:
    out = _ok(ds.cli("executions", "replay", ds.prefix("ok1"), "--no-interactive"))
    # The workflow's inputs, the step's input, the tool's argument and its return value.
    assert "T-77" in out
    assert "find order" in out
    assert "ZX-4312" in out
    assert "Pelican-Express" in out
    for t in ("execution.started", "step.started", "step.ended", "execution.ended"):
        assert t in out
    assert "[Enter" not in out


def test_replay_without_a_tty_prints_everything(ds: Dataset) -> None:
    # Interactive is the default, but with stdin/stdout not terminals nothing waits.
    r = ds.cli("executions", "replay", ds.prefix("ok1"), input="q\n", timeout=30)
    out = _ok(r)
    assert "execution.ended" in out and "Pelican-Express" in out
    assert "[Enter" not in out


def _read_pty_until(fd: int, needle: str, buf: list[str], timeout: float = 20) -> bool:
    """Read from a pty master into ``buf`` until ``needle`` shows up in the (ANSI-stripped) text.

    Returns False at end of file."""
    deadline = time.monotonic() + timeout
    while needle not in ANSI_RE.sub("", "".join(buf)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} did not appear; got:\n{ANSI_RE.sub('', ''.join(buf))}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            return False
        if not chunk:
            return False
        buf.append(chunk.decode("utf-8", "replace"))
    return True


def test_replay_interactive_on_a_tty_quits_on_q(ds: Dataset) -> None:
    env = _cli_env()
    env.pop("CI", None)
    env["TERM"] = "dumb"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "execord", "executions", "replay", ds.prefix("ok1"), "--db", ds.db],
        stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
    )
    os.close(slave)
    buf: list[str] = []
    try:
        prompt = "[Enter: next, q: quit]"
        _read_pty_until(master, prompt, buf)
        text = ANSI_RE.sub("", "".join(buf))
        assert "execution.started" in text and "step.started" not in text
        buf.clear()
        os.write(master, b"\n")
        _read_pty_until(master, prompt, buf)
        text = ANSI_RE.sub("", "".join(buf))
        assert "step.started" in text and "plan" in text
        buf.clear()
        os.write(master, b"q\n")
        while _read_pty_until(master, "\x00never\x00", buf, timeout=20):
            pass
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    rest = ANSI_RE.sub("", "".join(buf))
    assert "Traceback" not in rest
    # It quit: the later events were never shown.
    assert "execution.ended" not in rest
    assert "Pelican-Express" not in rest


# --- export ---------------------------------------------------------------------------------


def test_export_writes_a_verifiable_record(ds: Dataset, tmp_path: Path) -> None:
    eid = ds.ids["ok1"]
    target = tmp_path / "incident.json"
    _ok(ds.cli("executions", "export", ds.prefix("ok1"), "-o", str(target)))
    doc = json.loads(target.read_text())
    assert {"format", "version", "execution", "seal", "events", "blobs"} <= doc.keys()
    assert isinstance(doc["format"], str) and doc["version"] == 1
    assert doc["execution"]["id"] == eid and doc["execution"]["status"] == "succeeded"

    events = doc["events"]
    assert_chain(events, eid)
    seal = doc["seal"]
    assert seal["event_count"] == len(events)
    assert seal["last_hash"] == events[-1]["hash"]
    assert seal["status"] == "succeeded"
    assert seal["events_root"] == events_root([bytes.fromhex(e["hash"]) for e in events]).hex()

    # Every blob an event points at is there, and its bytes hash to its digest.
    refs: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            if isinstance(v.get("$blob"), str):
                refs.add(v["$blob"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for e in events:
        walk(e["attrs"])
    assert refs and refs == set(doc["blobs"])
    for digest, blob in doc["blobs"].items():
        assert digest.startswith("sha256:")
        data = blob["data"].encode("utf-8")
        assert hashlib.sha256(data).hexdigest() == digest[len("sha256:"):]
        assert blob["size"] == len(data)
    texts = " ".join(b["data"] for b in doc["blobs"].values())
    assert "ZX-4312" in texts and "Pelican-Express" in texts


# --- demo and verify ------------------------------------------------------------------------


def test_demo_then_list_and_verify(cli: Any, db_path: str) -> None:
    out = _ok(cli("demo"))
    assert "6" in out
    with ThreadPoolExecutor(max_workers=4) as pool:
        f_list = pool.submit(cli, "executions", "list", "--format", "json")
        f_table = pool.submit(cli, "executions", "list")
        f_verify = pool.submit(cli, "verify")
        f_verify_json = pool.submit(cli, "verify", "--format", "json")
    rows = _json(f_list.result())
    assert len(rows) == 6
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["failed", "failed", "succeeded", "succeeded", "succeeded", "succeeded"]
    classes = sorted(r["failure_class"] for r in rows if r["failure_class"])
    assert classes == ["connector_failure", "logic_error"]
    assert all(r["sealed"] for r in rows)
    assert len({r["workflow"] for r in rows}) >= 3
    assert sum(r["totals"]["llm_calls"] for r in rows) > 0
    started = [r["started_at"] for r in rows]
    assert started == sorted(started, reverse=True)

    table = _ok(f_table.result())
    for r in rows:
        assert r["id"] in table

    s = open_store(db_path, create=False)
    try:
        n_events = sum(len(s.events(r["id"])) for r in rows)
    finally:
        s.close()
    verified = _ok(f_verify.result())
    assert f"verified 6 executions, {n_events} events, 6 seals" in verified
    assert "OK" in verified
    report = _json(f_verify_json.result())
    assert report["ok"] is True and report["problems"] == []
    assert (report["executions"], report["events"], report["seals"]) == (6, n_events, 6)


def _small_store(engine: Execord) -> list[str]:
    """Two executions written by the SDK; returns their ids."""

    @engine.tool
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"order_id": order_id, "status": "shipped"}

    ids = []
    for order in ("A-1", "A-2"):
        with engine.execution("support", inputs={"order": order}) as h:
            lookup_order(order)
        ids.append(h.id)
    engine.flush()
    return ids


def test_verify_detects_a_changed_byte(engine: Execord, cli: Any, db_path: str) -> None:
    ids = _small_store(engine)
    engine.close()
    assert _ok(cli("verify")).count("OK") == 1

    victim = ids[1]
    with closing(sqlite3.connect(db_path, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT seq, body FROM events WHERE execution_id = ? AND type = 'step.started'", (victim,)
        ).fetchall()
        assert len(rows) == 1
        seq, body = rows[0]
        assert b'"name":"lookup_order"' in body
        tampered = body.replace(b'"name":"lookup_order"', b'"name":"lookup_ordes"')
        assert len(tampered) == len(body) and tampered != body
        # The trigger refuses the change, until it is dropped from outside.
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute("UPDATE events SET body = ? WHERE execution_id = ? AND seq = ?", (tampered, victim, seq))
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET body = ? WHERE execution_id = ? AND seq = ?", (tampered, victim, seq))
        conn.commit()

    with ThreadPoolExecutor(max_workers=2) as pool:
        f_table = pool.submit(cli, "verify")
        f_json = pool.submit(cli, "verify", "--format", "json")
    r = f_table.result()
    both = r.stdout + r.stderr
    assert "Traceback" not in both
    assert r.returncode == 1, both
    assert victim in both and f"seq {seq}" in both
    assert ids[0] not in both  # the untouched execution is not blamed
    failing = [line for line in both.splitlines() if victim in line]
    assert failing and f"seq {seq}" in failing[0]

    rj = f_json.result()
    assert rj.returncode == 1, rj.stdout + rj.stderr
    report = json.loads(rj.stdout)
    assert report["ok"] is False
    assert [(p["execution_id"], p["seq"]) for p in report["problems"]] == [(victim, seq)]
    assert report["executions"] == 2


# --- bad input --------------------------------------------------------------------------------


@pytest.fixture
def small(engine: Execord) -> list[str]:
    ids = _small_store(engine)
    engine.close()
    return ids


@pytest.mark.parametrize(
    "command, given",
    [("get", "ffffffff-0000"), ("watch", "ffffffff-0000"), ("export", "ffffffff-0000"), ("timeline", "not-an-id")],
)
def test_unknown_id(small: list[str], cli: Any, command: str, given: str) -> None:
    assert_one_line_error(cli("executions", command, given), given)


def test_ambiguous_prefix(engine: Execord, cli: Any) -> None:
    ids = []
    for _ in range(3):
        with engine.execution("burst") as h:
            pass
        ids.append(h.id)
    engine.close()
    common = os.path.commonprefix(ids)
    assert common, ids  # UUIDv7: they share at least their leading timestamp bits
    with ThreadPoolExecutor(max_workers=2) as pool:
        f_get = pool.submit(cli, "executions", "get", common)
        f_tl = pool.submit(cli, "executions", "timeline", common[:1])
    line = assert_one_line_error(f_get.result(), common)
    assert any(i in line for i in ids)  # it says which executions it matches
    assert_one_line_error(f_tl.result())


def test_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "execord.db"
    with ThreadPoolExecutor(max_workers=2) as pool:
        rs = [
            pool.submit(run_cli, "verify", "--db", str(missing)),
            pool.submit(run_cli, "executions", "get", "01", env={"EXECORD_DB": str(missing)}),
        ]
    for f, code in zip(rs, (2, 1), strict=True):
        assert_one_line_error(f.result(), str(missing), code=code)
    assert not missing.exists() and not missing.parent.exists()


def test_corrupt_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all\n" + os.urandom(8192))
    before = junk.read_bytes()
    with ThreadPoolExecutor(max_workers=2) as pool:
        f_list = pool.submit(run_cli, "executions", "list", "--db", str(junk))
        f_verify = pool.submit(run_cli, "verify", "--db", str(junk))
    assert_one_line_error(f_list.result(), str(junk))
    assert_one_line_error(f_verify.result(), str(junk), code=2)
    assert junk.read_bytes() == before  # looking at it did not change it


def test_sqlite_database_that_is_not_execord(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
    assert_one_line_error(run_cli("executions", "list", "--db", str(other)), str(other))


def test_database_from_a_newer_schema(small: list[str], cli: Any, db_path: str) -> None:
    with closing(sqlite3.connect(db_path, timeout=10)) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
    with ThreadPoolExecutor(max_workers=2) as pool:
        f_list = pool.submit(cli, "executions", "list")
        f_get = pool.submit(cli, "executions", "get", small[0])
    assert_one_line_error(f_list.result(), "999")
    assert_one_line_error(f_get.result(), "999")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["executions", "list", "--since", "yesterday"], "yesterday"),
        (["executions", "list", "--until", "2026-13-45T99:00"], "2026-13-45T99:00"),
        (["executions", "list", "--label", "envprod"], "envprod"),
        (["executions", "list", "--failure-class", "bad_luck"], "bad_luck"),
        (["executions", "list", "--format", "xml"], "xml"),
        (["verify", "--format", "xml"], "xml"),
    ],
    ids=["since", "until-bad-iso", "label", "failure-class", "format-list", "format-verify"],
)
def test_bad_options(small: list[str], cli: Any, args: list[str], needle: str) -> None:
    assert_one_line_error(cli(*args), needle, code=2 if args[0] == "verify" else 1)


# --- `execord verify BUNDLE` starts with the verifier only ---------------------------------


def test_verify_bundle_imports_only_the_verifier(tmp_path: Path) -> None:
    """`execord verify BUNDLE --key PUB` loads neither the store, the SDK runtime, governance
    nor pydantic (typer's value conversion): an auditor's command starts in a fraction of the
    time. Every other command line still goes through typer."""
    missing = tmp_path / "nothing.zip"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    for extra in ([], ["--key", str(tmp_path / "k.pub")], ["-f", "json"], ["--format=json", "--pinned", "p.txt"]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "execord", "verify", str(missing), *extra],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2, r.stderr[-2000:]
        loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
        assert "execord.ledger._verify" in loaded
        heavy = sorted(m for m in loaded if m.split(".")[0] == "pydantic"
                       or m.split(".")[:2] in (["execord", "store"], ["execord", "runtime"], ["execord", "governance"]))
        assert not heavy, (extra, heavy)


def test_the_plain_verify_command_line_is_read_as_typer_reads_it() -> None:
    from execord.cli import _plain_verify

    assert _plain_verify(["verify", "b.zip"]) == {"bundle": "b.zip"}
    assert _plain_verify(["verify", "-k", "k.pub", "b.zip", "--format=json", "--pinned", "c.txt"]) == {
        "bundle": "b.zip", "key": "k.pub", "fmt": "json", "pinned": "c.txt"}
    assert _plain_verify(["verify", "b.zip", "--key=k.pub", "-f", "table"]) == {
        "bundle": "b.zip", "key": "k.pub", "fmt": "table"}
    for other in (["verify"], ["verify", "--key", "k.pub"], ["verify", "b.zip", "--deep"], ["verify", "--help"],
                  ["verify", "b.zip", "c.zip"], ["verify", "b.zip", "--key"], ["verify", "b.zip", "-k", "-x"],
                  ["verify", "b.zip", "--key", "a", "--key", "b"], ["verify", "b.zip", "--db", "x.db"],
                  ["verify", "b.zip", "-kk.pub"], ["executions", "list"], ["verify", "", "--key", "k"]):
        assert _plain_verify(other) is None, other


def test_verify_output_is_the_same_through_either_path(tmp_path: Path) -> None:
    """The same bundle checked through the plain path and through typer (a ``--`` before the
    bundle sends the command line to typer) prints the same report."""
    from execord.ledger import _log
    from execord.ledger._bundle import write_bundle
    from execord.ledger._note import Signer

    signer = Signer.generate("test.example/cli")
    store = open_store(str(tmp_path / "s.db"))
    eid = uuid7()
    e0 = build_event(eid, 0, EXECUTION_STARTED, format_ts(now_us()), {
        "agent": {"name": "a", "version": None, "roles": []}, "workflow": {"name": "w", "version": None},
        "execution_type": "workflow", "parent_execution_id": None, "labels": {}, "inputs": None,
        "governance_version": None, "sdk": {"name": "t", "version": "0"}, "host": {"hostname": "h", "pid": 1},
        "lease_s": 30}, genesis_hash(eid))
    e1 = build_event(eid, 1, EXECUTION_ENDED, format_ts(now_us()), {
        "status": "succeeded", "error": None, "halt": None, "cancel": None, "failure_class": None,
        "totals": dict.fromkeys(TOTALS_KEYS | {"duration_ms"}, 0)}, e0.hash)
    store.append([e0, e1], [])
    _log.make_checkpoint(store, signer)
    bundle = tmp_path / "b.zip"
    write_bundle(store, [eid], bundle)
    store.close()
    pub = tmp_path / "k.pub"
    pub.write_text(signer.verifier.text() + "\n")
    plain = run_cli("verify", str(bundle), "--key", str(pub))
    typed = run_cli("verify", "--key", str(pub), "--", str(bundle))
    assert plain.returncode == typed.returncode == 0, plain.stderr + typed.stderr
    norm = re.compile(r"in \d+\.\d+s")
    assert norm.sub("", plain.stdout) == norm.sub("", typed.stdout)
    assert plain.stdout.startswith(f"VERIFIED {bundle}: 1 executions, 2 events")
