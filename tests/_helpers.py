"""Small helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

AGENT = "support-bot"


def write(path: Path, text: str) -> Path:
    """Write dedented text (a governance file, usually) and return its path."""
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def only(store: Any, workflow: str | None = None) -> dict[str, Any]:
    """The one execution in the store (of that workflow)."""
    rows = [r for r in store.list_executions() if workflow is None or r["workflow"] == workflow]
    assert len(rows) == 1, rows
    return rows[0]


def events(store: Any, execution_id: str) -> list[Any]:
    """An execution's stored events."""
    return store.events(execution_id)


def types(store: Any, execution_id: str) -> list[str]:
    """An execution's event types, in seq order."""
    return [e.type for e in events(store, execution_id)]


def decisions(store: Any, execution_id: str) -> list[Any]:
    """An execution's governance.decision events."""
    return [e for e in events(store, execution_id) if e.type == "governance.decision"]


def at_seq(store: Any, execution_id: str, seq: int) -> Any:
    """The event at ``seq``."""
    return events(store, execution_id)[seq]


def approval_events(store: Any, execution_id: str) -> tuple[Any, Any]:
    """The (approval.requested, approval.decided) pair of an execution with one approval."""
    evs = events(store, execution_id)
    (req,) = [e for e in evs if e.type == "approval.requested"]
    (dec,) = [e for e in evs if e.type == "approval.decided"]
    return req, dec


def files_bytes(root: Path) -> bytes:
    """Every byte of every file under ``root``: the database, its -wal and -shm, anything else."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake: exit 1, one ``execord: …`` line on stderr naming ``needles``, no traceback."""
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("execord: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def cli_json(cli: Any, *args: str) -> Any:
    """Run a CLI command with --format json; it must succeed."""
    r = cli(*args, "--format", "json")
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return json.loads(r.stdout)


def wait_for_pending(cli: Any, deadline_s: float = 30) -> dict[str, Any]:
    """Poll ``execord approvals list`` (a child process each time) until a request appears."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        rows = cli_json(cli, "approvals", "list")
        if rows:
            assert len(rows) == 1, rows
            return dict(rows[0])
        time.sleep(0.1)
    raise AssertionError("no approval request appeared")


# -- async: a reviewer in another process while the event loop keeps turning ------------------


async def acli(db_path: str, *args: str) -> tuple[int, str, str]:
    """Run ``execord …`` in a child process without blocking the loop: (code, stdout, stderr)."""
    import asyncio
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["EXECORD_DB"] = db_path
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "execord", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


class Ticker:
    """Counts event-loop turns until ``done`` is set: proof that a wait does not block the loop."""

    def __init__(self) -> None:
        import asyncio

        self.ticks = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        """Tick every 10 ms until done."""
        import asyncio

        while not self.done.is_set():
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def review(self, db_path: str, verdict: str, reviewer: str = "bob") -> tuple[int, int]:
        """Wait for the pending approval, decide it from another process; ticks before and after."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, out, err = await acli(db_path, "approvals", "list", "--format", "json")
            assert code == 0, err
            if rows := json.loads(out):
                before = self.ticks
                code, _, err = await acli(db_path, "approvals", verdict, rows[0]["id"], "--reviewer", reviewer)
                assert code == 0, err
                return before, self.ticks
        raise AssertionError("no approval request appeared within the deadline")


# -- the LLM steps of an execution (the integration tests) ---------------------------------------


def llm_steps(ex: Any, run_id: str) -> list[dict[str, Any]]:
    """The execution's ``llm`` steps (after a flush), in start order."""
    from execord.store import steps_from_events

    ex.flush()
    return [s for s in steps_from_events(ex.store.events(run_id)) if s["kind"] == "llm"]


def the_step(ex: Any, run_id: str) -> dict[str, Any]:
    """The execution's one ``llm`` step."""
    steps = llm_steps(ex, run_id)
    assert len(steps) == 1, steps
    return steps[0]


def started(ex: Any, run_id: str) -> dict[str, Any]:
    """The one ``llm`` step's ``step.started`` attrs."""
    step = the_step(ex, run_id)
    return next(e.attrs for e in ex.store.events(run_id) if e.type == "step.started" and e.step_id == step["step_id"])


def ended(ex: Any, run_id: str) -> dict[str, Any]:
    """The one ``llm`` step's ``step.ended`` attrs."""
    step = the_step(ex, run_id)
    return next(e.attrs for e in ex.store.events(run_id) if e.type == "step.ended" and e.step_id == step["step_id"])


class Chain:
    """A valid chain of events for one execution, built by hand (what a foreign SDK would send)."""

    def __init__(self) -> None:
        from execord.record import uuid7

        self.id = uuid7()
        self.events: list[Any] = []

    def next(self, type_: str, attrs: dict[str, Any]) -> Any:
        from execord.record import build_event, genesis_hash, now_ts

        prev = self.events[-1].hash if self.events else genesis_hash(self.id)
        e = build_event(self.id, len(self.events), type_, now_ts(), attrs, prev)
        self.events.append(e)
        return e

    def start(self, agent: str = "hand", workflow: str = "w") -> Any:
        return self.next("execution.started", {
            "agent": {"name": agent, "version": None, "roles": []}, "workflow": {"name": workflow, "version": None},
            "execution_type": "workflow", "parent_execution_id": None, "labels": {}, "inputs": None,
            "governance_version": None, "sdk": {}, "host": {"hostname": "h", "pid": 1}, "lease_s": 30})

    def end(self) -> Any:
        from execord.record import TOTALS_KEYS

        return self.next("execution.ended", {"status": "succeeded", "error": None, "halt": None, "cancel": None,
                                             "failure_class": None, "totals": dict.fromkeys(TOTALS_KEYS, 0)})

    def wire(self, start: int = 0) -> list[dict[str, str]]:
        """The events from ``start`` as an ingest batch sends them."""
        return [{"body": e.body.decode(), "hash": e.hash.hex()} for e in self.events[start:]]
