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
    │   ├── InvalidInput           a value the database cannot hold (a NUL byte in text)
    │   └── AmbiguousId            an id prefix that matches more than one execution
    ├── Cancelled                  an operator cancelled the execution; the action did not run
    ├── GovernanceError            governance said no, or cannot be read
    │   ├── Halted                 a constraint stopped the execution (deny, budget, approval)
    │   ├── GovernanceFileError    a governance file that does not validate
    │   └── ApprovalError          an approval that cannot be decided (unknown, decided, expired)
    ├── VerificationError          a stored record does not verify
    │   └── RootMismatch
    └── ApiError                   the server refused a request, or cannot be reached
        ├── Unauthorized           no API key, or a bad or revoked one (401)
        ├── Forbidden              the key lacks the scope the request needs (403)
        ├── Conflict               the request conflicts with the current state (409)
        ├── PayloadTooLarge        a body or page over its limit (413)
        └── ServerUnavailable      the server cannot be reached or answered 5xx

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


class InvalidInput(StoreError):
    """A value the database cannot hold, such as a NUL byte in text (PostgreSQL refuses it)."""

    status = 400
    type = "invalid-input"


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
        count = f"{len(matches)}" if len(matches) <= 5 else "more than 5"
        super().__init__(f"id prefix {prefix!r} matches {count} executions ({shown}); give more characters")
        self.prefix = prefix
        self.matches = matches


class Cancelled(ExecordError):
    """An operator cancelled the execution; the governed action did not run.

    Raised inside the workflow at the first governed action after the cancel request
    reached the execution's process (through its heartbeat). The execution ends
    ``cancelled`` with who asked and why.

    Attributes:
        by: who asked (the API key's id or name, or the CLI user).
        reason: why, as given.
        execution_id: the execution that was cancelled.
    """

    status = 409
    type = "cancelled"

    def __init__(self, message: str, *, by: str | None, reason: str | None, execution_id: str | None = None):
        super().__init__(message)
        self.by = by
        self.reason = reason
        self.execution_id = execution_id

    def cancel(self) -> dict[str, object]:
        """The ``cancel`` object of ``execution.ended`` (DESIGN §3)."""
        return {"by": self.by, "reason": self.reason}


class GovernanceError(ExecordError):
    """Governance refused an action, or its files cannot be used."""

    status = 403
    type = "governance"


class Halted(GovernanceError):
    """A constraint stopped the execution; the action did not run.

    Raised inside the workflow at the governed action. If the workflow catches it and goes
    on, every later governed action is refused too, and the execution ends ``halted``.

    Attributes:
        reason: ``policy``, ``budget``, ``approval_rejected`` or ``approval_expired``.
        rule_id: the rule that decided, for ``policy`` and approvals.
        budget_id: the budget that was exceeded, for ``budget``.
        seq: the seq of the ``governance.decision`` (or ``approval.decided``) event.
        phase: the phase where it was decided.
        execution_id: the execution that halted.
    """

    status = 403
    type = "halted"

    def __init__(self, message: str, *, reason: str, rule_id: str | None = None, budget_id: str | None = None,
                 seq: int | None = None, phase: str | None = None, execution_id: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.rule_id = rule_id
        self.budget_id = budget_id
        self.seq = seq
        self.phase = phase
        self.execution_id = execution_id

    def halt(self) -> dict[str, object]:
        """The ``halt`` object of ``execution.ended`` (DESIGN §3)."""
        return {"reason": self.reason, "rule_id": self.rule_id, "budget_id": self.budget_id,
                "seq": self.seq, "phase": self.phase}


class GovernanceFileError(GovernanceError):
    """A governance file that does not validate.

    Attributes:
        problems: (where, message, hint) for every problem found, where is ``file:line``.
    """

    status = 422
    type = "bad-governance-file"

    def __init__(self, message: str, *, problems: list[tuple[object, str, str]]):
        super().__init__(message)
        self.problems = problems

    @classmethod
    def from_problems(cls, problems: list[tuple[object, str, str]]) -> GovernanceFileError:
        """One error listing every problem, one per line: ``file:line: message (hint)``."""
        lines = [f"{where}: {message}" + (f" ({hint})" if hint else "") for where, message, hint in problems]
        head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the governance file:"
        return cls("\n".join([head, *lines]), problems=problems)


class ApprovalError(GovernanceError):
    """An approval that cannot be decided: unknown, already decided, or expired."""

    status = 409
    type = "approval-conflict"


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


class LedgerError(ExecordError):
    """The ledger cannot do what was asked: no signed checkpoint covers an execution yet, the
    execution is not sealed, or a signing or verifier key is missing or malformed."""

    status = 409
    type = "ledger"


class ApiError(ExecordError):
    """The server refused a request, or cannot be reached.

    Attributes:
        detail: the problem's ``detail`` as the server wrote it.
    """

    status = 400
    type = "bad-request"

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None):  # noqa: A002
        super().__init__(message)
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.detail = message


class Unauthorized(ApiError):
    """No API key, or a bad or revoked one."""

    status = 401
    type = "unauthorized"


class Forbidden(ApiError):
    """The key is valid but lacks the scope this request needs."""

    status = 403
    type = "forbidden"


class Conflict(ApiError):
    """The request conflicts with the current state (for example: cancel a terminal execution)."""

    status = 409
    type = "conflict"


class PayloadTooLarge(ApiError):
    """A request body, batch or page over its limit."""

    status = 413
    type = "too-large"


class ServerUnavailable(ApiError):
    """The server cannot be reached, or it answered with a 5xx."""

    status = 503
    type = "server-unavailable"


__all__ = [
    "AmbiguousId",
    "ApiError",
    "ApprovalError",
    "Cancelled",
    "ChainError",
    "Conflict",
    "ConfigError",
    "CorruptStore",
    "EventError",
    "ExecordError",
    "ExecutionSealed",
    "Forbidden",
    "GovernanceError",
    "GovernanceFileError",
    "Halted",
    "IllegalTransition",
    "InvalidEvent",
    "InvalidInput",
    "LedgerError",
    "NotFound",
    "PayloadTooLarge",
    "RecordError",
    "RootMismatch",
    "SchemaTooNew",
    "SeqConflict",
    "ServerUnavailable",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "VerificationError",
]
