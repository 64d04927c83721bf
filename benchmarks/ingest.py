"""Durable ingest through `execord serve`: N SDK processes recording as fast as they can.

One server (a separate ``execord serve`` process) over SQLite or PostgreSQL; ``--procs``
agent processes (default 8) in server mode (EXECORD_URL + EXECORD_API_KEY), each running
workflows of ``--steps`` `@execord.tool` no-op steps back to back for ``--seconds`` (or
until it has recorded its share of ``--events``), then `execord.flush()`. Every event goes
through the real path: the spool (append + fdatasync before each step runs), the shipper
thread, ``POST /api/v1/ingest``, the server's parse and checks, and `store.append`.

Figures:

- **durable events/s**: events in the store at the end (minus the warm-up's), divided by
  the wall time from "go" until the last process's `execord.flush()` returned (flush waits
  until the server has acknowledged everything spooled). Target ≥ 20,000 on SQLite and
  ≥ 10,000 on PostgreSQL (2 cores).
- **ingest p99**: from the server's ``execord_ingest_latency_seconds`` histogram at
  /metrics (the run's buckets, warm-up subtracted; interpolated within the bucket as
  Prometheus' histogram_quantile does), and the client side: each ``POST /ingest`` timed in
  the shipper thread of every process (HTTP included).
- the CPU each side spent per event (server process; the SDK processes), which says what
  would limit the rate if nothing waited on the disk.

In the same run, the ceiling of this machine: a plain ``sqlite3`` ``executemany`` of rows
like the events table's (same columns, same unique index, WAL, synchronous=NORMAL) in
batches with a commit after each, and how many ``write + fdatasync`` of one 400-byte
record this disk does per second from ``--procs`` processes at once (what every step of
an SDK in server mode pays before it runs).

    python benchmarks/ingest.py [--seconds 10 | --events N] [--procs 8] [--steps 500]
                                [--backend sqlite|postgres|both] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG_ADMIN = os.environ.get("EXECORD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WORKFLOW = "ingest-bench"


# -- the agent processes ------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """One agent process: warm up, say ready, wait for "go", record, flush, report."""
    import resource

    import execord

    execord.init(agent="ingest-bench")
    post_latency: list[float] = []
    admit_latency: list[float] = []
    syncs = [0, 0.0]  # fdatasync calls of this process (the spool's, one per step) and their time
    fdatasync = os.fdatasync

    def timed_fdatasync(fd: int) -> None:
        t0 = time.perf_counter()
        fdatasync(fd)
        syncs[0] += 1
        syncs[1] += time.perf_counter() - t0

    os.fdatasync = timed_fdatasync  # the spool's fdatasync calls (one per step with --spool-fsync always)

    def timed(cls: Any, name: str, into: list[float]) -> None:
        inner = getattr(cls, name, None)
        if inner is None:
            return

        def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(self, *a, **kw)
            finally:
                into.append(time.perf_counter() - t0)

        setattr(cls, name, wrapper)

    try:  # each POST /ingest of the shipper thread, each admission call (client side, HTTP included)
        from execord.runtime import _remote

        timed(_remote.RemoteStore, "_ship", post_latency)
        timed(_remote.RemoteStore, "admit", admit_latency)
    except ImportError:
        pass

    @execord.tool
    def noop() -> None:
        return None

    with execord.execution("warm-up"):  # opens the spool, the HTTP connection, the shipper
        noop()
    if not execord.flush(timeout=60):
        raise SystemExit("the warm-up did not reach the server")
    post_latency.clear()
    admit_latency.clear()
    syncs[:] = [0, 0.0]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"

    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    per_workflow = 2 * args.steps + 2  # execution.started, step.started/ended per step, execution.ended
    quota = math.ceil(args.events / args.procs / per_workflow) if args.events else None
    t0 = time.perf_counter()
    deadline = t0 + args.seconds
    done = 0
    while (done < quota) if quota is not None else (time.perf_counter() < deadline):
        with execord.execution(WORKFLOW):
            for _ in range(args.steps):
                noop()
        done += 1
    recorded = time.perf_counter() - t0
    flushed = execord.flush(timeout=600)
    flushed_at = time.time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "events": done * per_workflow, "recorded_s": recorded, "flushed": flushed, "flushed_at": flushed_at,
        "cpu_s": ru.ru_utime + ru.ru_stime - cpu0, "post_latency": post_latency, "admit_latency": admit_latency,
        "syncs": syncs[0], "sync_s": syncs[1],
    }), flush=True)


# -- the server side ----------------------------------------------------------------------------


def _server_helpers() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    import _server  # ServerProcess, sdk_env, ADMIN_KEY

    return _server


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram(text: str, name: str) -> dict[float, float]:
    """The cumulative buckets of a Prometheus histogram: upper bound → count."""
    out = {}
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', text, re.M):
        out[math.inf if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if not total:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == math.inf:
                return lower  # beyond the last finite bound: report that bound
            return lower + (b - lower) * (rank - below) / max(buckets[b] - below, 1e-12)
        lower, below = b, buckets[b]
    return lower


def machine_busy_s() -> float:
    """CPU seconds every process of this machine has used (all cores; idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def count_events(target: str) -> int:
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
    with sqlite3.connect(target) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def run_backend(backend: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    srv = _server_helpers()
    db_name = None
    if backend == "postgres":
        import psycopg

        db_name = f"execord_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        target = f"{args.pg.rsplit('/', 1)[0]}/{db_name}"
    else:
        target = str(scratch / "ingest.db")
    server = srv.ServerProcess(target, cwd=scratch, reap_interval=2.0)
    procs: list[subprocess.Popen[str]] = []
    try:
        server.start(timeout=60)
        with server.client() as admin:
            r = admin.post("/api/v1/keys", json={"project": "default", "scopes": ["ingest"], "name": "ingest-bench"})
            r.raise_for_status()
            key = r.json()["key"]
            env = srv.sdk_env(server.url, key, scratch / f"spool-{backend}", EXECORD_SPOOL_FSYNC=args.spool_fsync)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seconds", str(args.seconds),
                   "--events", str(args.events or 0), "--procs", str(args.procs), "--steps", str(args.steps),
                   "--spool-fsync", args.spool_fsync]
            procs = [subprocess.Popen(cmd, env=env, cwd=scratch, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True) for _ in range(args.procs)]
            for p in procs:
                if p.stdout is None or p.stdout.readline().strip() != "ready":
                    raise SystemExit(f"an agent process failed to start (exit {p.wait()})")
            before = count_events(target)
            hist0 = histogram(admin.get("/metrics").text, "execord_ingest_latency_seconds")
            cpu0 = proc_cpu_s(server.proc.pid)  # type: ignore[union-attr]
            machine0 = machine_busy_s()
            t0 = time.time()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            reports = []
            for p in procs:
                out, _ = p.communicate(timeout=args.seconds * 20 + 600)
                if p.returncode != 0:
                    raise SystemExit(f"an agent process exited {p.returncode}")
                reports.append(json.loads(out.strip().splitlines()[-1]))
            server_cpu = proc_cpu_s(server.proc.pid) - cpu0  # type: ignore[union-attr]
            machine = machine_busy_s() - machine0
            hist1 = histogram(admin.get("/metrics").text, "execord_ingest_latency_seconds")
        wall = max(r["flushed_at"] for r in reports) - t0
        durable = count_events(target) - before
        produced = sum(r["events"] for r in reports)
        run_hist = {b: hist1[b] - hist0.get(b, 0.0) for b in hist1}
        posts = sorted(x for r in reports for x in r["post_latency"])
        admits = sorted(x for r in reports for x in r["admit_latency"])
        sdk_cpu = sum(r["cpu_s"] for r in reports)
        ours = server_cpu + sdk_cpu
        return {
            "backend": backend, "produced": produced, "durable": durable, "wall": wall,
            "rate": durable / wall, "all_flushed": all(r["flushed"] for r in reports),
            "server_p99": histogram_quantile(0.99, run_hist), "server_p50": histogram_quantile(0.5, run_hist),
            "batches": int(run_hist.get(math.inf, 0)),
            "client_p50": pct(posts, 0.5), "client_p99": pct(posts, 0.99),
            "admit_p50": pct(admits, 0.5), "admit_p99": pct(admits, 0.99),
            "server_cpu_us": server_cpu / max(durable, 1) * 1e6,
            "sdk_cpu_us": sdk_cpu / max(produced, 1) * 1e6,
            "busy_cores": ours / wall,
            # CPU the rest of the machine used meanwhile (it shares these 2 cores with us)
            "others_cores": max(0.0, machine - ours) / wall,
            "sync_ms": sum(r["sync_s"] for r in reports) / max(sum(r["syncs"] for r in reports), 1) * 1e3,
            "sync_share": sum(r["sync_s"] for r in reports) / max(sum(r["recorded_s"] for r in reports), 1e-9),
            "steps_per_s": sum(r["syncs"] for r in reports) / wall,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.stop()
        if db_name is not None:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


# -- the ceilings -------------------------------------------------------------------------------


def sqlite_ceiling(folder: Path, rows: int, batch: int) -> float:
    """Rows/s of a plain sqlite3 executemany into an events-like WAL table, one commit per batch."""
    from execord.record import build_event, format_ts, genesis_hash, uuid7

    path = folder / f"ceiling-{batch}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (execution_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
                 " ts TEXT NOT NULL, step_id TEXT, hash BLOB NOT NULL, body BLOB NOT NULL)")
    conn.execute("CREATE UNIQUE INDEX events_by_execution ON events (execution_id, seq)")
    # Real event bytes (a tool step's step.started and step.ended), in 8 interleaved executions
    # as the server receives them; only the key columns change from row to row.
    eid = uuid7()
    attrs = {"kind": "tool", "name": "noop", "input": {"$blob": "sha256:" + "ab" * 32, "size": 2, "type": "json"}}
    sample = build_event(eid, 1, "step.started", format_ts(1_790_000_000_000_000), attrs, genesis_hash(eid),
                         step_id=uuid7())
    execs = [uuid7() for _ in range(8)]
    data = [(execs[i % 8], i // 8, sample.type, sample.ts, sample.step_id, sample.hash, sample.body)
            for i in range(rows)]
    t0 = time.perf_counter()
    for i in range(0, rows, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", data[i:i + batch])
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return rows / dt


def _sync_proc(path: str, n: int, go: Any, out: Any) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    go.wait()
    record = b"x" * 400
    for _ in range(n):
        os.write(fd, record)
        os.fdatasync(fd)
    os.close(fd)
    os.unlink(path)
    out.put(time.perf_counter())


def fdatasync_ceiling(folder: Path, procs: int, n: int = 500) -> float:
    """Appends + fdatasync per second, from ``procs`` processes at once (the spool's pattern)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_sync_proc, args=(str(folder / f"sync-{i}.bin"), n, go, out)) for i in range(procs)]
    for p in ps:
        p.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    go.set()
    ends = [out.get(timeout=300) for _ in ps]
    for p in ps:
        p.join()
    return procs * n / (max(ends) - t0)


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="how long each process records (default 10)")
    ap.add_argument("--events", type=int, default=None, help="instead of --seconds: this many events in all")
    ap.add_argument("--procs", type=int, default=8, help="agent processes (default 8)")
    ap.add_argument("--steps", type=int, default=500, help="tool steps per workflow (default 500)")
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--pg", default=PG_ADMIN, help="a PostgreSQL URL where a scratch database may be created")
    ap.add_argument("--ceiling-rows", type=int, default=200_000)
    ap.add_argument("--spool-fsync", choices=("always", "interval"), default="always",
                    help="EXECORD_SPOOL_FSYNC of the agents: always (the default: fdatasync before each governed "
                         "action) or interval (written before it, fdatasync every flush interval)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.events == 0:
        args.events = None
    if args.worker:
        worker(args)
        return

    scratch = Path(tempfile.mkdtemp(prefix="execord-ingest-"))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    try:
        results = [run_backend(b, args, scratch) for b in backends]
        ceilings = {batch: sqlite_ceiling(scratch, args.ceiling_rows, batch) for batch in (100, 1000)}
        syncs = fdatasync_ceiling(scratch, args.procs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    load = f"{args.events:,} events in all" if args.events else f"{args.seconds:g} s each"
    print(f"ingest: {args.procs} SDK processes -> 1 `execord serve`, workflows of {args.steps} @execord.tool no-op "
          f"steps, {load}; {os.cpu_count()} cores, python {sys.version.split()[0]}"
          + f"; EXECORD_SPOOL_FSYNC={args.spool_fsync}")
    targets = {"sqlite": 20_000, "postgres": 10_000}
    print(f"  {'backend':<9}{'durable events':>15}{'wall s':>8}{'events/s':>10}{'target':>9}  {'met?':<9}"
          f"{'server ingest p50 / p99 ms':>27}{'POST p50 / p99 ms':>20}")
    for r in results:
        target = targets[r["backend"]]
        met = "met" if r["rate"] >= target else "NOT met"
        print(f"  {r['backend']:<9}{r['durable']:>15,}{r['wall']:>8.2f}{r['rate']:>10,.0f}{target:>9,}  {met:<9}"
              f"{r['server_p50'] * 1e3:>16.1f} / {r['server_p99'] * 1e3:<8.1f}"
              f"{r['client_p50'] * 1e3:>10.1f} / {r['client_p99'] * 1e3:<8.1f}")
        if r["durable"] != r["produced"] or not r["all_flushed"]:
            print(f"    !! stored {r['durable']:,} of the {r['produced']:,} events recorded "
                  f"(every flush returned: {r['all_flushed']})")
    print("  server ingest: execord_ingest_latency_seconds at /metrics (parse, checks, store.append), interpolated "
          "within its buckets; POST: each POST /ingest timed in the SDK's shipper thread")
    print("where the time goes:")
    print(f"  {'backend':<9}{'batches':>8}{'events/batch':>13}{'admission p50 / p99 ms':>24}"
          f"{'spool fdatasync ms':>19}{'share of recording':>19}{'server CPU µs/ev':>17}{'SDK CPU µs/ev':>14}"
          f"{'cores: ours / others':>22}")
    for r in results:
        print(f"  {r['backend']:<9}{r['batches']:>8,}{r['durable'] / max(r['batches'], 1):>13,.0f}"
              f"{r['admit_p50'] * 1e3:>13.1f} / {r['admit_p99'] * 1e3:<8.1f}"
              f"{r['sync_ms']:>19.2f}{r['sync_share']:>18.0%} {r['server_cpu_us']:>17.0f}{r['sdk_cpu_us']:>14.0f}"
              f"{r['busy_cores']:>13.2f} / {r['others_cores']:.2f}")
    print("  (admission: POST /executions/start, once per workflow; spool fdatasync: one per step, before the tool "
          "runs; cores: CPU used by the server and the SDK processes / by every other process of the machine)")
    print("ceiling, raw sqlite3 executemany into an events-like WAL table (synchronous=NORMAL), commit per batch: "
          + ", ".join(f"{rate:,.0f} rows/s in batches of {b:,}" for b, rate in ceilings.items()))
    print(f"ceiling, write + fdatasync of a 400-byte record from {args.procs} processes at once "
          f"(what each SDK step pays before it runs): {syncs:,.0f}/s = {2 * syncs:,.0f} events/s at 2 events per step")


if __name__ == "__main__":
    main()
