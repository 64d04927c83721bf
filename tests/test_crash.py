"""Crash safety (issue #2 §8): real processes, real signals, real SQLite files.

A child process records a workflow and is SIGKILLed inside a step; the next `execord`
process that opens the store (the CLI, or the SDK) seals the execution ``interrupted``,
keeping every event written before the kill. Executions of live processes are never
touched; a recorded pid that now belongs to another process counts as dead.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from execord.record import events_root
from execord.store import open_store

pytestmark = pytest.mark.slow

# A workflow: an agent step holding two tool calls and a log, then a tool that announces it
# is running (the "ready" marker carries the execution id), then waits for a "go" file.
_CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    import execord

    db, d = sys.argv[1], pathlib.Path(sys.argv[2])
    execord.init(agent="crash-agent", db=db)

    @execord.tool
    def fetch(n):
        return {"n": n, "payload": "fetched-%d" % n}

    @execord.tool
    def hang(reason):
        tmp = d / "ready.tmp"
        tmp.write_text(execord.current().id)
        tmp.rename(d / "ready")
        deadline = time.monotonic() + 60
        while not (d / "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("nobody said go")
            time.sleep(0.01)
        return "released"

    @execord.workflow(name="crashy")
    def crashy(ticket):
        with execord.step("gather", kind="agent"):
            fetch(1)
            fetch(2)
            execord.log("gathered", count=2)
        return hang("wait for the test")

    print(crashy("T-1"), flush=True)
    """
)

# What the store must hold of that workflow when the child is killed inside `hang`.
_BEFORE_KILL = [
    ("execution.started", None),
    ("step.started", "gather"),
    ("step.started", "fetch"),
    ("step.ended", None),
    ("step.started", "fetch"),
    ("step.ended", None),
    ("log", None),
    ("step.ended", None),
    ("step.started", "hang"),
]

_REOPEN = textwrap.dedent(
    """
    import os, sys
    import execord

    execord.init(agent="second-agent", db=sys.argv[1])

    @execord.workflow(name="after-the-crash")
    def after():
        return os.getpid()

    after()
    execord.shutdown()
    """
)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}


def _cli(db: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execord", *args, "--db", db],
        capture_output=True, text=True, env=_env(), timeout=timeout,
    )


def _list(db: str) -> dict[str, dict[str, Any]]:
    r = _cli(db, "executions", "list", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    return {row["id"]: row for row in json.loads(r.stdout)}


class Child:
    """The crash child: started, waited on until it is inside `hang`."""

    def __init__(self, tmp_path: Path, db: str):
        self.dir = tmp_path / "ctl"
        self.dir.mkdir(exist_ok=True)
        script = tmp_path / "child.py"
        script.write_text(_CHILD)
        self.err_path = tmp_path / "child.err"
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(script), db, str(self.dir)],
            env=_env(), stdout=subprocess.PIPE, stderr=self._err, text=True,
        )
        self.execution_id = self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> str:
        ready = self.dir / "ready"
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited {self.proc.returncode}: {self.err_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"child not ready within {timeout}s: {self.err_path.read_text()}")
            time.sleep(0.01)
        return ready.read_text()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=20) == -signal.SIGKILL

    def release(self) -> tuple[int, str]:
        (self.dir / "go").touch()
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


@contextmanager
def child_in_step(tmp_path: Path, db: str) -> Iterator[Child]:
    c = Child(tmp_path, db)
    try:
        yield c
    finally:
        c.close()


def _stored(db: str, execution_id: str) -> tuple[list[Any], dict[str, Any] | None, dict[str, Any]]:
    """(events, seal, summary) as an independent reader sees them (opening does not reap)."""
    s = open_store(db, create=False)
    try:
        return s.events(execution_id), s.get_seal(execution_id), s.get_execution(execution_id)
    finally:
        s.close()


def _assert_interrupted_and_complete(db: str, eid: str) -> list[Any]:
    events, seal, summary = _stored(db, eid)
    assert summary["status"] == "interrupted"
    assert summary["failure_class"] == "interrupted"
    assert summary["sealed"] is True
    # Every event written before the kill is still there, in order, then the seal's end event.
    got = [(e.type, e.attrs.get("name") if e.type == "step.started" else None) for e in events[:-1]]
    assert got == _BEFORE_KILL
    assert [e.seq for e in events] == list(range(len(_BEFORE_KILL) + 1))
    end = events[-1]
    assert end.type == "execution.ended"
    assert end.attrs["status"] == "interrupted"
    assert end.attrs["failure_class"] == "interrupted"
    # The fetches had finished before the kill: their outputs were committed.
    fetch_outputs = [e for e in events if e.type == "step.ended" and e.attrs["status"] == "ok"]
    assert len(fetch_outputs) == 3
    # The step it died in is named; the totals count what finished.
    hang_id = events[len(_BEFORE_KILL) - 1].step_id
    assert summary["error"]["step_id"] == hang_id
    assert summary["totals"]["steps"] == 3 and summary["totals"]["tool_calls"] == 2
    # The seal covers exactly these events.
    assert seal is not None
    assert seal["status"] == "interrupted"
    assert seal["event_count"] == len(events)
    assert seal["last_hash"] == events[-1].hash.hex()
    assert seal["events_root"] == events_root([e.hash for e in events]).hex()
    return events


def test_sigkill_in_a_step_then_the_cli_seals_it_interrupted(tmp_path: Path, db_path: str) -> None:
    with child_in_step(tmp_path, db_path) as child:
        eid = child.execution_id
        child.kill()
        # Nothing has reaped it yet: the killed execution still says running.
        events, seal, summary = _stored(db_path, eid)
        assert summary["status"] == "running" and seal is None
        assert [e.type for e in events] == [t for t, _ in _BEFORE_KILL]

        rows = _list(db_path)  # a new `execord` process opens the store: it reaps
        assert rows[eid]["status"] == "interrupted"
        assert rows[eid]["failure_class"] == "interrupted"
        assert rows[eid]["sealed"] is True
        assert str(child.proc.pid) in rows[eid]["error"]["message"]

    end = _assert_interrupted_and_complete(db_path, eid)[-1]
    assert end.attrs["sealed_by"]["pid"] != child.proc.pid

    r = _cli(db_path, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified 1 executions" in r.stdout and "1 seals" in r.stdout

    # Sealed once: a later reader does not add a second end.
    rows = _list(db_path)
    assert rows[eid]["status"] == "interrupted"
    assert len(_stored(db_path, eid)[0]) == len(_BEFORE_KILL) + 1


def test_sigkill_then_the_sdk_reopening_the_store_seals_it(tmp_path: Path, db_path: str) -> None:
    with child_in_step(tmp_path, db_path) as child:
        eid = child.execution_id
        child.kill()

    script = tmp_path / "reopen.py"
    script.write_text(_REOPEN)
    second = subprocess.run([sys.executable, str(script), db_path], capture_output=True, text=True,
                            env=_env(), timeout=60)
    assert second.returncode == 0, second.stderr

    events = _assert_interrupted_and_complete(db_path, eid)
    # The SDK process sealed it (not some CLI run): its pid signs the end event.
    sealer = events[-1].attrs["sealed_by"]["pid"]
    s = open_store(db_path, create=False)
    try:
        others = [r for r in s.list_executions() if r["id"] != eid]
        assert len(others) == 1
        after = others[0]
        assert after["workflow"] == "after-the-crash" and after["status"] == "succeeded"
        after_events = s.events(after["id"])
    finally:
        s.close()
    assert after_events[0].attrs["host"]["pid"] == sealer

    r = _cli(db_path, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified 2 executions" in r.stdout


def test_a_live_process_is_never_touched(tmp_path: Path, db_path: str) -> None:
    with child_in_step(tmp_path, db_path) as child:
        eid = child.execution_id
        # The CLI reaps on opening: the live child's execution stays running.
        rows = _list(db_path)
        assert rows[eid]["status"] == "running"
        assert rows[eid]["sealed"] is False
        assert rows[eid]["ended_at"] is None and rows[eid]["failure_class"] is None
        # And so does the SDK of another process opening the store.
        script = tmp_path / "reopen.py"
        script.write_text(_REOPEN)
        other = subprocess.run([sys.executable, str(script), db_path], capture_output=True, text=True,
                               env=_env(), timeout=60)
        assert other.returncode == 0, other.stderr
        events, seal, summary = _stored(db_path, eid)
        assert summary["status"] == "running" and seal is None
        assert events[-1].type == "step.started"

        rc, out = child.release()
        assert rc == 0, child.err_path.read_text()
        assert out.strip() == "released"

    events, seal, summary = _stored(db_path, eid)
    assert summary["status"] == "succeeded" and summary["failure_class"] is None
    assert seal is not None and seal["status"] == "succeeded"
    types = [e.type for e in events]
    assert "execution.ended" in types and types.count("execution.ended") == 1
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].attrs["status"] == "succeeded"

    r = _cli(db_path, "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_reused_pid_counts_as_dead(tmp_path: Path, db_path: str) -> None:
    with child_in_step(tmp_path, db_path) as child:
        eid = child.execution_id
        with closing(sqlite3.connect(db_path, timeout=10)) as conn:
            (recorded,) = conn.execute("SELECT proc_start FROM executions WHERE id = ?", (eid,)).fetchone()
            assert recorded, "the execution must record its process's start time"
            # The pid is alive, but (as far as the record says) it started at another time:
            # it is some other process that got the same pid.
            conn.execute("UPDATE executions SET proc_start = ? WHERE id = ?", (str(int(recorded) + 12345), eid))
            conn.commit()
        assert child.proc.poll() is None  # the process with that pid is still running

        rows = _list(db_path)
        assert rows[eid]["status"] == "interrupted"
        assert rows[eid]["failure_class"] == "interrupted"
        assert str(child.proc.pid) in rows[eid]["error"]["message"]
        child.kill()

    _assert_interrupted_and_complete(db_path, eid)
    r = _cli(db_path, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
