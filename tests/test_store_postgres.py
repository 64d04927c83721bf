"""What only PostgreSQL has to prove: several writers (replicas) at once, concurrent migrations,
and the least-privilege role of docs/deployment.md."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_store import Chain

from execord.errors import ExecordError
from execord.store import open_store, verify_store
from execord.store._postgres import SCHEMA_VERSION
from execord.store._schema_pg import APP_GRANTS


@pytest.fixture
def stores(pg_url: str) -> Iterator[list[Any]]:
    """Four independent stores on one database: four replicas."""
    opened = [open_store(pg_url, pool_size=4) for _ in range(4)]
    yield opened
    for s in opened:
        s.close()


def test_replicas_racing_on_the_same_executions_keep_every_chain_contiguous(stores: list[Any]) -> None:
    chains = [Chain() for _ in range(6)]
    for c in chains:
        c.start()
        for i in range(40):
            c.log(f"m{i}")
        c.end()
    errors: list[BaseException] = []

    def replica(k: int) -> None:
        # Each replica receives every batch (a retrying client hitting a load balancer), in
        # its own order and with batches mixing executions, so locks are taken in every order.
        order = chains[k:] + chains[:k]
        try:
            for start in range(0, 42, 7):
                batch = [e for c in order for e in c.events[start:start + 7]]
                stores[k].append(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for c in chains:
        stored = stores[0].events(c.id)
        assert [e.seq for e in stored] == list(range(42))
        assert [e.hash for e in stored] == [e.hash for e in c.events]
        assert stores[0].get_execution(c.id)["status"] == "succeeded"
    assert verify_store(stores[0]).ok


def test_a_conflicting_event_from_another_replica_is_refused_not_merged(stores: list[Any]) -> None:
    a, b = Chain(), Chain()
    b.id = a.id
    a.start()
    stores[0].append(a.events)
    b.events = list(a.events)
    a.log("from replica a")
    b.log("from replica b")
    stores[0].append(a.events[1:])
    with pytest.raises(ExecordError, match="different event at seq 1"):
        stores[1].append(b.events[1:])
    assert [e.body for e in stores[2].events(a.id)] == [e.body for e in a.events]


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    opened: list[Any] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_store(pg_url, pool_size=1))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in opened:
        s.close()
    assert not errors and len(opened) == 4
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("SELECT value FROM execord_meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        n = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'events_not_after_seal'").fetchone()
        assert n == (1,)


@pytest.mark.parametrize("sql", ["TRUNCATE events", "TRUNCATE seals", "DELETE FROM executions"])
def test_the_owner_cannot_truncate_or_delete_either(pg_url: str, sql: str) -> None:
    s = open_store(pg_url)
    c = Chain()
    s.append([c.start(), c.end()])
    s.close()
    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(psycopg.Error, match="execord:"):
        conn.execute(sql)


def test_the_least_privilege_role_can_record_but_not_rewrite(pg_url: str) -> None:
    owner = open_store(pg_url)
    role = f"execord_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(APP_GRANTS.format(role=role))
    try:
        app = open_store(pg_url.replace("postgres@", f"{role}@"))
        c = Chain()
        app.append([c.start(), c.log(), c.end()])
        key, _ = app.create_key("default", ["read"])
        assert app.authenticate(key) is not None
        assert app.get_execution(c.id)["status"] == "succeeded"
        app.close()
        with psycopg.connect(pg_url.replace("postgres@", f"{role}@"), autocommit=True) as conn:
            for sql in ("UPDATE events SET type = 'x'", "DELETE FROM events", "DELETE FROM seals",
                        "UPDATE seals SET status = 'failed'", "TRUNCATE events", "DROP TABLE events"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql)
        assert verify_store(owner).ok
    finally:
        owner.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
