"""The benchmark scripts still run and print their figures (smoke tests: nothing is timed here).

Each script runs as a real process with a small workload; the figures themselves are in
docs/benchmarks.md and are not asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
FIGURE = r"[0-9][0-9,]*(?:\.[0-9]+)?"

pytestmark = pytest.mark.slow


def run(tmp_path: Path, script: str, *args: str, timeout: float = 60) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["TMPDIR"] = str(tmp_path)  # the scripts' scratch stores land in this test's folder
    out = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{script} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_policy_eval_quick(tmp_path: Path) -> None:
    out = run(tmp_path, "policy_eval.py", "--quick")
    assert re.search(r"equivalence: execord and Cedar matched the same rules on all \d+ checked requests", out), out
    for label in (r"\(a\) 2 rules apply", r"\(b\) all 50 apply", r"\(a\) 2 policies apply",
                  r"\(b\) all 50 apply \(resource scopes stripped\)", r"\(a\) policies passed as text"):
        assert re.search(rf"{label}.* p50 +{FIGURE} µs +p99 +{FIGURE} µs", out), (label, out)
    assert "peer: cedarpy" in out
    assert re.search(rf"cedarpy / execord at p50: +\(a\) {FIGURE}x +\(b\) {FIGURE}x", out), out


def test_sdk_overhead_under_governance(tmp_path: Path) -> None:
    out = run(tmp_path, "sdk_overhead.py", "--steps", "200", "--runs", "1",
              "--governance", str(BENCH / "governance_20.yaml"), timeout=90)
    assert re.search(rf"execord @tool \(.*governance .*governance_20\.yaml\): +-?{FIGURE} µs", out), out
    assert re.search(rf"OpenTelemetry span .*: +-?{FIGURE} µs", out), out
    assert re.search(rf"Langfuse @observe .*: +-?{FIGURE} µs", out), out
    assert re.search(rf"execord / OpenTelemetry = -?{FIGURE}x", out), out


def test_verify_throughput_small(tmp_path: Path) -> None:
    out = run(tmp_path, "verify_throughput.py", "--events", "2000", "--per-execution", "100",
              "--db", str(tmp_path / "verify.db"))
    assert re.search(rf"verify_store: 2,000 events, 20 executions in {FIGURE}s = {FIGURE} events/s", out), out
    assert re.search(rf"`execord verify` end to end .*= {FIGURE} events/s", out), out


def test_benchmark_policy_files_validate(tmp_path: Path) -> None:
    """The governance files the benchmarks load are valid (and the 50-rule one has 50 rules)."""
    from execord.governance import load_spec

    assert len(load_spec(BENCH / "policy_50.yaml").rules) == 50
    spec = load_spec(BENCH / "governance_20.yaml")
    assert len(spec.rules) == 20 and spec.execution_budgets


def test_ingest_small(tmp_path: Path) -> None:
    out = run(tmp_path, "ingest.py", "--seconds", "1", "--procs", "2", "--steps", "20", "--backend", "sqlite",
              "--ceiling-rows", "5000", timeout=120)
    assert re.search(rf"sqlite +{FIGURE} +{FIGURE} +{FIGURE} +20,000 +(NOT )?met", out), out
    assert "ceiling, raw sqlite3 executemany" in out, out


def test_query_small(tmp_path: Path) -> None:
    out = run(tmp_path, "query.py", "--backend", "sqlite", "--executions", "2000", "--steps", "50",
              "--repeat", "3", "--db", str(tmp_path / "query.db"), timeout=180)
    assert re.search(rf"timeline: store.events \+ relative_ms .* {FIGURE} +{FIGURE}", out), out
    assert "list cases meeting p95" in out, out


def test_verify_bundle_small(tmp_path: Path) -> None:
    out = run(tmp_path, "verify_bundle.py", "--executions", "40", "--events", "20", "--runs", "1",
              "--db", str(tmp_path / "bundle.db"))
    assert re.search(rf"bundle: {FIGURE} bytes \({FIGURE} MiB\) zipped", out), out
    assert re.search(rf"verify_bundle\(\) in process: 800 events, 40 executions: best {FIGURE}s = {FIGURE} events/s",
                     out), out
    assert re.search(rf"`execord verify BUNDLE --key PUB` end to end .* best {FIGURE}s = {FIGURE} events/s, "
                     rf"median {FIGURE}s = {FIGURE} events/s", out), out
    assert re.search(r"target: >= 300,000 events/s end to end: (NOT )?met", out), out


def test_ledger_proofs_small(tmp_path: Path) -> None:
    out = run(tmp_path, "ledger_proofs.py", "--leaves", "3000", "--proofs", "50")
    assert "checked against execord.ledger.merkle" in out, out
    assert "store.ledger_nodes plan: " in out, out
    for label in (r"inclusion\(store, id, size\)", r"consistency\(store, old, size\)"):
        assert re.search(rf"{label} +n=50 +p50 +{FIGURE} ms +p99 +{FIGURE} ms +max +{FIGURE} ms +"
                         r"\(target p99 <= 1 ms: (NOT )?met\)", out), (label, out)


def test_integration_overhead_small(tmp_path: Path) -> None:
    out = run(tmp_path, "integration_overhead.py", "--calls", "40", "--rounds", "2", "--runs", "1",
              "--stream", "--profile")
    assert re.search(rf"other processes used {FIGURE} of \d+ cores", out), out
    assert re.search(rf"^  bare +{FIGURE} +{FIGURE} +{FIGURE} +{FIGURE}$", out, re.M), out
    assert re.search(rf"^  bare stream +{FIGURE} +{FIGURE} +{FIGURE} +{FIGURE}$", out, re.M), out
    for mode in ("execord", "governed", "execord stream", "governed stream"):
        assert re.search(rf"^  {mode} +{FIGURE} +{FIGURE} +{FIGURE} +[+-]{FIGURE} +-?{FIGURE}$", out, re.M), (mode, out)
        assert re.search(rf"^  {mode} +[+-]{FIGURE} µs .*target ≤ 100 µs per call: (NOT )?met$", out, re.M), (mode, out)
        assert re.search(rf"profile: {mode}, 40 calls under cProfile", out), (mode, out)
    assert re.search(rf"execord's share -?{FIGURE} µs/call", out), out
    assert "begin_step (execord/runtime/_steps.py" in out, out


def test_integration_overhead_server_mode(tmp_path: Path) -> None:
    """--server-mode records through a real `execord serve` child process: both spool modes print."""
    out = run(tmp_path, "integration_overhead.py", "--calls", "20", "--rounds", "2", "--runs", "1", "--server-mode")
    for mode in ("server interval", "server always"):
        assert re.search(rf"^  {mode} +{FIGURE} +{FIGURE} +{FIGURE} +[+-]{FIGURE} +-?{FIGURE}$", out, re.M), (mode, out)
        assert re.search(rf"^  {mode} +[+-]{FIGURE} µs .*target ≤ 100 µs per call: (NOT )?met$", out, re.M), (mode, out)
