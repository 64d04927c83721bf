"""How fast `execord verify` re-hashes a store of 1,000,000 events (target ≥ 300,000 events/s).

Builds the store once (real events, real chains, real seals, through the store's own
append), then times `verify_store` in-process and the `execord verify` command end to end.

    python benchmarks/verify_throughput.py [--events 1000000] [--per-execution 1000] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from execord.record import TOTALS_KEYS, build_event, format_ts, genesis_hash, uuid7
from execord.store import open_store, verify_store

STARTED = {
    "agent": {"name": "bench", "version": "1", "roles": []}, "workflow": {"name": "bench", "version": None},
    "execution_type": "workflow", "parent_execution_id": None, "labels": {}, "inputs": None,
    "governance_version": None, "sdk": {"name": "bench", "version": "0"},
    "host": {"hostname": "bench-host", "pid": 1}, "lease_s": 30,
}


def build(path: str, total: int, per_execution: int) -> None:
    """Write ``total`` events in executions of ``per_execution`` events each."""
    store = open_store(path)
    t_us = 1_790_000_000_000_000
    for _ in range(total // per_execution):
        eid = uuid7()
        prev = genesis_hash(eid)
        batch = []
        for seq in range(per_execution):
            t_us += 137
            if seq == 0:
                type_, attrs, step = "execution.started", STARTED, None
            elif seq == per_execution - 1:
                type_, attrs, step = "execution.ended", {
                    "status": "succeeded", "error": None, "halt": None, "cancel": None,
                    "failure_class": None, "totals": dict.fromkeys(TOTALS_KEYS, 0)}, None
            elif seq % 2:
                type_, step = "step.started", f"step-{seq // 2}"
                attrs = {"kind": "tool", "name": "lookup_order",
                         "input": {"$blob": "sha256:" + "ab" * 32, "size": 24, "type": "json"}}
            else:
                type_, step = "step.ended", f"step-{seq // 2 - 1}"
                attrs = {"status": "ok", "output": {"$blob": "sha256:" + "cd" * 32, "size": 80, "type": "json"},
                         "error": None, "usage": None, "cost_micros": None, "price_source": None, "latency_ms": 12}
            e = build_event(eid, seq, type_, format_ts(t_us), attrs, prev, step_id=step)
            prev = e.hash
            batch.append(e)
        store.append(batch)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--per-execution", type=int, default=1000)
    ap.add_argument("--db", default=None, help="reuse (or create) the store at this path")
    args = ap.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="execord-bench-"), "verify.db")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        build(path, args.events, args.per_execution)
        print(f"built {args.events:,} events in {time.perf_counter() - t0:.1f}s at {path}")
    store = open_store(path, create=False)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        report = verify_store(store)
        dt = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        best = dt if best is None else min(best, dt)
    print(f"verify_store: {report.events:,} events, {report.executions:,} executions "
          f"in {best:.2f}s = {report.events / best:,.0f} events/s (best of 3)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "execord", "verify", "--db", path],
                         capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    print(f"`execord verify` end to end (process start included): {dt:.2f}s = {report.events / dt:,.0f} events/s")
    print(out.stdout.strip())


if __name__ == "__main__":
    main()
