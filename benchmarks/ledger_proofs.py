"""Inclusion and consistency proofs in a ledger of 1,000,000 leaves (target p99 ≤ 1 ms).

The ledger: ``--leaves`` (default 1,000,000) leaves written straight into the ``ledger`` and
``ledger_nodes`` tables with the layout `execord.store._ledger.append_leaves` writes (each
leaf's entry is a real `ledger_entry` of a sealed execution; level 0 holds the leaf hashes,
level k+1 every perfect subtree of two level-k ones), computed in Python and inserted in one
transaction (executemany on SQLite; COPY on PostgreSQL). Building a million sealed executions
through `append` would take hours and measure the append, not the proofs. The data is then
checked against `execord.ledger.merkle` (the root, one inclusion proof, one consistency
proof, computed from the entries alone).

Measured, warm (after 20 untimed proofs of each kind), through the store as the API and
`write_bundle` use it:

- ``--proofs`` (default 2,000) inclusion proofs `_log.inclusion(store, execution_id, size)`
  of random leaves in the tree of every leaf;
- as many consistency proofs `_log.consistency(store, old, size)` from a random older size.

p50, p99 and max in ms. The plan of the statement `ledger_nodes` runs is printed first (it
must use the primary key: a scan of the table costs ~0.3 s per proof at this size).
``--profile`` runs 20 proofs of each kind under cProfile.

    python benchmarks/ledger_proofs.py [--leaves 1000000] [--proofs 2000] [--db PATH] [--no-sqlite]
                                       [--pg [postgresql://postgres@127.0.0.1:5432/postgres]]
                                       [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import os
import pstats
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
from _load import Others

from execord.ledger import _log, merkle
from execord.record import format_ts, ledger_entry
from execord.store import open_store

PG_ADMIN = os.environ.get("EXECORD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 1.0
WARM_UP = 20
_sha256 = hashlib.sha256


# -- the ledger -----------------------------------------------------------------------------


def make_entries(n: int, seed: int = 6962) -> tuple[list[str], list[bytes]]:
    """(execution ids, ledger entries) of ``n`` sealed executions, in ledger order.

    Entries are encoded with orjson (sorted keys, compact): for these values (ASCII strings,
    small integers, null) that is RFC 8785, and the first 1,000 are checked against
    `ledger_entry` itself, which is ~10x slower.
    """
    rng = random.Random(seed)
    t_us = 1_790_000_000_000_000
    ids, entries = [], []
    statuses = ("succeeded",) * 17 + ("failed", "halted", "cancelled")
    for n_ in range(n):
        t_us += rng.randrange(1, 4_000_000)
        ms = t_us // 1000  # a UUIDv7 of the seal time: ledger order is roughly id order, as in a real log
        eid = str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
                            | rng.getrandbits(62)))
        fields = {"execution_id": eid, "status": statuses[rng.randrange(len(statuses))],
                  "event_count": rng.randrange(4, 2000), "events_root": rng.randbytes(32).hex(),
                  "last_hash": rng.randbytes(32).hex(),
                  "governance_version": None if rng.random() < 0.5 else f"gv_{rng.getrandbits(64):016x}",
                  "sealed_at": format_ts(t_us)}
        entry = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        if n_ < 1000:
            real = ledger_entry(**{**fields, "events_root": bytes.fromhex(fields["events_root"]),  # type: ignore[arg-type]
                                   "last_hash": bytes.fromhex(fields["last_hash"])})
            assert entry == real, (entry, real)
        ids.append(eid)
        entries.append(entry)
    return ids, entries


def perfect_subtrees(entries: list[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(level, index, hash) of every perfect subtree, level 0 (the leaf hashes) first."""
    row = [_sha256(b"\x00" + e).digest() for e in entries]
    level = 0
    while row:
        yield from ((level, i, h) for i, h in enumerate(row))
        row = [_sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        level += 1


def fill_sqlite(path: str, ids: list[str], entries: list[bytes]) -> int:
    store = open_store(path)  # the schema, by the store's own migrations
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO ledger (idx, execution_id, entry) VALUES (?,?,?)",
                     ((i, eid, e) for i, (eid, e) in enumerate(zip(ids, entries, strict=True))))
    nodes = [0]

    def counted() -> Iterator[tuple[int, int, bytes]]:
        for row in perfect_subtrees(entries):
            nodes[0] += 1
            yield row

    conn.executemany("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?,?,?)", counted())
    conn.execute("COMMIT")
    conn.close()
    return nodes[0]


def fill_postgres(url: str, ids: list[str], entries: list[bytes]) -> int:
    import psycopg

    store = open_store(url)
    store.close()
    nodes = 0
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving
        with conn.cursor() as cur, cur.copy("COPY ledger (idx, execution_id, entry) FROM STDIN") as copy:
            for i, (eid, e) in enumerate(zip(ids, entries, strict=True)):
                copy.write_row((i, eid, e))
        with conn.cursor() as cur, cur.copy("COPY ledger_nodes (level, idx, hash) FROM STDIN") as copy:
            for row in perfect_subtrees(entries):
                copy.write_row(row)
                nodes += 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE ledger")  # what autovacuum does after a bulk load
        conn.execute("VACUUM ANALYZE ledger_nodes")
    return nodes


def check(store: Any, ids: list[str], entries: list[bytes], rng: random.Random) -> None:
    """The stored tree is the tree of the entries: root and one proof of each kind vs `merkle`."""
    size = len(entries)
    root = merkle.root(entries)
    assert _log.root_at(store, size) == (size, root), "the stored root is not merkle.root(entries)"
    i = rng.randrange(size)
    p = _log.inclusion(store, ids[i], size)
    assert p["entry"].encode() == entries[i] and p["root"] == root.hex()
    assert p["proof"] == [h.hex() for h in merkle.inclusion_proof(entries, i)], "inclusion proof differs"
    assert merkle.verify_inclusion(merkle.leaf_hash(entries[i]), i, size, [bytes.fromhex(h) for h in p["proof"]],
                                   root)
    old = rng.randrange(1, size) if size > 1 else size
    c = _log.consistency(store, old, size)
    assert c["from_root"] == merkle.root(entries[:old]).hex() and c["to_root"] == root.hex()
    assert c["proof"] == [h.hex() for h in merkle.consistency_proof(entries, old, size)], "consistency proof differs"
    assert merkle.verify_consistency(old, size, bytes.fromhex(c["from_root"]), root,
                                     [bytes.fromhex(h) for h in c["proof"]])
    print(f"  checked against execord.ledger.merkle: root {root.hex()[:16]}…, inclusion of leaf {i:,} "
          f"({len(p['proof'])} hashes), consistency {old:,} → {size:,} ({len(c['proof'])} hashes)", flush=True)


# -- the measurement ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    out = []
    for fn in calls:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def line(label: str, ms: list[float]) -> str:
    p99 = pct(ms, 0.99)
    verdict = "met" if p99 <= TARGET_MS else "NOT met"
    return (f"  {label:<34} n={len(ms):<6,} p50 {statistics.median(ms):9.3f} ms  p99 {p99:9.3f} ms  "
            f"max {max(ms):9.3f} ms  (target p99 <= {TARGET_MS:g} ms: {verdict})")


def proof_calls(store: Any, ids: list[str], k: int, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """``k`` inclusion proofs of random leaves and ``k`` consistency proofs from random sizes."""
    size = len(ids)
    leaves = [ids[rng.randrange(size)] for _ in range(k)]
    olds = [rng.randrange(1, size) for _ in range(k)]
    inc = [functools.partial(_log.inclusion, store, eid, size) for eid in leaves]
    con = [functools.partial(_log.consistency, store, old, size) for old in olds]
    return inc, con


def nodes_plan(store: Any) -> str:
    """The query plan of the statement `store.ledger_nodes` runs (captured from its read)."""
    seen: list[tuple[str, Any]] = []
    read = store._read

    def capture(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return read(sql, params)

    store._read = capture
    try:
        store.ledger_nodes([(0, 1), (1, 2)])
    finally:
        del store._read
    sql, params = seen[-1]
    prefix = "EXPLAIN QUERY PLAN " if store.backend == "sqlite" else "EXPLAIN "
    return " / ".join(str(r[-1]).strip() for r in read(prefix + sql, params))


def busy(store: Any, others: Others) -> str:
    who = "other processes (the PostgreSQL server included)" if store.backend == "postgres" else "other processes"
    return f"{who} used {others.cores:.2f} of {os.cpu_count()} cores meanwhile"


def measure(label: str, target: str, ids: list[str], entries: list[bytes], args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    store = open_store(target, create=False)
    try:
        check(store, ids, entries, rng)
        print(f"  store.ledger_nodes plan: {nodes_plan(store)}", flush=True)
        inc, con = proof_calls(store, ids, args.proofs + WARM_UP, rng)
        with Others() as others:
            results = [("inclusion(store, id, size)", timed(inc)[WARM_UP:]),
                       ("consistency(store, old, size)", timed(con)[WARM_UP:])]
        print(f"{label}: {len(ids):,} leaves, tree size {len(ids):,}, {args.proofs:,} proofs of each kind "
              f"({busy(store, others)})")
        for name, ms in results:
            print(line(name, ms), flush=True)
        if args.profile:
            inc, con = proof_calls(store, ids, 20, rng)
            prof = cProfile.Profile()
            prof.enable()
            timed(inc + con)
            prof.disable()
            print(f"\ncProfile of 20 inclusion + 20 consistency proofs ({label}), tottime, top 12:")
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=2_000, help="timed proofs of each kind (default 2,000)")
    ap.add_argument("--db", default=None, help="the SQLite file (reused when it exists with --leaves leaves)")
    ap.add_argument("--no-sqlite", action="store_true", help="measure PostgreSQL only")
    ap.add_argument("--pg", nargs="?", const=PG_ADMIN, default=None,
                    help="also PostgreSQL: a URL where a scratch database may be created (and dropped)")
    ap.add_argument("--profile", action="store_true", help="profile 20 proofs of each kind (cProfile)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.leaves < 2:
        raise SystemExit("--leaves must be at least 2")
    t0 = time.perf_counter()
    ids, entries = make_entries(args.leaves)
    print(f"made {len(entries):,} ledger entries (mean {sum(map(len, entries)) / len(entries):.0f} bytes) in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="execord-bench-ledger-"))
    try:
        if not args.no_sqlite:
            path = args.db or str(scratch / "ledger.db")
            if args.db and os.path.exists(path):
                print(f"reusing {path}")
            else:
                t0 = time.perf_counter()
                nodes = fill_sqlite(path, ids, entries)
                print(f"sqlite: wrote {len(ids):,} leaves and {nodes:,} subtree hashes in one transaction in "
                      f"{time.perf_counter() - t0:.1f}s ({os.path.getsize(path) / 2**20:,.0f} MiB)", flush=True)
            measure("sqlite", path, ids, entries, args)
        if args.pg:
            run_postgres(args, ids, entries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_postgres(args: argparse.Namespace, ids: list[str], entries: list[bytes]) -> None:
    import psycopg

    name = f"execord_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.pg.rsplit('/', 1)[0]}/{name}"
    try:
        t0 = time.perf_counter()
        nodes = fill_postgres(url, ids, entries)
        print(f"postgres: wrote {len(ids):,} leaves and {nodes:,} subtree hashes (COPY, one transaction, then "
              f"VACUUM ANALYZE) in {time.perf_counter() - t0:.1f}s into database {name}", flush=True)
        measure("postgres", url, ids, entries, args)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
