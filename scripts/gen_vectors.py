#!/usr/bin/env python3
"""Generate the record's test vectors in tests/vectors/ (STYLE.md, "Tests").

Every input is fixed (ids, timestamps, attrs, leaf data): no randomness and no clock, so a
rerun writes the same bytes. Positive hashes carry a ``recompute`` shell one-liner
(POSIX ``printf`` and ``sha256sum``). Negative vectors are named after their corruption and
give the seq at which a verifier must first fail.

Usage::

    python3 scripts/gen_vectors.py           # (re)write the vector files
    python3 scripts/gen_vectors.py --check   # exit 1 if any file differs from a fresh run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import struct
import sys
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from execord.record import (  # noqa: E402
    build_event,
    canonical_json,
    genesis_hash,
    leaf_hash,
    merkle_root,
    node_hash,
)

VECTORS = ROOT / "tests" / "vectors"
GENERATOR = "scripts/gen_vectors.py"
EXEC_ID = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"  # the UUIDv7 example of RFC 9562 appendix A.6
OTHER_EXEC_ID = "017f22e2-79b0-7cc3-98c4-dc0c0c073990"
RECOMPUTE_NOTE = (
    " Each `recompute` is a POSIX shell one-liner printing the hash; read it with a JSON parser, "
    "e.g. `jq -r '.events[0].recompute' FILE | sh`, since the file escapes its backslashes."
)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _printf_bytes(data: bytes) -> str:
    # Octal escapes: the only byte escapes POSIX printf (dash, busybox) is required to know.
    return "printf '" + "".join(f"\\{b:03o}" for b in data) + "'"


def recompute(*parts: bytes | str) -> str:
    """A shell one-liner printing the SHA-256 of the concatenated parts (bytes, then text)."""
    # Text goes in as itself when it is printable ASCII, so the line stays readable; anything
    # else goes in as octal escapes of its UTF-8 bytes, so copying the line cannot alter it.
    cmds = [
        "printf '%s' " + shlex.quote(p)
        if isinstance(p, str) and p.isascii() and p.isprintable()
        else _printf_bytes(p.encode() if isinstance(p, str) else p)
        for p in parts
        if p not in (b"", "")
    ]
    if not cmds:
        return "printf '' | sha256sum"
    if len(cmds) == 1:
        return f"{cmds[0]} | sha256sum"
    return "{ " + "; ".join(cmds) + "; } | sha256sum"


# --- canonical JSON -------------------------------------------------------------------------

APPENDIX_B_BITS = [
    "0000000000000000", "8000000000000000", "0000000000000001", "8000000000000001",
    "7fefffffffffffff", "ffefffffffffffff", "4340000000000000", "c340000000000000",
    "4430000000000000", "44b52d02c7e14af5", "44b52d02c7e14af6", "44b52d02c7e14af7",
    "444b1ae4d6e2ef4e", "444b1ae4d6e2ef4f", "444b1ae4d6e2ef50", "3eb0c6f7a0b5ed8c",
    "3eb0c6f7a0b5ed8d", "41b3de4355555553", "41b3de4355555554", "41b3de4355555555",
    "41b3de4355555556", "41b3de4355555557", "becbf647612f3696", "43143ff3c1cb0959",
]

CANONICAL_CASES: list[tuple[str, str]] = [
    ("empty_object", "{}"),
    ("empty_array", "[ ]"),
    ("empty_string", '""'),
    ("literals", "[null, true, false]"),
    ("nested_empties", '{"b": [[], {}], "a": {}}'),
    ("whitespace_removed", ' {\n  "a" : [ 1 , 2 ] ,\t"b" : { } }\r\n'),
    ("keys_sorted_ascii", '{"b": 1, "a": 2, "aa": 3, "A": 4, "": 5}'),
    ("keys_sorted_nested", '[{"z": {"y": 1, "x": [{"d": 1, "c": 2}]}}]'),
    ("keys_utf16_order_astral_before_e000", '{"\\ue000": 1, "\\ud83d\\ude00": 2}'),
    ("keys_utf16_order_ffff_after_10000", '{"\\uffff": 1, "\\ud800\\udc00": 2}'),
    (
        "rfc8785_3_2_3_sorting_example",
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    ),
    (
        "rfc8785_3_2_4_example",
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}',
    ),
    ("string_short_escapes", '"\\b\\f\\n\\r\\t\\"\\\\"'),
    ("string_control_characters", '"\\u0000\\u0001\\u000b\\u001F"'),
    ("string_solidus_unescaped", '"\\/ and /"'),
    ("string_del_and_separators_raw", '"\\u007f\\u2028\\u2029"'),
    ("string_non_ascii_raw", '"caf\\u00e9 \\u20ac \\ud83d\\ude00"'),
    ("string_not_normalized_nfc", '["\\u00e9", "e\\u0301"]'),
    ("integer_max_safe", "9007199254740991"),
    ("integer_min_safe", "-9007199254740991"),
    ("integer_zero", "0"),
    ("float_integral", "1.0"),
    ("float_negative_zero", "-0.0"),
    ("float_exponent_integral", "1e16"),
    ("float_1e20", "1e20"),
    ("float_1e21", "1e21"),
    ("float_1e-7", "1e-7"),
    ("float_2_pow_53", "9007199254740992.0"),
    ("float_in_object", '{"temperature": 0.7, "top_p": 1.0, "n": 1}'),
    ("deep_nesting_300", "[" * 300 + "0" + "]" * 300),
] + [
    # RFC 8785 Appendix B, written as Python's repr of the double (a float literal).
    (f"rfc8785_appendix_b_{bits}", repr(struct.unpack(">d", bytes.fromhex(bits))[0]))
    for bits in APPENDIX_B_BITS
]

CANONICAL_REJECTED: list[tuple[str, str]] = [
    ("reject_nan", "NaN"),
    ("reject_infinity", "Infinity"),
    ("reject_negative_infinity_nested", '{"a": [-Infinity]}'),
    ("reject_float_overflow_1e400", "1E400"),
    ("reject_integer_2_pow_53", "9007199254740992"),
    ("reject_integer_minus_2_pow_53", "-9007199254740992"),
    ("reject_integer_2_pow_64_nested", '{"a": [18446744073709551616]}'),
    ("reject_lone_high_surrogate", '"\\ud800"'),
    ("reject_lone_low_surrogate_in_key", '{"\\udc00": 1}'),
]


def canonical_vectors() -> dict[str, Any]:
    cases = []
    for name, text in CANONICAL_CASES:
        cases.append({"name": name, "input": text, "expected": canonical_json(json.loads(text)).decode()})
    rejected = []
    for name, text in CANONICAL_REJECTED:
        try:
            canonical_json(json.loads(text))
        except ValueError:  # CanonicalizationError, or UnicodeEncodeError for surrogate keys
            rejected.append({"name": name, "input": text})
        else:  # pragma: no cover - the generator refuses to write a wrong vector
            raise SystemExit(f"{name}: canonical_json accepted {text!r}")
    return {
        "kind": "canonical_json",
        "description": (
            "RFC 8785 canonical JSON. Parse `input` with Python's json module, canonicalize, and "
            "compare with `expected` encoded as UTF-8. Every `rejected` input must raise."
        ),
        "generator": GENERATOR,
        "cases": cases,
        "rejected": rejected,
    }


# --- events and the chain -------------------------------------------------------------------

TOTALS = {
    "input_tokens": 1200, "output_tokens": 340, "cost_micros": 4210, "llm_calls": 1,
    "tool_calls": 1, "steps": 2, "duration_ms": 2100,
}
BLOB = {"$blob": "sha256:" + _sha(b'{"order_id":"A-1001"}').hex(), "size": 21, "type": "json"}

ATTRS: dict[str, dict[str, Any]] = {
    "execution.started": {
        "agent": {"name": "support-bot", "version": "1.4.0", "roles": ["support"]},
        "workflow": {"name": "refund", "version": "3"},
        "execution_type": "workflow",
        "parent_execution_id": None,
        "labels": {"team": "payments", "region": "eu"},
        "inputs": BLOB,
        "governance_version": "gv_4f1c2a9d0b7e6c35",
        "sdk": {"name": "execord-python", "version": "0.1.0"},
        "host": {"hostname": "worker-1", "pid": 4242},
        "lease_s": 30,
    },
    "governance.decision": {
        "phase": "admission", "step_id": None, "decision": "allow", "rules": [],
        "budgets": [{"id": "execution.cost_usd", "metric": "cost_usd", "limit": 2000000, "used": 0,
                     "projected": 0, "ok": True}],
        "redactions": [], "governance_version": "gv_4f1c2a9d0b7e6c35", "engine": "cel", "eval_us": 41,
    },
    "step.started": {"kind": "tool", "name": "lookup_order", "input": BLOB},
    "step.ended": {
        "status": "ok", "output": {"state": "shipped"}, "error": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0, "reasoning_tokens": 0},
        "cost_micros": 0, "price_source": None, "latency_ms": 87,
    },
    "approval.requested": {
        "approval_id": "appr-1", "rule_id": "big-refunds-need-approval", "step_id": "step-2",
        "action_digest": _sha(b"issue_refund 1500").hex(), "approvers": ["finance"],
        "expires_at": "2023-11-14T22:43:20.000000Z", "message": "Refund of 1500 needs finance.",
    },
    "approval.decided": {"approval_id": "appr-1", "decision": "approved", "reviewer": "ana", "comment": None},
    "cancel.requested": {"by": "ana", "reason": "customer withdrew"},
    "log": {"level": "info", "message": "looked up order", "data": {"order_id": "A-1001"}},
    "execution.ended": {"status": "succeeded", "error": None, "halt": None, "cancel": None, "totals": TOTALS},
}


def _ts(seq: int) -> str:
    return f"2023-11-14T22:13:{20 + seq:02d}.{seq * 111111:06d}Z"


def _event_entry(name: str, ev: Any) -> dict[str, Any]:
    return {
        "name": name,
        "input": {
            "execution_id": ev.execution_id, "seq": ev.seq, "type": ev.type, "ts": ev.ts,
            "step_id": ev.step_id, "parent_step_id": ev.parent_step_id, "attrs": ev.attrs,
            "prev_hash": ev.prev_hash.hex(),
        },
        "body": ev.body.decode(),
        "hash": ev.hash.hex(),
        "recompute": recompute(ev.prev_hash, ev.body.decode()),
    }


def event_hash_vectors() -> dict[str, Any]:
    prev = _sha(b"the previous event")
    events = []
    for i, (type_, attrs) in enumerate(ATTRS.items()):
        step = ("step-1", None) if type_.startswith(("step.", "approval.")) else (None, None)
        p = genesis_hash(EXEC_ID) if i == 0 else prev
        ev = build_event(EXEC_ID, i, type_, _ts(i), attrs, p, step_id=step[0], parent_step_id=step[1])
        events.append(_event_entry(type_.replace(".", "_"), ev))
    extras = [
        ("step_started_llm_float_params", "step.started", {
            "kind": "llm", "name": "chat", "input": BLOB, "provider": "openai", "model": "gpt-4o-mini",
            "params": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 1024},
        }, ("step-3", "step-1")),
        ("log_non_ascii_and_astral_keys", "log", {
            "level": "warning", "message": "caf\u00e9 \u2713", "data": {"\ue000": "private use", "\U0001f600": "emoji"},
        }, (None, None)),
    ]
    for name, type_, attrs, (step_id, parent) in extras:
        ev = build_event(EXEC_ID, 9, type_, _ts(9), attrs, prev, step_id=step_id, parent_step_id=parent)
        events.append(_event_entry(name, ev))
    return {
        "kind": "event_hashes",
        "description": (
            "One event of each type (DESIGN §3). `body` is canonical_json of the event without "
            "`hash`; hash = SHA-256(bytes.fromhex(prev_hash) || body). build_event(**input) must "
            "give exactly `body` and `hash`. genesis.hash = SHA-256(execution_id)."
        ) + RECOMPUTE_NOTE,
        "generator": GENERATOR,
        "genesis": {
            "execution_id": EXEC_ID,
            "hash": genesis_hash(EXEC_ID).hex(),
            "recompute": recompute(EXEC_ID),
        },
        "events": events,
    }


CHAIN_SPEC: list[tuple[str, str | None]] = [
    ("execution.started", None),
    ("governance.decision", None),
    ("step.started", "step-1"),
    ("step.ended", "step-1"),
    ("execution.ended", None),
]


def _build_chain(
    exec_ids: list[str] | None = None,
    genesis: bytes | None = None,
    attrs: dict[int, dict[str, Any]] | None = None,
    seqs: list[int] | None = None,
) -> list[Any]:
    exec_ids = exec_ids or [EXEC_ID] * len(CHAIN_SPEC)
    prev = genesis if genesis is not None else genesis_hash(exec_ids[0])
    out = []
    for i, (type_, step_id) in enumerate(CHAIN_SPEC):
        seq = seqs[i] if seqs else i
        a = (attrs or {}).get(i, ATTRS[type_])
        ev = build_event(exec_ids[i], seq, type_, _ts(seq), a, prev, step_id=step_id)
        out.append(ev)
        prev = ev.hash
    return out


def _stored(events: list[Any]) -> list[dict[str, str]]:
    return [{"body": e.body.decode(), "hash": e.hash.hex()} for e in events]


def _flip_ts_digit(body: str) -> tuple[str, int]:
    # The last microsecond digit of ts: still valid JSON, a different event.
    pos = body.index('Z","type"') - 1
    return body[:pos] + chr(ord(body[pos]) ^ 1) + body[pos + 1:], pos


def _chain_file(name: str, description: str, events: list[dict[str, str]], first_bad: int | None,
                execution_id: str = EXEC_ID) -> dict[str, Any]:
    return {
        "kind": "chain",
        "name": name,
        "description": description,
        "generator": GENERATOR,
        "execution_id": execution_id,
        "events": events,
        "first_bad_seq": first_bad,
    }


def chain_vectors() -> dict[str, dict[str, Any]]:
    good = _build_chain()
    valid_events = [
        {"seq": e.seq, "body": e.body.decode(), "prev_hash": e.prev_hash.hex(), "hash": e.hash.hex(),
         "recompute": recompute(e.prev_hash, e.body.decode())}
        for e in good
    ]
    files = {
        "valid": _chain_file(
            "valid",
            "A 5-event chain that verifies. A verifier walks events in order: seq equals the "
            "position, execution_id matches, prev_hash is the previous hash (SHA-256 of the "
            "execution id for seq 0), body is canonical JSON without `hash`, and hash = "
            "SHA-256(prev_hash bytes || body). `first_bad_seq` is the position of the first event "
            "that fails any check, or null." + RECOMPUTE_NOTE,
            valid_events, None,
        )
    }
    stored = _stored(good)

    def neg(name: str, description: str, events: list[dict[str, str]], first_bad: int) -> None:
        files[name] = _chain_file(name, description, events, first_bad)

    for k in range(len(good)):
        ev = [dict(e) for e in stored]
        ev[k]["body"], pos = _flip_ts_digit(ev[k]["body"])
        neg(f"chain_flip_byte_seq{k}", f"Byte {pos} of event {k}'s body (a ts digit) flipped; hash kept.", ev, k)

    ev = [dict(e) for e in stored]
    h = bytearray.fromhex(ev[2]["hash"])
    h[0] ^= 0x80
    ev[2]["hash"] = h.hex()
    neg("chain_flip_hash_bit_seq2", "The top bit of event 2's stored hash flipped.", ev, 2)

    ev = [dict(e) for e in stored]
    ev[1]["hash"] = ev[1]["hash"][:-2]
    neg("chain_truncated_hash_seq1", "Event 1's stored hash lost its last byte.", ev, 1)

    neg("chain_swapped_events_2_3", "Events 2 and 3 stored in each other's place.",
        stored[:2] + [stored[3], stored[2]] + stored[4:], 2)
    neg("chain_missing_event_seq2", "Event 2 deleted; later events kept.", stored[:2] + stored[3:], 2)
    neg("chain_duplicated_event_seq2", "Event 2 stored twice.", stored[:3] + stored[2:], 3)

    wrong_genesis = _build_chain(genesis=genesis_hash(EXEC_ID.upper()))
    neg("chain_wrong_genesis", "Event 0's prev_hash is SHA-256 of the upper-cased execution id; "
        "the rest chains correctly on top of it.", _stored(wrong_genesis), 0)

    edited = dict(ATTRS["governance.decision"], decision="warn")
    neg("chain_rehashed_edit_seq1", "Event 1's decision edited and its hash recomputed; event 2's "
        "prev_hash no longer matches.", _stored(good[:1]) + _stored(_build_chain(attrs={1: edited})[1:2])
        + stored[2:], 2)

    neg("chain_wrong_execution_id_seq3", "Events 3 and 4 carry another execution id, chained and "
        "hashed correctly.", _stored(_build_chain(exec_ids=[EXEC_ID] * 3 + [OTHER_EXEC_ID] * 2)), 3)

    neg("chain_seq_skips_at_4", "The last event is numbered 5 instead of 4, chained and hashed "
        "correctly.", _stored(_build_chain(seqs=[0, 1, 2, 3, 5])), 4)

    ev = [dict(e) for e in stored]
    ev[4]["body"] += " "
    ev[4]["hash"] = _sha(bytes.fromhex(ev[3]["hash"]) + ev[4]["body"].encode()).hex()
    neg("chain_trailing_space_seq4", "A space appended to event 4's body and its hash recomputed "
        "over those bytes: the hash matches but the body is not canonical.", ev, 4)

    obj = json.loads(stored[2]["body"])
    reordered = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":"), ensure_ascii=False)
    ev = [dict(e) for e in stored[:2]]
    prev = bytes.fromhex(ev[1]["hash"])
    ev.append({"body": reordered, "hash": _sha(prev + reordered.encode()).hex()})
    tail = _build_chain()[3:]  # rebuild 3 and 4 on top of the forged event 2
    prev = bytes.fromhex(ev[2]["hash"])
    for e in tail:
        rebuilt = build_event(EXEC_ID, e.seq, e.type, e.ts, e.attrs, prev, step_id=e.step_id)
        ev.append({"body": rebuilt.body.decode(), "hash": rebuilt.hash.hex()})
        prev = rebuilt.hash
    neg("chain_reordered_keys_seq2", "Event 2's members written in reverse order (not canonical), "
        "hashed over those bytes, and events 3 and 4 chained on top of it.", ev, 2)

    ev = [dict(e) for e in stored]
    body = json.loads(ev[0]["body"])
    body["hash"] = ev[0]["hash"]
    ev[0]["body"] = canonical_json(body).decode()
    ev[0]["hash"] = _sha(genesis_hash(EXEC_ID) + ev[0]["body"].encode()).hex()
    neg("chain_hash_member_in_body_seq0", "Event 0's body includes its own `hash` member (hashed "
        "over those bytes); the hashed event must not contain `hash`.", ev, 0)
    return files


# --- events_root ------------------------------------------------------------------------------


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def events_root_vectors() -> dict[str, Any]:
    texts = [f"event {i}" for i in range(8)]
    hashes = [_sha(t.encode()) for t in texts]
    leaves = [
        {"index": i, "event_hash": h.hex(), "event_hash_recompute": recompute(t),
         "leaf_hash": leaf_hash(h).hex(), "leaf_hash_recompute": recompute(b"\x00" + h)}
        for i, (t, h) in enumerate(zip(texts, hashes, strict=True))
    ]
    roots = []
    for n in range(9):
        root = merkle_root(hashes[:n])
        entry: dict[str, Any] = {"size": n, "root": root.hex()}
        if n == 0:
            entry["recompute"] = recompute()
        elif n == 1:
            entry["recompute"] = recompute(b"\x00" + hashes[0])
        else:
            k = _split(n)
            left, right = merkle_root(hashes[:k]), merkle_root(hashes[k:n])
            assert node_hash(left, right) == root
            entry.update(split=k, left=left.hex(), right=right.hex(), recompute=recompute(b"\x01" + left + right))
        roots.append(entry)

    def midpoint_root(hs: list[bytes]) -> bytes:
        if len(hs) == 1:
            return leaf_hash(hs[0])
        m = (len(hs) + 1) // 2
        return node_hash(midpoint_root(hs[:m]), midpoint_root(hs[m:]))

    def bitcoin_root(hs: list[bytes]) -> bytes:
        level = [leaf_hash(h) for h in hs]
        while len(level) > 1:
            if len(level) % 2:
                level.append(level[-1])
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]

    def unprefixed_root(hs: list[bytes]) -> bytes:
        level = list(hs)
        while len(level) > 1:
            nxt = [_sha(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
            level = nxt + ([level[-1]] if len(level) % 2 else [])
        return level[0]

    swapped = [hashes[1], hashes[0], *hashes[2:4]]
    negative = [
        {"name": "events_root_size5_midpoint_split", "size": 5, "root": midpoint_root(hashes[:5]).hex(),
         "description": "Root built by splitting at ceil(n/2) instead of the largest power of two below n."},
        {"name": "events_root_size3_duplicated_last_leaf", "size": 3, "root": bitcoin_root(hashes[:3]).hex(),
         "description": "Root built Bitcoin-style, pairing an odd last node with a copy of itself."},
        {"name": "events_root_size4_no_domain_prefixes", "size": 4, "root": unprefixed_root(hashes[:4]).hex(),
         "description": "Root built without the 0x00 leaf and 0x01 node prefixes."},
        {"name": "events_root_size4_swapped_leaves_0_1", "size": 4, "root": merkle_root(swapped).hex(),
         "description": "Root over events 0 and 1 in swapped order."},
        {"name": "events_root_size0_zero_hash", "size": 0, "root": "00" * 32,
         "description": "An empty execution's root given as 32 zero bytes instead of SHA-256 of nothing."},
        {"name": "events_root_size1_unhashed_leaf", "size": 1, "root": hashes[0].hex(),
         "description": "A one-event root given as the event hash itself, without the leaf hash."},
    ]
    return {
        "kind": "events_root",
        "description": (
            "The seal's events_root (DESIGN §4, RFC 6962 §2.1): the Merkle root over the first `size` "
            "event hashes, leaf = SHA-256(0x00 || event hash), node = SHA-256(0x01 || left || right), "
            "split at the largest power of two below size; SHA-256 of nothing for size 0. Each "
            "`negative` root is wrong for its size and must not verify."
        ) + RECOMPUTE_NOTE,
        "generator": GENERATOR,
        "leaves": leaves,
        "roots": roots,
        "negative": negative,
    }


# --- files ------------------------------------------------------------------------------------


def _visible(ch: str) -> str:
    if ch == "\x7f":
        return "\\u007f"
    if ch.isascii() or unicodedata.category(ch)[0] not in "CZ":
        return ch
    units = ch.encode("utf-16-be")  # an astral character becomes its surrogate pair
    return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))


def _dump(obj: dict[str, Any]) -> str:
    # Readable UTF-8, except characters an editor would hide or mangle (DEL, C1 controls,
    # format and private-use characters, noncharacters, separators): those are written as
    # \u escapes. They only ever occur inside JSON strings, where the escape means the same.
    return "".join(map(_visible, json.dumps(obj, indent=2, ensure_ascii=False))) + "\n"


def generate() -> dict[str, str]:
    """Every vector file, as {path relative to tests/vectors: text}."""
    files = {
        "canonical_json.json": _dump(canonical_vectors()),
        "event_hashes.json": _dump(event_hash_vectors()),
        "events_root.json": _dump(events_root_vectors()),
    }
    for name, obj in chain_vectors().items():
        files[f"chain/{name}.json"] = _dump(obj)
    return files


def check(out: Path) -> list[str]:
    """The generated files that are missing or differ on disk."""
    problems = []
    for rel, text in generate().items():
        path = out / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel}: differs from a fresh run")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="regenerate in memory; exit 1 on any difference")
    parser.add_argument("--out", type=Path, default=VECTORS, help="vector directory (default: tests/vectors)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print(f"{len(problems)} vector file(s) stale: run python3 {GENERATOR}", file=sys.stderr)
            return 1
        print("vectors are current")
        return 0
    for rel, text in generate().items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
