"""Server mode with real processes and real signals: `execord serve` children over PostgreSQL
(two replicas on one database) or an SQLite file, agent children recording through them, and
SIGKILL of either side (DESIGN §2 ``cancelled``/``interrupted``, §6 server mode, spool, LISTEN/NOTIFY)."""

from __future__ import annotations

import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _server import ADMIN_KEY, ServerProcess, free_port, sdk_env

from execord.store import open_store, verify_store

pytestmark = pytest.mark.slow

# The agent: `agent.py WORKFLOWS STEPS SLEEP [--gate FILE] [--hang]`. Prints `EID <id>` when each
# workflow starts and `DONE <id>` when it returned; `CANCELLED` (exit 3) on execord.Cancelled;
# `FLUSHED <bool>` after execord.flush. --gate: workflows after the first wait for FILE to
# exist. --hang: print HANG after the workflows and sleep (without flushing) until killed.
AGENT = '''
import os, sys, time
import execord

execord.init(agent="worker")
workflows, steps, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
gate = sys.argv[sys.argv.index("--gate") + 1] if "--gate" in sys.argv else None


@execord.tool
def work(i: int) -> int:
    if pause:
        time.sleep(pause)
    return i


@execord.workflow
def job(n: int) -> int:
    eid = execord.current().id
    print("EID", eid, flush=True)
    for i in range(n):
        work(i)
    print("DONE", eid, flush=True)
    return n


for w in range(workflows):
    if w and gate:
        while not os.path.exists(gate):
            time.sleep(0.02)
    try:
        job(steps)
    except execord.Cancelled as exc:
        print("CANCELLED", exc, flush=True)
        sys.exit(3)
if "--hang" in sys.argv:
    print("HANG", flush=True)
    time.sleep(3600)
print("FLUSHED", execord.flush(60), flush=True)
'''


class Agent:
    """An agent child process whose stdout lines are collected as they come."""

    def __init__(self, tmp: Path, env: dict[str, str], *args: str):
        script = tmp / "agent.py"
        if not script.exists():
            script.write_text(AGENT)
        self.stderr = tmp / f"agent-{time.monotonic_ns()}.err"
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def _take(self, block: float) -> bool:
        """Move one line (waiting up to ``block`` s) into ``lines``; False at end of output."""
        try:
            line = self._q.get(timeout=block) if block > 0 else self._q.get_nowait()
        except queue.Empty:
            return True
        if line is None:
            self._q.put(None)  # stays the end marker
            return False
        self.lines.append(line)
        return True

    def wait_line(self, prefix: str, timeout: float = 30, count: int = 1) -> list[str]:
        """Block until ``count`` stdout lines start with ``prefix``; their rest."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [ln[len(prefix):].strip() for ln in self.lines if ln.startswith(prefix)]
            if len(hits) >= count:
                return hits
            left = deadline - time.monotonic()
            if left <= 0 or not self._take(min(left, 0.1)):
                raise AssertionError(f"the agent did not print {prefix!r} x{count}; rc={self.proc.poll()}\n"
                                     + "\n".join(self.lines) + "\n" + self.err())

    def finish(self, timeout: float = 90) -> int:
        """Wait for the process to exit; every line it printed is in ``lines``."""
        rc = self.proc.wait(timeout=timeout)
        while self._take(1.0):
            pass
        return rc

    def ids(self) -> list[str]:
        while not self._q.empty() and self._take(0):
            pass
        return [ln.split()[1] for ln in self.lines if ln.startswith("EID ")]

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def _exists(c: httpx.Client, eid: str) -> bool:
    return c.get(f"/api/v1/executions/{eid}").status_code == 200


def _summary(c: httpx.Client, eid: str) -> dict[str, Any]:
    r = c.get(f"/api/v1/executions/{eid}")
    assert r.status_code == 200, r.text
    return dict(r.json()["execution"])


def _events(c: httpx.Client, eid: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/executions/{eid}/events", params={"limit": 10_000})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _sse(r: httpx.Response) -> Iterator[dict[str, Any]]:
    """The events of an SSE response (comments skipped), each with its arrival time."""
    msg: dict[str, Any] = {}
    for line in r.iter_lines():
        if not line:
            if "event" in msg or "data" in msg:
                msg["t"] = time.time()
                if "data" in msg:
                    msg["data"] = orjson.loads(msg["data"])
                yield msg
            msg = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            msg[field] = msg.get(field, "") + ("\n" if field == "data" and field in msg else "") + value


def _stream(c: httpx.Client, eid: str, last: int | None = None) -> Any:
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    return c.stream("GET", f"/api/v1/unified/executions/{eid}/stream", headers=headers,
                    timeout=httpx.Timeout(30, read=20))


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _verified(target: str) -> None:
    store = open_store(target)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert report.ok, report.problems


# -- 1. two replicas on one PostgreSQL: stream fan-out and cancel across replicas -------------------


@pytest.mark.timeout(90)
def test_two_replicas_stream_and_cancel_across_servers(pg_url: str, tmp_path: Path) -> None:
    a = ServerProcess(pg_url, cwd=tmp_path)
    b = ServerProcess(pg_url, cwd=tmp_path)
    a.start()  # one after the other: both bootstrap the same admin key into the empty database
    b.start()
    agent = None
    try:
        with b.client() as cb:
            r = cb.post("/api/v1/keys", json={"project": "default", "scopes": ["operate", "read"], "name": "oncall"})
            assert r.status_code == 201, r.text
            oncall = r.json()["key"]
            # The agent records through A only.
            agent = Agent(tmp_path, sdk_env(a.url, ADMIN_KEY, tmp_path / "spool", EXECORD_HEARTBEAT_S="1"),
                          "1", "30", "0.2")
            eid = agent.wait_line("EID ")[0]
            _until(lambda: _exists(cb, eid), 15, "the execution to reach the database")

            got: list[dict[str, Any]] = []
            cancel_at = None
            with _stream(cb, eid) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                opened = time.time()
                for msg in _sse(r):
                    got.append(msg)
                    if cancel_at is None and msg.get("id") is not None and int(msg["id"]) >= 20:
                        with httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {oncall}"}) as op:
                            rc = op.post(f"/api/v1/unified/executions/{eid}/cancel",
                                         json={"reason": "test: stop now"})
                        assert rc.status_code == 202, rc.text
                        cancel_at = time.time()
            ended_at = time.time()
        assert cancel_at is not None, [m.get("event") for m in got]

        # The stream on B: the status first, then every event of the chain, in order, once.
        assert got[0]["event"] == "status" and "id" not in got[0]
        assert got[0]["data"]["id"] == eid and got[0]["data"]["status"] == "running"
        records = got[1:]
        seqs = [int(m["id"]) for m in records]
        assert seqs == list(range(len(seqs))), seqs
        assert [m["event"] for m in records] == [m["data"]["type"] for m in records]
        assert all(m["data"]["seq"] == s for m, s in zip(records, seqs, strict=True))
        assert records[-1]["event"] == "execution.ended"
        # ... delivered live as A stored them, not in one burst at the end: events appended after
        # the stream opened arrive on B within a fraction of a second (NOTIFY wakes B; its own
        # fallback re-read is only once a second), spread over the run.
        live = [m for m in records if _ts(m["data"]["ts"]) > opened + 0.1]
        assert len(live) >= 8, len(live)
        lag = [m["t"] - _ts(m["data"]["ts"]) for m in live]
        assert statistics.median(lag) < 0.3, sorted(lag)
        assert live[-1]["t"] - live[0]["t"] > 1.0

        # The cancel POSTed to B reached the agent attached to A (via its heartbeat to A).
        assert agent.finish(30) == 3, agent.lines + [agent.err()]
        assert any(ln.startswith("CANCELLED") and "test: stop now" in ln for ln in agent.lines), agent.lines
        assert ended_at - cancel_at < 6
        with a.client() as ca:
            chain = _events(ca, eid)
            s = _summary(ca, eid)
        assert [e["seq"] for e in chain] == seqs  # the stream carried exactly the stored chain
        types = [e["type"] for e in chain]
        assert types.count("cancel.requested") == 1
        req = chain[types.index("cancel.requested")]["attrs"]
        assert req["by"] == "key:oncall" and req["reason"] == "test: stop now"
        end = chain[-1]["attrs"]
        assert end["status"] == "cancelled"
        assert end["cancel"]["by"] == "key:oncall" and end["cancel"]["reason"] == "test: stop now"
        assert s["status"] == "cancelled" and s["failure_class"] == "cancelled" and s["sealed"]
        assert s["cancel"]["by"] == "key:oncall" and s["cancel"]["reason"] == "test: stop now"
        assert types.count("step.started") < 30  # it stopped early
        # Cancelling again is refused: it has ended.
        with b.client() as cb:
            assert cb.post(f"/api/v1/unified/executions/{eid}/cancel", json={"reason": "again"}).status_code == 409
        _verified(pg_url)
    finally:
        if agent is not None:
            agent.kill()
        a.stop()
        b.stop()


# -- 2. SIGKILL the server while four agents send: nothing lost, nothing doubled --------------------


@pytest.mark.timeout(150)
def test_server_sigkill_while_agents_send_loses_and_duplicates_nothing(store_url: str, tmp_path: Path) -> None:
    workflows, steps = 5, 200
    server = ServerProcess(store_url, cwd=tmp_path)
    server.start()
    spool = tmp_path / "spool"
    env = sdk_env(server.url, ADMIN_KEY, spool, EXECORD_HEARTBEAT_S="1", EXECORD_LEASE_S="120")
    # A short pause per step keeps them sending for several seconds, also on a fast machine.
    agents = [Agent(tmp_path, env, str(workflows), str(steps), "0.004") for _ in range(4)]
    try:
        for ag in agents:  # each has been admitted once (later admissions may fall back locally)
            ag.wait_line("EID ", timeout=30)
        time.sleep(0.5)
        assert all(ag.proc.poll() is None for ag in agents), "the agents finished before the crash"
        server.kill()
        time.sleep(1.5)
        assert all(ag.proc.poll() is None for ag in agents), "the agents must outlive the outage"
        server.start()
        for ag in agents:
            assert ag.finish(90) == 0, ag.lines + [ag.err()]
            assert "FLUSHED True" in ag.lines, ag.lines + [ag.err()]

        ids = [eid for ag in agents for eid in ag.ids()]
        assert len(ids) == len(set(ids)) == 4 * workflows
        with server.client() as c:
            listed = c.get("/api/v1/executions", params={"limit": 100}).json()["items"]
            assert sorted(x["id"] for x in listed) == sorted(ids)  # and no other execution
            for eid in ids:
                detail = c.get(f"/api/v1/executions/{eid}").json()
                s, step_rows = detail["execution"], detail["steps"]
                assert s["status"] == "succeeded" and s["sealed"], s
                assert len(step_rows) == steps
                assert len({st["step_id"] for st in step_rows}) == steps
                assert all(st["status"] == "ok" for st in step_rows)
                chain = _events(c, eid)
                expected = 1 + 2 * len(step_rows) + 1
                assert [e["seq"] for e in chain] == list(range(expected)), eid
                assert detail["event_count"] == expected
                types = [e["type"] for e in chain]
                assert types[0] == "execution.started" and types[-1] == "execution.ended"
                assert types.count("step.started") == types.count("step.ended") == steps
        assert not list(spool.glob("*.spool")), list(spool.iterdir())
        server.stop()
        _verified(store_url)
    finally:
        for ag in agents:
            ag.kill()
        server.stop()


# -- 3. SIGKILL an agent: the reaper seals its execution interrupted within one lease ----------------


@pytest.mark.timeout(60)
def test_agent_sigkill_is_sealed_interrupted_by_the_reaper(pg_url: str, tmp_path: Path) -> None:
    lease, reap = 3, 0.5
    server = ServerProcess(pg_url, cwd=tmp_path, reap_interval=reap)
    server.start()
    env = sdk_env(server.url, ADMIN_KEY, tmp_path / "spool", EXECORD_LEASE_S=str(lease), EXECORD_HEARTBEAT_S="1")
    agent = Agent(tmp_path, env, "1", "1000", "0.02")
    try:
        with server.client() as c:
            eid = agent.wait_line("EID ")[0]
            _until(lambda: _exists(c, eid), 15, "the execution to reach the server")
            # Alive past two leases (and past the reaper's start-up grace): heartbeats keep it.
            started = _ts(_summary(c, eid)["started_at"])
            time.sleep(max(0.0, started + 2 * lease + 0.5 - time.time()))
            assert _summary(c, eid)["status"] == "running"
            assert agent.proc.poll() is None
            before = len(_events(c, eid))
            agent.kill()
            killed = time.monotonic()

            def sealed() -> dict[str, Any] | None:
                s = _summary(c, eid)
                return s if s["sealed"] else None

            s = _until(sealed, lease + reap + 3, "the reaper to seal the execution")
            took = time.monotonic() - killed
            assert took <= lease + reap + 1.5, took
            assert s["status"] == "interrupted" and s["failure_class"] == "interrupted", s
            chain = _events(c, eid)
        assert [e["seq"] for e in chain] == list(range(len(chain)))
        assert len(chain) > before
        end = chain[-1]
        assert end["type"] == "execution.ended" and end["attrs"]["status"] == "interrupted"
        assert [e["type"] for e in chain].count("execution.ended") == 1
        _verified(pg_url)
    finally:
        agent.kill()
        server.stop()


# -- 4. SSE resume with Last-Event-ID --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stream_resumes_after_last_event_id(db_path: str, tmp_path: Path) -> None:
    server = ServerProcess(db_path, cwd=tmp_path)
    server.start()
    agent = Agent(tmp_path, sdk_env(server.url, ADMIN_KEY, tmp_path / "spool"), "1", "40", "0.05")
    try:
        with server.client() as c:
            eid = agent.wait_line("EID ")[0]
            _until(lambda: _exists(c, eid), 15, "the execution to reach the server")
            first: list[dict[str, Any]] = []
            with _stream(c, eid) as r:
                for msg in _sse(r):
                    first.append(msg)
                    if msg.get("id") == "10":
                        break  # disconnect mid-run
            assert first[0]["event"] == "status"
            assert [int(m["id"]) for m in first[1:]] == list(range(11))
            assert agent.proc.poll() is None, "the run ended before the reconnect: nothing was resumed live"

            second: list[dict[str, Any]] = []
            with _stream(c, eid, last=10) as r:
                second = list(_sse(r))
            assert second[0]["event"] == "status"
            seqs = [int(m["id"]) for m in second[1:]]
            assert seqs[0] == 11
            assert seqs == list(range(11, 11 + len(seqs))), seqs
            assert second[-1]["event"] == "execution.ended"
            assert agent.finish(30) == 0, agent.lines + [agent.err()]
            stored = _events(c, eid)
            assert [int(m["id"]) for m in first[1:] + second[1:]] == [e["seq"] for e in stored]
            assert [m["data"]["hash"] for m in first[1:] + second[1:]] == [e["hash"] for e in stored]

            # Resuming after the end: the status, then the stream closes with nothing repeated.
            with _stream(c, eid, last=stored[-1]["seq"]) as r:
                after = list(_sse(r))
            assert [m["event"] for m in after] == ["status"]
            assert after[0]["data"]["status"] == "succeeded"
    finally:
        agent.kill()
        server.stop()


# -- 5. a spool left by a crashed agent is shipped by the next process --------------------------------


@pytest.mark.timeout(60)
def test_orphan_spool_of_a_killed_agent_is_shipped_by_the_next_process(db_path: str, tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(db_path, cwd=tmp_path, port=port)
    spool = tmp_path / "spool"
    gate = tmp_path / "server-is-down"
    env = sdk_env(server.url, ADMIN_KEY, spool, EXECORD_HEARTBEAT_S="1")
    server.start()
    # The first workflow is admitted by the server (an agent with no server at all cannot start
    # one: admission needs it once); the second runs while the server is down.
    first = Agent(tmp_path, env, "2", "50", "0", "--gate", str(gate), "--hang")
    second = None
    try:
        admitted = first.wait_line("DONE ")[0]
        with server.client() as c:
            _until(lambda: _summary(c, admitted)["sealed"], 15, "the first workflow to be shipped")
        server.kill()
        gate.touch()
        first.wait_line("HANG", timeout=30)
        orphan = first.ids()[1]
        spools = list(spool.glob("*.spool"))
        assert len(spools) == 1 and spools[0].stat().st_size > 0, spools
        assert f"-{first.proc.pid}-" in spools[0].name
        first.kill()  # SIGKILL: its spool is left behind, unshipped

        server.start()
        with server.client() as c:
            assert not _exists(c, orphan)  # its events exist only in the orphan spool
            second = Agent(tmp_path, env, "1", "3", "0")
            assert second.finish(60) == 0, second.lines + [second.err()]
            assert "FLUSHED True" in second.lines
            r = c.get(f"/api/v1/executions/{orphan}")
            assert r.status_code == 200, "the orphan spool was not shipped"
            detail = r.json()
            s = detail["execution"]
            assert s["status"] == "succeeded" and s["sealed"] and s["agent"] == "worker", s
            assert len(detail["steps"]) == 50
            chain = _events(c, orphan)
            assert [e["seq"] for e in chain] == list(range(1 + 2 * 50 + 1))
            assert _summary(c, second.ids()[0])["status"] == "succeeded"
        leftovers = [p.name for p in spool.iterdir() if p.is_file()]
        assert leftovers == [], leftovers  # the orphan (and its .ack) is gone; so is the second's own
        server.stop()
        _verified(db_path)
    finally:
        first.kill()
        if second is not None:
            second.kill()
        server.stop()
