"""The README's quickstart, run as a user would run it, through the installed ``execord``.

The first command of the README installs the package and then runs ``execord demo &&
execord executions list``; the test runs that second part in an empty folder (the install
is this test run's own). Then it runs the "Two lines" example as a script and reads the
execution back with the command line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
DEMO_WORKFLOWS = {"support-triage", "research-report", "refund", "nightly-digest"}

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}


def _execord() -> str:
    path = shutil.which("execord")
    assert path, "the `execord` command is not on PATH: install the package (pip install -e .)"
    return path


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{shlex.join(argv)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    return r


def _first_command_after_install() -> list[list[str]]:
    """The execord commands of the README's first line, after its ``pip install``."""
    first_bash = next(m.group("body") for m in FENCE.finditer(README) if m.group("lang") == "bash")
    first_line = first_bash.splitlines()[0].split("#")[0]
    parts = [shlex.split(p) for p in first_line.split("&&")]
    assert parts[0][:2] == ["pip", "install"], first_line
    commands = [p for p in parts if p[:1] == ["execord"]]
    assert commands == [["execord", "demo"], ["execord", "executions", "list"]], first_line
    return commands


def _two_lines_example() -> str:
    section = README.split("## Two lines", 1)[1]
    m = next(m for m in FENCE.finditer(section) if m.group("lang") == "python")
    return m.group("body")


def test_demo_then_list_shows_the_demo_s_executions(tmp_path: Path) -> None:
    demo, listing = _first_command_after_install()
    exe = _execord()
    recorded = _run([exe, *demo[1:]], tmp_path).stdout
    m = re.search(r"recorded (\d+) executions", recorded)
    assert m, recorded
    count = int(m.group(1))
    assert count >= 4

    table = _run([exe, *listing[1:]], tmp_path).stdout
    assert len(UUID_RE.findall(table)) == count, table
    for workflow in DEMO_WORKFLOWS:
        assert workflow in table
    for status in ("succeeded", "failed"):
        assert status in table

    rows = json.loads(_run([exe, *listing[1:], "--format", "json"], tmp_path).stdout)
    assert len(rows) == count
    assert {r["workflow"] for r in rows} == DEMO_WORKFLOWS
    assert all(r["sealed"] for r in rows)
    assert _run([exe, "verify"], tmp_path).stdout.rstrip().endswith("OK")


def test_the_two_lines_example_records_a_workflow_with_a_tool_step(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_two_lines_example(), encoding="utf-8")
    _run([sys.executable, str(script)], tmp_path)
    assert (tmp_path / ".execord" / "execord.db").exists()  # the README's comment: ./.execord/execord.db

    exe = _execord()
    rows = json.loads(_run([exe, "executions", "list", "--format", "json"], tmp_path).stdout)
    assert len(rows) == 1, rows
    run = rows[0]
    assert run["workflow"] == "handle_ticket"
    assert run["agent"] == "support-bot"
    assert run["status"] == "succeeded" and run["failure_class"] is None
    assert run["totals"]["steps"] == 1 and run["totals"]["tool_calls"] == 1

    steps = json.loads(_run([exe, "executions", "steps", run["id"][:13], "--format", "json"], tmp_path).stdout)
    assert [(s["name"], s["kind"], s["status"]) for s in steps] == [("lookup_order", "tool", "ok")]
