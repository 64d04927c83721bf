"""Events, the hash chain, ids, timestamps and the status machine (DESIGN §2, §3, §4)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execord.record import (
    EVENT_TYPES,
    REQUIRED_ATTRS,
    TERMINAL,
    TOTALS_KEYS,
    Event,
    FailureClass,
    IllegalTransition,
    InvalidEvent,
    Status,
    _ids,
    build_event,
    canonical_json,
    check_transition,
    event_hash,
    failure_class_for,
    format_ts,
    genesis_hash,
    is_terminal,
    is_uuid,
    parse_event,
    parse_ts,
    ts_to_us,
    uuid7,
    validate_attrs,
)

ROOT = Path(__file__).resolve().parent.parent
EXEC_ID = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"  # the UUIDv7 example of RFC 9562 appendix A.6
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_US = 253402300799999999  # 9999-12-31T23:59:59.999999Z

# --- validate_attrs ---------------------------------------------------------------------

TOTALS = {k: 0 for k in TOTALS_KEYS}

VALID_ATTRS: dict[str, dict] = {
    "execution.started": {
        "agent": {"name": "support-bot", "version": "1.2.0", "roles": ["support"]},
        "workflow": {"name": "refund", "version": "3"},
        "execution_type": "workflow",
        "parent_execution_id": None,
        "labels": {"env": "test"},
        "inputs": {"$blob": "sha256:" + "ab" * 32, "size": 12, "type": "json"},
        "governance_version": "gv_0123456789abcdef",
        "sdk": {"name": "execord-python", "version": "0.1.0"},
        "host": {"hostname": "h1", "pid": 4242},
        "lease_s": 30,
    },
    "governance.decision": {
        "phase": "tool.request", "step_id": "s1", "decision": "deny",
        "rules": [{"id": "no-shell", "effect": "deny", "matched": True, "message": "no"}],
        "budgets": [], "redactions": [], "governance_version": "gv_0123456789abcdef",
        "engine": "cel", "eval_us": 17,
    },
    "step.started": {"kind": "tool", "name": "issue_refund", "input": {"amount": 12}},
    "step.ended": {
        "status": "ok", "output": "done", "error": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}, "cost_micros": 0,
        "price_source": None, "latency_ms": 3,
    },
    "approval.requested": {
        "approval_id": "a1", "rule_id": "big-refunds", "step_id": "s1", "action_digest": "00" * 32,
        "approvers": ["finance"], "expires_at": "2023-11-14T22:43:20.000000Z", "message": "ok?",
    },
    "approval.decided": {"approval_id": "a1", "decision": "approved", "reviewer": "ana", "comment": None},
    "cancel.requested": {"by": "ana", "reason": "stuck"},
    "log": {"level": "info", "message": "hello", "data": None},
    "execution.ended": {"status": "succeeded", "error": None, "halt": None, "cancel": None, "totals": TOTALS},
}

BAD_ENUMS = [
    ("step.started", "kind", "shell"),
    ("step.started", "kind", "LLM"),
    ("step.ended", "status", "succeeded"),
    ("governance.decision", "phase", "admision"),
    ("governance.decision", "phase", "llm"),
    ("governance.decision", "decision", "block"),
    ("governance.decision", "decision", "Allow"),
    ("approval.decided", "decision", "approve"),
    ("log", "level", "warn"),
    ("log", "level", "critical"),
    ("execution.ended", "status", "running"),
    ("execution.ended", "status", "awaiting_approval"),
    ("execution.ended", "status", "ok"),
]

MISSING = [(t, k) for t in EVENT_TYPES for k in REQUIRED_ATTRS[t]]


def test_the_valid_table_covers_every_event_type():
    assert set(VALID_ATTRS) == set(EVENT_TYPES) == set(REQUIRED_ATTRS)
    assert len(EVENT_TYPES) == 9


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_valid_attrs_pass(type_):
    assert validate_attrs(type_, VALID_ATTRS[type_]) is None
    # Extra attrs are allowed: the table is a floor.
    assert validate_attrs(type_, {**VALID_ATTRS[type_], "x_extra": [1, 2]}) is None


@pytest.mark.parametrize(("type_", "attr"), MISSING, ids=[f"{t}-{k}" for t, k in MISSING])
def test_missing_attr_is_invalid(type_, attr):
    attrs = {k: v for k, v in VALID_ATTRS[type_].items() if k != attr}
    with pytest.raises(InvalidEvent, match=rf"missing attrs: {re.escape(attr)}$"):
        validate_attrs(type_, attrs)


@pytest.mark.parametrize(("type_", "attr", "value"), BAD_ENUMS, ids=[f"{t}-{k}={v}" for t, k, v in BAD_ENUMS])
def test_bad_enum_value_is_invalid(type_, attr, value):
    with pytest.raises(InvalidEvent, match=re.escape(f"{attr}={value!r} is not one of")):
        validate_attrs(type_, {**VALID_ATTRS[type_], attr: value})


@pytest.mark.parametrize(
    ("type_", "attr"),
    [("step.started", "kind"), ("governance.decision", "decision"), ("log", "level"), ("step.ended", "status")],
)
def test_null_enum_attr_is_allowed(type_, attr):
    assert validate_attrs(type_, {**VALID_ATTRS[type_], attr: None}) is None


@pytest.mark.parametrize(
    ("type_", "attrs", "message"),
    [
        ("step.begun", {}, "unknown event type 'step.begun'"),
        ("", {}, "unknown event type ''"),
        ("log", ["level", "message", "data"], "attrs must be an object, not list"),
        ("log", None, "attrs must be an object, not NoneType"),
        ("execution.ended", {**VALID_ATTRS["execution.ended"], "totals": None}, "totals must carry"),
        ("execution.ended", {**VALID_ATTRS["execution.ended"], "totals": [0] * 7}, "totals must carry"),
        (
            "execution.ended",
            {**VALID_ATTRS["execution.ended"], "totals": {k: 0 for k in TOTALS_KEYS if k != "steps"}},
            "totals must carry",
        ),
    ],
    ids=["unknown type", "empty type", "attrs list", "attrs null", "totals null", "totals list", "totals lacks steps"],
)
def test_other_invalid_attrs(type_, attrs, message):
    with pytest.raises(InvalidEvent, match=re.escape(message)):
        validate_attrs(type_, attrs)


@pytest.mark.parametrize("value", [["info"], {"level": "info"}], ids=["list", "dict"])
def test_unhashable_enum_value_is_invalid_not_type_error(value):
    with pytest.raises(InvalidEvent):
        validate_attrs("log", {**VALID_ATTRS["log"], "level": value})


# --- build_event / parse_event ----------------------------------------------------------


def _ts(i: int) -> str:
    return f"2023-11-14T22:13:20.{i:06d}Z"


def test_body_is_exactly_the_canonical_event_without_hash():
    ev = build_event(EXEC_ID, 0, "cancel.requested", _ts(7), {"reason": "stuck", "by": "ana"}, genesis_hash(EXEC_ID))
    expected = (
        b'{"attrs":{"by":"ana","reason":"stuck"},'
        b'"execution_id":"017f22e2-79b0-7cc3-98c4-dc0c0c07398f",'
        b'"prev_hash":"' + hashlib.sha256(EXEC_ID.encode()).hexdigest().encode() + b'",'
        b'"seq":0,"ts":"2023-11-14T22:13:20.000007Z","type":"cancel.requested","v":1}'
    )
    assert ev.body == expected
    assert ev.hash == hashlib.sha256(hashlib.sha256(EXEC_ID.encode()).digest() + expected).digest()


@pytest.mark.parametrize("type_", EVENT_TYPES)
@pytest.mark.parametrize("steps", [(None, None), ("s2", None), ("s2", "s1")], ids=["no-step", "step", "nested-step"])
def test_build_parse_round_trip_and_hash_by_hand(type_, steps):
    step_id, parent = steps
    prev = hashlib.sha256(b"previous event").digest()
    ev = build_event(EXEC_ID, 5, type_, _ts(5), VALID_ATTRS[type_], prev, step_id=step_id, parent_step_id=parent)

    # The body is the canonical JSON of the event's fields, with no "hash" member.
    fields = {"v": 1, "execution_id": EXEC_ID, "seq": 5, "type": type_, "ts": _ts(5),
              "attrs": VALID_ATTRS[type_], "prev_hash": prev.hex()}
    if step_id is not None:
        fields["step_id"] = step_id
    if parent is not None:
        fields["parent_step_id"] = parent
    assert ev.body == canonical_json(fields)
    assert "hash" not in orjson.loads(ev.body)

    # hash = SHA-256(prev_hash_bytes ‖ body), recomputed here without the library.
    assert ev.hash == hashlib.sha256(prev + ev.body).digest()
    assert ev.hash == event_hash(prev, ev.body)
    assert len(ev.hash) == 32

    back = parse_event(ev.body, ev.hash)
    assert back == ev
    assert (back.execution_id, back.seq, back.type, back.ts) == (EXEC_ID, 5, type_, _ts(5))
    assert (back.step_id, back.parent_step_id, back.prev_hash) == (step_id, parent, prev)
    assert back.attrs == VALID_ATTRS[type_]
    assert ev.to_dict() == {**fields, "hash": ev.hash.hex()}


def test_build_event_validates_unless_told_not_to():
    with pytest.raises(InvalidEvent):
        build_event(EXEC_ID, 0, "log", _ts(0), {"level": "info"}, genesis_hash(EXEC_ID))
    ev = build_event(EXEC_ID, 0, "log", _ts(0), {"level": "info"}, genesis_hash(EXEC_ID), validate=False)
    assert orjson.loads(ev.body)["attrs"] == {"level": "info"}


BASE = dict(execution_id=EXEC_ID, seq=1, type_="log", ts=_ts(1), attrs=VALID_ATTRS["log"],
            prev_hash=b"\x00" * 32, step_id="s1", parent_step_id="s0", validate=False)
CHANGES = {
    "execution_id": EXEC_ID[:-1] + "0",
    "seq": 2,
    "type_": "cancel.requested",
    "ts": _ts(2),
    "attrs": {**VALID_ATTRS["log"], "message": "hellO"},
    "prev_hash": b"\x00" * 31 + b"\x01",
    "step_id": "s2",
    "parent_step_id": None,
}


@pytest.mark.parametrize("field", CHANGES)
def test_every_field_is_covered_by_the_hash(field):
    a = build_event(**BASE)
    b = build_event(**{**BASE, field: CHANGES[field]})
    assert a.body != b.body and a.hash != b.hash


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"execution_id":"x","seq":0,"type":"log","ts":"t","attrs":{}}', "lacks a field"),
        (b'{"execution_id":"x","seq":0,"type":"log","ts":"t","attrs":{},"prev_hash":"zz"}', "bad one"),
        (b'{"execution_id":"x","seq":0,"type":"log","ts":"t","attrs":{},"prev_hash":7}', "bad one"),
    ],
    ids=["not json", "array", "no prev_hash", "prev_hash not hex", "prev_hash not str"],
)
def test_parse_event_rejects_bad_bodies(body, message):
    with pytest.raises(InvalidEvent, match=message):
        parse_event(body, b"\x00" * 32)


def test_parse_event_keeps_the_stored_bytes():
    ev = build_event(EXEC_ID, 0, "log", _ts(0), VALID_ATTRS["log"], genesis_hash(EXEC_ID))
    assert parse_event(ev.body, ev.hash).body is ev.body


# --- genesis and the chain ----------------------------------------------------------------


@pytest.mark.parametrize("execution_id", [EXEC_ID, "", "é-😀"])
def test_genesis_hash_is_sha256_of_the_execution_id(execution_id):
    assert genesis_hash(execution_id) == hashlib.sha256(execution_id.encode("utf-8")).digest()


def test_genesis_hash_known_value():
    # printf '%s' 017f22e2-79b0-7cc3-98c4-dc0c0c07398f | sha256sum
    assert genesis_hash(EXEC_ID).hex() == hashlib.sha256(EXEC_ID.encode()).hexdigest()
    assert genesis_hash("abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _ijson_int(text: str) -> int | float:
    # I-JSON numbers are doubles: an integer past 2**53 can only have come from a float.
    n = int(text)
    return n if -(2**53) < n < 2**53 else float(n)


def _is_canonical(body: bytes) -> bool:
    try:
        return canonical_json(json.loads(body, parse_int=_ijson_int)) == body
    except ValueError:
        return False


@dataclass
class Stored:
    body: bytes
    hash: bytes


def first_broken_seq(execution_id: str, events: list[Stored]) -> int | None:
    """Walk a stored chain; the seq (position) of the first event that does not verify, or None."""
    prev = hashlib.sha256(execution_id.encode()).digest()
    for i, stored in enumerate(events):
        try:
            obj = orjson.loads(stored.body)
        except orjson.JSONDecodeError:
            return i
        if (
            type(obj) is not dict
            or obj.get("v") != 1
            or obj.get("seq") != i
            or obj.get("execution_id") != execution_id
            or obj.get("prev_hash") != prev.hex()
            or "hash" in obj
            or not _is_canonical(stored.body)
            or hashlib.sha256(prev + stored.body).digest() != stored.hash
        ):
            return i
        prev = stored.hash
    return None


def make_chain(n: int, execution_id: str = EXEC_ID) -> list[Event]:
    types = ["execution.started", "governance.decision", "step.started", "log", "step.ended",
             "approval.requested", "approval.decided", "cancel.requested"]
    out: list[Event] = []
    prev = genesis_hash(execution_id)
    for seq in range(n):
        type_ = "execution.ended" if seq == n - 1 and n > 1 else types[seq % len(types)]
        ev = build_event(execution_id, seq, type_, _ts(seq), VALID_ATTRS[type_], prev,
                         step_id=f"s{seq}" if seq % 2 else None)
        out.append(ev)
        prev = ev.hash
    return out


CHAIN = make_chain(8)


def _stored(chain: list[Event]) -> list[Stored]:
    return [Stored(e.body, e.hash) for e in chain]


def test_untampered_chain_verifies_and_links():
    assert first_broken_seq(EXEC_ID, _stored(CHAIN)) is None
    assert CHAIN[0].prev_hash == genesis_hash(EXEC_ID)
    for a, b in zip(CHAIN, CHAIN[1:], strict=False):
        assert b.prev_hash == a.hash
        assert b.hash == hashlib.sha256(a.hash + b.body).digest()


def test_the_chain_walker_can_fail():
    # A walker that never fails would make the tamper tests vacuous.
    assert first_broken_seq("some other execution", _stored(CHAIN)) == 0
    assert first_broken_seq(EXEC_ID, _stored(CHAIN[1:])) == 0
    assert first_broken_seq(EXEC_ID, _stored(CHAIN[:3] + CHAIN[4:])) == 3


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipping_one_byte_breaks_the_chain_at_exactly_that_seq(data):
    seq = data.draw(st.integers(0, len(CHAIN) - 1), label="seq")
    pos = data.draw(st.integers(0, len(CHAIN[seq].body) - 1), label="pos")
    flip = data.draw(st.integers(1, 255), label="xor")
    stored = _stored(CHAIN)
    body = bytearray(stored[seq].body)
    body[pos] ^= flip
    stored[seq] = Stored(bytes(body), stored[seq].hash)
    assert first_broken_seq(EXEC_ID, stored) == seq


@settings(max_examples=50, deadline=None)
@given(st.integers(0, len(CHAIN) - 1), st.integers(0, 255))
def test_flipping_one_bit_of_a_stored_hash_breaks_the_chain_at_that_seq(seq, bit):
    stored = _stored(CHAIN)
    h = bytearray(stored[seq].hash)
    h[bit // 8] ^= 1 << (bit % 8)
    stored[seq] = Stored(stored[seq].body, bytes(h))
    assert first_broken_seq(EXEC_ID, stored) == seq


@pytest.mark.parametrize("seq", range(len(CHAIN) - 1))
def test_rehashing_a_tampered_event_breaks_the_chain_at_the_next_seq(seq):
    ev = CHAIN[seq]
    forged = build_event(EXEC_ID, seq, ev.type, ev.ts, {**ev.attrs, "forged": True}, ev.prev_hash,
                         step_id=ev.step_id)
    stored = _stored(CHAIN)
    stored[seq] = Stored(forged.body, forged.hash)
    assert first_broken_seq(EXEC_ID, stored) == seq + 1


@pytest.mark.parametrize("i", range(len(CHAIN) - 1))
def test_swapping_neighbours_breaks_the_chain_at_the_first_of_them(i):
    stored = _stored(CHAIN)
    stored[i], stored[i + 1] = stored[i + 1], stored[i]
    assert first_broken_seq(EXEC_ID, stored) == i


# --- uuid7 --------------------------------------------------------------------------------


def test_uuid7_is_monotonic_and_well_formed_over_10k_ids():
    before_ms = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(10_000)]
    after_ms = time.time_ns() // 1_000_000
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), "not strictly increasing"
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and is_uuid(text)
        assert text[14] == "7" and u.version == 7
        assert int(text[19], 16) & 0b1100 == 0b1000 and u.variant == uuid.RFC_4122
        # the counter can borrow a few milliseconds ahead when it runs out, never more
        assert before_ms <= int(text[:8] + text[9:13], 16) <= after_ms + 5


def test_uuid7_time_prefix_is_now():
    now_ms = time.time_ns() // 1_000_000
    ms = int(uuid7().replace("-", "")[:12], 16)
    assert abs(ms - now_ms) < 2_000


def test_uuid7_stays_monotonic_when_the_clock_stalls_or_steps_back(monkeypatch):
    now = time.time_ns()
    clock = SimpleNamespace(time_ns=lambda: now)
    monkeypatch.setattr(_ids, "time", clock)
    ids = [uuid7() for _ in range(6_000)]  # more than one millisecond's 4096 counter values
    clock.time_ns = lambda: now - 5_000_000_000  # 5 s back
    ids += [uuid7() for _ in range(100)]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    prefixes = {int(t.replace("-", "")[:12], 16) for t in ids}
    assert min(prefixes) == now // 1_000_000
    assert max(prefixes) > now // 1_000_000  # it borrowed the next millisecond(s)


def test_uuid7_is_unique_across_threads():
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i):
        out[i].extend(uuid7() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for part in out for x in part]
    assert len(set(every)) == len(every) == 8_000
    for part in out:
        assert part == sorted(part)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (EXEC_ID, True),
        ("00000000-0000-0000-0000-000000000000", True),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", True),
        (EXEC_ID.upper(), False),
        (EXEC_ID.replace("-", ""), False),
        (EXEC_ID + "0", False),
        (EXEC_ID[:-1], False),
        ("017f22e2_79b0-7cc3-98c4-dc0c0c07398f", False),
        ("017f22e2-79b0-7cc3-98c4-dc0c0c07398g", False),
        ("", False),
        ("{17f22e2-79b0-7cc3-98c4-dc0c0c07398f", False),
    ],
)
def test_is_uuid(text, ok):
    assert is_uuid(text) is ok


@pytest.mark.parametrize(
    "text",
    [
        "+0000000-0000-7000-8000-000000000000",
        "0000000_-0000-7000-8000-000000000000",
        " 0000000-0000-7000-8000-000000000000",
        "\u06600000000-0000-7000-8000-000000000000",
    ],
    ids=["plus", "underscore", "space", "arabic-indic digit"],
)
def test_is_uuid_rejects_non_hex_characters(text):
    assert len(text) == 36
    assert is_uuid(text) is False


# --- timestamps ---------------------------------------------------------------------------

TS_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

KNOWN_TS = [
    (0, "1970-01-01T00:00:00.000000Z"),
    (1, "1970-01-01T00:00:00.000001Z"),
    (999_999, "1970-01-01T00:00:00.999999Z"),
    (1_700_000_000_123_456, "2023-11-14T22:13:20.123456Z"),
    (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
    (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
    (MAX_US, "9999-12-31T23:59:59.999999Z"),
]


@pytest.mark.parametrize(("us", "text"), KNOWN_TS)
def test_format_ts_known_values(us, text):
    assert format_ts(us) == text
    assert parse_ts(text) == EPOCH + timedelta(microseconds=us)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MAX_US))
def test_format_parse_round_trip(us):
    text = format_ts(us)
    assert TS_PATTERN.match(text), text
    dt = parse_ts(text)
    assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)
    assert dt == EPOCH + timedelta(microseconds=us)
    assert format_ts((dt - EPOCH) // timedelta(microseconds=1)) == text


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4_102_444_800_000_000))  # 1970 .. 2100
def test_ts_to_us_round_trip_this_century(us):
    assert ts_to_us(format_ts(us)) == us


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("2023-11-14T23:13:20.123456+01:00", 1_700_000_000_123_456),
        ("2023-11-14T22:13:20.123456+00:00", 1_700_000_000_123_456),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000_000),
        ("2023-11-14T22:13:20.123456", 1_700_000_000_123_456),  # naive is read as UTC
    ],
)
def test_parse_ts_other_forms(text, us):
    assert parse_ts(text) == EPOCH + timedelta(microseconds=us)
    assert parse_ts(text).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "us", [-1_000_001, -500_000, 32_503_680_000_999_999, MAX_US], ids=["1969 a", "1969 b", "year 3000", "year 9999"]
)
def test_ts_to_us_is_exact_outside_this_century(us):
    text = (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ts_to_us(text) == us


def test_format_ts_first_call_in_1969_second():
    code = "from execord.record import format_ts; print(format_ts(-1))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1969-12-31T23:59:59.999999Z"


# --- status machine -----------------------------------------------------------------------

ALL_STATUSES = [s.value for s in Status]
TERMINALS = ["succeeded", "failed", "halted", "cancelled", "interrupted"]
ALLOWED = {
    ("running", "awaiting_approval"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "halted"),
    ("running", "cancelled"),
    ("running", "interrupted"),
    ("awaiting_approval", "running"),
    # a wait for a reviewer can also end without running again (_status.py comments why)
    ("awaiting_approval", "halted"),
    ("awaiting_approval", "cancelled"),
    ("awaiting_approval", "interrupted"),
}
FORBIDDEN = sorted({(a, b) for a in ALL_STATUSES for b in ALL_STATUSES} - ALLOWED)


def test_status_values():
    assert ALL_STATUSES == ["running", "awaiting_approval", *TERMINALS]
    assert set(TERMINAL) == set(TERMINALS)


@pytest.mark.parametrize(("current", "new"), sorted(ALLOWED))
def test_allowed_transitions(current, new):
    assert check_transition(current, new) is None
    assert check_transition(Status(current), Status(new)) is None


@pytest.mark.parametrize(("current", "new"), FORBIDDEN)
def test_forbidden_transitions(current, new):
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new)
    assert (info.value.current, info.value.new) == (current, new)
    assert info.value.status == 409 and info.value.type == "illegal-transition"


def test_the_forbidden_table_has_the_notable_cases():
    for case in [("running", "running"), ("awaiting_approval", "succeeded"), ("awaiting_approval", "failed"),
                 ("succeeded", "running"), ("halted", "awaiting_approval"), ("cancelled", "cancelled")]:
        assert case in FORBIDDEN
    assert len(FORBIDDEN) == 49 - len(ALLOWED)


@pytest.mark.parametrize("status", TERMINALS)
def test_terminal_statuses_have_no_exits(status):
    assert is_terminal(status) and is_terminal(Status(status))
    for new in [*ALL_STATUSES, "bogus"]:
        with pytest.raises(IllegalTransition):
            check_transition(status, new)


@pytest.mark.parametrize("status", ["running", "awaiting_approval", "bogus", ""])
def test_non_terminal_statuses(status):
    assert not is_terminal(status)


@pytest.mark.parametrize(("current", "new"), [("bogus", "running"), ("running", "bogus"), ("", "")])
def test_unknown_statuses_are_illegal(current, new):
    with pytest.raises(IllegalTransition):
        check_transition(current, new)


FAILURE_CLASSES = [
    ("succeeded", {}, None),
    ("running", {}, None),
    ("awaiting_approval", {}, "approval_pending"),
    ("halted", {"halt_reason": "policy"}, "policy_block"),
    ("halted", {"halt_reason": "budget"}, "policy_block"),
    ("halted", {"halt_reason": "approval_rejected"}, "approval"),
    ("halted", {"halt_reason": "approval_expired"}, "approval"),
    ("cancelled", {}, "cancelled"),
    ("interrupted", {}, "interrupted"),
    ("failed", {"error_step_kind": "llm"}, "provider_failure"),
    ("failed", {"error_step_kind": "tool"}, "connector_failure"),
    ("failed", {"error_step_kind": "retrieval"}, "connector_failure"),
    ("failed", {"error_step_kind": None}, "logic_error"),
    ("failed", {}, "logic_error"),
    # the step kind only matters for failed; the halt reason only for halted
    ("cancelled", {"error_step_kind": "llm"}, "cancelled"),
    ("interrupted", {"halt_reason": "budget"}, "interrupted"),
]


@pytest.mark.parametrize(("status", "kwargs", "expected"), FAILURE_CLASSES)
def test_failure_class_for(status, kwargs, expected):
    got = failure_class_for(status, **kwargs)
    assert got == expected
    assert got == failure_class_for(Status(status), **kwargs)
    if got is not None:
        assert type(got) is str and got in {c.value for c in FailureClass}


def test_every_failure_class_is_reachable():
    reached = {e for _, _, e in FAILURE_CLASSES if e is not None}
    assert reached == {c.value for c in FailureClass}
