"""The execution status machine (DESIGN §2) and the failure classes."""

from __future__ import annotations

from enum import StrEnum

from ._errors import IllegalTransition


class Status(StrEnum):
    """Where an execution is in its life."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


TERMINAL: frozenset[str] = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.HALTED, Status.CANCELLED, Status.INTERRUPTED}
)

# DESIGN §2 draws running ⇄ awaiting_approval and running → terminal. A wait for a reviewer
# can also end without the execution running again: the request expires (halted), an
# operator cancels it, or the process dies (interrupted). Those three edges are explicit.
_ALLOWED: dict[str, frozenset[str]] = {
    Status.RUNNING: frozenset({Status.AWAITING_APPROVAL} | TERMINAL),
    Status.AWAITING_APPROVAL: frozenset(
        {Status.RUNNING, Status.HALTED, Status.CANCELLED, Status.INTERRUPTED}
    ),
}


class FailureClass(StrEnum):
    """The operator's triage bucket of a terminal execution (DESIGN §2)."""

    POLICY_BLOCK = "policy_block"
    APPROVAL = "approval"
    APPROVAL_PENDING = "approval_pending"
    PROVIDER_FAILURE = "provider_failure"
    CONNECTOR_FAILURE = "connector_failure"
    LOGIC_ERROR = "logic_error"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


_ALL_STATUSES = frozenset(s.value for s in Status)

HALT_REASONS: frozenset[str] = frozenset({"policy", "budget", "approval_rejected", "approval_expired"})


def is_terminal(status: str) -> bool:
    """True for the statuses that seal an execution."""
    return status in TERMINAL


def check_transition(current: str, new: str) -> None:
    """Raise `IllegalTransition` unless ``current → new`` is allowed.

    >>> check_transition("running", "succeeded")
    >>> check_transition("succeeded", "running")
    Traceback (most recent call last):
    ...
    execord.record._errors.IllegalTransition: an execution cannot go from 'succeeded' to 'running'
    """
    if new not in _ALLOWED.get(current, frozenset()):
        raise IllegalTransition(current, new)


def failure_class_for(
    status: str, *, halt_reason: str | None = None, error_step_kind: str | None = None
) -> str | None:
    """The failure class a terminal (or waiting) execution is filed under.

    Args:
        status: the execution's status.
        halt_reason: for ``halted``: policy, budget, approval_rejected or approval_expired.
        error_step_kind: for ``failed``: the kind of the step the error came from, or None
            when the workflow's own code raised outside any step.

    >>> failure_class_for("failed", error_step_kind="llm")
    'provider_failure'
    >>> failure_class_for("halted", halt_reason="approval_expired")
    'approval'
    >>> failure_class_for("succeeded") is None
    True
    """
    if status not in _ALL_STATUSES:
        raise ValueError(f"unknown execution status {status!r}")
    if status == Status.SUCCEEDED or status == Status.RUNNING:
        return None
    if status == Status.AWAITING_APPROVAL:
        return FailureClass.APPROVAL_PENDING.value
    if status == Status.HALTED:
        if halt_reason in ("approval_rejected", "approval_expired"):
            return FailureClass.APPROVAL.value
        return FailureClass.POLICY_BLOCK.value
    if status == Status.CANCELLED:
        return FailureClass.CANCELLED.value
    if status == Status.INTERRUPTED:
        return FailureClass.INTERRUPTED.value
    if error_step_kind == "llm":
        return FailureClass.PROVIDER_FAILURE.value
    if error_step_kind in ("tool", "retrieval"):
        return FailureClass.CONNECTOR_FAILURE.value
    return FailureClass.LOGIC_ERROR.value
