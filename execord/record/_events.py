"""Events (schema version 1, DESIGN §3) and the hash chain (DESIGN §4)."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from ._canonical import canonical_event
from ._errors import InvalidEvent

SCHEMA_VERSION = 1

EXECUTION_STARTED = "execution.started"
GOVERNANCE_DECISION = "governance.decision"
STEP_STARTED = "step.started"
STEP_ENDED = "step.ended"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"
CANCEL_REQUESTED = "cancel.requested"
LOG = "log"
EXECUTION_ENDED = "execution.ended"

# The attrs each event type must carry (DESIGN §3: "at least"); values may be null where
# the fact does not apply. Extra attrs are allowed: the table is a floor, not a ceiling.
REQUIRED_ATTRS: dict[str, tuple[str, ...]] = {
    EXECUTION_STARTED: (
        "agent", "workflow", "execution_type", "parent_execution_id", "labels", "inputs",
        "governance_version", "sdk", "host", "lease_s",
    ),
    GOVERNANCE_DECISION: (
        "phase", "step_id", "decision", "rules", "budgets", "redactions",
        "governance_version", "engine", "eval_us",
    ),
    STEP_STARTED: ("kind", "name", "input"),
    STEP_ENDED: (
        "status", "output", "error", "usage", "cost_micros", "price_source", "latency_ms",
    ),
    APPROVAL_REQUESTED: (
        "approval_id", "rule_id", "step_id", "action_digest", "approvers", "expires_at", "message",
    ),
    APPROVAL_DECIDED: ("approval_id", "decision", "reviewer", "comment"),
    CANCEL_REQUESTED: ("by", "reason"),
    LOG: ("level", "message", "data"),
    EXECUTION_ENDED: ("status", "error", "halt", "cancel", "totals"),
}
EVENT_TYPES: tuple[str, ...] = tuple(REQUIRED_ATTRS)

STEP_KINDS = frozenset({"llm", "tool", "retrieval", "agent", "custom"})
STEP_STATUSES = frozenset({"ok", "error", "blocked"})
PHASES = frozenset({
    "admission", "llm.request", "llm.response", "tool.request", "tool.response",
    "step.request", "step.response", "end",
})
DECISIONS = frozenset({"allow", "warn", "redact", "require_approval", "deny"})
APPROVAL_DECISIONS = frozenset({"approved", "rejected", "expired"})
LOG_LEVELS = frozenset({"debug", "info", "warning", "error"})
END_STATUSES = frozenset({"succeeded", "failed", "halted", "cancelled", "interrupted"})
TOTALS_KEYS = (
    "input_tokens", "output_tokens", "cost_micros", "llm_calls", "tool_calls", "steps",
    "duration_ms",
)

# attr -> allowed values, checked when the attr is present and not null.
_ENUMS: dict[str, dict[str, frozenset[str]]] = {
    STEP_STARTED: {"kind": STEP_KINDS},
    STEP_ENDED: {"status": STEP_STATUSES},
    GOVERNANCE_DECISION: {"phase": PHASES, "decision": DECISIONS},
    APPROVAL_DECIDED: {"decision": APPROVAL_DECISIONS},
    LOG: {"level": LOG_LEVELS},
    EXECUTION_ENDED: {"status": END_STATUSES},
}


def validate_attrs(type_: str, attrs: dict[str, Any]) -> None:
    """Raise `InvalidEvent` unless ``attrs`` fits event type ``type_`` (DESIGN §3).

    >>> validate_attrs("cancel.requested", {"by": "ana", "reason": "stuck"})
    >>> validate_attrs("cancel.requested", {"by": "ana"})
    Traceback (most recent call last):
    ...
    execord.record._errors.InvalidEvent: cancel.requested is missing attrs: reason
    """
    required = REQUIRED_ATTRS.get(type_) if type(type_) is str else None
    if required is None:
        raise InvalidEvent(f"unknown event type {type_!r}; known types: {', '.join(EVENT_TYPES)}")
    if type(attrs) is not dict:
        raise InvalidEvent(f"{type_} attrs must be an object, not {type(attrs).__name__}")
    missing = [k for k in required if k not in attrs]
    if missing:
        raise InvalidEvent(f"{type_} is missing attrs: {', '.join(missing)}")
    for key, allowed in _ENUMS.get(type_, {}).items():
        value = attrs[key]
        if value is not None and (type(value) is not str or value not in allowed):
            raise InvalidEvent(
                f"{type_} attr {key}={value!r} is not one of: {', '.join(sorted(allowed))}"
            )
    if type_ == EXECUTION_ENDED:
        totals = attrs["totals"]
        if type(totals) is not dict or any(k not in totals for k in TOTALS_KEYS):
            raise InvalidEvent(f"execution.ended totals must carry: {', '.join(TOTALS_KEYS)}")


def genesis_hash(execution_id: str) -> bytes:
    """The ``prev_hash`` of an execution's first event: SHA-256 of its id (DESIGN §4)."""
    return hashlib.sha256(execution_id.encode()).digest()


def event_hash(prev_hash: bytes, body: bytes) -> bytes:
    """``SHA-256(prev_hash_bytes ‖ canonical(event without "hash"))`` (DESIGN §4).

    Args:
        prev_hash: the 32 raw bytes of the previous event's hash (or `genesis_hash`).
        body: the event's canonical bytes, without its ``hash`` member.
    """
    return hashlib.sha256(prev_hash + body).digest()


class Event(NamedTuple):
    """One event as written: its fields, its canonical bytes and its hash.

    ``body`` is exactly what was hashed (the event without ``hash``); stores keep these bytes
    so verification re-hashes what was stored, never a re-serialization. A NamedTuple:
    immutable, and cheap to make on the hot path of every step.
    """

    execution_id: str
    seq: int
    type: str
    ts: str
    step_id: str | None
    parent_step_id: str | None
    attrs: dict[str, Any]
    prev_hash: bytes
    hash: bytes
    body: bytes

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object of DESIGN §3, ``hash`` included."""
        out = orjson.loads(self.body)
        out["hash"] = self.hash.hex()
        return out


def build_event(
    execution_id: str,
    seq: int,
    type_: str,
    ts: str,
    attrs: dict[str, Any],
    prev_hash: bytes,
    *,
    step_id: str | None = None,
    parent_step_id: str | None = None,
    validate: bool = True,
    plain: bool = False,
) -> Event:
    """Make the next event of a chain: validate it, canonicalize it and hash it.

    Args:
        execution_id: the execution's UUIDv7.
        seq: 0 for the first event, then +1 with no gaps.
        type_: one of `EVENT_TYPES`.
        ts: RFC 3339 UTC timestamp with microseconds.
        attrs: the type's attrs (JSON values only).
        prev_hash: the raw hash of event ``seq - 1``, or `genesis_hash` for seq 0.
        step_id: the step this event belongs to, if any.
        parent_step_id: the enclosing step of ``step_id``, if any.
        validate: check ``attrs`` against the type (on unless the caller already did).
        plain: the caller guarantees plain attrs (see `canonical_event`); skips a scan.
    """
    if validate:
        validate_attrs(type_, attrs)
    envelope: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "execution_id": execution_id,
        "seq": seq,
        "type": type_,
        "ts": ts,
        "prev_hash": prev_hash.hex(),
    }
    if step_id is not None:
        envelope["step_id"] = step_id
    if parent_step_id is not None:
        envelope["parent_step_id"] = parent_step_id
    if not (type(execution_id) is str and type(seq) is int and 0 <= seq <= 2**53 - 1 and type(ts) is str
            and type(step_id) in (str, type(None)) and type(parent_step_id) in (str, type(None))):
        raise InvalidEvent("execution_id, ts and step ids must be strings, seq an int in 0..2**53-1")
    body = canonical_event(envelope, attrs, plain=plain)
    return Event(
        execution_id, seq, type_, ts, step_id, parent_step_id, attrs, prev_hash,
        event_hash(prev_hash, body), body,
    )


def parse_event(body: bytes, hash_: bytes) -> Event:
    """Rebuild an `Event` from stored canonical bytes and hash (no re-serialization)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"stored event is not JSON: {exc}") from exc
    if type(obj) is not dict:
        raise InvalidEvent("stored event is not a JSON object")
    try:
        return Event(
            obj["execution_id"], obj["seq"], obj["type"], obj["ts"], obj.get("step_id"),
            obj.get("parent_step_id"), obj["attrs"], bytes.fromhex(obj["prev_hash"]), hash_, body,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidEvent(f"stored event lacks a field or has a bad one: {exc}") from exc


def blob_ref(digest_hex: str, size: int, kind: str) -> dict[str, Any]:
    """The reference an event holds in place of a large value (DESIGN §3)."""
    return {"$blob": f"sha256:{digest_hex}", "size": size, "type": kind}


def is_blob_ref(value: Any) -> bool:
    """True when ``value`` is a ``{"$blob": ...}`` reference."""
    return type(value) is dict and "$blob" in value
