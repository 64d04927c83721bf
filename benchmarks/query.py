"""Finding executions among 1,000,000, and replaying a 1,000-step one (list p95 ≤ 50 ms, timeline ≤ 30 ms).

The store: ``--executions`` (default 1,000,000) summary rows and their labels, inserted
directly (executemany on SQLite, COPY on PostgreSQL) with a realistic spread: 30 days of
start times with a daily rhythm, 60 workflows and 20 agents of Zipf-like popularity, 86%
succeeded and the rest failed, halted, cancelled, interrupted (each with its failure class),
running and awaiting approval only among the most recent, labels env / tenant (2,000
tenants) / region, 10% of rows in a second project. Plus one execution of 1,000 steps
(LLM and tool steps; 2,002 events) built through the real record path: events made by
`execord.record.build_event` and written with the store's own `append`, in commits of 100
events as an SDK makes them, so its chain, summary row and seal are real.

Measured, warm, each case timed ``--repeat`` times after 2 warm-ups:

- `store.list_executions` (limit 50, newest first) with each filter the CLI and API offer
  (status, workflow, agent, label, failure class, since; alone and combined; common and
  rare values) and keyset cursor pages (20 pages in a row, and one a week deep);
- the same through ``GET /api/v1/executions`` of a separate ``execord serve`` process
  (HTTP, auth and JSON included), cursor pages following ``next_cursor``;
- the 1,000-step timeline: `store.events` + `relative_ms`, and
  ``GET /api/v1/executions/{id}/timeline``.

The SQLite file is cached (``<tmp>/execord-bench-query/``); ``--rebuild`` makes it again.
The PostgreSQL database is made in a scratch database and dropped after.

    python benchmarks/query.py [--backend sqlite|postgres|both] [--executions 1000000] [--rebuild]
                               [--repeat 30] [--no-api] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from execord.record import TOTALS_KEYS, build_event, format_ts, genesis_hash
from execord.store import ExecutionFilter, open_store, relative_ms

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG_ADMIN = os.environ.get("EXECORD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CACHE = Path(tempfile.gettempdir()) / "execord-bench-query"
GEN_VERSION = 1  # bump when the generated data changes: cached files of another version are rebuilt
DAY_US = 86_400_000_000
SPAN_DAYS = 30
#: The newest start time in the data (a fixed instant, so a cached file answers the same queries).
END_US = 1_796_000_000_000_000  # 2026-11-30T00:53:20Z

COLUMNS = (
    "id", "project", "agent", "agent_version", "workflow", "workflow_version", "execution_type",
    "parent_execution_id", "status", "failure_class", "started_at", "started_us", "ended_at", "duration_ms",
    "steps", "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cost_micros", "halt", "error", "cancel",
    "governance_version", "labels", "host", "pid", "proc_start", "lease_s", "lease_expires_us", "sealed",
)
_VERBS = ("triage", "refund", "summarize", "route", "classify", "draft", "review", "enrich", "reconcile", "escalate",
          "translate", "extract")
_NOUNS = ("ticket", "order", "invoice", "email", "contract", "lead")
WORKFLOWS = [f"{v}_{n}" for n in _NOUNS for v in _VERBS][:60]
AGENTS = [f"agent-{name}" for name in ("support", "billing", "sales", "ops", "legal", "growth", "search", "docs",
                                      "risk", "hr", "it", "finance", "qa", "data", "mail", "chat", "voice", "crm",
                                      "infra", "audit")]
ENDED = (("succeeded", 0.86), ("failed", 0.08), ("halted", 0.03), ("interrupted", 0.02), ("cancelled", 0.01))
FAILURE = {"failed": ("provider_failure", "connector_failure", "logic_error"), "halted": ("policy_block", "approval"),
           "interrupted": ("interrupted",), "cancelled": ("cancelled",)}
ENVS = (("prod", 0.70), ("staging", 0.25), ("dev", 0.05))
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
TENANTS = 2000


# -- the data --------------------------------------------------------------------------------


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def _id_at(rng: random.Random, us: int) -> str:
    """A UUIDv7 for a start time: ids sort by time, as the SDK's do."""
    value = ((us // 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate(n: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], list[tuple[str, str, str]]]]:
    """``n`` execution rows (in start order) with their label rows."""
    rng = random.Random(seed)
    start = END_US - SPAN_DAYS * DAY_US
    times = []
    while len(times) < n:  # a daily rhythm: busy afternoons (UTC), quiet nights
        t = rng.randrange(start, END_US)
        hour = (t // 3_600_000_000) % 24
        if rng.random() < 0.35 + 0.65 * math.sin(math.pi * hour / 24) ** 2:
            times.append(t)
    times.sort()
    wf_weights = _zipf_weights(len(WORKFLOWS), 1.1)
    tenant_weights = _zipf_weights(TENANTS, 1.0)
    tenants = rng.choices(range(TENANTS), tenant_weights, k=n)
    workflows = rng.choices(range(len(WORKFLOWS)), wf_weights, k=n)
    statuses = rng.choices([s for s, _ in ENDED], [w for _, w in ENDED], k=n)
    envs = rng.choices([e for e, _ in ENVS], [w for _, w in ENVS], k=n)
    gv = [f"gv_{rng.getrandbits(64):016x}" for _ in range(4)]
    for i, us in enumerate(times):
        wf = workflows[i]
        agent = AGENTS[wf % len(AGENTS)] if rng.random() < 0.9 else rng.choice(AGENTS)
        age = END_US - us
        status = statuses[i]
        if age < 10 * 60_000_000:
            status = "running"
        elif age < DAY_US and rng.random() < 0.003:
            status = "awaiting_approval"
        sealed = status not in ("running", "awaiting_approval")
        steps = 1 + min(int(rng.expovariate(1 / 11)), 400)
        llm = max(1, steps // 3)
        tokens_in = llm * rng.randint(400, 3000)
        tokens_out = llm * rng.randint(50, 600)
        duration = int(rng.lognormvariate(math.log(8000), 1.0))
        labels = {"env": envs[i]}
        if rng.random() < 0.8:
            labels["tenant"] = f"t-{tenants[i]:04d}"
        if rng.random() < 0.5:
            labels["region"] = rng.choice(REGIONS)
        fc = rng.choice(FAILURE[status]) if status in FAILURE else None
        error = halt = cancel = None
        if status == "failed":
            kind = {"provider_failure": "llm", "connector_failure": "tool", "logic_error": "custom"}[fc]  # type: ignore[index]
            error = orjson.dumps({"type": "RuntimeError", "message": "the call failed", "step_kind": kind}).decode()
        elif status == "halted":
            halt = orjson.dumps({"reason": "policy" if fc == "policy_block" else "approval_rejected",
                                 "rule_id": f"rule-{rng.randrange(20)}"}).decode()
        elif status == "cancelled":
            cancel = orjson.dumps({"by": "ops@example.com", "reason": "stuck",
                                   "requested_at": format_ts(us + duration * 500)}).decode()
        eid = _id_at(rng, us)
        row = (
            eid, "research" if rng.random() < 0.1 else "default", agent, "1.4.2", WORKFLOWS[wf], None, "workflow",
            None, status, fc, format_ts(us), us,
            format_ts(us + duration * 1000) if sealed else None, duration if sealed else None,
            steps if sealed else steps // 2, llm, steps - llm, tokens_in, tokens_out,
            (tokens_in * 3 + tokens_out * 15) // 1000 if sealed else None, halt, error, cancel,
            rng.choice(gv) if rng.random() < 0.3 else None, orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
            f"worker-{rng.randrange(40)}", rng.randrange(1000, 60000), str(rng.randrange(10**6)), 30,
            None if sealed else END_US + 3650 * DAY_US,  # running ones hold a live lease: no reaper touches them
            1 if sealed else 0,
        )
        yield row, [(eid, k, v) for k, v in labels.items()]


STARTED = {
    "agent": {"name": "agent-support", "version": "1.4.2", "roles": []},
    "workflow": {"name": "triage_ticket", "version": None}, "execution_type": "workflow",
    "parent_execution_id": None, "labels": {"env": "prod", "tenant": "t-0001"},
    "inputs": {"$blob": "sha256:" + "11" * 32, "size": 180, "type": "json"}, "governance_version": None,
    "sdk": {"name": "execord-python", "version": "0.1.0"},
    "host": {"hostname": "worker-1", "pid": 4242, "proc_start": "172521"}, "lease_s": 30,
}


def long_execution_events(steps: int, start_us: int, seed: int = 11) -> list[Any]:
    """A real chain: execution.started, ``steps`` LLM and tool steps, execution.ended."""
    rng = random.Random(seed)
    eid = _id_at(rng, start_us)
    t = start_us
    events: list[Any] = []
    prev = genesis_hash(eid)

    def add(type_: str, attrs: dict[str, Any], step_id: str | None = None) -> None:
        nonlocal prev
        e = build_event(eid, len(events), type_, format_ts(t), attrs, prev, step_id=step_id)
        prev = e.hash
        events.append(e)

    add("execution.started", STARTED)
    totals = dict.fromkeys(TOTALS_KEYS, 0)
    for i in range(steps):
        t += rng.randint(200, 2000)
        sid = _id_at(rng, t)
        llm = i % 3 == 0
        if llm:
            add("step.started", {"kind": "llm", "name": "chat", "provider": "openai", "model": "gpt-4o-mini",
                                 "input": {"$blob": f"sha256:{rng.getrandbits(256):064x}", "size": 2400,
                                           "type": "json"}}, sid)
            latency = rng.randint(300_000, 3_000_000)
            usage = {"input_tokens": rng.randint(500, 4000), "output_tokens": rng.randint(20, 600)}
            cost = (usage["input_tokens"] * 150 + usage["output_tokens"] * 600) // 1000
            totals["llm_calls"] += 1
            totals["input_tokens"] += usage["input_tokens"]
            totals["output_tokens"] += usage["output_tokens"]
            totals["cost_micros"] += cost
        else:
            add("step.started", {"kind": "tool", "name": rng.choice(("lookup_order", "search_kb", "send_email")),
                                 "input": {"$blob": f"sha256:{rng.getrandbits(256):064x}", "size": 90,
                                           "type": "json"}}, sid)
            latency, usage, cost = rng.randint(5_000, 300_000), None, None
            totals["tool_calls"] += 1
        t += latency
        totals["steps"] += 1
        add("step.ended", {"status": "ok", "output": {"$blob": f"sha256:{rng.getrandbits(256):064x}",
                                                      "size": 300, "type": "json"},
                           "error": None, "usage": usage, "cost_micros": cost,
                           "price_source": "builtin" if llm else None, "latency_ms": round(latency / 1000, 3)}, sid)
    t += 1000
    totals["duration_ms"] = (t - start_us) // 1000
    add("execution.ended", {"status": "succeeded", "error": None, "halt": None, "cancel": None,
                            "failure_class": None, "output": None, "totals": totals})
    return events


def append_real(store: Any, events: list[Any]) -> None:
    for i in range(0, len(events), 100):  # commits of 100 events, as an SDK makes them
        store.append(events[i:i + 100])


def build_sqlite(path: Path, n: int, long_steps: int) -> dict[str, Any]:
    if path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = open_store(str(path))  # the real schema, by the store's own migrations
    events = long_execution_events(long_steps, END_US - 3_600_000_000)
    append_real(store, events)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # generation only; the store itself uses NORMAL
    insert = f"INSERT INTO executions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rows, labels = [], []
    for row, lab in generate(n):
        rows.append(row)
        labels.extend(lab)
        if len(rows) >= 50_000:
            _sqlite_flush(conn, insert, rows, labels)
    _sqlite_flush(conn, insert, rows, labels)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    info = {"version": GEN_VERSION, "executions": n, "long_id": events[0].execution_id, "long_events": len(events),
            "long_steps": long_steps, "built_s": round(time.perf_counter() - t0, 1)}
    Path(f"{path}.json").write_text(json.dumps(info))
    return info


def _sqlite_flush(conn: sqlite3.Connection, insert: str, rows: list[Any], labels: list[Any]) -> None:
    conn.execute("BEGIN")
    conn.executemany(insert, rows)
    conn.executemany("INSERT INTO execution_labels (execution_id, key, value) VALUES (?,?,?)", labels)
    conn.execute("COMMIT")
    rows.clear()
    labels.clear()


def build_postgres(url: str, n: int, long_steps: int) -> dict[str, Any]:
    import psycopg

    t0 = time.perf_counter()
    store = open_store(url)
    events = long_execution_events(long_steps, END_US - 3_600_000_000)
    append_real(store, events)
    store.close()
    with psycopg.connect(url) as conn:
        labels: list[tuple[str, str, str]] = []
        with conn.cursor() as cur, cur.copy(f"COPY executions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row, lab in generate(n):
                copy.write_row(row)
                labels.extend(lab)
        with conn.cursor() as cur, cur.copy("COPY execution_labels (execution_id, key, value) FROM STDIN") as copy:
            for lab_row in labels:
                copy.write_row(lab_row)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE executions")
        conn.execute("VACUUM ANALYZE execution_labels")
    return {"version": GEN_VERSION, "executions": n, "long_id": events[0].execution_id, "long_events": len(events),
            "long_steps": long_steps, "built_s": round(time.perf_counter() - t0, 1)}


# -- the cases ----------------------------------------------------------------------------------

HOUR_US = 3_600_000_000


def cases() -> list[tuple[str, dict[str, Any]]]:
    """(label, ExecutionFilter fields): what people ask of a big store."""
    top, mid, rare = WORKFLOWS[0], WORKFLOWS[9], WORKFLOWS[-1]
    return [
        ("newest 50 (no filter)", {}),
        ("status=failed", {"statuses": ["failed"]}),
        ("status=running (recent only)", {"statuses": ["running"]}),
        ("status=failed,halted", {"statuses": ["failed", "halted"]}),
        ("status=awaiting_approval (rare)", {"statuses": ["awaiting_approval"]}),
        (f"workflow={top} (most common)", {"workflow": top}),
        (f"workflow={rare} (least common)", {"workflow": rare}),
        (f"agent={AGENTS[7]}", {"agent": AGENTS[7]}),
        ("failure_class=connector_failure", {"failure_class": "connector_failure"}),
        ("label env=prod", {"labels": {"env": "prod"}}),
        ("label env=dev", {"labels": {"env": "dev"}}),
        ("label tenant=t-1999 (rare)", {"labels": {"tenant": "t-1999"}}),
        ("label env=staging + region=eu-west", {"labels": {"env": "staging", "region": "eu-west"}}),
        ("since 1h", {"since_us": END_US - HOUR_US}),
        ("since 7d + status=failed", {"since_us": END_US - 7 * 24 * HOUR_US, "statuses": ["failed"]}),
        (f"status=failed + workflow={mid}", {"statuses": ["failed"], "workflow": mid}),
        (f"status=cancelled + workflow={rare} (few rows)", {"statuses": ["cancelled"], "workflow": rare}),
        (f"workflow={top} + label env=staging", {"workflow": top, "labels": {"env": "staging"}}),
        (f"agent={AGENTS[3]} + label tenant=t-0003", {"agent": AGENTS[3], "labels": {"tenant": "t-0003"}}),
        ("status=failed + label tenant=t-0042", {"statuses": ["failed"], "labels": {"tenant": "t-0042"}}),
        ("since 24h + until 12h + status=succeeded",
         {"since_us": END_US - 24 * HOUR_US, "until_us": END_US - 12 * HOUR_US, "statuses": ["succeeded"]}),
    ]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(2):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(samples: list[float]) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def api_params(f: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": 50}
    if "statuses" in f:
        params["status"] = f["statuses"]
    for key in ("workflow", "agent", "failure_class"):
        if key in f:
            params[key] = f[key]
    if "since_us" in f:
        params["since"] = format_ts(f["since_us"])
    if "until_us" in f:
        params["until"] = format_ts(f["until_us"])
    if "labels" in f:
        params["label"] = [f"{k}={v}" for k, v in f["labels"].items()]
    return params


def measure_store(store: Any, info: dict[str, Any], repeat: int) -> list[tuple[str, list[float], int]]:
    out = []
    for label, f in cases():
        rows = store.list_executions(ExecutionFilter(**f))
        out.append((label, timed(lambda f=f: store.list_executions(ExecutionFilter(**f)), repeat), len(rows)))
    # keyset pages: 20 in a row (status=succeeded), each timed once per walk
    for label, f in (("cursor: pages 2-21 of status=succeeded", {"statuses": ["succeeded"]}),
                     ("cursor: pages 2-21 of label env=prod", {"labels": {"env": "prod"}})):
        samples: list[float] = []
        for _ in range(max(1, repeat // 10)):
            page = store.list_executions(ExecutionFilter(**f))
            for _ in range(20):
                last = page[-1]
                before = (_us(last["started_at"]), last["id"])
                t0 = time.perf_counter()
                page = store.list_executions(ExecutionFilter(**f, before=before))
                samples.append((time.perf_counter() - t0) * 1000)
        out.append((label, samples, len(page)))
    deep = (END_US - 7 * 24 * HOUR_US, "ffffffff-ffff-7fff-bfff-ffffffffffff")
    out.append(("cursor: a page one week deep (no filter)",
                timed(lambda: store.list_executions(ExecutionFilter(before=deep)), repeat),
                len(store.list_executions(ExecutionFilter(before=deep)))))
    eid = info["long_id"]

    def timeline() -> list[float]:
        events = store.events(eid)
        return relative_ms(events)

    assert len(timeline()) == info["long_events"]
    out.append((f"timeline: store.events + relative_ms ({info['long_events']:,} events)", timed(timeline, repeat),
                info["long_events"]))
    return out


def _us(ts: str) -> int:
    from execord.record import ts_to_us

    return ts_to_us(ts)


def measure_api(target: str, info: dict[str, Any], repeat: int, scratch: Path) -> list[tuple[str, list[float], int]]:
    sys.path.insert(0, str(ROOT / "tests"))
    import _server  # ServerProcess (``execord serve`` as a child process)

    server = _server.ServerProcess(target, cwd=scratch, reap_interval=2.0)
    out = []
    try:
        server.start(timeout=120)
        with server.client() as http:
            for label, f in cases():
                params = api_params(f)

                def get(params: dict[str, Any] = params) -> Any:
                    r = http.get("/api/v1/executions", params=params)  # timed until the whole body is in
                    r.raise_for_status()
                    return r

                out.append((label, timed(get, repeat), len(get().json()["items"])))
            for label, f in (("cursor: pages 2-21 of status=succeeded", {"statuses": ["succeeded"]}),
                             ("cursor: pages 2-21 of label env=prod", {"labels": {"env": "prod"}})):
                samples: list[float] = []
                n = 0
                for _ in range(max(1, repeat // 10)):
                    page = http.get("/api/v1/executions", params=api_params(f)).json()
                    for _ in range(20):
                        t0 = time.perf_counter()
                        r = http.get("/api/v1/executions", params={**api_params(f), "cursor": page["next_cursor"]})
                        r.raise_for_status()
                        page = r.json()
                        samples.append((time.perf_counter() - t0) * 1000)
                        n = len(page["items"])
                out.append((label, samples, n))
            eid = info["long_id"]

            def timeline() -> Any:
                r = http.get(f"/api/v1/executions/{eid}/timeline")  # timed until the whole body is in
                r.raise_for_status()
                return r

            assert len(timeline().json()["items"]) == info["long_events"]
            out.append((f"timeline: GET /executions/{{id}}/timeline ({info['long_events']:,} events)",
                        timed(timeline, repeat), info["long_events"]))

            def detail() -> Any:
                r = http.get(f"/api/v1/executions/{eid}")
                r.raise_for_status()
                return r

            out.append(("detail: GET /executions/{id} (summary + steps), no target", timed(detail, repeat),
                        len(detail().json().get("steps") or [])))
    finally:
        server.stop()
    return out


def plans(store: Any) -> dict[str, str]:
    """The query plan of each list case (to see which index each one walks)."""
    from execord.store._query import list_sql

    out = {}
    extra = [("cursor: a page one week deep (no filter)",
              {"before": (END_US - 7 * 24 * HOUR_US, "ffffffff-ffff-7fff-bfff-ffffffffffff")}),
             ("cursor: a page of label env=prod", {"labels": {"env": "prod"},
                                                   "before": (END_US - 24 * HOUR_US, "ffffffff-ffff-7fff-bfff-ffffffffffff")})]
    for label, f in cases() + extra:
        sql, params = list_sql(ExecutionFilter(**f))
        if store.backend == "sqlite":
            out[label] = "; ".join(str(r[-1]) for r in store._read("EXPLAIN QUERY PLAN " + sql, params))
        else:
            out[label] = " | ".join(r[0].strip() for r in store._read("EXPLAIN " + sql, params))
    return out


def report(title: str, results: list[tuple[str, list[float], int]]) -> list[tuple[str, float, float, bool]]:
    print(title)
    print(f"  {'case':<58}{'rows':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}  target")
    summary = []
    for label, samples, rows in results:
        timeline = label.startswith("timeline")
        target = None if "no target" in label else (30.0 if timeline else 50.0)
        q95 = p95(samples)
        verdict = "" if target is None else f"≤ {target:g} ms p95: {'met' if q95 <= target else 'NOT met'}"
        print(f"  {label:<58}{rows:>6,}{statistics.median(samples):>9.2f}{q95:>9.2f}{max(samples):>9.2f}  {verdict}")
        if target is not None:
            summary.append((label, q95, target, q95 <= target))
    lists = [s for s in summary if not s[0].startswith("timeline")]
    if lists:
        worst = max(lists, key=lambda s: s[1])
        print(f"  list cases meeting p95 ≤ 50 ms: {sum(s[3] for s in lists)} of {len(lists)}; "
              f"worst: {worst[0]} at {worst[1]:.1f} ms")
    return summary


def measure_target(target: str, info: dict[str, Any], args: argparse.Namespace) -> Any:
    """`measure_store` on the store at ``target`` (and its query plans with --plans)."""
    store = open_store(target, create=False)
    try:
        results = measure_store(store, info, args.repeat)
        if args.plans:
            for label, plan in plans(store).items():
                print(f"  plan {label}: {plan}")
        return results
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--executions", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=1000, help="steps of the long execution (default 1,000)")
    ap.add_argument("--rebuild", action="store_true", help="make the cached SQLite file again")
    ap.add_argument("--repeat", type=int, default=30, help="timed runs per case (default 30)")
    ap.add_argument("--no-api", action="store_true", help="skip the HTTP API (execord serve) measurements")
    ap.add_argument("--plans", action="store_true", help="print the query plan of each list case")
    ap.add_argument("--db", default=None, help="the SQLite file to use (default: cached under the temp folder)")
    ap.add_argument("--pg", default=PG_ADMIN, help="a PostgreSQL URL where a scratch database may be created")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="execord-query-"))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"query: {args.executions:,} executions + one of {args.steps:,} steps; {os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}; {args.repeat} timed runs per case, warm")
    try:
        for backend in backends:
            run_backend(backend, args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_backend(backend: str, args: argparse.Namespace, scratch: Path) -> None:
    """Build (or reuse) the store of one backend and measure it."""
    if backend == "sqlite":
        path = Path(args.db) if args.db else CACHE / f"query-{args.executions}-{args.steps}.db"
        meta = Path(f"{path}.json")
        info = json.loads(meta.read_text()) if meta.exists() and path.exists() else None
        if args.rebuild or info is None or info.get("version") != GEN_VERSION:
            print(f"building {path} ...", flush=True)
            info = build_sqlite(path, args.executions, args.steps)
            print(f"  built in {info['built_s']}s: {path.stat().st_size / 2**20:,.0f} MiB", flush=True)
        else:
            print(f"reusing {path} (built in {info['built_s']}s; --rebuild to make it again)")
        report("sqlite, store.list_executions (limit 50) and store.events:",
               measure_target(str(path), info, args))
        if not args.no_api:
            report("sqlite, through `execord serve` (GET /api/v1/..., HTTP + auth + JSON, client-timed):",
                   measure_api(str(path), info, args.repeat, scratch))
    else:
        import psycopg

        name = f"execord_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"{args.pg.rsplit('/', 1)[0]}/{name}"
        try:
            print(f"building PostgreSQL database {name} (COPY) ...", flush=True)
            info = build_postgres(url, args.executions, args.steps)
            print(f"  built in {info['built_s']}s", flush=True)
            report("postgres, store.list_executions (limit 50) and store.events:", measure_target(url, info, args))
            if not args.no_api:
                report("postgres, through `execord serve` (GET /api/v1/..., HTTP + auth + JSON, client-timed):",
                       measure_api(url, info, args.repeat, scratch))
        finally:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
