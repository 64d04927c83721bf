"""Verify every record in a store: re-hash each stored event and check each seal.

A large SQLite store is split by execution-id range across worker processes, each reading
through its own read-only connection: reading a row and hashing it cost about the same,
and both scale with cores (docs/benchmarks.md).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from ..record import Problem, Seal, verify_chain
from ._protocol import Store

_PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class VerifyReport:
    """What `verify_store` found.

    Attributes:
        executions: executions checked.
        events: events re-hashed.
        sealed: executions whose seal was checked.
        problems: the first problem of each execution that failed.
    """

    executions: int = 0
    events: int = 0
    sealed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    deep: bool = False

    def add(self, execution_id: str, rows: list[tuple[int, bytes, bytes]], seal: Seal | None) -> None:
        """Verify one execution's rows and count the result."""
        count, problem = verify_chain(execution_id, rows, seal, deep=self.deep)
        self.executions += 1
        self.events += count
        self.sealed += seal is not None and problem is None
        if problem is not None:
            self.problems.append(problem)

    def merge(self, other: VerifyReport) -> None:
        """Add another part's counts and problems to this one."""
        self.executions += other.executions
        self.events += other.events
        self.sealed += other.sealed
        self.problems.extend(other.problems)


def _seal(row: tuple[int, bytes, bytes]) -> Seal:
    return Seal(row[0], row[1], row[2])


def verify_rows(
    rows: Iterable[tuple[str, int, bytes, bytes]], seals: dict[str, Seal], *, deep: bool = False
) -> VerifyReport:
    """Check rows (execution_id, seq, hash, body), grouped by execution in seq order."""
    report = VerifyReport(deep=deep)
    seen = set()
    for execution_id, group in itertools.groupby(rows, key=lambda r: r[0]):
        seen.add(execution_id)
        report.add(execution_id, [(r[1], r[2], r[3]) for r in group], seals.get(execution_id))
    for execution_id in sorted(seals.keys() - seen):
        report.problems.append(Problem(execution_id, None, "sealed, but no events are stored"))
    return report


# A loose index scan: each distinct execution id in events, one index seek each, so events
# without a summary row are verified too.
_EVENT_IDS = """
WITH RECURSIVE ids(x) AS (
  SELECT (SELECT min(execution_id) FROM events WHERE execution_id >= ?1)
  UNION ALL
  SELECT (SELECT min(execution_id) FROM events WHERE execution_id > x) FROM ids
  WHERE x IS NOT NULL AND (?2 IS NULL OR x < ?2)
)
SELECT x FROM ids WHERE x IS NOT NULL AND (?2 IS NULL OR x < ?2)
"""


def verify_sqlite_range(path: str, lo: str | None = None, hi: str | None = None, deep: bool = False,
                        store_checks: bool = True) -> VerifyReport:
    """Verify the executions of an SQLite store whose ids are in [lo, hi) (None: unbounded).

    With ``store_checks``, also the checks that span the whole store: every ended execution
    has a seal, and every blob's bytes match its digest.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA mmap_size = 1073741824")
        seals = {
            r[0]: Seal(r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT execution_id, event_count, events_root, last_hash FROM seals"
                " WHERE execution_id >= ?1 AND (?2 IS NULL OR execution_id < ?2)",
                (lo or "", hi),
            )
        }
        report = VerifyReport(deep=deep)
        seen = set()
        for (execution_id,) in conn.execute(_EVENT_IDS, (lo or "", hi)).fetchall():
            seen.add(execution_id)
            rows = conn.execute(
                "SELECT seq, hash, body FROM events WHERE execution_id = ? ORDER BY seq", (execution_id,)
            ).fetchall()
            report.add(execution_id, rows, seals.get(execution_id))
        for execution_id in sorted(seals.keys() - seen):
            report.problems.append(Problem(execution_id, None, "sealed, but no events are stored"))
        if store_checks:
            report.problems.extend(_unsealed_ends(conn) + _bad_blobs(conn))
        return report
    finally:
        conn.close()


def _unsealed_ends(conn: sqlite3.Connection) -> list[Problem]:
    """Executions that ended (or whose summary says sealed) but have no seal row."""
    rows = conn.execute(
        "SELECT e.id, e.status FROM executions e WHERE (e.sealed = 1 OR EXISTS (SELECT 1 FROM events v"
        " WHERE v.execution_id = e.id AND v.type = 'execution.ended'))"
        " AND NOT EXISTS (SELECT 1 FROM seals s WHERE s.execution_id = e.id)"
    ).fetchall()
    return [Problem(eid, None, f"the execution ended ({status}) but its seal is missing") for eid, status in rows]


def _bad_blobs(conn: sqlite3.Connection) -> list[Problem]:
    """Blobs whose bytes no longer match their digest (erased blobs have no bytes to check)."""
    import hashlib

    out = []
    for digest, data in conn.execute("SELECT digest, data FROM blobs WHERE data IS NOT NULL"):
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            out.append(Problem(f"blob {digest}", None, "its bytes do not match its digest"))
    return out


def _boundaries(path: str, parts: int) -> list[str | None]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM executions ORDER BY id")]
    finally:
        conn.close()
    if len(ids) < parts:
        return [None, None]
    return [None, *(ids[len(ids) * k // parts] for k in range(1, parts)), None]


def verify_store(store: Store, *, workers: int | None = None, deep: bool = False) -> VerifyReport:
    """Re-hash every stored event and check every seal (DESIGN §4).

    Reads each event's stored canonical bytes, never a re-serialization, so a changed byte
    anywhere fails at exactly its execution and seq.

    Args:
        store: the store to check.
        workers: processes to split the work across; default: one per core (at most 4) for
            an SQLite file of 32 MiB or more, else one (in this process).
        deep: also parse each event and check its canonical form (see `verify_chain`).
    """
    path = getattr(store, "path", None)
    if store.backend != "sqlite" or not path or path == ":memory:":
        seals = {k: Seal(v[1], v[2], v[3]) for k, v in store.all_seals().items()}
        return verify_rows(store.iter_chain_rows(), seals, deep=deep)
    if workers is None:
        big = os.path.getsize(path) >= _PARALLEL_MIN_BYTES
        workers = min(os.cpu_count() or 1, 4) if big else 1
    bounds = _boundaries(path, workers) if workers > 1 else [None, None]
    if len(bounds) <= 2:
        return verify_sqlite_range(path, deep=deep)
    report = VerifyReport(deep=deep)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        report.problems.extend(_unsealed_ends(conn) + _bad_blobs(conn))
    finally:
        conn.close()
    # fork is instant, but only safe when no other thread could hold a lock mid-fork (the
    # CLI); a process with writer threads (the SDK, the server) spawns fresh workers.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    with ProcessPoolExecutor(max_workers=len(bounds) - 1, mp_context=get_context(method)) as pool:
        parts = zip(bounds, bounds[1:], strict=False)
        for f in [pool.submit(verify_sqlite_range, path, lo, hi, deep, False) for lo, hi in parts]:
            report.merge(f.result())
    report.problems.sort(key=lambda p: (p.execution_id, -1 if p.seq is None else p.seq))
    return report
