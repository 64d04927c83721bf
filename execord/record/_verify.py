"""Checking one execution's stored chain and its seal (pure: no I/O).

`verify_chain` is given the stored rows of one execution in seq order, exactly as stored
(the canonical bytes and the hash), and reports the first problem it meets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ._canonical import canonical_json
from ._events import EVENT_TYPES, SCHEMA_VERSION
from ._merkle import root_from_leaf_hashes

_PREV_KEY = b'"prev_hash":"'
_PREV_AT = len(_PREV_KEY)
_EID_KEY = b'"execution_id":"'
_SEQ_KEY = b'"seq":'
_sha256 = hashlib.sha256
_SAFE = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one execution's record.

    Attributes:
        execution_id: the execution.
        seq: the first event that fails, or None when the seal (not an event) is wrong.
        message: what is wrong, in words.
    """

    execution_id: str
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Seal:
    """What a seal claims about an execution (DESIGN §1)."""

    event_count: int
    events_root: bytes
    last_hash: bytes


def _check_fast(body: bytes, eid: bytes, seq: int, prev: bytes) -> str | None:
    """Check the top-level fields a verifier relies on, straight from the canonical bytes.

    In canonical JSON the top-level keys are sorted (attrs, execution_id, parent_step_id,
    prev_hash, seq, step_id, ts, type, v) and every key after ``execution_id`` holds ids,
    numbers or our own type names, so the last occurrence of each key is the top-level one.
    """
    at = body.rfind(_EID_KEY) + len(_EID_KEY)
    end = at + len(eid)
    if at < len(_EID_KEY) or body[at:end] != eid or body[end : end + 1] != b'"':
        return "the event names another execution_id"
    if body.startswith(b',"hash":', end + 1):
        return 'the stored body carries a "hash" member (it must be hashed without one)'
    at = body.rfind(_PREV_KEY) + _PREV_AT
    if at < _PREV_AT or body[at : at + 64] != prev.hex().encode() or body[at + 64 : at + 65] != b'"':
        return "prev_hash does not name the previous event's hash"
    at = body.rfind(_SEQ_KEY) + len(_SEQ_KEY)
    text = str(seq).encode()
    if at < len(_SEQ_KEY) or body[at : at + len(text)] != text or body[at + len(text) : at + len(text) + 1] not in (b",", b"}"):
        return f"the event's own seq is not {seq}"
    return None


def _ijson_int(text: str) -> int | float:
    # I-JSON numbers are doubles: an integer beyond 2**53 can only have been written as a float.
    value = int(text)
    return value if -_SAFE <= value <= _SAFE else float(value)


def _check_deep(body: bytes, execution_id: str, seq: int, prev: bytes) -> str | None:
    """Parse the event and check its every top-level field and its canonical form."""
    try:
        obj = json.loads(body, parse_int=_ijson_int)
    except ValueError:
        return "the stored body is not JSON"
    if type(obj) is not dict:
        return "the stored body is not a JSON object"
    if "hash" in obj:
        return 'the stored body carries a "hash" member (it must be hashed without one)'
    checks = (
        (obj.get("v") == SCHEMA_VERSION, f"v is not {SCHEMA_VERSION}"),
        (obj.get("execution_id") == execution_id, "the event names another execution_id"),
        (obj.get("seq") == seq and type(obj.get("seq")) is int, f"the event's own seq is not {seq}"),
        (obj.get("type") in EVENT_TYPES, f"unknown event type {obj.get('type')!r}"),
        (obj.get("prev_hash") == prev.hex(), "prev_hash does not name the previous event's hash"),
        (type(obj.get("attrs")) is dict and type(obj.get("ts")) is str, "attrs or ts is missing"),
    )
    for ok, message in checks:
        if not ok:
            return message
    try:
        if canonical_json(obj) != body:
            return "the stored bytes are not the canonical form of the event (RFC 8785)"
    except ValueError:
        return "the event cannot be canonicalized"
    return None


def verify_chain(
    execution_id: str,
    rows: Sequence[tuple[int, bytes, bytes]],
    seal: Seal | None = None,
    *,
    deep: bool = False,
) -> tuple[int, Problem | None]:
    """Re-hash one execution's stored events and check them against its seal.

    For event ``seq`` (DESIGN §4): it follows the previous seq with no gap; its body names
    this execution, this seq and the previous event's hash as ``prev_hash`` (the SHA-256 of
    the execution id for seq 0), and has no ``hash`` member; and ``SHA-256(prev ‖ body)``
    equals the stored hash. With ``deep``, each body is also parsed and must be exactly the
    RFC 8785 form of itself with every top-level field well-formed (about 5x slower). Then, if sealed, the seal's event count,
    last hash and ``events_root`` (RFC 6962 over the event hashes) must match.

    Args:
        execution_id: the execution.
        rows: (seq, stored hash, stored canonical bytes), in seq order.
        seal: the execution's seal, or None while it runs.
        deep: also parse each event and check its canonical form.

    Returns:
        (events that verified, the first problem or None).
    """
    prev = _sha256(execution_id.encode()).digest()
    hashes: list[bytes] = []
    keep = hashes.append
    n = 0
    eid = execution_id.encode()
    for seq, stored, body in rows:
        if seq != n:
            return n, Problem(execution_id, seq, f"seq {seq} where {n} was expected (gap or reorder)")
        wrong = _check_deep(body, execution_id, seq, prev) if deep else _check_fast(body, eid, seq, prev)
        if wrong:
            return n, Problem(execution_id, seq, wrong)
        calculated = _sha256(prev + body).digest()
        if calculated != stored:
            return n, Problem(
                execution_id, seq, f"hash mismatch: stored {stored.hex()}, recomputed {calculated.hex()}"
            )
        keep(calculated)
        prev = calculated
        n += 1
    if seal is None:
        return n, None
    if seal.event_count != n:
        return n, Problem(execution_id, None, f"seal counts {seal.event_count} events, {n} are stored")
    if seal.last_hash != prev:
        return n, Problem(execution_id, n - 1, "seal's last_hash is not the last event's hash")
    root = root_from_leaf_hashes([_sha256(b"\x00" + h).digest() for h in hashes])
    if root != seal.events_root:
        return n, Problem(
            execution_id, None, f"events_root mismatch: seal {seal.events_root.hex()}, recomputed {root.hex()}"
        )
    return n, None


def _seq_of(body: bytes) -> int | None:
    at = body.rfind(_SEQ_KEY)
    if at < 0:
        return None
    at += len(_SEQ_KEY)
    end = at
    while end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return int(body[at:end]) if end > at else None


def _eid_of(body: bytes) -> str:
    at = body.rfind(_EID_KEY)
    if at < 0:
        return "?"
    at += len(_EID_KEY)
    return body[at : body.find(b'"', at)].decode("utf-8", "replace")


def chain_from_bodies(execution_id: str, bodies: Sequence[bytes]) -> tuple[list[bytes], Problem | None]:
    """Hash an execution's canonical event bytes in order, checking that they chain.

    For a record that carries no stored hashes (an export bundle): each body must name this
    execution, its own position as ``seq`` and the previous body's hash as ``prev_hash``.
    The message of a failure says what most likely changed: an event edited, deleted,
    reordered or moved from another execution.

    Returns:
        (the hashes of the events that chained, the first problem or None).
    """
    prev = _sha256(execution_id.encode()).digest()
    hashes: list[bytes] = []
    keep = hashes.append
    eid = execution_id.encode()
    eid_key = _EID_KEY + eid + b'","'
    for n, body in enumerate(bodies):
        # The checks of `_check_fast`, inlined (this loop is most of verifying a bundle): the
        # last occurrence of each key is the top-level one; `_check_fast` explains a failure.
        at = body.rfind(_PREV_KEY) + _PREV_AT
        seq = str(n).encode()
        if (at >= _PREV_AT and body[at:at + 72] == b"%s\",\"seq\":" % prev.hex().encode()
                and body[at + 72:at + 72 + len(seq) + 1] in (seq + b",", seq + b"}")
                and body.rfind(eid_key) == body.rfind(_EID_KEY) >= 0
                and not body.startswith(b',"hash":', body.rfind(_EID_KEY) + len(eid_key) - 2)):
            prev = _sha256(prev + body).digest()
            keep(prev)
            continue
        wrong = _check_fast(body, eid, n, prev)
        if wrong is not None:
            if wrong.startswith("prev_hash") and _seq_of(body) != n:
                wrong = "the event's own seq"  # deleted or reordered, not edited: say so
            at = n - 1 if wrong.startswith("prev_hash") and n else n  # the edited event is the one before
            return hashes, Problem(execution_id, at, _explain(wrong, execution_id, n, body, prev))
        prev = _sha256(prev + body).digest()
        keep(prev)
    return hashes, None


def _explain(wrong: str, execution_id: str, n: int, body: bytes, prev: bytes) -> str:
    if wrong.startswith("the event names another"):
        return f"the event at position {n} belongs to execution {_eid_of(body)}, not {execution_id} (moved here)"
    if wrong.startswith("the event's own seq"):
        seq = _seq_of(body)
        if seq is not None and seq > n:
            return f"position {n} holds seq {seq}: seq {n} is missing (deleted, or events reordered)"
        return f"position {n} holds seq {seq}: events reordered or repeated"
    if wrong.startswith("prev_hash"):
        if n == 0:
            return "seq 0 does not start this execution's chain (prev_hash is not SHA-256 of the execution id)"
        return (f"seq {n - 1} was changed: it hashes to {prev.hex()[:16]}…, "
                f"but seq {n} records another prev_hash")
    return wrong


_SEQ_TAILS: list[bytes] = []


def chain_from_jsonl(execution_id: str, data: bytes) -> tuple[list[bytes], list[bytes], Problem | None]:
    """`chain_from_bodies` over the lines of an events.jsonl: (the bodies, their hashes, the problem).

    The bodies are the lines of ``data`` (a last line without its newline included). It
    accepts exactly what `chain_from_bodies` accepts, in fewer operations per event: each
    body's last ``"execution_id":"`` must be followed by this id and ``","p`` (the next key is
    ``parent_step_id`` or ``prev_hash``, so not ``hash``), and its last ``"prev_hash":"`` by
    the previous hash and ``","seq":N,`` for its own N. A body that is not so (a damaged
    record) sends the execution to `chain_from_bodies`, which finds and explains the problem.
    """
    bodies = data.split(b"\n")
    if bodies[-1] == b"":
        bodies.pop()
    n = len(bodies)
    while len(_SEQ_TAILS) < n:
        _SEQ_TAILS.append(b'","seq":%d,' % len(_SEQ_TAILS))
    eid_key, eid_next = _EID_KEY, _EID_KEY + execution_id.encode() + b'","p'
    prev_key, tails = _PREV_KEY, _SEQ_TAILS
    h = _sha256(execution_id.encode())
    prev, hex_prev = h.digest(), h.hexdigest().encode()
    hashes: list[bytes] = []
    keep = hashes.append
    for k, body in enumerate(bodies):
        if not (body.rfind(eid_next) == body.rfind(eid_key) >= 0
                and body.rfind(prev_key + hex_prev + tails[k]) == body.rfind(prev_key) >= 0):
            hashes, problem = chain_from_bodies(execution_id, bodies)
            return bodies, hashes, problem
        h = _sha256(prev + body)
        prev, hex_prev = h.digest(), h.hexdigest().encode()
        keep(prev)
    return bodies, hashes, None
