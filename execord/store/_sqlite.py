"""The embedded store: one SQLite file in WAL mode (DESIGN §6).

Every write is one ``BEGIN IMMEDIATE … COMMIT`` transaction on a connection guarded by a
lock, so one `SQLiteStore` may be shared by the threads of a process. Other processes
(the CLI, another agent) open the same file; SQLite's locking orders their writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import (
    AmbiguousId,
    ChainError,
    CorruptStore,
    ExecutionSealed,
    NotFound,
    SchemaTooNew,
    SeqConflict,
    StoreError,
    StoreUnavailable,
)
from ..record import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    Blob,
    Event,
    event_hash,
    genesis_hash,
    parse_event,
)
from ._governance import GovernanceTables
from ._projection import Tip, project
from ._query import ExecutionFilter, list_sql, summary_from_row
from ._schema import MIGRATIONS, SCHEMA_VERSION

_INSERT_EVENT = (
    "INSERT INTO events (execution_id, seq, type, ts, step_id, hash, body) VALUES (?,?,?,?,?,?,?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (digest, size, type, data) VALUES (?,?,?,?)"  # dedup by digest


def _map_operational(exc: sqlite3.Error, path: str) -> StoreError:
    """Turn a driver error into a store error that says what to do."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreUnavailable(f"the database {path} is locked by another process past the timeout")
    if "full" in low:
        return StoreUnavailable(f"the disk holding {path} is full: {text}")
    if "not a database" in low or "malformed" in low:
        return CorruptStore(f"{path} is not an Execord database or is damaged ({text})")
    if "readonly" in low or "read-only" in low:
        return StoreUnavailable(f"the database {path} is read-only: {text}")
    return StoreUnavailable(f"the database {path} cannot be used: {text}")


class SQLiteStore(GovernanceTables):
    """The `Store` over one SQLite file.

    Args:
        path: the database file.
        create: make the file (and its folder) when it is missing; otherwise a missing file
            is a `StoreUnavailable` error.
        busy_timeout_ms: how long a write waits for another process's lock before failing.
    """

    backend = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, busy_timeout_ms: int = 5000):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.RLock()
        # Chain tips of the executions this process writes: (seq, hash, terminal).
        self._tips: dict[str, Tip] = {}
        if self.path != ":memory:" and not Path(self.path).exists():
            if not create:
                raise StoreUnavailable(
                    f"no Execord database at {self.path}: run an instrumented agent or "
                    "`execord demo` first, or pass --db / set EXECORD_DB"
                )
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
            self._setup()
        except sqlite3.Error as exc:
            raise _map_operational(exc, self.path) from exc

    # -- opening -------------------------------------------------------------------------

    def _setup(self) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        c.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process (SIGKILL included);
        # only a power loss can undo the last commits. See docs/sdk.md "Durability".
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _schema_version(self) -> int:
        has_meta = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            tables = self._conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            if tables:
                raise CorruptStore(f"{self.path} is an SQLite database but not an Execord one")
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        found = self._schema_version()
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            return
        # One transaction for all pending migrations: a failed upgrade leaves the old schema.
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            found = self._schema_version()  # another process may have migrated meanwhile
            if found == 0:
                c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for version, sql in MIGRATIONS:
                if version > found:
                    for statement in _split_sql(sql):
                        c.execute(statement)
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- writing -------------------------------------------------------------------------

    def append(self, events: Sequence[Event], blobs: Sequence[Blob] = ()) -> None:
        """Write events (of one or more executions) and their blobs in one transaction.

        Each execution's events must continue its chain: the next seq, the previous hash,
        a correct hash, nothing after the terminal event. The identical bytes at an existing
        seq are skipped (idempotent retry); different bytes there raise `SeqConflict`.
        The summary rows and, for ``execution.ended``, the seal are written in the same
        transaction (DESIGN §1 "seal").

        Raises:
            ChainError, SeqConflict, ExecutionSealed: the batch breaks the record's rules;
                nothing of it is written.
            StoreUnavailable: the database could not be written (locked, disk full).
        """
        with self._lock:
            try:
                self._append_locked(events, blobs)
            except sqlite3.IntegrityError:
                # Another process wrote to one of these executions: forget what we cached and
                # judge the batch again against what is really stored.
                for e in events:
                    self._tips.pop(e.execution_id, None)
                self._append_locked(events, blobs)

    def _append_locked(self, events: Sequence[Event], blobs: Sequence[Blob]) -> None:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _map_operational(exc, self.path) from exc
        tips: dict[str, Tip] = {}
        try:
            if len(blobs) == 1:
                b = blobs[0]
                c.execute(_INSERT_BLOB, (b.digest, b.size, b.type, b.data))
            elif blobs:
                c.executemany(_INSERT_BLOB, [(b.digest, b.size, b.type, b.data) for b in blobs])
            rows = []
            fresh = []
            status: dict[str, str] = {}  # execution id -> its status, moved along by the projection
            for e in events:
                tip = tips.get(e.execution_id) or self._tip(e.execution_id)
                if not self._admit(e, tip):
                    continue  # the identical event is already stored
                rows.append((e.execution_id, e.seq, e.type, e.ts, e.step_id, e.hash, e.body))
                fresh.append(e)
                status.setdefault(e.execution_id, tip.status if tip else "running")
                tips[e.execution_id] = Tip(e.seq, e.hash, e.type == EXECUTION_ENDED, tip.status if tip else "running")
            if len(rows) == 1:
                c.execute(_INSERT_EVENT, rows[0])
            elif rows:
                c.executemany(_INSERT_EVENT, rows)
            for e in fresh:
                # The projection moves the status event by event; the tip itself stays at the
                # last admitted event of the batch.
                before = status[e.execution_id]
                status[e.execution_id] = project(c, e, Tip(e.seq, e.hash, e.type == EXECUTION_ENDED, before)).status
            for eid, st in status.items():
                tips[eid] = tips[eid]._replace(status=st)
            c.execute("COMMIT")
        except sqlite3.IntegrityError:
            c.execute("ROLLBACK")
            raise
        except sqlite3.Error as exc:
            _rollback(c)
            raise _map_operational(exc, self.path) from exc
        except BaseException:
            _rollback(c)
            raise
        self._tips.update(tips)

    def _admit(self, e: Event, tip: Tip | None) -> bool:
        """Check that ``e`` continues its chain; False when it is already stored as is."""
        if tip is not None and e.seq <= tip.seq:
            stored = self._conn.execute(
                "SELECT body, hash FROM events WHERE execution_id = ? AND seq = ?",
                (e.execution_id, e.seq),
            ).fetchone()
            if stored is not None and stored[0] == e.body and stored[1] == e.hash:
                return False
            raise SeqConflict(
                f"execution {e.execution_id} already has a different event at seq {e.seq}",
                execution_id=e.execution_id, seq=e.seq,
            )
        if tip is not None and tip.terminal:
            raise ExecutionSealed(e.execution_id, tip.status)
        expected_seq = 0 if tip is None else tip.seq + 1
        if e.seq != expected_seq:
            raise ChainError(
                f"execution {e.execution_id}: seq {e.seq} would leave a gap (next is {expected_seq})",
                execution_id=e.execution_id, seq=e.seq, expected=str(expected_seq), got=str(e.seq),
            )
        if tip is None and e.type != EXECUTION_STARTED:
            raise ChainError(
                f"execution {e.execution_id}: the first event must be {EXECUTION_STARTED}, not {e.type}",
                execution_id=e.execution_id, seq=e.seq,
            )
        expected_prev = genesis_hash(e.execution_id) if tip is None else tip.hash
        if e.prev_hash != expected_prev:
            raise ChainError(
                f"execution {e.execution_id}: event {e.seq} does not chain (wrong prev_hash)",
                execution_id=e.execution_id, seq=e.seq,
                expected=expected_prev.hex(), got=e.prev_hash.hex(),
            )
        if event_hash(e.prev_hash, e.body) != e.hash:
            raise ChainError(
                f"execution {e.execution_id}: event {e.seq} hash does not match its bytes",
                execution_id=e.execution_id, seq=e.seq,
            )
        return True

    def _tip(self, execution_id: str) -> Tip | None:
        tip = self._tips.get(execution_id)
        if tip is not None:
            return tip
        row = self._conn.execute(
            "SELECT seq, hash, type FROM events WHERE execution_id = ? ORDER BY seq DESC LIMIT 1",
            (execution_id,),
        ).fetchone()
        if row is None:
            return None
        status = self._conn.execute(
            "SELECT status FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
        return Tip(row[0], row[1], row[2] == EXECUTION_ENDED, status[0] if status else "running")

    def _write(self, fn: Any) -> Any:
        """Run ``fn(connection)`` in one write transaction; map driver errors."""
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _map_operational(exc, self.path) from exc
            try:
                result = fn(c)
                c.execute("COMMIT")
                return result
            except sqlite3.IntegrityError as exc:
                _rollback(c)
                raise StoreError(f"the database refused the change: {exc}") from exc
            except sqlite3.Error as exc:
                _rollback(c)
                raise _map_operational(exc, self.path) from exc
            except BaseException:
                _rollback(c)
                raise

    def tip(self, execution_id: str) -> Tip | None:
        """The last stored event of an execution as (seq, hash, terminal, status), read fresh."""
        with self._lock:
            self._tips.pop(execution_id, None)
            return self._tip(execution_id)

    def heartbeat(self, leases: dict[str, int], progress: dict[str, dict[str, int]] | None = None) -> None:
        """Extend the leases of running executions and refresh their running totals.

        Args:
            leases: execution id → new lease expiry (µs since the epoch).
            progress: execution id → totals so far (steps, llm_calls, …), shown by `list`.
        """
        progress = progress or {}
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                for eid, expires in leases.items():
                    t = progress.get(eid)
                    if t is None:
                        c.execute(
                            "UPDATE executions SET lease_expires_us = ? WHERE id = ? AND sealed = 0",
                            (expires, eid),
                        )
                    else:
                        c.execute(
                            "UPDATE executions SET lease_expires_us = ?, steps = ?, llm_calls = ?,"
                            " tool_calls = ?, input_tokens = ?, output_tokens = ?, cost_micros = ?"
                            " WHERE id = ? AND sealed = 0",
                            (expires, t["steps"], t["llm_calls"], t["tool_calls"],
                             t["input_tokens"], t["output_tokens"], t["cost_micros"], eid),
                        )
                c.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(c)
                raise _map_operational(exc, self.path) from exc

    # -- reading -------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _map_operational(exc, self.path) from exc

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        """The summary of one execution (the JSON shape of docs/cli.md).

        Raises:
            NotFound: no execution has this id.
        """
        rows = self._read("SELECT * FROM executions WHERE id = ?", (execution_id,))
        if not rows:
            raise NotFound(f"no execution with id {execution_id}")
        return summary_from_row(self._columns(), rows[0])

    def _columns(self) -> list[str]:
        with self._lock:
            cur = self._conn.execute("SELECT * FROM executions LIMIT 0")
            return [d[0] for d in cur.description]

    def list_executions(self, flt: ExecutionFilter | None = None) -> list[dict[str, Any]]:
        """Summaries, newest first, filtered; see `ExecutionFilter`."""
        sql, params = list_sql(flt or ExecutionFilter())
        cols = self._columns()
        return [summary_from_row(cols, r) for r in self._read(sql, params)]

    def count_by_status(self) -> dict[str, int]:
        """How many executions are in each status."""
        return dict(self._read("SELECT status, count(*) FROM executions GROUP BY status"))  # type: ignore[arg-type]

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one execution whose id starts with ``prefix``.

        Raises:
            NotFound: no execution matches.
            AmbiguousId: more than one does.
        """
        prefix = prefix.strip().lower()
        if not prefix or any(ch not in "0123456789abcdef-" for ch in prefix):
            raise NotFound(f"{prefix!r} is not an execution id (ids look like 01a2b3c4-…)")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._read(
            "SELECT id FROM executions WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (prefix, upper)
        )
        if not rows:
            raise NotFound(f"no execution id starts with {prefix!r}")
        if len(rows) > 1 and rows[0][0] != prefix:
            raise AmbiguousId(prefix, [r[0] for r in rows])
        return str(rows[0][0])

    def events(self, execution_id: str, *, after_seq: int = -1, limit: int | None = None) -> list[Event]:
        """The stored events of an execution with seq > ``after_seq``, in seq order."""
        sql = "SELECT body, hash FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq"
        params: list[Any] = [execution_id, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [parse_event(body, h) for body, h in self._read(sql, params)]

    def get_blob(self, digest: str) -> Blob | None:
        """A stored blob by ``sha256:<hex>`` digest (``data`` None if erased), or None."""
        rows = self._read("SELECT digest, size, type, data FROM blobs WHERE digest = ?", (digest,))
        return Blob(*rows[0]) if rows else None

    def get_seal(self, execution_id: str) -> dict[str, Any] | None:
        """The seal of a terminal execution, or None while it runs."""
        rows = self._read(
            "SELECT status, event_count, events_root, last_hash, governance_version, sealed_at "
            "FROM seals WHERE execution_id = ?",
            (execution_id,),
        )
        if not rows:
            return None
        status, count, root, last, gv, at = rows[0]
        return {
            "execution_id": execution_id, "status": status, "event_count": count,
            "events_root": root.hex(), "last_hash": last.hex(), "governance_version": gv,
            "sealed_at": at,
        }

    def unsealed(self) -> list[dict[str, Any]]:
        """Executions not yet sealed, with the facts a reaper needs (host, pid, lease)."""
        rows = self._read(
            "SELECT id, host, pid, proc_start, lease_expires_us, started_us, status "
            "FROM executions WHERE sealed = 0"
        )
        keys = ("id", "host", "pid", "proc_start", "lease_expires_us", "started_us", "status")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def iter_chain_rows(self, batch: int = 20000) -> Iterator[tuple[str, int, bytes, bytes]]:
        """Every stored event as (execution_id, seq, hash, body), by execution then seq.

        Reads through a separate connection so a long verification never holds the lock
        that writers in this process need.
        """
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            cur = conn.execute(
                "SELECT execution_id, seq, hash, body FROM events ORDER BY execution_id, seq"
            )
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    return
                yield from rows
        except sqlite3.Error as exc:
            raise _map_operational(exc, self.path) from exc
        finally:
            conn.close()

    def all_seals(self) -> dict[str, tuple[str, int, bytes, bytes]]:
        """execution_id → (status, event_count, events_root, last_hash) for every seal."""
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in self._read("SELECT execution_id, status, event_count, events_root, last_hash FROM seals")
        }

    def execution_ids(self) -> list[str]:
        """Every execution id in the store."""
        return [r[0] for r in self._read("SELECT id FROM executions ORDER BY id")]


def _rollback(c: sqlite3.Connection) -> None:
    try:
        c.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction was open


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN … END;) whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    if current:
        statements.append("\n".join(current))
    return statements


def loads(text: str | bytes | None) -> Any:
    """Decode a JSON column (None stays None)."""
    return None if text is None else orjson.loads(text)
