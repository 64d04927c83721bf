"""Stores: where the record is kept. `open_store` picks the backend from a path or URL."""

from __future__ import annotations

import os

from ._projection import Tip
from ._protocol import Store
from ._query import SUMMARY_KEYS, ExecutionFilter
from ._schema import SCHEMA_VERSION
from ._sqlite import SQLiteStore
from ._verify import VerifyReport, verify_store
from ._views import (
    blob_value,
    describe,
    execution_detail,
    export_record,
    relative_ms,
    step_depths,
    steps_from_events,
)

DEFAULT_DB = os.path.join(".execord", "execord.db")


def open_store(target: str | os.PathLike[str] | None = None, *, create: bool = True, busy_timeout_ms: int = 5000,
               pool_size: int = 8) -> Store:
    """Open the store at a path (SQLite) or URL (PostgreSQL); None means ``./.execord/execord.db``.

    Args:
        target: a file path, ``sqlite:///path``, ``postgresql://…``, or None for the default.
        create: create a missing SQLite file; otherwise a missing file is an error.
        busy_timeout_ms: how long a write waits for another process's lock.
        pool_size: PostgreSQL only: the most connections the store opens.
    """
    path = os.fspath(target) if target is not None else DEFAULT_DB
    if path.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        return PostgresStore(path, max_size=pool_size)  # type: ignore[return-value]
    if path.startswith("sqlite:///"):
        path = path[len("sqlite:///"):]
    return SQLiteStore(path, create=create, busy_timeout_ms=busy_timeout_ms)


__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "SUMMARY_KEYS",
    "ExecutionFilter",
    "SQLiteStore",
    "Store",
    "Tip",
    "VerifyReport",
    "blob_value",
    "describe",
    "execution_detail",
    "export_record",
    "open_store",
    "relative_ms",
    "step_depths",
    "steps_from_events",
    "verify_store",
]
