"""Server mode of the SDK: the spool, the shipper, a server that is away, the CLI through it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _server import ADMIN_KEY, free_port, live_server, sdk_env

import execord
from execord.errors import ConfigError, RecordError
from execord.runtime import Execord
from execord.store import open_store, verify_store


def _agent(url: str, spool: Path, **kw: Any) -> Execord:
    return Execord(agent="spooler", url=url, api_key=kw.pop("api_key", ADMIN_KEY), spool_dir=str(spool),
                   heartbeat_s=1, **kw)


def _job(ex: Execord, steps: int, workflow: str = "job") -> str:
    @ex.tool
    def work(i: int) -> int:
        return i

    with ex.execution(workflow) as h:
        for i in range(steps):
            work(i)
    return h.id


def test_server_mode_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="EXECORD_API_KEY"):
        Execord(url="http://127.0.0.1:1")


def test_events_wait_in_the_spool_while_the_server_is_away_and_none_is_lost(db_path: str, tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spool = tmp_path / "spool"
    with live_server(db_path, port=port):
        ex = _agent(url, spool)
        first = _job(ex, 2)  # admission works once: the version is cached for when the server is away
        assert ex.flush(10)
    caplog.set_level(logging.WARNING, logger="execord")
    away = [_job(ex, 5) for _ in range(3)]  # the server is down: everything goes to the spool
    assert not ex.flush(0.5)
    assert ex.store.spool.pending() > 0
    assert any("cannot be reached" in r.getMessage() for r in caplog.records)
    with live_server(db_path, port=port) as live:
        assert ex.flush(20)
        for eid in [first, *away]:
            s = live.store.get_execution(eid)
            assert s["status"] == "succeeded" and s["totals"]["steps"] in (2, 5)
            assert [e.seq for e in live.store.events(eid)] == list(range(12 if eid != first else 6))
        assert verify_store(live.store).ok
    assert ex.store.spool.pending() == 0 and ex.store.spool.size == 0  # reclaimed once shipped
    ex.close()


def test_a_host_that_never_reached_the_server_does_not_run_ungoverned(tmp_path: Path) -> None:
    ex = _agent(f"http://127.0.0.1:{free_port()}", tmp_path / "spool")
    with pytest.raises(RecordError, match="Admission needs the server once"):
        with ex.execution("first"):
            pass
    ex.close()


def test_a_full_spool_stops_governed_actions_and_keeps_what_it_holds(db_path: str, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with live_server(db_path, port=port):
        ex = _agent(url, tmp_path / "spool", spool_max_bytes=20_000)
        _job(ex, 1)
        assert ex.flush(10)
    caplog.set_level(logging.WARNING, logger="execord")

    @ex.tool
    def work(i: int) -> int:
        return i

    ran = []
    with pytest.raises(RecordError, match="EXECORD_SPOOL_MAX_BYTES"):
        with ex.execution("filling") as h:
            for i in range(10_000):
                work(i)
                ran.append(i)
    assert any("full" in r.getMessage() for r in caplog.records), "no warning before the bound"
    with live_server(db_path, port=port) as live:
        assert ex.flush(20)
        steps = [e for e in live.store.events(h.id) if e.type == "step.started"]
        # Every step that ran was recorded; the one refused by the full spool did not run.
        assert len(steps) == len(ran) > 0
    ex.close()


AGENT = """
import sys, execord
execord.init(agent="child")

@execord.tool
def work(i: int) -> int:
    return i

@execord.workflow
def job(n: int) -> int:
    for i in range(n):
        work(i)
    return n

print(job(int(sys.argv[1])))
"""


def test_a_process_flushes_at_exit_and_leaves_no_spool_behind(db_path: str, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    spool = tmp_path / "spool"
    with live_server(db_path) as live:
        r = subprocess.run([sys.executable, str(script), "7"], env=sdk_env(live.url, ADMIN_KEY, spool),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rows = live.store.list_executions()
        assert len(rows) == 1 and rows[0]["status"] == "succeeded" and rows[0]["totals"]["steps"] == 7
    assert list(spool.glob("*.spool")) == []


def test_the_cli_reads_and_acts_through_the_server(db_path: str, tmp_path: Path) -> None:
    with live_server(db_path) as live:
        ex = _agent(live.url, tmp_path / "spool")
        eid = _job(ex, 3, workflow="billing")
        ex.flush(10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
        env.update({"EXECORD_URL": live.url, "EXECORD_API_KEY": live.key("read", "operate")})

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "execord", *args], env=env, capture_output=True,
                                  text=True, timeout=60)

        listed = cli("executions", "list", "--workflow", "billing", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        import json

        assert [r["id"] for r in json.loads(listed.stdout)] == [eid]
        got = cli("executions", "get", eid[:13], "--format", "json")
        assert json.loads(got.stdout)["event_count"] == 8
        timeline = cli("executions", "timeline", eid, "--format", "json")
        assert [e["seq"] for e in json.loads(timeline.stdout)] == list(range(8))
        late = cli("executions", "cancel", eid, "--reason", "too late")
        assert late.returncode == 1 and late.stderr.startswith("execord: ") and "sealed" in late.stderr
        denied = cli("keys", "list")
        assert denied.returncode == 1 and "admin" in denied.stderr and "Traceback" not in denied.stderr
        verify = cli("verify")
        assert verify.returncode == 2 and "--db" in verify.stderr  # unusable input, not a failed check
        ex.close()


async def test_async_workflows_record_through_the_server(db_path: str, tmp_path: Path) -> None:
    # An async test (pytest-asyncio's loop), not asyncio.run: asyncio.run leaves the main
    # thread without a loop, and pytest-asyncio then makes one it never closes (a leaked
    # socketpair that a later test trips over as an unraisable ResourceWarning).
    import asyncio

    with live_server(db_path) as live:
        ex = _agent(live.url, tmp_path / "spool")

        @ex.tool
        async def fetch(i: int) -> int:
            await asyncio.sleep(0)
            return i

        @ex.workflow
        async def gather() -> list[int]:
            return list(await asyncio.gather(*(fetch(i) for i in range(5))))

        assert await gather() == [0, 1, 2, 3, 4]
        assert ex.flush(10)
        row = live.store.list_executions()[0]
        assert row["status"] == "succeeded" and row["totals"]["tool_calls"] == 5
        ex.close()


def test_embedded_cancel_reaches_the_execution_through_its_heartbeat(db_path: str) -> None:
    ex = execord.init(agent="local", db=db_path, heartbeat_s=1)

    @execord.tool
    def tick() -> None:
        time.sleep(0.05)

    with pytest.raises(execord.Cancelled):
        with execord.execution("loop") as h:
            open_store(db_path).request_cancel(h.id, by="ops", reason="stuck")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                tick()
    s = ex.store.get_execution(h.id)
    assert s["status"] == "cancelled" and s["cancel"] == {"by": "ops", "reason": "stuck"}


@pytest.mark.parametrize(("mode", "per_step"), [("always", True), ("interval", False)])
def test_the_spool_fsyncs_each_request_event_or_each_interval(db_path: str, tmp_path: Path, mode: str,
                                                              per_step: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
    with live_server(db_path) as live:
        ex = _agent(live.url, tmp_path / "spool", spool_fsync=mode, flush_interval_ms=200)
        eid = _job(ex, 50)
        assert ex.flush(10)
        assert live.store.get_execution(eid)["totals"]["steps"] == 50
        ex.close()
    if per_step:
        assert len(syncs) >= 52  # execution.started, 50 × step.started, execution.ended
    else:
        assert 0 < len(syncs) < 20


def test_an_unknown_spool_fsync_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="spool_fsync must be 'always' or 'interval'"):
        Execord(url="http://127.0.0.1:1", api_key="k", spool_fsync="sometimes")
