"""Every error Execord raises on purpose, in one tree.

::

    ExecordError
    ├── ConfigError                a bad argument to init() or a bad EXECORD_* value
    ├── RecordError                an event could not be made durable; the action did not run
    ├── EventError                 an event breaks the record's rules (execord.record)
    │   ├── InvalidEvent
    │   ├── ChainError
    │   │   └── SeqConflict
    │   ├── ExecutionSealed
    │   └── IllegalTransition
    ├── StoreError                 the store cannot do what was asked
    │   ├── StoreUnavailable       missing, locked past the timeout, disk full, unreadable
    │   ├── CorruptStore           not an Execord database, or damaged
    │   ├── SchemaTooNew           written by a newer Execord
    │   ├── NotFound               no execution (or blob) with that id
    │   └── AmbiguousId            an id prefix that matches more than one execution
    └── VerificationError          a stored record does not verify
        └── RootMismatch

Each class carries ``status`` (the HTTP status the server answers with) and ``type`` (the
RFC 9457 problem type slug), so one handler renders every error.
"""

from __future__ import annotations

from .record._errors import (
    ChainError,
    EventError,
    ExecordError,
    ExecutionSealed,
    IllegalTransition,
    InvalidEvent,
    SeqConflict,
)


class ConfigError(ExecordError):
    """A bad argument to `execord.init()` or a bad ``EXECORD_*`` environment variable."""

    status = 400
    type = "bad-config"


class RecordError(ExecordError):
    """An event could not be made durable, so the governed action was not run.

    Raised inside the workflow when ``on_record_error="halt"`` (the default).

    Attributes:
        execution_id: the execution whose event could not be written, if known.
    """

    status = 503
    type = "record-failed"

    def __init__(self, message: str, *, execution_id: str | None = None):
        super().__init__(message)
        self.execution_id = execution_id


class StoreError(ExecordError):
    """The store cannot do what was asked."""

    status = 500
    type = "store-error"


class StoreUnavailable(StoreError):
    """The store cannot be opened or written: missing, locked past the timeout, disk full."""

    status = 503
    type = "store-unavailable"


class CorruptStore(StoreError):
    """The file is not an Execord database, or it is damaged."""

    type = "store-corrupt"


class SchemaTooNew(StoreError):
    """The database was written by a newer Execord than this one.

    Attributes:
        found: the database's schema version.
        supported: the newest schema version this Execord knows.
    """

    type = "schema-too-new"

    def __init__(self, found: int, supported: int):
        super().__init__(
            f"the database has schema version {found}, newer than this Execord supports "
            f"({supported}): upgrade execord (pip install -U execord)"
        )
        self.found = found
        self.supported = supported


class NotFound(StoreError):
    """No execution (or blob, or other object) with that id."""

    status = 404
    type = "not-found"


class AmbiguousId(StoreError):
    """An id prefix that matches more than one execution.

    Attributes:
        prefix: the prefix that was given.
        matches: some of the ids it matches.
    """

    status = 400
    type = "ambiguous-id"

    def __init__(self, prefix: str, matches: list[str]):
        shown = ", ".join(matches[:5])
        super().__init__(
            f"id prefix {prefix!r} matches {len(matches)}+ executions ({shown}); give more characters"
        )
        self.prefix = prefix
        self.matches = matches


class VerificationError(ExecordError):
    """A stored record does not verify.

    Attributes:
        execution_id: the execution that failed.
        seq: the first event that failed, or None when the seal itself is wrong.
    """

    status = 422
    type = "verification-failed"

    def __init__(self, message: str, *, execution_id: str, seq: int | None = None):
        super().__init__(message)
        self.execution_id = execution_id
        self.seq = seq


class RootMismatch(VerificationError):
    """A recomputed Merkle root differs from the stored one.

    Attributes:
        expected: the stored root (hex).
        calculated: the root recomputed from the events (hex).
    """

    type = "root-mismatch"

    def __init__(self, *, execution_id: str, expected: str, calculated: str):
        super().__init__(
            f"execution {execution_id}: events_root {calculated} does not match the seal's {expected}",
            execution_id=execution_id,
        )
        self.expected = expected
        self.calculated = calculated


__all__ = [
    "AmbiguousId",
    "ChainError",
    "ConfigError",
    "CorruptStore",
    "EventError",
    "ExecordError",
    "ExecutionSealed",
    "IllegalTransition",
    "InvalidEvent",
    "NotFound",
    "RecordError",
    "RootMismatch",
    "SchemaTooNew",
    "SeqConflict",
    "StoreError",
    "StoreUnavailable",
    "VerificationError",
]
