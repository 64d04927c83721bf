"""The root of Execord's exception tree and the record layer's branch.

`record/` imports nothing of ours, so the root class lives here and `execord.errors`
builds the rest of the tree on top of it::

    ExecordError
    └── EventError                 an event breaks the record's rules
        ├── InvalidEvent           wrong type or attrs for its type
        ├── ChainError             does not chain: seq gap, wrong prev_hash or hash
        │   └── SeqConflict        a different event already holds this seq
        ├── ExecutionSealed        the execution is terminal and accepts no more events
        └── IllegalTransition      a status change the status machine forbids
"""

from __future__ import annotations


class ExecordError(Exception):
    """Base class of every error Execord raises on purpose.

    Attributes:
        status: the HTTP status the server answers with for this error.
        type: the problem type slug (RFC 9457) for this error.
    """

    status: int = 500
    type: str = "execord-error"


class EventError(ExecordError):
    """An event breaks one of the record's rules."""

    status = 422
    type = "invalid-event"


class InvalidEvent(EventError):
    """An event's type is unknown or its attrs are not what its type requires."""


class ChainError(EventError):
    """An event does not follow the last stored event of its execution.

    Attributes:
        execution_id: the execution.
        seq: the seq of the offending event.
        expected: what the store expected (a seq or a hash, as text).
        got: what the event carried.
    """

    status = 409
    type = "chain-broken"

    def __init__(self, message: str, *, execution_id: str, seq: int, expected: str = "", got: str = ""):
        super().__init__(message)
        self.execution_id = execution_id
        self.seq = seq
        self.expected = expected
        self.got = got


class SeqConflict(ChainError):
    """A different event is already stored at this (execution_id, seq)."""

    type = "seq-conflict"


class ExecutionSealed(EventError):
    """The execution is terminal (sealed); it accepts no more events."""

    status = 409
    type = "execution-sealed"

    def __init__(self, execution_id: str, status: str | None = None):
        what = f" ({status})" if status else ""
        super().__init__(
            f"execution {execution_id} is sealed{what}: a terminal execution accepts no more events"
        )
        self.execution_id = execution_id
        self.final_status = status


class IllegalTransition(EventError):
    """A status change that DESIGN §2's status machine does not allow."""

    status = 409
    type = "illegal-transition"

    def __init__(self, current: str, new: str):
        super().__init__(f"an execution cannot go from {current!r} to {new!r}")
        self.current = current
        self.new = new
