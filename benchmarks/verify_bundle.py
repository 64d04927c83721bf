"""How fast `execord verify BUNDLE --key PUB` checks an export bundle of 10,000 executions (target ≥ 300,000 events/s).

Builds a real SQLite store of ``--executions`` (default 10,000) executions of
``--events`` (default 20) events each, through the store's own `append` (batched, several
executions per commit): execution.started, then LLM and tool steps (step.started /
step.ended), then execution.ended, so every chain, summary, seal and ledger leaf is real.
Events are a few hundred bytes; each LLM step's input (its messages) is a content blob, so
the bundle carries blobs too. Then signs a checkpoint, writes one bundle of every execution
with `write_bundle`, and times:

- ``execord verify BUNDLE --key PUB`` as a real subprocess (wall time, process start and
  imports included), ``--runs`` times: best and median;
- `verify_bundle()` in process, ``--runs`` times: best and median.

``--profile`` also runs `verify_bundle()` in one process (no forked workers), timed and then
under cProfile, and prints where the time goes.

    python benchmarks/verify_bundle.py [--executions 10000] [--events 20] [--runs 5] [--db PATH] [--profile]
                                       [--deflated]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from _load import Others

from execord.ledger import _log
from execord.ledger._bundle import write_bundle
from execord.ledger._note import Signer
from execord.ledger._verify import verify_bundle
from execord.record import TOTALS_KEYS, build_event, format_ts, genesis_hash, make_blob, uuid7
from execord.store import open_store

TARGET = 300_000
ORIGIN = "bench.example/execord-log"
PER_COMMIT = 50  # executions per store.append (one transaction)
SYSTEM = ("You are a support agent for an online shop. Answer briefly, cite the order, never "
          "promise refunds above the policy limit, and escalate anything about payments.")
TOOLS = ("lookup_order", "search_kb", "create_ticket", "refund_quote")


def started_attrs(n: int) -> dict[str, object]:
    return {
        "agent": {"name": "support-bot", "version": "2.4.1", "roles": ["support"]},
        "workflow": {"name": "triage_ticket", "version": "7"},
        "execution_type": "workflow", "parent_execution_id": None,
        "labels": {"env": "prod", "tenant": f"t-{n % 2000:04d}", "region": "eu-west"},
        "inputs": {"ticket_id": f"T-{100000 + n}", "channel": "email",
                   "subject": "Where is my order? It was due last Tuesday."},
        "governance_version": None, "sdk": {"name": "execord-python", "version": "0.1.0"},
        "host": {"hostname": "agent-host-3", "pid": 4242}, "lease_s": 30,
    }


def execution_events(n: int, per_execution: int, t_us: int) -> tuple[list, list, int]:
    """The events and blobs of one sealed execution of ``per_execution`` events."""
    eid = uuid7()
    prev = genesis_hash(eid)
    events, blobs = [], []
    totals = dict.fromkeys(TOTALS_KEYS, 0)
    middle = per_execution - 2
    specs: list[tuple[str, dict[str, object], str | None]] = []
    for k in range(middle // 2):
        step = f"s-{k:03d}"
        if k % 2 == 0:  # an LLM step: its messages are a blob, the answer inline
            msgs = orjson.dumps([
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Ticket T-{100000 + n}, turn {k}: where is order O-{n * 7 + k}?"},
            ])
            blob = make_blob(msgs)
            blobs.append(blob)
            usage = {"input_tokens": 412 + k, "output_tokens": 96}
            specs.append(("step.started", {"kind": "llm", "name": "chat gpt-4o-mini", "input": blob.ref(),
                                           "model": "gpt-4o-mini", "provider": "openai"}, step))
            specs.append(("step.ended", {
                "status": "ok", "error": None, "usage": usage, "cost_micros": 118, "price_source": "genai-prices",
                "latency_ms": 840 + k,
                "output": {"role": "assistant", "content": f"Order O-{n * 7 + k} shipped on Monday; tracking "
                                                           "says it is at the local depot and due tomorrow."}}, step))
            totals["llm_calls"] += 1
            totals["input_tokens"] += usage["input_tokens"]
            totals["output_tokens"] += usage["output_tokens"]
            totals["cost_micros"] += 118
        else:  # a tool step, inline input and output
            tool = TOOLS[k % len(TOOLS)]
            specs.append(("step.started", {"kind": "tool", "name": tool,
                                           "input": {"order_id": f"O-{n * 7 + k}", "include": ["status", "eta"]}},
                          step))
            specs.append(("step.ended", {
                "status": "ok", "error": None, "usage": None, "cost_micros": None, "price_source": None,
                "latency_ms": 35 + k,
                "output": {"order_id": f"O-{n * 7 + k}", "status": "in_transit", "carrier": "DHL",
                           "eta": "2026-03-14", "depot": "Leipzig"}}, step))
            totals["tool_calls"] += 1
        totals["steps"] += 1
    if middle % 2:
        specs.append(("log", {"level": "info", "message": "ticket answered", "data": {"ticket": f"T-{100000 + n}"}},
                      None))
    t0 = t_us
    types_attrs = [("execution.started", started_attrs(n), None), *specs]
    for seq, (type_, attrs, step) in enumerate(types_attrs):
        t_us += 1_337
        e = build_event(eid, seq, type_, format_ts(t_us), attrs, prev, step_id=step)
        prev = e.hash
        events.append(e)
    t_us += 1_337
    totals["duration_ms"] = (t_us - t0) // 1000
    ended = build_event(eid, len(events), "execution.ended", format_ts(t_us), {
        "status": "succeeded", "error": None, "halt": None, "cancel": None, "failure_class": None,
        "totals": totals}, prev)
    events.append(ended)
    return events, blobs, t_us


def build(path: str, executions: int, per_execution: int) -> list[str]:
    """Write the store; return the execution ids in order."""
    if per_execution < 2:
        raise SystemExit("--events must be at least 2 (execution.started and execution.ended)")
    store = open_store(path)
    t_us = 1_790_000_000_000_000
    ids = []
    events: list = []
    blobs: list = []
    for n in range(executions):
        evs, bls, t_us = execution_events(n, per_execution, t_us)
        ids.append(evs[0].execution_id)
        events.extend(evs)
        blobs.extend(bls)
        if (n + 1) % PER_COMMIT == 0 or n == executions - 1:
            store.append(events, blobs)
            events, blobs = [], []
    store.close()
    return ids


def floors(bundle: Path) -> None:
    """The C-level work any verifier of this bundle does, timed alone, in one process."""
    import mmap
    import struct
    import zipfile
    import zlib

    t0 = time.perf_counter()
    with zipfile.ZipFile(bundle) as z:
        infos = z.infolist()
    t_dir = time.perf_counter() - t0
    with open(bundle, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        t0 = time.perf_counter()
        data = {}
        for i in infos:
            name_len, extra_len = struct.unpack_from("<HH", view, i.header_offset + 26)
            at = i.header_offset + 30 + name_len + extra_len
            raw = view[at:at + i.compress_size]
            data[i.filename] = raw if i.compress_type == zipfile.ZIP_STORED else zlib.decompressobj(-15).decompress(raw)
        t_inflate = time.perf_counter() - t0
    t0 = time.perf_counter()
    for v in data.values():
        zlib.crc32(v)
    t_crc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for v in data.values():
        hashlib.sha256(v).digest()
    t_sha = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for name, v in data.items():
        if name.endswith("/events.jsonl"):
            prev = hashlib.sha256(name.split("/")[1].encode()).digest()
            for body in v.split(b"\n")[:-1]:
                prev = hashlib.sha256(prev + body).digest()
                n += 1
    t_chain = time.perf_counter() - t0
    total = t_dir + t_inflate + t_crc + t_sha + t_chain
    print(f"floors, one process: central directory {t_dir:.2f}s, inflate (or copy) {t_inflate:.2f}s, crc32 {t_crc:.2f}s, "
          f"sha256 of every member {t_sha:.2f}s, bare chain hashing of {n:,} events {t_chain:.2f}s: "
          f"{total:.2f} CPU-s in all")


def median_best(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executions", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=20, help="events per execution (default 20)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    ap.add_argument("--db", default=None, help="reuse (or create) the store at this path")
    ap.add_argument("--profile", action="store_true", help="also profile verify_bundle() in one process (cProfile)")
    ap.add_argument("--deflated", action="store_true",
                    help="time a bundle with every member deflated (as bundles were written before stored members)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="execord-bench-bundle-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the bundle, and the store unless --db named it


def run(args: argparse.Namespace, scratch: Path) -> None:
    path = args.db or str(scratch / "bundle.db")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        build(path, args.executions, args.events)
        print(f"built {args.executions:,} executions x {args.events} events through store.append in "
              f"{time.perf_counter() - t0:.1f}s at {path}", flush=True)
    store = open_store(path, create=False)
    ids = [r[0] for r in store._read("SELECT execution_id FROM ledger ORDER BY idx")]  # type: ignore[attr-defined]
    stats = store._read("SELECT count(*), avg(length(body)), min(length(body)), max(length(body))"  # type: ignore[attr-defined]
                        " FROM events")[0]
    nblobs = store._read("SELECT count(*), avg(size) FROM blobs")[0]  # type: ignore[attr-defined]
    print(f"store: {len(ids):,} sealed executions, {stats[0]:,} events (body {stats[2]}–{stats[3]} bytes, "
          f"mean {stats[1]:.0f}), {nblobs[0]:,} blobs (mean {nblobs[1] or 0:.0f} bytes)")

    signer = Signer.generate(ORIGIN)
    pub = scratch / "ledger.pub"
    pub.write_text(signer.verifier.text() + "\n")
    bundle = scratch / "bundle.zip"
    t0 = time.perf_counter()
    _log.make_checkpoint(store, signer)
    write_bundle(store, ids, bundle, signer=signer)
    print(f"write_bundle: {len(ids):,} executions in {time.perf_counter() - t0:.1f}s")
    store.close()
    import zipfile

    if args.deflated:
        with zipfile.ZipFile(bundle) as z:
            members = [(i, z.read(i)) for i in z.infolist()]
        with zipfile.ZipFile(bundle, "w") as z:
            for info, data in members:
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data, compresslevel=6)
        print("bundle rewritten with every member deflated (--deflated)")
    size = bundle.stat().st_size

    with zipfile.ZipFile(bundle) as z:
        infos = z.infolist()
    raw = sum(i.file_size for i in infos)
    print(f"bundle: {size:,} bytes ({size / 2**20:.1f} MiB) zipped, {raw / 2**20:.1f} MiB unzipped, "
          f"{len(infos):,} members, sha256 {hashlib.sha256(bundle.read_bytes()).hexdigest()[:16]}…")

    verifier = _log.read_verifier(str(pub))
    report = verify_bundle(str(bundle), key=verifier)  # warm-up (and the page cache)
    assert report.ok, [f.to_dict() for f in report.failures[:3]]
    events = report.events
    inproc = []
    with Others() as others:
        for _ in range(args.runs):
            t0 = time.perf_counter()
            report = verify_bundle(str(bundle), key=verifier)
            inproc.append(time.perf_counter() - t0)
            assert report.ok
    best, med = median_best(inproc)
    print(f"verify_bundle() in process: {events:,} events, {report.executions:,} executions: best {best:.2f}s = "
          f"{events / best:,.0f} events/s, median {med:.2f}s = {events / med:,.0f} events/s ({args.runs} runs; "
          f"other processes used {others.cores:.2f} of {os.cpu_count()} cores meanwhile)")

    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    cmd = [sys.executable, "-m", "execord", "verify", str(bundle), "--key", str(pub)]
    walls, inner = [], []
    with Others() as others:
        for _ in range(args.runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            walls.append(time.perf_counter() - t0)
            if out.returncode != 0:
                raise SystemExit(f"`execord verify` exited {out.returncode}\n{out.stdout}\n{out.stderr}")
            m = re.search(r"in ([0-9.]+)s", out.stdout)
            if m:
                inner.append(float(m.group(1)))
    best, med = median_best(walls)
    print(f"`execord verify BUNDLE --key PUB` end to end (process start included): best {best:.2f}s = "
          f"{events / best:,.0f} events/s, median {med:.2f}s = {events / med:,.0f} events/s ({args.runs} runs; "
          f"other processes used {others.cores:.2f} of {os.cpu_count()} cores meanwhile)")
    if inner:
        print(f"  of which verification as the CLI reports it: median {statistics.median(inner):.2f}s; "
              f"start, imports and output: median {med - statistics.median(inner):.2f}s")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import execord.cli"], check=True, env=env)
    print(f"  (python -c 'import execord.cli' alone: {time.perf_counter() - t0:.2f}s)")
    print(out.stdout.strip().splitlines()[0])
    verdict = "met" if events / med >= TARGET else "NOT met"
    print(f"target: >= {TARGET:,} events/s end to end: {verdict} (median {events / med:,.0f})")

    if args.profile:
        # In one process, so cProfile sees the work verify_bundle otherwise shares out to
        # forked workers (it does so from _PARALLEL_MIN executions on).
        from execord.ledger import _verify

        saved = getattr(_verify, "_PARALLEL_MIN", None)
        _verify._PARALLEL_MIN = 1 << 62  # type: ignore[attr-defined]
        try:
            t0 = time.perf_counter()
            verify_bundle(str(bundle), key=verifier)
            serial = time.perf_counter() - t0
            prof = cProfile.Profile()
            prof.enable()
            verify_bundle(str(bundle), key=verifier)
            prof.disable()
        finally:
            if saved is not None:
                _verify._PARALLEL_MIN = saved  # type: ignore[attr-defined]
        print(f"\nverify_bundle() in one process (no workers): {serial:.2f}s = {events / serial:,.0f} events/s")
        floors(bundle)
        print("cProfile of it (tottime, top 25):")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
