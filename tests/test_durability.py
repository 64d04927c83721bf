"""Durable before the act: a step never runs before its step.started is committed."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import execord


def _committed_events(db_path: str, execution_id: str) -> list[tuple[int, str, str | None]]:
    """What another process sees: a separate connection reading committed rows only."""
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT seq, type, step_id FROM events WHERE execution_id = ? ORDER BY seq", (execution_id,)
        ).fetchall()
    finally:
        conn.close()


@contextmanager
def locked(db_path: str) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a stuck process would."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_step_started_is_committed_before_the_body_runs(db_path: str) -> None:
    execord.init(db=db_path)
    seen: list[Any] = []

    @execord.tool
    def act() -> None:
        ex = execord.current()
        assert ex is not None
        seen.extend(_committed_events(db_path, ex.id))

    with execord.execution("w"):
        act()
    assert [t for _, t, _ in seen] == ["execution.started", "step.started"]
    assert seen[-1][2] is not None


def test_completion_events_are_committed_within_the_flush_interval(db_path: str) -> None:
    execord.init(db=db_path, flush_interval_ms=50)

    @execord.tool
    def act() -> int:
        return 1

    with execord.execution("w") as ex:
        act()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if [t for _, t, _ in _committed_events(db_path, ex.id)][-1:] == ["step.ended"]:
                break
            time.sleep(0.01)
        assert [t for _, t, _ in _committed_events(db_path, ex.id)] == ["execution.started", "step.started", "step.ended"]


def test_strict_durability_commits_every_event_as_it_happens(db_path: str) -> None:
    execord.init(db=db_path, durability="strict", flush_interval_ms=60_000)

    @execord.tool
    def act() -> int:
        return 1

    with execord.execution("w") as ex:
        act()
        execord.log("after")
        assert [t for _, t, _ in _committed_events(db_path, ex.id)][-2:] == ["step.ended", "log"]


def test_a_locked_store_halts_the_step_with_record_error(db_path: str) -> None:
    execord.init(db=db_path, busy_timeout_ms=100)
    ran: list[str] = []

    @execord.tool
    def refund(amount: int) -> None:
        ran.append("refund")

    with execord.execution("w") as ex:
        with locked(db_path):
            with pytest.raises(execord.RecordError, match="did not run") as info:
                refund(5)
        assert info.value.execution_id == ex.id
        assert isinstance(info.value.__cause__, execord.StoreError)
    assert ran == []
    types = [t for _, t, _ in _committed_events(db_path, ex.id)]
    assert types == ["execution.started", "execution.ended"]  # no trace of a step that never ran
    from execord.store import open_store, verify_store

    assert verify_store(open_store(db_path)).ok


def test_a_locked_store_refuses_to_start_an_execution(db_path: str) -> None:
    execord.init(db=db_path, busy_timeout_ms=100)
    execord.flush()  # create the file first
    ran: list[str] = []

    @execord.workflow
    def wf() -> None:
        ran.append("body")

    with execord.execution("warm-up"):
        pass
    with locked(db_path), pytest.raises(execord.RecordError):
        wf()
    assert ran == []


def test_a_full_disk_halts_the_step(db_path: str) -> None:
    ex = execord.init(db=db_path)
    ran: list[str] = []

    @execord.tool
    def upload(data: str) -> None:
        ran.append("upload")

    with execord.execution("w"):
        # SQLite reports a page limit exactly as it reports a full disk.
        conn = ex.store._conn  # noqa: SLF001 - the one way to fill a disk in a test
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(execord.RecordError, match="full"):
            upload("x" * 100_000)
        conn.execute("PRAGMA max_page_count = 1073741823")
    assert ran == []


def test_continue_mode_runs_the_step_and_records_it_later(db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    execord.init(db=db_path, busy_timeout_ms=100, on_record_error="continue")
    ran: list[str] = []

    @execord.tool
    def notify() -> str:
        ran.append("notify")
        return "sent"

    with execord.execution("w") as ex:
        with caplog.at_level(logging.WARNING, logger="execord"), locked(db_path):
            assert notify() == "sent"
        assert ran == ["notify"]
        assert "could not record" in caplog.text
    types = [t for _, t, _ in _committed_events(db_path, ex.id)]
    assert types == ["execution.started", "step.started", "step.ended", "execution.ended"]
    from execord.store import open_store, verify_store

    assert verify_store(open_store(db_path)).ok
