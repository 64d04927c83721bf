"""Shared fixtures: a real SQLite store under tmp_path, a recorder bound to it, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import execord
from execord import integrations
from execord.runtime import Execord, set_default
from execord.store import SQLiteStore, open_store

ROOT = Path(__file__).resolve().parent.parent
# Where the tests may create (and drop) their own PostgreSQL databases.
PG_ADMIN_URL = os.environ.get("EXECORD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store", action="append", choices=BACKENDS, default=None,
        help="run the backend-parametrised tests on this store only (repeatable; default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--store") or list(BACKENDS)
        metafunc.parametrize("backend", chosen)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    import uuid

    name = f"execord_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store_url(backend: str, db_path: str, request: pytest.FixtureRequest) -> str:
    """The store of this test on the parametrised backend: an SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        return db_path
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No EXECORD_* leaks in from the developer's shell; each test runs in its own folder."""
    for key in list(os.environ):
        if key.startswith("EXECORD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield
    set_default(None)
    integrations.uninstrument()  # init() patched the installed LLM clients: put them back


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """Where this test's SQLite store lives."""
    return str(tmp_path / "execord.db")


@pytest.fixture
def engine(db_path: str) -> Iterator[Execord]:
    """The default recorder, writing to this test's store (what `execord.init` makes)."""
    ex = execord.init(agent="test-agent", db=db_path)
    yield ex
    set_default(None)


@pytest.fixture
def governed(db_path: str, tmp_path: Path) -> Any:
    """``governed(yaml)``: the default recorder on this test's store, under that governance file."""
    from _helpers import AGENT, write

    def make(text: str, *, name: str = "governance.yaml", **kw: Any) -> execord.Execord:
        path = write(tmp_path / name, text)
        return execord.init(agent=AGENT, db=db_path, governance=str(path), flush_interval_ms=5, **kw)

    return make


@pytest.fixture
def store(db_path: str) -> Iterator[SQLiteStore]:
    """A second, independent connection to this test's store (as another process would see it)."""
    s = open_store(db_path)
    yield s  # type: ignore[misc]
    s.close()


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``execord`` command in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "execord", *args], capture_output=True, text=True,
        env=full_env, input=input, timeout=timeout,
    )


@pytest.fixture
def cli(db_path: str) -> Any:
    """``cli("executions", "list")`` runs the real command against this test's store."""

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        env = {"EXECORD_DB": db_path, **kw.pop("env", {})}
        return run_cli(*args, env=env, **kw)

    return run


@pytest.fixture
def server(store_url: str) -> Iterator[Any]:
    """A real Execord server (uvicorn in a thread) over this test's store, on each backend."""
    from _server import live_server

    with live_server(store_url) as live:
        yield live
