"""Events (schema version 1, DESIGN §3) and the hash chain (DESIGN §4)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from ._canonical import canonical_event
from ._errors import InvalidEvent
from ._ids import is_uuid

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


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"{what} is not JSON: {exc}") from None
    if type(obj) is not dict:
        raise InvalidEvent(f"{what} is not a JSON object")
    return obj


def parse_event(body: bytes, hash_: bytes) -> Event:
    """Rebuild an `Event` from stored canonical bytes and hash (no re-serialization)."""
    obj = _json_object(body, "stored event")
    try:
        return Event(
            obj["execution_id"], obj["seq"], obj["type"], obj["ts"], obj.get("step_id"),
            obj.get("parent_step_id"), obj["attrs"], bytes.fromhex(obj["prev_hash"]), hash_, body,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidEvent(f"stored event lacks a field or has a bad one: {exc}") from exc


# -- events from outside the process ------------------------------------------------------------

MAX_SEQ = 2**31 - 1  # the stores' seq columns are 32-bit on PostgreSQL
_MAX_COUNT = 2**63 - 1
_ENVELOPE_KEYS = frozenset({"v", "execution_id", "seq", "type", "ts", "step_id", "parent_step_id", "attrs", "prev_hash"})
_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Check = Callable[[Any], bool]


def is_event_ts(value: Any) -> bool:
    """True for a timestamp as events carry it: RFC 3339 UTC with microseconds (DESIGN §3).

    >>> is_event_ts("2026-12-03T08:00:00.000000Z"), is_event_ts("2026-12-03T08:00:00Z"), is_event_ts("yesterday")
    (True, False, False)
    """
    m = _TS.fullmatch(value) if type(value) is str else None
    if m is None:
        return False
    y, mo, d, h, mi, sec = map(int, m.groups())
    days = (31, 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return 1970 <= y and 1 <= mo <= 12 and 1 <= d <= days[mo - 1] and h < 24 and mi < 60 and sec < 60


def _text(limit: int, *, empty: bool = False) -> Check:
    return lambda v: type(v) is str and (empty or v != "") and len(v) <= limit


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _MAX_COUNT


def _number(v: Any) -> bool:
    return type(v) in (int, float) and v >= 0


def _list(item: Check | None = None, limit: int = 10_000) -> Check:
    return lambda v: type(v) is list and len(v) <= limit and (item is None or all(item(x) for x in v))


def _obj(fields: dict[str, Check] | None = None, required: tuple[str, ...] = ()) -> Check:
    def check(v: Any) -> bool:
        return (type(v) is dict and all(k in v for k in required)
                and all(k not in v or c(v[k]) for k, c in (fields or {}).items()))
    return check


_NAME, _LONG = _text(256), _text(100_000, empty=True)
_OPT_NAME, _OPT_LONG, _OPT_OBJ = _opt(_NAME), _opt(_LONG), _opt(_obj())

# What each attr must be, when present, in an event from outside: the facts the store files
# (and lists, filters and sums) must be of the type it files them as. (attr, check, what it must be)
_ATTR_TYPES: dict[str, tuple[tuple[str, Check, str], ...]] = {
    EXECUTION_STARTED: (
        ("agent", _obj({"name": _NAME, "version": _OPT_NAME, "roles": _list(_NAME, 50)}, ("name",)),
         "an object {name, version, roles}: name a non-empty string of at most 256 characters, version one "
         "or null, roles a list of at most 50 of them"),
        ("workflow", _obj({"name": _NAME, "version": _OPT_NAME}, ("name",)),
         "an object {name, version}: name a non-empty string of at most 256 characters, version one or null"),
        ("execution_type", _opt(_text(64)), "a string of at most 64 characters, or null"),
        ("parent_execution_id", _opt(is_uuid),
         "an execution id (a lowercase UUID), or null"),
        ("labels", _opt(lambda v: type(v) is dict and len(v) <= 50 and all(
            0 < len(k) <= 256 and type(x) is str and len(x) <= 1024 for k, x in v.items())),
         "an object of at most 50 string labels (keys up to 256 characters, values up to 1024)"),
        ("governance_version", _OPT_NAME, "a version id (a string), or null"),
        ("sdk", _OPT_OBJ, "an object, or null"),
        ("host", _opt(_obj({"hostname": _OPT_NAME, "pid": _opt(_count)})),
         "an object {hostname, pid} (a string and a whole number), or null"),
        ("lease_s", _opt(lambda v: type(v) is int and 1 <= v <= 86_400), "a whole number of seconds, 1 to 86400"),
    ),
    GOVERNANCE_DECISION: (
        ("step_id", _OPT_NAME, "a string or null"),
        ("rules", _opt(_list()), "a list"), ("budgets", _opt(_list()), "a list"),
        ("redactions", _opt(_list()), "a list"),
        ("governance_version", _OPT_NAME, "a version id (a string), or null"),
        ("eval_us", _opt(_number), "a number of microseconds, or null"),
    ),
    STEP_STARTED: (("name", _NAME, "a non-empty string of at most 256 characters"),),
    STEP_ENDED: (
        ("error", _OPT_OBJ, "an object {type, message}, or null"),
        ("usage", _opt(_obj({k: _opt(_count) for k in (
            "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")})),
         "an object of whole token counts, or null"),
        ("cost_micros", _opt(_count), "whole micro-USD (an integer ≥ 0), or null"),
        ("price_source", _OPT_NAME, "a string or null"),
        ("latency_ms", _opt(_number), "a number ≥ 0, or null"),
    ),
    APPROVAL_REQUESTED: (
        ("approval_id", _text(128), "a non-empty string of at most 128 characters"),
        ("rule_id", _OPT_NAME, "a string or null"), ("step_id", _OPT_NAME, "a string or null"),
        ("action_digest", _opt(_text(128)), "a string or null"),
        ("approvers", _opt(_list(_NAME, 1000)), "a list of names, or null"),
        ("expires_at", is_event_ts, "a timestamp like 2026-01-31T12:00:00.000000Z"),
        ("message", _OPT_LONG, "a string or null"),
        ("on_timeout", _opt(lambda v: v in ("reject", "approve")), "reject, approve or null"),
    ),
    APPROVAL_DECIDED: (
        ("approval_id", _text(128), "a non-empty string of at most 128 characters"),
        ("reviewer", _OPT_NAME, "a string or null"), ("comment", _OPT_LONG, "a string or null"),
    ),
    CANCEL_REQUESTED: (("by", _OPT_NAME, "a string or null"), ("reason", _OPT_LONG, "a string or null")),
    LOG: (("message", _OPT_LONG, "a string or null"),),
    EXECUTION_ENDED: (
        ("totals", _obj({k: _count for k in TOTALS_KEYS}),
         f"an object of whole numbers ≥ 0: {', '.join(TOTALS_KEYS)}"),
        ("error", _OPT_OBJ, "an object or null"), ("halt", _OPT_OBJ, "an object or null"),
        ("cancel", _OPT_OBJ, "an object or null"),
    ),
}


def check_event(body: bytes, hash_: bytes) -> Event:
    """An event from outside this process (a server's ``/ingest``), checked whole.

    `parse_event` trusts what this library wrote; this does not. Besides the type's attrs
    (`validate_attrs`) it checks the envelope of DESIGN §3 (``v`` 1, a UUID ``execution_id``,
    an integer ``seq``, a ``ts`` with microseconds, string step ids, a hex ``prev_hash``, no
    other member) and the type of every attr the store files, so that what is stored can be
    listed, summed and verified later.

    Raises:
        InvalidEvent: naming the member that is wrong and what it must be.

    >>> check_event(b'{"v":1,"seq":"0"}', bytes(32))
    Traceback (most recent call last):
    ...
    execord.record._errors.InvalidEvent: execution_id must be an execution id (a lowercase UUID), not missing
    """
    obj = _json_object(body, "the body (the event without its hash)")
    extra = sorted(set(obj) - _ENVELOPE_KEYS)
    if extra:
        raise InvalidEvent(f"unknown member(s) {', '.join(map(repr, extra))}; an event has "
                           f"{', '.join(sorted(_ENVELOPE_KEYS))} (its hash goes beside the body)")

    def need(key: str, ok: bool, what: str) -> None:
        if not ok:
            got = "missing" if key not in obj else repr(obj[key])[:80]
            raise InvalidEvent(f"{key} must be {what}, not {got}")

    eid, seq, ts = obj.get("execution_id"), obj.get("seq"), obj.get("ts")
    need("execution_id", is_uuid(eid), "an execution id (a lowercase UUID)")
    need("v", type(obj.get("v")) is int and obj["v"] == SCHEMA_VERSION, f"{SCHEMA_VERSION} (the schema version)")
    need("seq", type(seq) is int and 0 <= seq <= MAX_SEQ, f"a whole number from 0 to {MAX_SEQ}")
    need("ts", is_event_ts(ts), "RFC 3339 UTC with microseconds, like 2026-01-31T12:00:00.000000Z")
    for key in ("step_id", "parent_step_id"):
        need(key, key not in obj or _OPT_NAME(obj[key]), "a non-empty string of at most 256 characters, or absent")
    need("prev_hash", type(obj.get("prev_hash")) is str and _HEX64.fullmatch(obj["prev_hash"]) is not None,
         "64 lowercase hex digits")
    type_, attrs = obj.get("type"), obj.get("attrs")
    validate_attrs(type_, attrs)
    for key, check, what in _ATTR_TYPES.get(type_, ()):
        if key in attrs and not check(attrs[key]):
            raise InvalidEvent(f"{type_} attr {key} must be {what}, not {repr(attrs[key])[:80]}")
    return Event(eid, seq, type_, ts, obj.get("step_id"), obj.get("parent_step_id"), attrs,
                 bytes.fromhex(obj["prev_hash"]), hash_, body)


def blob_ref(digest_hex: str, size: int, kind: str) -> dict[str, Any]:
    """The reference an event holds in place of a large value (DESIGN §3)."""
    return {"$blob": f"sha256:{digest_hex}", "size": size, "type": kind}


def is_blob_ref(value: Any) -> bool:
    """True when ``value`` is a ``{"$blob": ...}`` reference."""
    return type(value) is dict and "$blob" in value
