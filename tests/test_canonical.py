"""canonical_json against RFC 8785: the reference `rfc8785` package, and hand-picked bytes.

The fast path (orjson) must give the reference's bytes for every JSON value, and must fail
where the reference fails (DESIGN §4).
"""

from __future__ import annotations

import json
import math
import struct
import sys
import threading
from collections import OrderedDict
from enum import IntEnum

import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from execord.record import CanonicalizationError, Status, _canonical, canonical_json

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(SETTINGS, max_examples=50)

SAFE_MIN, SAFE_MAX = -(2**53) + 1, 2**53 - 1


def _bits(hex_: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_))[0]


def _nest(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# --- strategies -------------------------------------------------------------------------

# No lone surrogates: they are not Unicode scalar values (tested separately below).
any_char = st.characters(codec="utf-8")
tricky_char = st.one_of(
    st.characters(max_codepoint=0x1F),  # control characters
    st.sampled_from('"\\/\x7f\u2028\u2029\ufeff\uffff'),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),  # sorts after astral in UTF-16
    st.characters(min_codepoint=0x10000),  # astral plane: a surrogate pair in UTF-16
    st.characters(min_codepoint=0x80, max_codepoint=0x7FF),
)
texts = st.text(st.one_of(any_char, tricky_char), max_size=12)
keys = st.one_of(
    texts,
    # Keys that order differently by code point and by UTF-16 code unit.
    st.sampled_from(["\ue000", "\U0001f600", "\uffff", "\U00010000", "\ufb33", "a\U0001f600", "a\ue000"]),
)

finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # includes -0.0 and subnormals
    st.integers(0, 2**64 - 1)  # every bit pattern, uniformly over exponents
    .map(lambda b: struct.unpack(">d", b.to_bytes(8, "big"))[0])
    .filter(math.isfinite),
    st.floats(min_value=5e-324, max_value=2.2250738585072014e-308),  # subnormals
    st.floats(min_value=1e20, max_value=1e22),  # around the 1e21 switch to exponent form
    st.floats(min_value=1e-8, max_value=1e-5),  # around the 1e-7 switch
    st.integers(-(2**70), 2**70).map(float),  # integral floats
    st.sampled_from([
        -0.0, 0.0, 1e21, -1e21, math.nextafter(1e21, 0), math.nextafter(1e21, math.inf),
        1e-7, math.nextafter(1e-7, 0), 1e-6, 5e-324, -5e-324, sys.float_info.max,
        2.0**53, 2.0**53 + 2, 0.1, 1 / 3,
    ]),
)
safe_ints = st.one_of(st.integers(SAFE_MIN, SAFE_MAX), st.sampled_from([SAFE_MIN, SAFE_MAX, 0, -1]))
unsafe_ints = st.one_of(
    st.integers(min_value=2**53), st.integers(max_value=-(2**53)),
    st.sampled_from([2**53, -(2**53), 2**63, -(2**63), 2**64, -(2**64) - 1, 10**30]),
)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, texts)


def trees(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=30,
    )


json_trees = trees(scalars)
plain_trees = trees(st.one_of(st.none(), st.booleans(), safe_ints, texts))  # the orjson path


def _outcome(fn, obj):
    try:
        return ("ok", fn(obj))
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return ("raise", type(exc))


# --- properties -------------------------------------------------------------------------


@SETTINGS
@given(json_trees)
def test_any_json_tree_is_byte_identical_to_rfc8785(obj):
    assert canonical_json(obj) == rfc8785.dumps(obj)


@SETTINGS
@given(plain_trees)
def test_plain_trees_on_the_fast_path_are_byte_identical(obj):
    assert canonical_json(obj) == rfc8785.dumps(obj)


@settings(max_examples=500, deadline=None)
@given(finite_floats)
@example(-0.0)
@example(5e-324)
@example(1e21)
@example(math.nextafter(1e21, 0))
def test_every_finite_float_is_byte_identical(f):
    assert canonical_json(f) == rfc8785.dumps(f)
    assert canonical_json([f, {"f": f}]) == rfc8785.dumps([f, {"f": f}])


@SETTINGS
@given(texts)
def test_strings_and_keys_are_byte_identical(s):
    assert canonical_json(s) == rfc8785.dumps(s)
    assert canonical_json({s: s}) == rfc8785.dumps({s: s})


@SETTINGS
@given(st.dictionaries(keys, st.integers(0, 9), max_size=12))
def test_keys_sort_by_utf16_code_units(d):
    out = canonical_json(d)
    assert out == rfc8785.dumps(d)
    got_keys = list(json.loads(out))
    assert got_keys == sorted(d, key=lambda k: k.encode("utf-16-be"))


@SETTINGS
@given(safe_ints)
def test_safe_integers_are_byte_identical(n):
    assert canonical_json(n) == rfc8785.dumps(n) == str(n).encode()


@FEW
@given(unsafe_ints, json_trees)
def test_integers_beyond_2_53_raise_like_the_reference(n, tree):
    for obj in (n, [tree, n], {"a": tree, "n": n}, {"deep": [[{"x": n}]]}):
        with pytest.raises(rfc8785.CanonicalizationError) as ref:
            rfc8785.dumps(obj)
        with pytest.raises(rfc8785.CanonicalizationError) as ours:
            canonical_json(obj)
        assert type(ours.value) is type(ref.value) is rfc8785.IntegerDomainError


@FEW
@given(st.sampled_from([math.nan, math.inf, -math.inf]), json_trees)
def test_nan_and_infinities_raise_like_the_reference(bad, tree):
    for obj in (bad, [tree, bad], {"a": tree, "z": {"bad": bad}}):
        with pytest.raises(rfc8785.CanonicalizationError) as ref:
            rfc8785.dumps(obj)
        with pytest.raises(rfc8785.CanonicalizationError) as ours:
            canonical_json(obj)
        assert type(ours.value) is type(ref.value) is rfc8785.FloatDomainError


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 600), st.lists(st.booleans(), min_size=1, max_size=8), scalars)
def test_deep_nesting_is_byte_identical(depth, shape, leaf):
    # 600 levels: beyond orjson's 255-level limit, within the reference's recursion.
    obj = leaf
    for i in range(depth):
        obj = [obj] if shape[i % len(shape)] else {"k": obj}
    assert canonical_json(obj) == rfc8785.dumps(obj)


def _parse_int_as_ijson(text: str) -> int | float:
    # I-JSON numbers are doubles: an integer past 2**53 can only have come from a float.
    n = int(text)
    return n if SAFE_MIN <= n <= SAFE_MAX else float(n)


@FEW
@given(json_trees)
def test_output_is_utf8_and_a_fixed_point(obj):
    out = canonical_json(obj)
    text = out.decode("utf-8")  # strict: raises on anything that is not UTF-8
    assert canonical_json(json.loads(text, parse_int=_parse_int_as_ijson)) == out


@SETTINGS
@given(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.booleans())
def test_lone_surrogates_raise_like_the_reference(ch, as_key):
    obj = {ch: 1} if as_key else ["x", ch]
    assert _outcome(canonical_json, obj) == _outcome(rfc8785.dumps, obj)
    assert _outcome(canonical_json, obj)[0] == "raise"


# --- hand-picked cases ------------------------------------------------------------------

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[b for b, _ in APPENDIX_B])
def test_rfc8785_appendix_b_numbers(bits, expected):
    assert canonical_json(_bits(bits)) == expected.encode()
    assert canonical_json({"n": [_bits(bits)]}) == b'{"n":[' + expected.encode() + b"]}"


class Level(IntEnum):
    HIGH = 3


CASES = [
    ("empty object", {}, b"{}"),
    ("empty array", [], b"[]"),
    ("empty string", "", b'""'),
    ("null", None, b"null"),
    ("true", True, b"true"),
    ("false", False, b"false"),
    ("bool is not int", [True, 1, False, 0], b"[true,1,false,0]"),
    ("nested empties", {"a": {}, "b": [[], {}]}, b'{"a":{},"b":[[],{}]}'),
    ("keys sorted", {"b": 1, "a": 2, "aa": 3, "A": 4}, b'{"A":4,"a":2,"aa":3,"b":1}'),
    ("nested keys sorted", [{"z": {"y": 1, "x": 2}}], b'[{"z":{"x":2,"y":1}}]'),
    ("integral float", 1.0, b"1"),
    ("negative zero", -0.0, b"0"),
    ("1e16 float", 1e16, b"10000000000000000"),
    ("1e20 float", 1e20, b"100000000000000000000"),
    ("1e21 float", 1e21, b"1e+21"),
    ("1e-7 float", 1e-7, b"1e-7"),
    ("0.1", 0.1, b"0.1"),
    ("4.50", 4.50, b"4.5"),
    ("max safe int", SAFE_MAX, b"9007199254740991"),
    ("min safe int", SAFE_MIN, b"-9007199254740991"),
    ("2**53 as float", 2.0**53, b"9007199254740992"),
    ("short escapes", "\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
    ("other controls", "\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
    ("quote and backslash", '"\\', b'"\\"\\\\"'),
    ("solidus not escaped", "/", b'"/"'),
    ("DEL and separators raw", "\x7f\u2028\u2029", '"\x7f\u2028\u2029"'.encode()),
    ("non-ASCII raw UTF-8", "é€😀", '"é€😀"'.encode()),
    ("astral key before U+E000 key", {"\ue000": 1, "😀": 2}, '{"😀":2,"\ue000":1}'.encode()),
    ("U+FFFF key after astral key", {"\uffff": 1, "\U00010000": 2}, '{"\U00010000":2,"\uffff":1}'.encode()),
    (
        "RFC 8785 §3.2.3 sorting example",
        {
            "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        },
        (
            '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
            '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
            '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
        ).encode(),
    ),
    (
        "RFC 8785 §3.2.4 example",
        json.loads(
            '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
            ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            ' "literals": [null, true, false]}'
        ),
        (
            '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        ).encode(),
    ),
    ("tuple is an array", (1, "a"), b'[1,"a"]'),
    ("StrEnum is its value", {"status": Status.FAILED}, b'{"status":"failed"}'),
    ("IntEnum is its value", [Level.HIGH], b"[3]"),
    ("OrderedDict sorted too", OrderedDict([("b", 1), ("a", 2)]), b'{"a":2,"b":1}'),
    ("float 300 levels deep", _nest(300, 1.5), b"[" * 300 + b"1.5" + b"]" * 300),
    ("floats in shared containers", [[0.5]] * 2, b"[[0.5],[0.5]]"),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_picked_cases(obj, expected):
    assert canonical_json(obj) == expected
    assert rfc8785.dumps(obj) == expected  # the table itself agrees with the reference


REJECTED = [
    ("NaN", math.nan, rfc8785.FloatDomainError),
    ("inf", math.inf, rfc8785.FloatDomainError),
    ("-inf in object", {"a": -math.inf}, rfc8785.FloatDomainError),
    ("2**53", 2**53, rfc8785.IntegerDomainError),
    ("-(2**53)", -(2**53), rfc8785.IntegerDomainError),
    ("2**64 nested", [{"a": 2**64}], rfc8785.IntegerDomainError),
    ("2**53 beside a float", {"f": 1.5, "n": 2**53}, rfc8785.IntegerDomainError),
    ("lone surrogate beside a float", [0.5, "\udfff"], rfc8785.CanonicalizationError),
    ("int key", {1: "a"}, rfc8785.CanonicalizationError),
    ("bytes value", {"a": b"x"}, rfc8785.CanonicalizationError),
    ("set value", [{1}], rfc8785.CanonicalizationError),
    ("lone surrogate value", ["\ud800"], rfc8785.CanonicalizationError),
]


@pytest.mark.parametrize(("obj", "error"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_rejected_values_raise_canonicalization_errors(obj, error):
    with pytest.raises(error):
        rfc8785.dumps(obj)
    with pytest.raises(error):
        canonical_json(obj)


def test_canonicalization_error_is_the_reference_class():
    assert CanonicalizationError is rfc8785.CanonicalizationError


def _in_thread(fn, timeout=20.0):
    result: list = []

    def run():
        result.append(_outcome(fn, None))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "canonical_json did not return (it loops on this value)"
    return result[0]


@pytest.mark.parametrize("shape", ["list", "dict", "fan-out"])
def test_self_referencing_values_raise_instead_of_looping(shape):
    if shape == "list":
        obj: object = []
        obj.append(obj)
    elif shape == "dict":
        obj = {}
        obj["self"] = obj
    else:
        obj = []
        obj.extend([obj, obj, {"again": obj}])
    assert _outcome(rfc8785.dumps, obj) == ("raise", RecursionError)
    assert _in_thread(lambda _: canonical_json(obj)) == ("raise", RecursionError)


def test_a_typical_event_takes_the_fast_path(monkeypatch):
    # If the fast path silently stopped being taken, everything would still be correct and
    # several times slower; this catches that.
    event = {
        "v": 1, "execution_id": "017f22e2-79b0-7cc3-98c4-dc0c0c07398f", "seq": 3,
        "type": "step.ended", "ts": "2023-11-14T22:13:20.000003Z", "step_id": "s1",
        "prev_hash": "00" * 32,
        "attrs": {"status": "ok", "output": {"$blob": "sha256:" + "ab" * 32, "size": 9, "type": "json"},
                  "error": None, "usage": {"input_tokens": 10, "output_tokens": 2}, "cost_micros": 42,
                  "price_source": "genai-prices", "latency_ms": 812, "tags": ["a", "é", "😀"],
                  "params": {"temperature": 0.7, "top_p": 1.0, "scores": [1e21, 5e-324, -0.0]}},
    }
    expected = rfc8785.dumps(event)

    def boom(obj):
        raise AssertionError("took the reference path")

    monkeypatch.setattr(_canonical.rfc8785, "dumps", boom)
    assert canonical_json(event) == expected


@pytest.mark.parametrize(
    "obj",
    [{"😀": 1}, {"k": {"\U00010000": None}}, (1,), {"s": Status.RUNNING}, 2**53, [1.5, 2**53],
     [math.nan], _nest(300, 1.5)],
    ids=["astral key", "nested astral key", "tuple", "StrEnum", "big int", "float and big int", "NaN",
         "300 levels"],
)
def test_values_orjson_would_get_wrong_take_the_reference_path(monkeypatch, obj):
    seen = []
    real = rfc8785.dumps

    def spy(o):
        seen.append(o)
        return real(o)

    monkeypatch.setattr(_canonical.rfc8785, "dumps", spy)
    _outcome(canonical_json, obj)
    assert len(seen) == 1 and seen[0] is obj  # the caller's value, not a rewritten copy



# -- the event hot path ---------------------------------------------------------------------

_ENVELOPE = {
    "v": 1, "execution_id": "017f22e2-79b0-7cc3-98c4-dc0c0c07398f", "seq": 7, "type": "log",
    "ts": "2023-11-14T22:13:20.000003Z", "prev_hash": "ab" * 32, "step_id": "s-1",
}


@given(st.one_of(json_trees, st.dictionaries(keys, json_trees, max_size=6)))
def test_canonical_event_equals_canonical_json_of_the_whole_event(attrs):
    from execord.record._canonical import canonical_event

    whole = {**_ENVELOPE, "attrs": attrs}
    assert _outcome(lambda o: canonical_event(_ENVELOPE, attrs), None) == _outcome(canonical_json, whole)
