"""The embedded store: one SQLite file in WAL mode (DESIGN §6).

Every write is one ``BEGIN IMMEDIATE … COMMIT`` transaction on a connection guarded by a
lock, so one `SQLiteStore` may be shared by the threads of a process. Other processes
(the CLI, another agent) open the same file; SQLite's locking orders their writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import CorruptStore, SchemaTooNew, StoreError, StoreUnavailable
from ..record import Blob, Event
from ._ledger import backfill
from ._schema import MIGRATIONS, SCHEMA_VERSION
from ._sql import SQLStore, iter_rows, loads

__all__ = ["SQLiteStore", "loads"]


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


def _empty_file(path: str) -> bool:
    """A 0-byte file (with no write-ahead log holding its first pages)."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path):
            return False
    except OSError:
        return False  # gone meanwhile: opening it says so
    try:
        return not os.path.getsize(path + "-wal")
    except OSError:
        return True  # no -wal beside it


class SQLiteStore(SQLStore):
    """The `Store` over one SQLite file.

    Args:
        path: the database file.
        create: make the file (and its folder) when it is missing; otherwise a missing file
            is a `StoreUnavailable` error.
        busy_timeout_ms: how long a write waits for another process's lock before failing.
    """

    backend = "sqlite"
    _integrity = (sqlite3.IntegrityError,)

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, busy_timeout_ms: int = 5000):
        super().__init__()
        self.path = str(path)
        self.target = self.path  # what `open_store` takes to open this store again
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._cols: list[str] | None = None
        if self.path != ":memory:" and not Path(self.path).exists():
            if not create:
                raise StoreUnavailable(
                    f"no Execord database at {self.path}: run an instrumented agent or "
                    "`execord demo` first, or pass --db / set EXECORD_DB"
                )
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        elif not create and self.path != ":memory:" and _empty_file(self.path):
            # SQLite would take an empty file as a new database and write the schema into it.
            raise StoreUnavailable(
                f"{self.path} is empty, not an Execord database: pass --db / set EXECORD_DB to the store's "
                "file, or run an instrumented agent or `execord demo` to make one"
            )
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
                    if version == 6:
                        backfill(c)  # leaves for the executions sealed before the ledger
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
        """Close the connections."""
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._local = threading.local()
            self._conn.close()

    # -- the backend seam ----------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front: two processes never interleave a
        # read of the chain tip with each other's append.
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _map_operational(exc, self.path) from exc
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                _rollback(c)
                raise

    def _map_error(self, exc: BaseException) -> StoreError | None:  # type: ignore[override]
        return _map_operational(exc, self.path) if isinstance(exc, sqlite3.Error) else None

    def append(self, events: Sequence[Event], blobs: Sequence[Blob] = (), *,  # noqa: D102 - see SQLStore
               project: str | None = None) -> list[Event]:
        with self._lock:  # the tip cache and the transaction move together
            return super().append(events, blobs, project=project)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.path == ":memory:":
            with self._lock:
                try:
                    return self._conn.execute(sql, params).fetchall()
                except sqlite3.Error as exc:
                    raise _map_operational(exc, self.path) from exc
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _map_operational(exc, self.path) from exc

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection. In WAL mode readers never wait for the writer, so
        a server's reads (lists, admission, approvals) go on while an ingest commits; each
        statement sees every commit made before it."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _columns(self) -> list[str]:
        if self._cols is None:
            with self._lock:
                cur = self._conn.execute("SELECT * FROM executions LIMIT 0")
                self._cols = [d[0] for d in cur.description]
        return self._cols

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
            yield from iter_rows(cur, batch)
        except sqlite3.Error as exc:
            raise _map_operational(exc, self.path) from exc
        finally:
            conn.close()


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
