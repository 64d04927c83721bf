"""The store's global ledger: one leaf per sealed execution, at contiguous indices, whose
Merkle root, proofs and signed checkpoints a user can check against the seals themselves.

Every test runs on a real store (SQLite and PostgreSQL through the ``backend`` fixture);
what only the database can refuse is tried through a raw driver connection beside it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_store import Chain, _ended, _Raw

from execord.errors import ChainError, InvalidInput, LedgerError, NotFound, StoreError
from execord.ledger import _log, _tree, merkle
from execord.ledger._note import Signer, Verifier
from execord.record import (
    Blob,
    Event,
    blob_ref,
    build_event,
    genesis_hash,
    ledger_entry,
    make_blob,
    now_ts,
    uuid7,
)
from execord.store import SQLiteStore, open_store, verify_store
from execord.store._postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from execord.store._schema import SCHEMA_VERSION
from execord.store._schema_pg import APP_GRANTS

LEDGER_TABLES = ("ledger", "ledger_nodes", "checkpoints", "erasures", "erasure_notes")
SIGNER = Signer.generate("test.example/log")


# -- helpers ----------------------------------------------------------------------------------


class Raw(_Raw):
    """`test_store._Raw` (a plain driver connection beside a store), with the driver's own
    errors left as they are, and the switches a test of the ledger needs."""

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.backend == "postgres":
            from execord.store._postgres import to_pg

            sql = to_pg(sql)
        return self.conn.execute(sql, params)

    def unguard(self, *tables: str) -> None:
        """Switch off the triggers that keep these tables append-only (an owner can)."""
        for table in tables:
            if self.backend == "sqlite":
                self.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
                self.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            else:
                self.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    def downgrade_to_5(self) -> None:
        """Make the database what schema version 5 left: no ledger tables at all."""
        if self.backend == "sqlite":
            for table in reversed(LEDGER_TABLES):  # dropping a table drops its triggers
                self.execute(f"DROP TABLE {table}")
            self.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
        else:
            self.execute(f"DROP TABLE {', '.join(LEDGER_TABLES)} CASCADE")
            self.execute("UPDATE execord_meta SET value = '5' WHERE key = 'schema_version'")

    def close(self) -> None:
        self.conn.close()


def _refused_errors(backend: str) -> tuple[type[BaseException], ...]:
    if backend == "sqlite":
        return (sqlite3.IntegrityError,)
    import psycopg

    return (psycopg.errors.IntegrityError,)


@pytest.fixture
def s(store_url: str) -> Iterator[Any]:
    """The store under test, on each backend."""
    store = open_store(store_url)
    yield store
    store.close()


@pytest.fixture
def raw(s: Any) -> Iterator[Raw]:
    conn = Raw(s)
    yield conn
    conn.close()


def seal_one(store: Any, *, logs: int = 0) -> str:
    """Start and end one execution in one append; its id."""
    c = Chain()
    c.start()
    for i in range(logs):
        c.log(f"m{i}")
    c.end()
    store.append(c.events)
    return c.id


def end_at(c: Chain, ts: str, status: str = "succeeded") -> Event:
    """The terminal event of ``c`` with a chosen timestamp (which becomes the seal's sealed_at)."""
    prev = c.events[-1].hash if c.events else genesis_hash(c.id)
    e = build_event(c.id, len(c.events), "execution.ended", ts, _ended(status), prev)
    c.events.append(e)
    return e


def expected_entry(store: Any, execution_id: str) -> bytes:
    """The ledger entry recomputed from the seal the store reports."""
    seal = store.get_seal(execution_id)
    assert seal is not None, f"{execution_id} is not sealed"
    return ledger_entry(
        execution_id=execution_id, status=seal["status"], event_count=seal["event_count"],
        events_root=bytes.fromhex(seal["events_root"]), last_hash=bytes.fromhex(seal["last_hash"]),
        governance_version=seal["governance_version"], sealed_at=seal["sealed_at"],
    )


def assert_ledger(store: Any, ids: list[str]) -> list[bytes]:
    """The ledger holds exactly these executions at indices 0..n-1, each leaf the entry of
    its seal, every stored subtree right, and the root that of the entries; the entries."""
    rows = store.ledger_entries()
    assert [r[0] for r in rows] == list(range(len(ids)))
    assert [r[1] for r in rows] == ids
    assert store.ledger_size() == len(ids)
    entries = []
    for idx, eid, entry in rows:
        assert entry == expected_entry(store, eid), f"leaf {idx} ({eid})"
        assert store.ledger_leaf(eid) == (idx, entry)
        entries.append(entry)
    assert _log.root_at(store) == (len(ids), merkle.root(entries))
    want = _tree.levels([merkle.leaf_hash(e) for e in entries])
    assert store.ledger_nodes(want.keys()) == want
    return entries


@contextlib.contextmanager
def _pg_role(pg_url: str) -> Iterator[str]:
    """A login role with the grants of docs/deployment.md (APP_GRANTS), dropped afterwards."""
    import psycopg

    role = f"execord_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(APP_GRANTS.format(role=role))
    try:
        yield role
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


# -- 1. one leaf per seal, in the order of the seals ------------------------------------------


def test_every_seal_gets_the_next_leaf_whatever_the_batching(s: Any) -> None:
    order: list[str] = []

    # Three whole executions in one batch: their leaves follow the batch's order.
    batch = [Chain() for _ in range(3)]
    s.append([e for c in batch for e in (c.start(), c.log(), c.end())])
    order += [c.id for c in batch]

    # Executions appended event by event.
    for _ in range(2):
        c = Chain()
        s.append([c.start()])
        s.append([c.log()])
        assert s.ledger_leaf(c.id) is None
        s.append([c.end("failed")])
        order.append(c.id)

    # Executions ended in the same append as other executions' events (starts, logs).
    c1, c2, c3 = Chain(), Chain(), Chain()
    s.append([c1.start(), c2.start(), c3.start()])
    d1, d2 = Chain(), Chain()
    mixed = [c1.log(), c3.log(), c2.end(), d1.start(), c3.end("cancelled"), c1.log(), d2.start(), d2.end()]
    s.append(mixed)
    order += [c2.id, c3.id, d2.id]
    assert s.ledger_leaf(c1.id) is None and s.ledger_leaf(d1.id) is None
    s.append([d1.end(), c1.log(), c1.end()])
    order += [d1.id, c1.id]
    assert_ledger(s, order)

    # A retried batch (a lost acknowledgement) adds no second leaf.
    s.append(mixed)
    s.append([e for c in batch for e in c.events])
    assert s.ledger_size() == len(order)

    # A refused batch writes no leaf and leaves no gap behind.
    e1 = Chain()
    s.append([e1.start()])
    end = e1.end()
    bad = Chain()
    forged = build_event(bad.id, 0, "log", now_ts(), {"level": "info", "message": "x", "data": None},
                         genesis_hash(bad.id))
    with pytest.raises(ChainError, match="first event must be execution.started"):
        s.append([end, forged])
    assert s.ledger_size() == len(order) and s.ledger_leaf(e1.id) is None
    s.append([end])
    order.append(e1.id)

    # Another connection (another process) sees the same ledger, and appends after it.
    other = open_store(s.target)
    try:
        order.append(seal_one(other))
        assert_ledger(other, order)
    finally:
        other.close()
    assert_ledger(s, order)
    assert verify_store(s).ok


def test_an_empty_ledger(s: Any) -> None:
    assert s.ledger_size() == 0
    assert s.ledger_entries() == []
    assert _log.root_at(s) == (0, merkle.root([]))
    c = Chain()
    s.append([c.start(), c.log()])
    assert s.ledger_size() == 0 and _log.root_at(s) == (0, merkle.root([]))


# -- 2. only sealed executions have a leaf ------------------------------------------------------


def test_a_running_execution_has_no_leaf_and_no_proof(s: Any) -> None:
    sealed = [seal_one(s) for _ in range(3)]
    running = Chain()
    s.append([running.start(), running.log()])
    assert s.ledger_leaf(running.id) is None
    assert s.ledger_size() == 3
    with pytest.raises(LedgerError, match="not sealed"):
        _log.inclusion(s, running.id)
    with pytest.raises(NotFound):
        _log.inclusion(s, uuid7())
    # A leaf past the requested tree, and trees the ledger does not have.
    with pytest.raises(LedgerError, match="after the tree of size 2"):
        _log.inclusion(s, sealed[2], size=2)
    with pytest.raises(LedgerError):
        _log.inclusion(s, sealed[0], size=4)
    with pytest.raises(LedgerError):
        _log.root_at(s, 4)
    with pytest.raises(LedgerError):
        _log.consistency(s, 3, 2)
    with pytest.raises(LedgerError):
        _log.consistency(s, 1, 4)
    # Once it ends it gets the next leaf, and a proof.
    s.append([running.end()])
    assert s.ledger_leaf(running.id) == (3, expected_entry(s, running.id))
    proof = _log.inclusion(s, running.id)
    assert proof["index"] == 3 and proof["tree_size"] == 4
    assert_ledger(s, [*sealed, running.id])


# -- 3. proofs, at every size ---------------------------------------------------------------------


def test_every_inclusion_and_consistency_proof_verifies(s: Any) -> None:
    n = 40
    ids = [seal_one(s, logs=k % 3) for k in range(n)]
    entries = assert_ledger(s, ids)
    roots = [merkle.root(entries[:m]) for m in range(n + 1)]
    hashes = [merkle.leaf_hash(e) for e in entries]

    for size in range(1, n + 1):
        for i in range(size):
            p = _log.inclusion(s, ids[i], size=None if size == n else size)
            proof = [bytes.fromhex(x) for x in p["proof"]]
            assert (p["execution_id"], p["index"], p["tree_size"]) == (ids[i], i, size)
            assert p["entry"].encode() == entries[i]
            assert p["leaf_hash"] == hashes[i].hex()
            assert p["root"] == roots[size].hex()
            assert proof == merkle.inclusion_proof(entries[:size], i)
            assert merkle.verify_inclusion(hashes[i], i, size, proof, roots[size])
            # The same proof does not vouch for a neighbour's leaf.
            if size > 1:
                j = (i + 1) % size
                assert not merkle.verify_inclusion(hashes[j], i, size, proof, roots[size])

    for new in range(n + 1):
        for old in range(new + 1):
            p = _log.consistency(s, old, new)
            proof = [bytes.fromhex(x) for x in p["proof"]]
            assert (p["from"], p["to"]) == (old, new)
            assert p["from_root"] == roots[old].hex() and p["to_root"] == roots[new].hex()
            assert proof == merkle.consistency_proof(entries, old, new)
            assert merkle.verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
            if 0 < old < new:
                assert not merkle.verify_consistency(old, new, roots[old - 1] if old > 1 else roots[new],
                                                     roots[new], proof)
    assert _log.consistency(s, 7)["to"] == n


# -- 4. replicas sealing at once --------------------------------------------------------------


def test_writers_sealing_at_once_keep_the_indices_contiguous(store_url: str, backend: str) -> None:
    writers, per_writer = 4, 25
    stores = [open_store(store_url, pool_size=4) if backend == "postgres" else open_store(store_url)
              for _ in range(writers)]
    submitted: list[list[str]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def writer(k: int) -> None:
        store = stores[k]
        try:
            barrier.wait(timeout=30)
            done = 0
            while done < per_writer:
                if done % 3 == 2 or done == per_writer - 1:  # one execution, event by event
                    c = Chain()
                    store.append([c.start()])
                    store.append([c.log()])
                    store.append([c.end()])
                    submitted[k].append(c.id)
                    done += 1
                else:  # two executions sealed in one transaction
                    a, b = Chain(), Chain()
                    store.append([a.start(), b.start()])
                    store.append([a.log(), b.log(), b.end(), a.end()])
                    submitted[k] += [b.id, a.id]
                    done += 2
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        rows = stores[0].ledger_entries()
        total = writers * per_writer
        assert [r[0] for r in rows] == list(range(total))  # no gap, no duplicate
        assert sorted(r[1] for r in rows) == sorted(eid for ids in submitted for eid in ids)
        index = {eid: i for i, eid, _ in rows}
        for ids in submitted:  # each writer's seals are in the order it committed them
            assert [index[e] for e in ids] == sorted(index[e] for e in ids)
        entries = assert_ledger(stores[0], [r[1] for r in rows])
        assert _log.root_at(stores[writers - 1]) == (total, merkle.root(entries))
        assert verify_store(stores[0]).ok
    finally:
        for st in stores:
            st.close()


# -- 5. executions sealed before the ledger existed -------------------------------------------


def _seal_out_of_order(store: Any) -> tuple[list[str], Chain]:
    """Executions whose seal times are not in the order they were appended (two tie); one
    execution still running. The ids in (sealed_at, execution_id) order, and the running one."""
    times = ["2030-01-01T00:00:05.000000Z", "2030-01-01T00:00:01.000000Z", "2030-01-01T00:00:03.000000Z",
             "2030-01-01T00:00:01.000000Z", "2030-01-01T00:00:00.000000Z", "2030-01-01T00:00:04.000000Z"]
    sealed = []
    for k, ts in enumerate(times):
        c = Chain()
        c.start()
        c.log()
        store.append([*c.events, end_at(c, ts, "failed" if k == 2 else "succeeded")])
        sealed.append((ts, c.id))
    running = Chain()
    store.append([running.start()])
    return [eid for _, eid in sorted(sealed)], running


def _reopen_after_downgrade(store: Any) -> Any:
    target, backend = store.target, store.backend
    raw = Raw(store)
    store.close()
    try:
        raw.downgrade_to_5()
    finally:
        raw.close()
    reopened = open_store(target)
    version_sql = ("SELECT value FROM meta WHERE key = 'schema_version'" if backend == "sqlite"
                   else "SELECT value FROM execord_meta WHERE key = 'schema_version'")
    raw = Raw(reopened)
    try:
        assert raw.execute(version_sql).fetchone()[0] == str(SCHEMA_VERSION if backend == "sqlite"
                                                             else PG_SCHEMA_VERSION)
    finally:
        raw.close()
    return reopened


def test_migration_gives_earlier_seals_their_leaves_in_seal_order(store_url: str) -> None:
    store = open_store(store_url)
    want, running = _seal_out_of_order(store)
    # Before the downgrade the leaves were in append order, which is not the seal order.
    assert [r[1] for r in store.ledger_entries()] != want
    store = _reopen_after_downgrade(store)
    try:
        assert_ledger(store, want)
        assert store.ledger_leaf(running.id) is None
        assert store.checkpoints() == [] and store.erasures() == {}
        # Opening again migrates nothing more; the next seal takes the next index.
        again = open_store(store_url)
        try:
            assert_ledger(again, want)
            again.append([running.log(), running.end()])
            assert_ledger(store, [*want, running.id])
        finally:
            again.close()
    finally:
        store.close()


def test_migration_backfills_more_than_one_chunk(store_url: str) -> None:
    store = open_store(store_url)
    chains = [Chain() for _ in range(1003)]
    store.append([e for c in chains for e in (c.start(), c.end())])
    seals = {c.id: store.get_seal(c.id)["sealed_at"] for c in chains}  # type: ignore[index]
    store = _reopen_after_downgrade(store)
    try:
        rows = store.ledger_entries()
        assert [r[0] for r in rows] == list(range(len(chains)))
        assert [r[1] for r in rows] == sorted(seals, key=lambda eid: (seals[eid], eid))
        entries = [r[2] for r in rows]
        assert entries[999] == expected_entry(store, rows[999][1])
        assert entries[1000] == expected_entry(store, rows[1000][1])
        assert _log.root_at(store) == (len(chains), merkle.root(entries))
        want = _tree.levels([merkle.leaf_hash(e) for e in entries])
        assert store.ledger_nodes(want.keys()) == want
        p = _log.inclusion(store, rows[1001][1])
        assert merkle.verify_inclusion(merkle.leaf_hash(entries[1001]), 1001, len(chains),
                                       [bytes.fromhex(x) for x in p["proof"]], merkle.root(entries))
    finally:
        store.close()


# -- 6. the database refuses to rewrite the ledger --------------------------------------------


def _sealed_with_blob(s: Any) -> Blob:
    """A sealed execution whose log event refers to a blob of personal data; the blob."""
    blob = make_blob(b'{"email":"ana@example.com"}')
    c = Chain()
    c.start()
    c.next("log", {"level": "info", "message": "m", "data": blob_ref(blob.digest[7:], blob.size, blob.type)})
    c.end()
    s.append(c.events, [blob])
    return blob


def _fill_ledger_tables(s: Any, eraser: Any = None) -> str:
    """A sealed execution with a blob, a checkpoint and an erasure (made through ``eraser``,
    by default the same store): a row in every ledger table."""
    blob = _sealed_with_blob(s)
    seal_one(s)
    _log.make_checkpoint(s, SIGNER)
    _log.erase(eraser or s, blob.digest, reason="subject access request", by="dpo", signer=SIGNER)
    return blob.digest


_CHANGES = [
    "UPDATE ledger SET entry = ?",
    "UPDATE ledger SET execution_id = 'x'",
    "UPDATE ledger SET idx = idx + 10",
    "DELETE FROM ledger",
    "UPDATE ledger_nodes SET hash = ?",
    "DELETE FROM ledger_nodes",
    "DELETE FROM ledger_nodes WHERE level = 1",
    "UPDATE checkpoints SET root = ?",
    "UPDATE checkpoints SET note = 'x'",
    "DELETE FROM checkpoints",
    "UPDATE erasures SET reason = 'x'",
    "DELETE FROM erasures",
    "UPDATE erasure_notes SET note = 'x'",
    "UPDATE erasure_notes SET tree_size = 0",
    "DELETE FROM erasure_notes",
]


@pytest.mark.parametrize("sql", _CHANGES)
def test_the_ledger_tables_refuse_update_and_delete(s: Any, raw: Raw, sql: str) -> None:
    _fill_ledger_tables(s)
    before = (s.ledger_entries(), _log.root_at(s), s.checkpoints(), s.erasures())
    with pytest.raises(_refused_errors(s.backend), match="execord:"):
        raw.execute(sql, (b"\x00" * 32,) if "?" in sql else ())
    assert (s.ledger_entries(), _log.root_at(s), s.checkpoints(), s.erasures()) == before
    assert _log.check_checkpoint(s, s.latest_checkpoint()) == []


@pytest.mark.parametrize("table", LEDGER_TABLES)
def test_postgres_refuses_truncating_the_ledger_tables(pg_url: str, table: str) -> None:
    import psycopg

    s = open_store(pg_url)
    try:
        digest = _fill_ledger_tables(s)
        with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.Error, match="execord:"):
            conn.execute(f"TRUNCATE {table}")
        assert s.ledger_size() == 2 and len(s.checkpoints()) == 1 and len(s.erasures()) == 1
        assert s.erasures()[digest]["note"] is not None
    finally:
        s.close()


@pytest.mark.parametrize("sql", [
    "INSERT OR REPLACE INTO ledger_nodes (level, idx, hash) VALUES (0, 0, x'00')",
    "REPLACE INTO ledger (idx, execution_id, entry) VALUES (0, 'forged', x'00')",
])
def test_sqlite_refuses_replacing_a_ledger_row(db_path: str, sql: str) -> None:
    s = SQLiteStore(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        seal_one(s)
        before = (s.ledger_entries(), _log.root_at(s))
        try:
            conn.execute(sql)
        except sqlite3.IntegrityError:
            pass
        assert (s.ledger_entries(), _log.root_at(s)) == before
    finally:
        conn.close()
        s.close()


def test_the_least_privilege_role_appends_to_the_ledger_but_cannot_rewrite_it(pg_url: str) -> None:
    import psycopg

    owner = open_store(pg_url)  # the owner migrates; the role is granted on the tables it made
    try:
        with _pg_role(pg_url) as role:
            app_url = pg_url.replace("postgres@", f"{role}@")
            app = open_store(app_url)
            try:
                ids = [seal_one(app), seal_one(owner), seal_one(app)]
                # The role cannot erase (the owner does, with the ledger key): no bytes go.
                kept = make_blob(b'{"card":"4242"}')
                c = Chain()
                app.append([c.start(), c.end()], [kept])
                with pytest.raises(StoreError, match="permission denied"):
                    _log.erase(app, kept.digest, reason="request", by=None, signer=SIGNER)
                assert app.get_blob(kept.digest).data == kept.data and app.erasures() == {}  # type: ignore[union-attr]
                digest = _fill_ledger_tables(app, eraser=owner)  # seals twice, signs a checkpoint
                assert app.erasures()[digest]["erased_by"] == "dpo"
                ids += [r[1] for r in app.ledger_entries(3)]
                assert len(ids) == 6 and ids[3] == c.id
                assert_ledger(app, ids)
            finally:
                app.close()
            with psycopg.connect(app_url, autocommit=True) as conn:
                for table in LEDGER_TABLES:
                    for sql in (f"DELETE FROM {table}", f"TRUNCATE {table}",
                                f"ALTER TABLE {table} DISABLE TRIGGER USER"):
                        with pytest.raises(psycopg.errors.InsufficientPrivilege):
                            conn.execute(sql)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("UPDATE ledger_nodes SET hash = hash")
        assert_ledger(owner, ids)
        assert _log.check_checkpoint(owner, owner.latest_checkpoint()) == []
    finally:
        owner.close()


# -- 7. signed checkpoints --------------------------------------------------------------------


def test_checkpoints_are_kept_once_per_size_and_key(s: Any) -> None:
    signer = Signer.generate("test.example/log")
    key_id = signer.verifier.key_id.hex()
    assert s.latest_checkpoint() is None and s.checkpoints() == []

    for _ in range(3):
        seal_one(s)
    first = _log.make_checkpoint(s, signer)
    _, root3 = _log.root_at(s)
    assert (first["tree_size"], first["root"], first["key_id"]) == (3, root3.hex(), key_id)
    assert first["origin"] == "test.example/log" and first["verifier_key"] == signer.verifier.text()
    assert _log.make_checkpoint(s, signer) == first  # the same size again: the one kept
    assert s.checkpoints() == [first]

    for _ in range(2):
        seal_one(s)
    second = _log.make_checkpoint(s, signer)
    other = Signer.generate("witness.example/log")
    witnessed = _log.make_checkpoint(s, other)
    assert second["tree_size"] == witnessed["tree_size"] == 5 and second["root"] == witnessed["root"]
    assert s.latest_checkpoint()["tree_size"] == 5  # type: ignore[index]
    assert sorted(c["tree_size"] for c in s.checkpoints()) == [3, 5, 5]
    assert s.get_checkpoint(3) == first
    assert s.get_checkpoint(5, key_id=key_id) == second
    assert s.get_checkpoint(5, key_id=other.verifier.key_id.hex()) == witnessed
    assert s.get_checkpoint(4) is None and s.get_checkpoint(3, key_id=other.verifier.key_id.hex()) is None
    assert s.checkpoints(limit=1)[0]["tree_size"] == 5

    for row in s.checkpoints():
        assert _log.check_checkpoint(s, row) == []
        assert _log.check_checkpoint(s, row, Verifier.parse(row["verifier_key"])) == []
    # The signature is checked, and with the right key.
    assert _log.check_checkpoint(s, first, other.verifier)
    forged = dict(first, note=first["note"].replace("\n3\n", "\n2\n"))
    assert _log.check_checkpoint(s, forged)

    with pytest.raises(InvalidInput, match="larger than the ledger"):
        s.add_checkpoint(tree_size=6, root=b"\x00" * 32, origin="o", key_id=key_id,
                         verifier_key=signer.verifier.text(), note="n")
    assert len(s.checkpoints()) == 3


def test_an_empty_ledger_can_be_checkpointed(s: Any) -> None:
    cp = _log.make_checkpoint(s, Signer.generate("test.example/log"))
    assert cp["tree_size"] == 0 and cp["root"] == merkle.root([]).hex()
    assert _log.check_checkpoint(s, cp) == []


def test_a_checkpoint_exposes_a_ledger_rewritten_behind_the_store(s: Any, raw: Raw) -> None:
    signer = Signer.generate("test.example/log")
    for _ in range(3):
        seal_one(s)
    at3 = _log.make_checkpoint(s, signer)
    for _ in range(2):
        seal_one(s)
    at5 = _log.make_checkpoint(s, signer)
    assert _log.check_checkpoint(s, at3) == [] and _log.check_checkpoint(s, at5) == []

    raw.unguard("ledger_nodes")
    # Leaf 4 is in the tree of 5 only: the older checkpoint still holds.
    raw.execute("UPDATE ledger_nodes SET hash = ? WHERE level = 0 AND idx = 4", (b"\x11" * 32,))
    assert _log.check_checkpoint(s, at3) == []
    problems = _log.check_checkpoint(s, at5)
    assert len(problems) == 1 and "rewritten" in problems[0]
    # The subtree of leaves 0-1 is in both.
    raw.execute("UPDATE ledger_nodes SET hash = ? WHERE level = 1 AND idx = 0", (b"\x22" * 32,))
    assert _log.check_checkpoint(s, at3) and _log.check_checkpoint(s, at5)


def test_a_checkpoint_exposes_a_consistently_rebuilt_ledger(s: Any, raw: Raw) -> None:
    """A rewriter who changes a seal's entry and recomputes every subtree still cannot match
    the signed root."""
    ids = [seal_one(s) for _ in range(6)]
    cp = _log.make_checkpoint(s, Signer.generate("test.example/log"))
    entries = [r[2] for r in s.ledger_entries()]
    entries[2] = entries[2].replace(b'"succeeded"', b'"failed"')
    raw.unguard("ledger", "ledger_nodes")
    raw.execute("UPDATE ledger SET entry = ? WHERE idx = 2", (entries[2],))
    raw.execute("DELETE FROM ledger_nodes")
    for (level, idx), h in _tree.levels([merkle.leaf_hash(e) for e in entries]).items():
        raw.execute("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?,?,?)", (level, idx, h))
    assert _log.root_at(s) == (6, merkle.root(entries))  # the forged tree is self-consistent
    problems = _log.check_checkpoint(s, cp)
    assert problems and "rewritten" in problems[0]
    assert s.ledger_leaf(ids[2])[1] != expected_entry(s, ids[2])  # type: ignore[index]


# -- 8. erasure ------------------------------------------------------------------------------


def test_a_blob_is_erased_once_and_every_record_still_verifies(s: Any) -> None:
    secret = make_blob(b'{"email":"ana@example.com"}')
    kept = make_blob(b'{"ok":true}')
    c = Chain()
    c.start()
    c.next("log", {"level": "info", "message": "m", "data": blob_ref(secret.digest[7:], secret.size, secret.type)})
    c.end()
    s.append(c.events, [secret, kept])
    _, root = _log.root_at(s)
    assert s.erasures() == {}

    erased = _log.erase(s, secret.digest, reason="  GDPR art. 17 request #42 ", by="dpo@example.com", signer=SIGNER)
    assert erased["digest"] == secret.digest and erased["reason"] == "GDPR art. 17 request #42"
    # Signed by the ledger key over every field, at the ledger's size then (one leaf).
    assert erased["tree_size"] == 1 and erased["key_id"] == SIGNER.verifier.key_id.hex()
    assert SIGNER.verifier.open(erased["note"]).splitlines()[:2] == ["test.example/log", "execord-erasure-v1"]
    assert _log.check_erasure(erased, SIGNER.verifier) is None
    assert _log.check_erasure(erased) is None  # by the key the entry names
    for field, value in [("reason", "GDPR art. 17 request #43"), ("erased_by", "someone"), ("size", 1),
                         ("erased_at", "2030-01-01T00:00:00.000000Z"), ("tree_size", 2), ("digest", kept.digest)]:
        assert "was changed after it was signed" in str(_log.check_erasure({**erased, field: value}, SIGNER.verifier))
    other = Signer.generate("test.example/log")
    assert "no signature by key test.example/log" in str(_log.check_erasure(erased, other.verifier))
    assert "is not signed" in str(_log.check_erasure({**erased, "note": None}))
    assert erased["erased_by"] == "dpo@example.com"
    assert erased["size"] == secret.size and erased["type"] == secret.type
    blob = s.get_blob(secret.digest)
    assert blob is not None and blob.data is None and blob.size == secret.size
    assert s.get_blob(kept.digest).data == kept.data  # type: ignore[union-attr]
    assert s.erasures() == {secret.digest: erased}
    assert s.erasures([secret.digest, kept.digest]) == {secret.digest: erased}
    assert [e.body for e in s.events(c.id)] == [e.body for e in c.events]
    assert _log.root_at(s) == (1, root)  # the ledger is untouched
    assert verify_store(s).ok

    with pytest.raises(InvalidInput, match="already erased"):
        _log.erase(s, secret.digest, reason="again", by=None, signer=SIGNER)
    with pytest.raises(NotFound):
        _log.erase(s, "sha256:" + "0" * 64, reason="gone", by=None, signer=SIGNER)
    for reason in ("", "   ", "x" * 2001):
        with pytest.raises(InvalidInput):
            _log.erase(s, kept.digest, reason=reason, by=None, signer=SIGNER)
    assert s.get_blob(kept.digest).data == kept.data  # type: ignore[union-attr]
    assert list(s.erasures()) == [secret.digest]
    # Seen from another connection too.
    other = open_store(s.target)
    try:
        assert other.get_blob(secret.digest).data is None  # type: ignore[union-attr]
        assert other.erasures() == {secret.digest: erased}
    finally:
        other.close()


def test_erasures_kept_before_they_were_signed_are_reported_until_signed(s: Any, raw: Raw) -> None:
    """A store upgraded from schema 6 keeps its erasures unsigned: the store check says so and
    `sign_erasures` signs each once, at the ledger's size then."""
    blob = _sealed_with_blob(s)
    raw.execute("UPDATE blobs SET data = NULL WHERE digest = ?", (blob.digest,))
    raw.execute("INSERT INTO erasures (digest, size, type, reason, erased_by, erased_at) VALUES (?,?,?,?,?,?)",
                (blob.digest, blob.size, blob.type, "before v7", "dpo", "2026-01-01T00:00:00.000000Z"))
    (entry,) = s.erasures().values()
    assert entry["note"] is None and entry["tree_size"] is None
    problems = [m for _, m in _log.verify_ledger(s)["problems"]]
    assert problems == [f"the erasure of blob {blob.digest} is not signed, so it cannot be told from a blob left "
                        "out (the operator signs it with `execord blobs sign-erasures --key ledger.key`)"]

    assert [e["digest"] for e in _log.unsigned_erasures(s, SIGNER)] == [blob.digest]
    (signed,) = _log.sign_erasures(s, SIGNER, [blob.digest])
    assert {k: signed[k] for k in ("digest", "reason", "erased_at")} == \
        {"digest": blob.digest, "reason": "before v7", "erased_at": "2026-01-01T00:00:00.000000Z"}
    assert signed["tree_size"] == 1 and _log.check_erasure(signed, SIGNER.verifier) is None
    assert _log.verify_ledger(s, SIGNER.verifier)["problems"] == []
    assert _log.unsigned_erasures(s, SIGNER) == [] and _log.sign_erasures(s, SIGNER, [blob.digest]) == []
    assert s.erasures() == {blob.digest: signed}


def test_a_new_ledger_key_signs_every_erasure_again_beside_the_old_signature(s: Any) -> None:
    digest = _fill_ledger_tables(s)  # erased and signed by SIGNER
    old = s.erasures()[digest]
    new = Signer.generate("test.example/log")
    new_id = new.verifier.key_id.hex()
    # Checked with the new key, the erasure is not signed by it yet; the old signature holds.
    assert s.erasures(key_id=new_id)[digest] == old
    (problem,) = [m for _, m in _log.verify_ledger(s, new.verifier)["problems"] if "erasure" in m]
    assert "no signature by key test.example/log" in problem
    assert [e["digest"] for e in _log.unsigned_erasures(s, new)] == [digest]
    (again,) = _log.sign_erasures(s, new, [digest])
    assert again["key_id"] == new_id and _log.check_erasure(again, new.verifier) is None
    assert {k: again[k] for k in ("reason", "erased_at", "erased_by")} == {k: old[k] for k in ("reason", "erased_at", "erased_by")}
    # Each key's signature is kept: asked for by key, each store read gives that key's.
    assert s.erasures(key_id=SIGNER.verifier.key_id.hex())[digest] == old
    assert s.erasures(key_id=new_id)[digest] == again
    assert [m for _, m in _log.verify_ledger(s, new.verifier)["problems"] if "erasure" in m] == []
    assert _log.unsigned_erasures(s, new) == [] and _log.unsigned_erasures(s, SIGNER) == []


def test_upgrading_from_schema_6_keeps_erasures_and_adds_their_signatures(s: Any) -> None:
    digest = _fill_ledger_tables(s)
    before = s.erasures()[digest]
    target, backend = s.target, s.backend
    raw = Raw(s)
    try:
        if backend == "sqlite":
            raw.execute("DROP TABLE erasure_notes")
            raw.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
        else:
            raw.execute("DROP TABLE erasure_notes")
            raw.execute("UPDATE execord_meta SET value = '6' WHERE key = 'schema_version'")
    finally:
        raw.close()
    reopened = open_store(target)
    try:
        (entry,) = reopened.erasures().values()
        assert entry == {**before, "tree_size": None, "key_id": None, "verifier_key": None, "note": None}
        (signed,) = _log.sign_erasures(reopened, SIGNER, [digest])
        assert _log.verify_ledger(reopened, SIGNER.verifier)["problems"] == []
        assert signed["tree_size"] == 2 and signed["reason"] == before["reason"]
    finally:
        reopened.close()


def _erase_race(pg_url: str, replicas: int = 4) -> tuple[list[dict[str, Any]], list[StoreError], int]:
    """Replicas erasing the same blob at the same moment: (erasures made, errors, entries kept)."""
    blob = make_blob(b'{"card":"4111"}')
    stores = [open_store(pg_url, pool_size=2) for _ in range(replicas)]
    try:
        c = Chain()
        stores[0].append([c.start(), c.end()], [blob])
        done: list[dict[str, Any]] = []
        refused: list[StoreError] = []
        barrier = threading.Barrier(replicas)

        def erase(st: Any) -> None:
            barrier.wait(timeout=30)
            try:
                done.append(_log.erase(st, blob.digest, reason="request", by=None, signer=SIGNER))
            except StoreError as exc:
                refused.append(exc)

        threads = [threading.Thread(target=erase, args=(st,)) for st in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert stores[0].get_blob(blob.digest).data is None  # type: ignore[union-attr]
        return done, refused, len(stores[0].erasures())
    finally:
        for st in stores:
            st.close()


def test_replicas_erasing_the_same_blob_at_once_erase_it_once(pg_url: str) -> None:
    done, refused, kept = _erase_race(pg_url)
    assert kept == 1 and len(done) == 1 and len(refused) == 3


def test_the_losers_of_an_erasure_race_are_told_it_was_already_erased(pg_url: str) -> None:
    _, refused, _ = _erase_race(pg_url)
    assert all(isinstance(exc, InvalidInput) and "already erased" in str(exc) for exc in refused), refused


def test_the_one_statement_inclusion_read_names_every_subtree_a_proof_needs() -> None:
    """PostgreSQL reads an inclusion proof's subtrees in one statement, before it knows the
    leaf's plan: the siblings of the leaf's ancestors and the right edge's perfect subtrees
    (`PostgresStore.ledger_inclusion_nodes`). Every plan of every leaf in trees of up to 300
    leaves is inside that set."""
    from execord.ledger import _tree

    for size in range(1, 301):
        edge = {(lv, (size >> lv) - 1) for lv in range(size.bit_length()) if (size >> lv) & 1}
        assert set(_tree.root_plan(size)) <= edge
        for index in range(size):
            read = edge | {(lv, (index >> lv) ^ 1) for lv in range(size.bit_length())}
            plan = {k for ks in _tree.inclusion_plan(index, size) for k in ks}
            assert plan <= read, (index, size, sorted(plan - read))


def test_upgrading_to_schema_8_finds_which_executions_refer_to_each_blob(s: Any) -> None:
    from execord.record import blob_ref

    blob, other = make_blob(b'{"card":"4111"}'), make_blob(b'"just text"', "text")
    c, d = Chain(), Chain()
    ref = blob_ref(blob.digest.split(":")[1], blob.size, "json")
    s.append([c.start(), c.next("log", {"level": "info", "message": "m", "data": {"deep": [ref]}}), c.end(),
              d.start(), d.next("log", {"level": "info", "message": f'mentions "$blob" {other.digest}', "data": ref}),
              d.end()], [blob, other])
    target, backend = s.target, s.backend
    raw = Raw(s)
    try:
        assert raw.execute("SELECT digest, execution_id FROM blob_refs ORDER BY execution_id").fetchall() == sorted(
            [(blob.digest, c.id), (blob.digest, d.id)], key=lambda r: r[1])
        raw.execute("DROP TABLE blob_refs")
        raw.execute(f"UPDATE {'meta' if backend == 'sqlite' else 'execord_meta'} SET value = '7' "
                    "WHERE key = 'schema_version'")
    finally:
        raw.close()
    reopened = open_store(target)
    try:
        assert reopened.get_blob(blob.digest, project="default") == blob
        assert reopened.get_blob(blob.digest, project="globex") is None
        assert reopened.get_blob(other.digest, project="default") is None  # only mentioned in a string
        assert reopened.get_blob(other.digest) == other  # the store itself still has it
    finally:
        reopened.close()
    raw = Raw(s)
    try:
        assert sorted(raw.execute("SELECT digest, execution_id FROM blob_refs").fetchall()) == sorted(
            [(blob.digest, c.id), (blob.digest, d.id)])
    finally:
        raw.close()
