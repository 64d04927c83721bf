"""The PostgreSQL store: the same `Store` as SQLite's, for several server replicas (DESIGN §6).

Everything the replicas coordinate goes through the database:

- **Sequencing.** An append takes a transaction-scoped advisory lock per execution (in id
  order, so two batches never deadlock) and reads the chain tip under it. Contiguous ``seq``
  is then checked exactly as in SQLite; the primary key (execution_id, seq) is the backstop.
  Never a database sequence: sequences leave gaps (DESIGN §4).
- **Fan-out.** Each append NOTIFYs ``execord_events`` with ``execution_id:seq`` for every
  execution it moved, delivered at commit, so a stream opened on any replica wakes up.
- **Migrations** run under a fixed advisory lock: replicas starting together migrate once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..errors import ConfigError, InvalidInput, SchemaTooNew, StoreError, StoreUnavailable
from ._ledger import LEDGER_LOCK, backfill
from ._projection import Tip
from ._schema_pg import PG_MIGRATIONS
from ._sql import SQLStore, iter_rows

SCHEMA_VERSION = PG_MIGRATIONS[-1][0]
NOTIFY_CHANNEL = "execord_events"
_MIGRATION_LOCK = 0x65786563  # "exec": the advisory lock id held while migrating


@functools.lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    """``?`` placeholders → ``%s`` (and a literal ``%`` doubled), once per statement."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


class _Conn:
    """A psycopg connection that takes the SQLite-style statements the shared code writes."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.raw.execute(to_pg(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(to_pg(sql), rows)
        return cur


def _map_pg(exc: BaseException, where: str) -> StoreError | None:
    if isinstance(exc, psycopg.DataError) or (isinstance(exc, ValueError) and "NUL" in str(exc)):
        return InvalidInput(f"PostgreSQL cannot store this value: {str(exc).strip()} "
                            "(text may not contain NUL bytes)")
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown):
        return StoreUnavailable(f"PostgreSQL at {where} cannot be reached or used: {str(exc).strip()}")
    if isinstance(exc, psycopg.Error):
        return StoreError(f"PostgreSQL refused the operation: {str(exc).strip()}")
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "PoolTimeout":
        return StoreUnavailable(f"no PostgreSQL connection free at {where} in time: {exc}")
    return None


class PostgresStore(SQLStore):
    """The `Store` over PostgreSQL, with a connection pool shared by threads.

    Args:
        url: a ``postgresql://`` connection URL.
        min_size / max_size: the pool's bounds.
        timeout: seconds to wait for a free connection or for the server.
    """

    backend = "postgres"
    _cache_tips = False  # other replicas append too: the tip is read under the lock
    _integrity = (psycopg.errors.UniqueViolation,)

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0):
        super().__init__()
        self.url = url
        self.target = url  # what `open_store` takes to open this store again
        self.path = None
        self._where = _redact_url(url)
        _check_url(url, self._where)
        _probe(url, self._where, timeout)
        try:
            self._pool = ConnectionPool(
                url, min_size=min_size, max_size=max_size, timeout=timeout, open=True,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))}, name="execord",
                configure=_custom_plans,
            )
            self._pool.wait(timeout=timeout)
            self._migrate()
        except Exception as exc:
            if hasattr(self, "_pool"):
                self._pool.close()
            mapped = _map_pg(exc, self._where)
            if mapped is None:
                raise
            raise mapped from exc
        self._cols: list[str] | None = None

    def _current_version(self) -> int:
        with self._pool.connection() as conn:
            if conn.execute("SELECT to_regclass('execord_meta')").fetchone() == (None,):
                return 0
            row = conn.execute("SELECT value FROM execord_meta WHERE key = 'schema_version'").fetchone()
            return int(row[0]) if row else 0

    def _migrate(self) -> None:
        found = self._current_version()
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            return  # nothing to do, so no DDL: a least-privilege role opens the store too
        with self._pool.connection() as conn, conn.transaction():
            # One migrator at a time; the others wait here, then find nothing left to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS execord_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM execord_meta WHERE key = 'schema_version'").fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(found, SCHEMA_VERSION)
            for version, sql in PG_MIGRATIONS:
                if version > found:
                    conn.execute(sql)
                    if version == 6:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
                        backfill(_Conn(conn))
            conn.execute(
                "INSERT INTO execord_meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    # -- the backend seam ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Conn]:
        with self._pool.connection() as conn, conn.transaction():
            yield _Conn(conn)

    def _map_error(self, exc: BaseException) -> StoreError | None:  # type: ignore[override]
        return _map_pg(exc, self._where)

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        try:
            with self._pool.connection() as conn:
                return conn.execute(to_pg(sql), params).fetchall()
        except Exception as exc:
            mapped = _map_pg(exc, self._where)
            if mapped is None:
                raise
            raise mapped from exc

    # -- ledger proofs in one round trip ---------------------------------------------------------

    def ledger_inclusion_nodes(self, execution_id: str, size: int | None,
                               keys: Any) -> tuple[int, bytes, int, dict[tuple[int, int], bytes]] | None:
        """One statement: the leaf, the ledger's size, and every subtree an inclusion proof of
        that leaf can name. Those are, at each level l, the sibling of the leaf's ancestor,
        ``(l, (index >> l) ^ 1)``, and the perfect subtrees of the tree's right edge, ``(l,
        (size >> l) - 1)`` for each bit l set in ``size`` (a partial sibling always ends at
        the tree's right edge, so it is made of those). About 2 log2(size) rows."""
        rows = self._read(_INCLUSION_SQL, (execution_id, size))
        if not rows:
            return None
        index, entry, current = int(rows[0][0]), bytes(rows[0][1]), int(rows[0][2])
        return index, entry, current, {(int(r[3]), int(r[4])): bytes(r[5]) for r in rows if r[5] is not None}

    def ledger_size_and_nodes(self, keys: Any) -> tuple[int, dict[tuple[int, int], bytes]]:
        """One statement: the ledger's size and these subtrees."""
        keys = list(keys)
        rows = self._read(_NODES_SQL, ([k[0] for k in keys], [k[1] for k in keys]))
        current = int(rows[0][0])
        return current, {(int(r[1]), int(r[2])): bytes(r[3]) for r in rows if r[3] is not None}

    def _lock_executions(self, c: _Conn, execution_ids: Sequence[str]) -> None:
        # Volatile functions in the target list run after ORDER BY: the locks are taken in
        # id order, so two transactions can never wait on each other in a cycle.
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(x, 0)) FROM unnest(?::text[]) AS x ORDER BY x",
            (list(execution_ids),),
        ).fetchall()

    def _lock_ledger(self, c: _Conn) -> None:
        # Every replica counts the next ledger index under this one lock (taken after the
        # execution locks, so the order of locks is the same in every transaction).
        c.execute("SELECT pg_advisory_xact_lock(?)", (LEDGER_LOCK,)).fetchall()

    def _appended(self, c: _Conn, tips: dict[str, Tip]) -> None:
        c.execute("SELECT pg_notify(?, x) FROM unnest(?::text[]) AS x",
                  (NOTIFY_CHANNEL, [f"{eid}:{t.seq}" for eid, t in tips.items()])).fetchall()

    def _columns(self) -> list[str]:
        if self._cols is None:
            with self._pool.connection() as conn:
                cur = conn.execute("SELECT * FROM executions LIMIT 0")
                self._cols = [d.name for d in cur.description or ()]
        return self._cols

    def iter_chain_rows(self, batch: int = 20000) -> Iterator[tuple[str, int, bytes, bytes]]:
        """Every stored event as (execution_id, seq, hash, body), through a server-side cursor."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor(name="execord_chain") as cur:
            cur.execute("SELECT execution_id, seq, hash, body FROM events ORDER BY execution_id, seq")
            for eid, seq, h, body in iter_rows(cur, batch):
                yield eid, seq, bytes(h), bytes(body)

    def listen(self) -> psycopg.Connection[Any]:
        """A fresh autocommit connection LISTENing on the events channel (for streams)."""
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn


def _one_line(exc: BaseException, url: str, where: str) -> str:
    """A driver message on one line, without the URL's password."""
    return " ".join(str(exc).replace(url, where).split())


def _check_url(url: str, where: str) -> None:
    """Refuse a URL libpq cannot read, or one that names no database: libpq would then open
    its default database (the user's name) and the schema would be made there."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigError(f"{where} is not a PostgreSQL URL libpq can read: {_one_line(exc, url, where)} "
                          "(the form is postgresql://user@host:5432/DBNAME)") from None
    if not (params.get("dbname") or params.get("service") or os.environ.get("PGDATABASE")
            or os.environ.get("PGSERVICE")):
        raise ConfigError(f"the PostgreSQL URL {where} has no database name (libpq would open its default "
                          "database): name the database: postgresql://user@host:5432/DBNAME")


def _probe(url: str, where: str, timeout: float) -> None:
    """One plain connection first: a wrong host, port, database, user or option fails here at
    once, with the server's own words, instead of as the pool's retries and its timeout."""
    try:
        psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(min(timeout, 5)))).close()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"PostgreSQL at {where} cannot be reached or used: "
                               f"{_one_line(exc, url, where)}") from None


def _custom_plans(conn: psycopg.Connection[Any]) -> None:
    # psycopg prepares a statement after 5 runs, and PostgreSQL may then switch it to a generic
    # plan that ignores the values: over 1,000,000 executions a label filter went from ~30 ms to
    # ~1 s from its 11th run on (docs/benchmarks.md, listing). Plan with the values every time.
    conn.execute("SET plan_cache_mode = force_custom_plan")


def _redact_url(url: str) -> str:
    """A connection URL without its password, fit for a message."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


_INCLUSION_SQL = """
WITH leaf AS (SELECT idx, entry FROM ledger WHERE execution_id = ?),
     cur AS (SELECT coalesce(max(idx) + 1, 0) AS n FROM ledger),
     want AS (SELECT coalesce(?::bigint, cur.n) AS n FROM cur),
     k AS (SELECT l AS level, (leaf.idx >> l) # 1 AS idx FROM leaf, want, generate_series(0, 62) AS l
           WHERE (want.n >> l) > 0
           UNION
           SELECT l, (want.n >> l) - 1 FROM want, generate_series(0, 62) AS l WHERE ((want.n >> l) & 1) = 1)
SELECT leaf.idx, leaf.entry, cur.n, k.level, k.idx, nd.hash
FROM leaf CROSS JOIN cur LEFT JOIN k ON true LEFT JOIN ledger_nodes nd ON nd.level = k.level AND nd.idx = k.idx
"""

_NODES_SQL = """
SELECT (SELECT coalesce(max(idx) + 1, 0) FROM ledger), k.level, k.idx, nd.hash
FROM (SELECT 1) AS one
LEFT JOIN unnest(?::integer[], ?::bigint[]) AS k(level, idx) ON true
LEFT JOIN ledger_nodes nd ON nd.level = k.level AND nd.idx = k.idx
"""
