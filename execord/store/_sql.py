"""What the SQLite and PostgreSQL stores share: appending, sealing, reading, leases, cancels.

Both speak the same SQL, written with ``?`` placeholders; the PostgreSQL store translates
them. A backend supplies four things: a write transaction (`_transaction`), a read
(`_read`), the driver's integrity-error classes and a way to map its other errors. The
summary row and the seal are projected from events inside the append transaction
(`_projection`), so they cannot disagree with the record.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ..errors import (
    AmbiguousId,
    ChainError,
    ExecordError,
    ExecutionSealed,
    NotFound,
    SeqConflict,
    StoreError,
)
from ..record import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    Blob,
    Event,
    event_hash,
    genesis_hash,
    now_ts,
    now_us,
    parse_event,
)
from ._governance import GovernanceTables
from ._keys import KeyTables
from ._ledger import LedgerTables, append_leaves
from ._overview import OverviewQueries
from ._projection import Tip
from ._projection import project as project_event
from ._query import ExecutionFilter, list_sql, summary_from_row

INSERT_EVENT = (
    "INSERT INTO events (execution_id, seq, type, ts, step_id, hash, body) VALUES (?,?,?,?,?,?,?)"
)
# Blobs are content-addressed: the same digest twice is the same bytes, so a repeat is a no-op.
INSERT_BLOB = "INSERT INTO blobs (digest, size, type, data) VALUES (?,?,?,?) ON CONFLICT (digest) DO NOTHING"
INSERT_BLOB_REF = "INSERT INTO blob_refs (digest, execution_id) VALUES (?,?) ON CONFLICT DO NOTHING"
# A blob reference in an event's bytes ({"$blob": "sha256:…"}; inside a JSON string its quotes
# would be escaped, so a value that merely mentions one does not match).
_BLOB_REF = re.compile(rb'"\$blob"\s*:\s*"(sha256:[0-9a-f]{64})"')
_HEX = set("0123456789abcdef-")


class SQLStore(GovernanceTables, KeyTables, LedgerTables, OverviewQueries):
    """The `Store` methods, over any connection that speaks ``?``-placeholder SQL."""

    backend = "sql"
    #: Whether chain tips may be cached between appends (only when this process is the only
    #: writer of what it appends; PostgreSQL reads them fresh under a lock instead).
    _cache_tips = True
    _integrity: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._tips: dict[str, Tip] = {}

    # -- what a backend provides -------------------------------------------------------------

    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A write transaction: yields a connection, commits on success, rolls back on error."""
        raise NotImplementedError

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _map_error(self, exc: BaseException) -> StoreError:
        raise NotImplementedError

    def _lock_executions(self, c: Any, execution_ids: Sequence[str]) -> None:
        """Serialise writers of the same executions for this transaction (hook)."""

    def _lock_ledger(self, c: Any) -> None:
        """Serialise the writers of ledger leaves for this transaction (hook)."""

    def _appended(self, c: Any, tips: dict[str, Tip]) -> None:
        """Called inside the append transaction once its events are in (hook: NOTIFY)."""

    def close(self) -> None:
        """Release the connection(s)."""

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """Driver errors become store errors (integrity errors pass: callers judge them)."""
        try:
            yield
        except self._integrity:
            raise
        except ExecordError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _write(self, fn: Any) -> Any:
        """Run ``fn(connection)`` in one write transaction; map driver errors."""
        try:
            with self._mapped(), self._transaction() as c:
                return fn(c)
        except self._integrity as exc:
            raise StoreError(f"the database refused the change: {exc}") from exc

    def append(self, events: Sequence[Event], blobs: Sequence[Blob] = (), *,
               project: str | None = None) -> list[Event]:
        """Write events (of one or more executions) and their blobs in one transaction.

        Each execution's events must continue its chain: the next seq, the previous hash,
        a correct hash, nothing after the terminal event. The identical bytes at an existing
        seq are skipped (idempotent retry: a client may send a batch twice); different bytes
        there raise `SeqConflict`. The summary rows and, for ``execution.ended``, the seal
        are written in the same transaction (DESIGN §1 "seal").

        With ``project`` (the server passes its API key's), new executions are filed under
        that project and events of another project's executions are refused as not found.

        Returns:
            The events that were new (a retried batch returns only what it added).

        Raises:
            ChainError, SeqConflict, ExecutionSealed: the batch breaks the record's rules;
                nothing of it is written.
            NotFound: an event belongs to another project's execution.
            StoreUnavailable: the database could not be written (locked, disk full, down).
        """
        if not events and not blobs:
            return []
        try:
            return self._append_once(events, blobs, project)
        except self._integrity:
            # Another writer got to one of these executions first: forget what we cached and
            # judge the batch again against what is really stored.
            for e in events:
                self._tips.pop(e.execution_id, None)
            try:
                return self._append_once(events, blobs, project)
            except self._integrity as exc:
                raise StoreError(f"the database refused the batch: {exc}") from exc

    def _append_once(self, events: Sequence[Event], blobs: Sequence[Blob], project: str | None) -> list[Event]:
        with self._mapped(), self._transaction() as c:
            tips, fresh = self._append_tx(c, events, blobs, project)
        if self._cache_tips:
            self._tips.update(tips)
        return fresh

    def _append_tx(self, c: Any, events: Sequence[Event], blobs: Sequence[Blob],
                   project: str | None = None) -> tuple[dict[str, Tip], list[Event]]:
        if len(blobs) == 1:
            b = blobs[0]
            c.execute(INSERT_BLOB, (b.digest, b.size, b.type, b.data))
        elif blobs:
            c.executemany(INSERT_BLOB, [(b.digest, b.size, b.type, b.data) for b in blobs])
        if not events:
            return {}, []
        ids = sorted({e.execution_id for e in events})
        self._lock_executions(c, ids)
        if project is not None:
            self._check_owner(c, ids, project)
        tips: dict[str, Tip] = {}
        rows, fresh = [], []
        status: dict[str, str] = {}  # execution id -> its status, moved along by the projection
        batch: dict[tuple[str, int], Event] = {}
        for e in events:
            twin = batch.get((e.execution_id, e.seq))
            if twin is not None:  # the batch holds this seq twice: once is enough, if identical
                if twin.body == e.body and twin.hash == e.hash:
                    continue
                raise SeqConflict(f"execution {e.execution_id} has two different events at seq {e.seq} in "
                                  "this batch", execution_id=e.execution_id, seq=e.seq)
            tip = tips.get(e.execution_id) or self._tip(c, e.execution_id)
            if not self._admit(c, e, tip):
                continue  # the identical event is already stored
            batch[(e.execution_id, e.seq)] = e
            rows.append((e.execution_id, e.seq, e.type, e.ts, e.step_id, e.hash, e.body))
            fresh.append(e)
            status.setdefault(e.execution_id, tip.status if tip else "running")
            tips[e.execution_id] = Tip(e.seq, e.hash, e.type == EXECUTION_ENDED, tip.status if tip else "running")
        if len(rows) == 1:
            c.execute(INSERT_EVENT, rows[0])
        elif rows:
            c.executemany(INSERT_EVENT, rows)
        refs = {(d.decode(), e.execution_id) for e in fresh if b'"$blob"' in e.body for d in _BLOB_REF.findall(e.body)}
        if len(refs) == 1:
            c.execute(INSERT_BLOB_REF, refs.pop())
        elif refs:
            c.executemany(INSERT_BLOB_REF, sorted(refs))
        for e in fresh:
            # The projection moves the status event by event; the tip stays at the last
            # admitted event of the batch.
            before = status[e.execution_id]
            status[e.execution_id] = project_event(
                c, e, Tip(e.seq, e.hash, e.type == EXECUTION_ENDED, before), project).status
        for eid, st in status.items():
            tips[eid] = tips[eid]._replace(status=st)
        sealed = [e.execution_id for e in fresh if e.type == EXECUTION_ENDED]
        if sealed:
            # The ledger leaf is written with the seal, at the next index (DESIGN §4).
            self._lock_ledger(c)
            append_leaves(c, sealed)
        if tips:
            self._appended(c, tips)
        return tips, fresh

    def _check_owner(self, c: Any, ids: Sequence[str], project: str) -> None:
        """Refuse events of executions another project owns (as not found: no leak)."""
        for i in range(0, len(ids), 500):
            part = list(ids[i:i + 500])
            rows = c.execute(
                f"SELECT id FROM executions WHERE project <> ? AND id IN ({','.join('?' * len(part))})",
                (project, *part),
            ).fetchall()
            if rows:
                raise NotFound(f"no execution with id {rows[0][0]}")

    def _admit(self, c: Any, e: Event, tip: Tip | None) -> bool:
        """Check that ``e`` continues its chain; False when it is already stored as is."""
        if tip is not None and e.seq <= tip.seq:
            stored = c.execute(
                "SELECT body, hash FROM events WHERE execution_id = ? AND seq = ?", (e.execution_id, e.seq),
            ).fetchone()
            if stored is not None and bytes(stored[0]) == e.body and bytes(stored[1]) == e.hash:
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
                execution_id=e.execution_id, seq=e.seq, expected=expected_prev.hex(), got=e.prev_hash.hex(),
            )
        if event_hash(e.prev_hash, e.body) != e.hash:
            raise ChainError(
                f"execution {e.execution_id}: event {e.seq} hash does not match its bytes",
                execution_id=e.execution_id, seq=e.seq,
            )
        return True

    def _tip(self, c: Any, execution_id: str) -> Tip | None:
        if self._cache_tips:
            tip = self._tips.get(execution_id)
            if tip is not None:
                return tip
        row = c.execute(
            "SELECT seq, hash, type FROM events WHERE execution_id = ? ORDER BY seq DESC LIMIT 1", (execution_id,),
        ).fetchone()
        if row is None:
            return None
        status = c.execute("SELECT status FROM executions WHERE id = ?", (execution_id,)).fetchone()
        return Tip(row[0], bytes(row[1]), row[2] == EXECUTION_ENDED, status[0] if status else "running")

    def tip(self, execution_id: str) -> Tip | None:
        """The last stored event of an execution as (seq, hash, terminal, status), read fresh."""
        self._tips.pop(execution_id, None)
        rows = self._read(
            "SELECT e.seq, e.hash, e.type, x.status FROM events e JOIN executions x ON x.id = e.execution_id"
            " WHERE e.execution_id = ? ORDER BY e.seq DESC LIMIT 1", (execution_id,),
        )
        if not rows:
            return None
        seq, h, type_, status = rows[0]
        return Tip(seq, bytes(h), type_ == EXECUTION_ENDED, status)

    def heartbeat(self, leases: dict[str, int], progress: dict[str, dict[str, int]] | None = None,
                  *, project: str | None = None) -> dict[str, dict[str, Any]]:
        """Extend the leases of running executions and refresh their running totals.

        Args:
            leases: execution id → new lease expiry (µs since the epoch).
            progress: execution id → totals so far (steps, llm_calls, …), shown by `list`.
            project: only executions of this project are touched (the server passes the key's).

        Returns:
            execution id → ``{"cancel": {by, reason, requested_at}}`` for each execution in
            ``leases`` that an operator asked to stop.
        """
        progress = progress or {}
        scope = "" if project is None else " AND project = ?"
        extra = () if project is None else (project,)

        def tx(c: Any) -> None:
            for eid, expires in leases.items():
                t = progress.get(eid)
                if t is None:
                    c.execute(f"UPDATE executions SET lease_expires_us = ? WHERE id = ? AND sealed = 0{scope}",
                              (expires, eid, *extra))
                else:
                    c.execute(
                        "UPDATE executions SET lease_expires_us = ?, steps = ?, llm_calls = ?, tool_calls = ?,"
                        f" input_tokens = ?, output_tokens = ?, cost_micros = ? WHERE id = ? AND sealed = 0{scope}",
                        (expires, t["steps"], t["llm_calls"], t["tool_calls"], t["input_tokens"],
                         t["output_tokens"], t["cost_micros"], eid, *extra),
                    )

        if leases:
            self._write(tx)
        return {eid: {"cancel": c} for eid, c in self.pending_cancels(list(leases), project=project).items()}

    # -- cancels ---------------------------------------------------------------------------------

    def request_cancel(self, execution_id: str, *, by: str, reason: str | None,
                       project: str | None = None) -> dict[str, Any]:
        """Ask a running execution to stop at its next governed action (DESIGN §2 ``cancelled``).

        The request is kept in the ``cancels`` table; the execution's own process learns of it
        from its heartbeat and appends ``cancel.requested`` to its chain, which keeps one
        writer per chain. Asking twice keeps the first request.

        Raises:
            NotFound: no such execution (in this project).
            ExecutionSealed: it has already ended.
        """
        summary = self.get_execution(execution_id, project=project)
        if summary["sealed"]:
            raise ExecutionSealed(execution_id, summary["status"])

        def tx(c: Any) -> None:
            c.execute(
                "INSERT INTO cancels (execution_id, requested_by, reason, requested_at, requested_us)"
                " VALUES (?,?,?,?,?) ON CONFLICT (execution_id) DO NOTHING",
                (execution_id, by, reason, now_ts(), now_us()),
            )

        self._write(tx)
        return self.get_cancel(execution_id) or {}

    def get_cancel(self, execution_id: str) -> dict[str, Any] | None:
        """The cancel request of an execution, or None."""
        rows = self._read(
            "SELECT requested_by, reason, requested_at FROM cancels WHERE execution_id = ?", (execution_id,)
        )
        return {"by": rows[0][0], "reason": rows[0][1], "requested_at": rows[0][2]} if rows else None

    def pending_cancels(self, execution_ids: Sequence[str], *, project: str | None = None) -> dict[str, dict[str, Any]]:
        """Cancel requests for any of these (unsealed) executions (of ``project``, when given)."""
        if not execution_ids:
            return {}
        out: dict[str, dict[str, Any]] = {}
        ids = list(execution_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self._read(
                "SELECT c.execution_id, c.requested_by, c.reason, c.requested_at FROM cancels c"
                f" JOIN executions x ON x.id = c.execution_id WHERE x.sealed = 0 AND c.execution_id IN"
                f" ({','.join('?' * len(part))}){'' if project is None else ' AND x.project = ?'}",
                [*part] if project is None else [*part, project],
            )
            for eid, by, reason, at in rows:
                out[eid] = {"by": by, "reason": reason, "requested_at": at}
        return out

    # -- decision checks -------------------------------------------------------------------------

    def put_decision_check(self, execution_id: str, decisions: int, mismatches: list[dict[str, Any]]) -> None:
        """Keep the server's re-evaluation of an execution's decisions (first one wins)."""
        self._write(lambda c: c.execute(
            "INSERT INTO decision_checks (execution_id, checked_at, decisions, mismatches) VALUES (?,?,?,?)"
            " ON CONFLICT (execution_id) DO NOTHING",
            (execution_id, now_ts(), decisions, orjson.dumps(mismatches).decode()),
        ))

    def get_decision_check(self, execution_id: str) -> dict[str, Any] | None:
        """{checked_at, decisions, mismatches} of an execution, or None if not checked."""
        rows = self._read("SELECT checked_at, decisions, mismatches FROM decision_checks WHERE execution_id = ?",
                          (execution_id,))
        if not rows:
            return None
        return {"checked_at": rows[0][0], "decisions": rows[0][1], "mismatches": orjson.loads(rows[0][2])}

    # -- reading ---------------------------------------------------------------------------------

    def _columns(self) -> list[str]:
        raise NotImplementedError

    def get_execution(self, execution_id: str, *, project: str | None = None) -> dict[str, Any]:
        """The summary of one execution (the JSON shape of docs/cli.md).

        Raises:
            NotFound: no execution has this id (in ``project``, when given).
        """
        sql, params = "SELECT * FROM executions WHERE id = ?", [execution_id]
        if project is not None:
            sql += " AND project = ?"
            params.append(project)
        rows = self._read(sql, params)
        if not rows:
            raise NotFound(f"no execution with id {execution_id}")
        return summary_from_row(self._columns(), rows[0])

    def list_executions(self, flt: ExecutionFilter | None = None) -> list[dict[str, Any]]:
        """Summaries, newest first, filtered; see `ExecutionFilter`."""
        sql, params = list_sql(flt or ExecutionFilter())
        cols = self._columns()
        return [summary_from_row(cols, r) for r in self._read(sql, params)]

    def count_by_status(self, project: str | None = "default") -> dict[str, int]:
        """How many executions are in each status (of one project, or of all with None)."""
        if project is None:
            return dict(self._read("SELECT status, count(*) FROM executions GROUP BY status"))  # type: ignore[arg-type]
        return dict(self._read(  # type: ignore[arg-type]
            "SELECT status, count(*) FROM executions WHERE project = ? GROUP BY status", (project,)))

    def resolve_id(self, prefix: str, *, project: str | None = None) -> str:
        """The full id of the one execution whose id starts with ``prefix``.

        Raises:
            NotFound: no execution matches.
            AmbiguousId: more than one does.
        """
        prefix = prefix.strip().lower()
        if not prefix or any(ch not in _HEX for ch in prefix):
            raise NotFound(f"{prefix!r} is not an execution id (ids look like 01a2b3c4-…)")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        sql, params = "SELECT id FROM executions WHERE id >= ? AND id < ?", [prefix, upper]
        if project is not None:
            sql += " AND project = ?"
            params.append(project)
        rows = self._read(sql + " ORDER BY id LIMIT 6", params)
        if not rows:
            raise NotFound(f"no execution id starts with {prefix!r}")
        if len(rows) > 1 and rows[0][0] != prefix:
            raise AmbiguousId(prefix, [r[0] for r in rows])
        return str(rows[0][0])

    def project_of(self, execution_id: str) -> str | None:
        """The project an execution belongs to, or None if there is no such execution."""
        rows = self._read("SELECT project FROM executions WHERE id = ?", (execution_id,))
        return rows[0][0] if rows else None

    def events(self, execution_id: str, *, after_seq: int = -1, limit: int | None = None) -> list[Event]:
        """The stored events of an execution with seq > ``after_seq``, in seq order."""
        sql = "SELECT body, hash FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq"
        params: list[Any] = [execution_id, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [parse_event(bytes(body), bytes(h)) for body, h in self._read(sql, params)]

    def event_rows(self, execution_id: str, *, after_seq: int = -1,
                   limit: int | None = None) -> list[tuple[int, str, bytes, bytes]]:
        """(seq, ts, hash, body) of stored events after a seq, unparsed: for answers that
        pass the stored bytes on as they are."""
        sql = "SELECT seq, ts, hash, body FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq"
        params: list[Any] = [execution_id, after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [(seq, ts, bytes(h), bytes(b)) for seq, ts, h, b in self._read(sql, params)]

    def get_blob(self, digest: str, *, project: str | None = None) -> Blob | None:
        """A stored blob by ``sha256:<hex>`` digest (``data`` None if erased), or None.

        With ``project``, only a blob an execution of that project refers to (another
        project's blob is None, exactly like a missing one).
        """
        if project is None:
            rows = self._read("SELECT digest, size, type, data FROM blobs WHERE digest = ?", (digest,))
        else:
            rows = self._read(
                "SELECT b.digest, b.size, b.type, b.data FROM blobs b WHERE b.digest = ? AND EXISTS ("
                "SELECT 1 FROM blob_refs r JOIN executions x ON x.id = r.execution_id"
                " WHERE r.digest = b.digest AND x.project = ?)", (digest, project))
        if not rows:
            return None
        d, size, type_, data = rows[0]
        return Blob(d, size, type_, None if data is None else bytes(data))

    def get_seal(self, execution_id: str) -> dict[str, Any] | None:
        """The seal of a terminal execution, or None while it runs."""
        rows = self._read(
            "SELECT status, event_count, events_root, last_hash, governance_version, sealed_at "
            "FROM seals WHERE execution_id = ?", (execution_id,),
        )
        if not rows:
            return None
        status, count, root, last, gv, at = rows[0]
        return {
            "execution_id": execution_id, "status": status, "event_count": count,
            "events_root": bytes(root).hex(), "last_hash": bytes(last).hex(), "governance_version": gv,
            "sealed_at": at,
        }

    def unsealed(self) -> list[dict[str, Any]]:
        """Executions not yet sealed, with the facts a reaper needs (host, pid, lease)."""
        rows = self._read(
            "SELECT id, host, pid, proc_start, lease_expires_us, started_us, status FROM executions WHERE sealed = 0"
        )
        keys = ("id", "host", "pid", "proc_start", "lease_expires_us", "started_us", "status")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def lapsed(self, now: int, *, limit: int = 500) -> list[dict[str, Any]]:
        """Unsealed executions whose lease expired before ``now`` (µs): the server's reaper."""
        rows = self._read(
            "SELECT id, host, pid, proc_start, lease_expires_us, started_us, status, lease_s, project FROM executions"
            " WHERE sealed = 0 AND lease_expires_us < ? ORDER BY lease_expires_us LIMIT ?", (now, limit),
        )
        keys = ("id", "host", "pid", "proc_start", "lease_expires_us", "started_us", "status", "lease_s", "project")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def all_seals(self) -> dict[str, tuple[str, int, bytes, bytes]]:
        """execution_id → (status, event_count, events_root, last_hash) for every seal."""
        return {
            r[0]: (r[1], r[2], bytes(r[3]), bytes(r[4]))
            for r in self._read("SELECT execution_id, status, event_count, events_root, last_hash FROM seals")
        }

    def execution_ids(self) -> list[str]:
        """Every execution id in the store."""
        return [r[0] for r in self._read("SELECT id FROM executions ORDER BY id")]


def loads(text: str | bytes | None) -> Any:
    """Decode a JSON column (None stays None)."""
    return None if text is None else orjson.loads(text)


def iter_rows(cur: Any, batch: int) -> Iterator[tuple[Any, ...]]:
    """A cursor's rows, fetched ``batch`` at a time."""
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            return
        yield from rows
