"""examples/governed_agent, run for real: the agent, the CLI and a reviewer as separate processes.

Each scenario runs `agent.py` in a temporary copy of the example folder, with its default,
folder-local database, and is checked through the CLI a user would use
(`execord executions list --format json`, `execord executions get`, `execord approvals …`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "governed_agent"
RAW_VALUES = (b"jane.doe@example.com", b"4111 1111 1111 1111", b"4111111111111111", b"415 555 2671")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["PYTHONUNBUFFERED"] = "1"
    # the agent imports this checkout's execord, whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A fresh copy of the example folder (without any record a developer left in it)."""
    dest = tmp_path / "governed_agent"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".execord", "__pycache__"))
    return dest


def agent(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the example agent in its folder, as the README does."""
    return subprocess.run([sys.executable, "agent.py", *args], cwd=folder, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def cli(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real `execord` command in the example folder (its default database is the agent's)."""
    return subprocess.run([sys.executable, "-m", "execord", *args], cwd=folder, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def cli_json(folder: Path, *args: str) -> Any:
    out = cli(folder, *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def execution_id(stdout: str, scenario: str) -> str:
    m = re.search(rf"^\[{scenario}\] execution ([0-9a-f-]{{36}}) ", stdout, re.M)
    assert m, stdout
    return m.group(1)


def summary(folder: Path, eid: str) -> dict[str, Any]:
    rows = {r["id"]: r for r in cli_json(folder, "executions", "list")}
    return rows[eid]


def test_policy_tests_pass(folder: Path) -> None:
    out = cli(folder, "governance", "test", "execord.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\b[1-9]\d* passed, 0 failed", out.stdout), out.stdout
    assert cli(folder, "governance", "validate", "execord.yaml").returncode == 0


def test_deny(folder: Path) -> None:
    run = agent(folder, "deny")
    assert run.returncode == 0, run.stderr
    assert "would run" not in run.stdout  # the shell tool never ran
    eid = execution_id(run.stdout, "deny")
    assert f"execord executions get {eid}\n" in run.stdout  # the folder-local default: no --db
    s = summary(folder, eid)
    assert s["status"] == "halted"
    assert s["failure_class"] == "policy_block"
    assert s["halt"]["reason"] == "policy" and s["halt"]["rule_id"] == "no-shell"
    assert s["halt"]["phase"] == "tool.request"
    detail = cli_json(folder, "executions", "get", eid)
    assert [(st["name"], st["status"]) for st in detail["steps"]] == [("plan", "ok"), ("run_shell", "blocked")]
    shown = cli(folder, "executions", "get", eid)
    assert "policy: no-shell" in shown.stdout and "policy_block" in shown.stdout


def test_ops_role_may_run_the_shell(folder: Path) -> None:
    run = agent(folder, "deny", "--roles", "support,ops")
    assert run.returncode == 0, run.stderr
    assert "would run 'systemctl restart export-worker'" in run.stdout
    assert summary(folder, execution_id(run.stdout, "deny"))["status"] == "succeeded"


def test_redact(folder: Path) -> None:
    run = agent(folder, "redact")
    assert run.returncode == 0, run.stderr
    # what the CRM tool itself received: masked
    assert "customer='[REDACTED:email]'" in run.stdout
    assert "[REDACTED:payment_card]" in run.stdout and "[REDACTED:phone]" in run.stdout
    eid = execution_id(run.stdout, "redact")
    s = summary(folder, eid)
    assert s["status"] == "succeeded" and s["failure_class"] is None and s["halt"] is None
    detail = cli_json(folder, "executions", "get", eid)
    assert [st["name"] for st in detail["steps"]] == ["plan", "lookup_order", "save_crm_note", "issue_refund"]
    # what the record holds: masked too, and the decisions say where
    replay = cli_json(folder, "executions", "replay", eid)
    note = next(e for e in replay if e["type"] == "step.started" and e["attrs"]["name"] == "save_crm_note")
    assert note["values"]["input"]["customer"] == "[REDACTED:email]"
    assert "[REDACTED:payment_card]" in note["values"]["input"]["note"]
    started = replay[0]["values"]["inputs"]["ticket"]
    assert started["customer"] == "[REDACTED:email]"
    decisions = [e["attrs"] for e in replay if e["type"] == "governance.decision"]
    found = {r["detector"] for d in decisions for r in d["redactions"]}
    assert {"email", "phone", "payment_card"} <= found
    timeline = cli(folder, "executions", "timeline", eid).stdout
    assert "tool.request → redact (mask-contact-data)" in timeline
    # the raw values are nowhere in the database files
    files = sorted((folder / ".execord").glob("execord.db*"))
    assert files
    for path in files:
        data = path.read_bytes()
        for raw in RAW_VALUES:
            assert raw not in data, f"{raw!r} found in {path.name}"


def test_approval_by_a_second_process(folder: Path) -> None:
    proc = subprocess.Popen([sys.executable, "agent.py", "approve"], cwd=folder, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        pending: list[dict[str, Any]] = []
        while not pending:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no approval was requested"
            if (folder / ".execord" / "execord.db").exists():
                pending = cli_json(folder, "approvals", "list")
            if not pending:
                time.sleep(0.2)
        (approval,) = pending
        assert approval["rule_id"] == "big-refunds-need-approval"
        assert approval["action"]["name"] == "issue_refund" and approval["action"]["input"]["amount"] == 250
        eid = approval["execution_id"]
        waiting = summary(folder, eid)
        assert waiting["status"] == "awaiting_approval"
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting: nobody decided
        decided = cli(folder, "approvals", "approve", approval["id"][:12], "--reviewer", "alice",
                      "--comment", "photos checked")
        assert decided.returncode == 0, decided.stderr
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stdout.count("payments: refunded $250.00 on order A-1002") == 1  # the action ran exactly once
    assert f"execord approvals approve {approval['id']}" in stdout  # the agent told us how
    assert execution_id(stdout, "approve") == eid
    s = summary(folder, eid)
    assert s["status"] == "succeeded" and s["halt"] is None
    events = cli_json(folder, "executions", "timeline", eid)
    types = [e["type"] for e in events]
    assert types.index("approval.requested") < types.index("approval.decided")
    d = next(e["attrs"] for e in events if e["type"] == "approval.decided")
    assert d["decision"] == "approved" and d["reviewer"] == "alice" and d["comment"] == "photos checked"
    steps = cli_json(folder, "executions", "get", eid)["steps"]
    assert [(st["name"], st["status"]) for st in steps][-1] == ("issue_refund", "ok")
    again = cli(folder, "approvals", "approve", approval["id"])
    assert again.returncode != 0  # deciding twice is an error


def test_budget_halt_is_deterministic(folder: Path) -> None:
    halts = []
    for _ in range(2):
        run = agent(folder, "budget")
        assert run.returncode == 0, run.stderr
        s = summary(folder, execution_id(run.stdout, "budget"))
        assert s["status"] == "halted"
        assert s["failure_class"] == "policy_block"
        assert s["halt"]["reason"] == "budget"
        assert s["halt"]["budget_id"] == "execution.per_tool.lookup_order"
        assert s["totals"]["tool_calls"] == 3
        halts.append(s["halt"])
        steps = cli_json(folder, "executions", "get", s["id"])["steps"]
        assert [st["status"] for st in steps if st["name"] == "lookup_order"] == ["ok", "ok", "ok", "blocked"]
    assert halts[0] == halts[1]  # same budget, same seq, same phase
