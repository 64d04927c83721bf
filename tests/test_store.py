"""The store's guarantees: append-only twice over (API and triggers), chain checks, migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from execord.errors import (
    ChainError,
    CorruptStore,
    ExecutionSealed,
    IllegalTransition,
    NotFound,
    SchemaTooNew,
    SeqConflict,
    StoreUnavailable,
)
from execord.record import (
    TOTALS_KEYS,
    Event,
    build_event,
    genesis_hash,
    make_blob,
    now_ts,
    uuid7,
)
from execord.store import SCHEMA_VERSION, ExecutionFilter, SQLiteStore, open_store, verify_store

_STARTED = {
    "agent": {"name": "a", "version": None, "roles": []}, "workflow": {"name": "w", "version": None},
    "execution_type": "workflow", "parent_execution_id": None, "labels": {"env": "dev"}, "inputs": None,
    "governance_version": None, "sdk": {}, "host": {"hostname": "elsewhere", "pid": 1}, "lease_s": 30,
}


def _ended(status: str = "succeeded") -> dict[str, Any]:
    return {"status": status, "error": None, "halt": None, "cancel": None, "failure_class": None,
            "totals": dict.fromkeys(TOTALS_KEYS, 0)}


class Chain:
    """Builds a valid chain of events for one execution, one event at a time."""

    def __init__(self) -> None:
        self.id = uuid7()
        self.events: list[Event] = []

    def next(self, type_: str, attrs: dict[str, Any], **kw: Any) -> Event:
        prev = self.events[-1].hash if self.events else genesis_hash(self.id)
        e = build_event(self.id, len(self.events), type_, now_ts(), attrs, prev, **kw)
        self.events.append(e)
        return e

    def start(self) -> Event:
        return self.next("execution.started", dict(_STARTED))

    def log(self, message: str = "hi") -> Event:
        return self.next("log", {"level": "info", "message": message, "data": None})

    def end(self, status: str = "succeeded") -> Event:
        return self.next("execution.ended", _ended(status))


@pytest.fixture
def s(store_url: str) -> Iterator[SQLiteStore]:
    """The store under test, on each backend (one suite, parametrised by ``backend``)."""
    store = open_store(store_url)
    assert store.backend in ("sqlite", "postgres")
    yield store  # type: ignore[misc]
    store.close()


def test_append_and_read_back_the_stored_bytes(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start(), c.log(), c.end()])
    stored = s.events(c.id)
    assert [e.body for e in stored] == [e.body for e in c.events]
    assert [e.hash for e in stored] == [e.hash for e in c.events]
    seal = s.get_seal(c.id)
    assert seal is not None and seal["event_count"] == 3 and seal["last_hash"] == c.events[-1].hash.hex()
    assert s.get_execution(c.id)["sealed"] is True


def test_the_identical_event_again_is_a_no_op(s: SQLiteStore) -> None:
    c = Chain()
    e0, e1 = c.start(), c.log()
    s.append([e0, e1])
    s.append([e0, e1])  # a retry after a lost acknowledgement
    s.append([e1])
    assert len(s.events(c.id)) == 2


def test_a_different_event_at_an_existing_seq_is_refused(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start(), c.log("original")])
    other = build_event(c.id, 1, "log", now_ts(), {"level": "info", "message": "forged", "data": None}, c.events[0].hash)
    with pytest.raises(SeqConflict) as info:
        s.append([other])
    assert info.value.seq == 1
    assert s.events(c.id)[1].attrs["message"] == "original"


def test_a_gap_is_refused(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start()])
    c.log()
    skipped = c.log()
    with pytest.raises(ChainError, match="gap"):
        s.append([skipped])


def test_an_event_that_does_not_chain_is_refused(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start()])
    bad = build_event(c.id, 1, "log", now_ts(), {"level": "info", "message": "x", "data": None}, b"\x00" * 32)
    with pytest.raises(ChainError, match="does not chain"):
        s.append([bad])


def test_an_event_whose_hash_lies_is_refused(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start()])
    good = c.log()
    liar = Event(good.execution_id, good.seq, good.type, good.ts, None, None, good.attrs, good.prev_hash,
                 b"\x11" * 32, good.body)
    with pytest.raises(ChainError, match="hash does not match"):
        s.append([liar])


def test_the_first_event_must_start_the_execution(s: SQLiteStore) -> None:
    c = Chain()
    with pytest.raises(ChainError, match="first event must be execution.started"):
        s.append([c.next("log", {"level": "info", "message": "x", "data": None})])


def test_nothing_is_accepted_after_the_terminal_event(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start(), c.end()])
    late = c.log()
    with pytest.raises(ExecutionSealed):
        s.append([late])
    # Through a fresh connection (no cached tip) as well: another process's view.
    other = open_store(s.target)
    _OPEN.append(other)
    with pytest.raises(ExecutionSealed):
        other.append([late])


def test_a_rejected_batch_writes_nothing(s: SQLiteStore) -> None:
    a, b = Chain(), Chain()
    s.append([a.start()])
    a_log = a.log()
    b_bad = build_event(b.id, 0, "log", now_ts(), {"level": "info", "message": "x", "data": None}, genesis_hash(b.id))
    blob = make_blob(b'{"k":1}')
    with pytest.raises(ChainError):
        s.append([a_log, b_bad], [blob])
    assert len(s.events(a.id)) == 1
    assert s.get_blob(blob.digest) is None


def test_illegal_status_transition_is_refused(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start()])
    decided = c.next("approval.decided", {"approval_id": "a1", "decision": "approved", "reviewer": "r", "comment": None})
    s.append([decided])  # running → running is no change
    s.append([c.next("approval.requested", {"approval_id": "a2", "rule_id": "r", "step_id": None, "action_digest": "d",
                                              "approvers": ["finance"], "expires_at": "2099-01-01T00:00:00.000000Z",
                                              "message": None})])
    assert [a["id"] for a in s.list_approvals()] == ["a2"]
    assert s.get_execution(c.id)["status"] == "awaiting_approval"
    assert s.get_execution(c.id)["failure_class"] == "approval_pending"
    with pytest.raises(IllegalTransition):
        s.append([c.end("succeeded")])


# -- the database refuses what the API has no way to do ----------------------------------


class Refused(Exception):
    """The database itself refused a statement (a trigger or a constraint)."""


class _Raw:
    """A plain driver connection to a store's database, beside the store: what an operator
    with SQL access (or a bug) could do."""

    def __init__(self, store: Any):
        self.backend = store.backend
        if self.backend == "sqlite":
            self.conn: Any = sqlite3.connect(store.path, isolation_level=None)
        else:
            import psycopg

            self.conn = psycopg.connect(store.url, autocommit=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.backend == "postgres":
            import psycopg

            from execord.store._postgres import to_pg

            sql = to_pg(sql.replace("x'00'", "'\\x00'::bytea"))
            try:
                return self.conn.execute(sql, params)
            except psycopg.errors.IntegrityError as exc:
                raise Refused(str(exc)) from exc
        try:
            return self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise Refused(str(exc)) from exc


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_raw() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _raw(target: Any) -> Any:
    raw = sqlite3.connect(target, isolation_level=None) if isinstance(target, str) else _Raw(target)
    _OPEN.append(raw if isinstance(raw, sqlite3.Connection) else raw.conn)
    return raw


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET body = x'00' WHERE seq = 0",
        "UPDATE events SET type = 'log'",
        "DELETE FROM events",
        "UPDATE seals SET status = 'failed'",
        "DELETE FROM seals",
        "UPDATE blobs SET digest = 'sha256:00'",
        "UPDATE blobs SET data = x'00'",
        "DELETE FROM blobs",
        "UPDATE executions SET status = 'failed'",
        "DELETE FROM executions",
        "DELETE FROM execution_labels",
        "UPDATE execution_labels SET value = 'prod'",
    ],
)
def test_triggers_refuse_changes_to_the_record(s: SQLiteStore, sql: str) -> None:
    c = Chain()
    blob = make_blob(b'"v"')
    s.append([c.start(), c.end()], [blob])
    conn = _raw(s)
    with pytest.raises(Refused, match="execord:"):
        conn.execute(sql)
    assert verify_store(s).ok


def test_a_blob_may_be_erased_but_not_rewritten(s: SQLiteStore) -> None:
    blob = make_blob(b'{"email":"ana@example.com"}')
    c = Chain()
    s.append([c.start()], [blob])
    _raw(s).execute("UPDATE blobs SET data = NULL WHERE digest = ?", (blob.digest,))
    erased = s.get_blob(blob.digest)
    assert erased is not None and erased.data is None and erased.size == blob.size


def test_the_summary_changes_until_the_seal_then_freezes(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start()])
    conn = _raw(s)
    conn.execute("UPDATE executions SET steps = 3 WHERE id = ?", (c.id,))  # allowed while running
    s.append([c.end()])
    with pytest.raises(Refused):
        conn.execute("UPDATE executions SET steps = 4 WHERE id = ?", (c.id,))


def test_insert_after_seal_is_refused_by_the_database_too(s: SQLiteStore) -> None:
    c = Chain()
    s.append([c.start(), c.end()])
    late = c.log()
    with pytest.raises(Refused, match="sealed"):
        _raw(s).execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?)",
            (late.execution_id, late.seq, late.type, late.ts, None, late.hash, late.body),
        )


def test_the_python_api_has_no_way_to_change_or_delete() -> None:
    verbs = ("update", "delete", "remove", "erase", "set_", "modify", "replace", "rewrite")
    names = [n for n in dir(SQLiteStore) if not n.startswith("_")]
    # The one exception is the right to erasure (DESIGN §3): it deletes a blob's bytes only,
    # keeps its digest, and appends an erasure entry, so every record still verifies.
    assert [n for n in names if n.startswith(verbs)] == ["erase_blob"], names


# -- reading ------------------------------------------------------------------------------


def test_list_filters_and_stable_cursor(s: SQLiteStore) -> None:
    ids = []
    for i in range(5):
        c = Chain()
        started = dict(_STARTED, labels={"env": "prod" if i % 2 else "dev", "n": str(i)})
        c.next("execution.started", started)
        s.append([c.events[0], c.end("failed" if i == 3 else "succeeded")])
        ids.append(c.id)
    newest_first = list(reversed(ids))
    assert [r["id"] for r in s.list_executions()] == newest_first
    assert [r["id"] for r in s.list_executions(ExecutionFilter(statuses=["failed"]))] == [ids[3]]
    assert [r["id"] for r in s.list_executions(ExecutionFilter(labels={"env": "prod"}))] == [ids[3], ids[1]]
    assert [r["id"] for r in s.list_executions(ExecutionFilter(labels={"env": "prod", "n": "1"}))] == [ids[1]]
    page1 = s.list_executions(ExecutionFilter(limit=2))
    last = page1[-1]
    row = _raw(s).execute("SELECT started_us FROM executions WHERE id = ?", (last["id"],)).fetchone()
    page2 = s.list_executions(ExecutionFilter(limit=2, before=(row[0], last["id"])))
    assert [r["id"] for r in page1 + page2] == newest_first[:4]


def test_resolve_id_by_unique_prefix(s: SQLiteStore) -> None:
    a, b = Chain(), Chain()
    s.append([a.start()])
    s.append([b.start()])
    assert s.resolve_id(a.id) == a.id
    assert s.resolve_id(a.id[:30]) == a.id
    with pytest.raises(NotFound):
        s.resolve_id("ffffffff")
    shared = next(i for i in range(36) if a.id[i] != b.id[i])
    from execord.errors import AmbiguousId

    with pytest.raises(AmbiguousId, match="matches 2"):
        s.resolve_id(a.id[:shared])


# -- opening ------------------------------------------------------------------------------


def test_schema_version_is_recorded_and_reopening_is_idempotent(db_path: str) -> None:
    open_store(db_path).close()
    open_store(db_path).close()
    row = _raw(db_path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION


def test_a_newer_schema_is_refused(db_path: str) -> None:
    open_store(db_path).close()
    _raw(db_path).execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaTooNew, match="upgrade execord"):
        open_store(db_path)


def test_a_corrupt_file_is_reported(db_path: str) -> None:
    with open(db_path, "wb") as f:
        f.write(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStore, match="not an Execord database"):
        open_store(db_path)


def test_another_sqlite_database_is_not_taken_for_ours(db_path: str) -> None:
    _raw(db_path).execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(CorruptStore, match="not an Execord one"):
        open_store(db_path)


def test_a_missing_file_is_created_only_when_asked(tmp_path: Any) -> None:
    path = tmp_path / "sub" / "e.db"
    with pytest.raises(StoreUnavailable, match="no Execord database"):
        open_store(path, create=False)
    open_store(path).close()
    assert path.exists()


def test_a_batch_that_starts_an_execution_leaves_the_tip_at_its_last_event(s: SQLiteStore) -> None:
    """Regression: the start's projection once reset the cached tip to seq 0 mid-batch."""
    c = Chain()
    s.append([c.start(), c.log("a")])
    s.append([c.log("b")])  # would be refused as a gap (or a conflict) with a stale tip
    s.append([c.log("c"), c.end()])
    assert [e.seq for e in s.events(c.id)] == [0, 1, 2, 3, 4]
    assert s.get_execution(c.id)["status"] == "succeeded"
