"""RFC 8785 (JSON Canonicalization Scheme) serialization.

`canonical_json` is the one function every hash in Execord is computed over. It has a fast
path through orjson and falls back to the reference `rfc8785` package; the two produce
byte-identical output (property-tested in tests/test_canonical.py).

Where orjson and JCS differ, and how the fast path closes each gap:

- floats: JCS prints ECMAScript Number::toString (``1.0`` → ``1``, ``1e16`` →
  ``10000000000000000``, ``-0.0`` → ``0``); orjson prints ``1.0`` and ``1e+16``. The fast
  path formats each float itself (`format_float`) and splices the bytes in with
  ``orjson.Fragment``; NaN and infinities go to the reference path, which refuses them.
- integers: JCS (I-JSON) refuses magnitudes above 2**53 - 1; orjson with
  OPT_STRICT_INTEGER raises for them, which sends the value to the reference path, which
  raises the reference error.
- key order: JCS sorts by UTF-16 code units, orjson by code points. They agree unless a
  key holds a character above U+FFFF, so such keys go to the reference path.
- anything that is not dict, list, str, int, float, bool or None (tuples, subclasses,
  enums) goes to the reference path, so the reference decides how (or whether) it
  serializes.
- nesting: orjson stops at 255 levels, and so does the scan, which also keeps a
  self-referencing value from looping forever: it goes to the reference path, which raises
  RecursionError as ``rfc8785.dumps`` does.

Whatever orjson refuses goes to the reference path as the caller gave it, never with the
float fragments spliced in (the reference cannot serialize those).
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import rfc8785

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_SUBCLASS
_Fragment = orjson.Fragment
_SAFE = 2**53
_MAX_DEPTH = 255  # orjson's own limit: deeper values go to the reference path anyway


class _NotPlain(Exception):
    pass


def format_float(f: float) -> bytes:
    """A finite float as ECMAScript Number::toString prints it (ECMA-262 §6.1.6.1.20).

    RFC 8785 §3.2.2.3 requires this form. Python's ``repr`` already gives the shortest
    digits that round-trip, which is what the ECMAScript algorithm selects; only the layout
    (where the point goes, when to use an exponent) differs.

    >>> [format_float(x) for x in (1.0, 1e16, 1e21, 1e-7, 0.000001, -2.5, 123.456e5)]
    [b'1', b'10000000000000000', b'1e+21', b'1e-7', b'0.000001', b'-2.5', b'12345600']
    """
    if f == 0:
        return b"0"
    if f.is_integer() and -_SAFE < f < _SAFE:
        return str(int(f)).encode()
    text = repr(f)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp = text.partition("e")
    point = mantissa.find(".")
    whole = mantissa.replace(".", "")
    int_len = point if point >= 0 else len(mantissa)
    digits = whole.lstrip("0")
    # value = 0.<digits> × 10**n, with digits free of leading and trailing zeros
    n = int_len - (len(whole) - len(digits)) + (int(exp) if exp else 0)
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e > 0 else "e-") + str(abs(e))
    return (sign + out).encode()


def _scan(obj: Any, max_depth: int = _MAX_DEPTH) -> bool:
    """Check that ``obj`` is plain JSON for the fast path; True when it holds a float.

    ``max_depth`` bounds the nesting: the root container is at depth 1.
    """
    # An explicit stack beats recursion here: it is the hot path of every event. Containers
    # carry their depth, so a self-referencing value stops at _MAX_DEPTH instead of looping.
    stack = [(obj, 1)]
    pop = stack.pop
    push = stack.append
    floats = False
    while stack:
        o, depth = pop()
        t = type(o)
        if t is str or t is int or t is bool or o is None:
            continue
        if t is float:
            if not math.isfinite(o):
                raise _NotPlain
            floats = True
            continue
        if depth > max_depth:
            raise _NotPlain
        depth += 1
        if t is dict:
            for k, v in o.items():
                if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                    raise _NotPlain
                tv = type(v)
                if tv is str or tv is int or tv is bool or v is None:
                    continue
                push((v, depth))
        elif t is list:
            for v in o:
                tv = type(v)
                if tv is str or tv is int or tv is bool or v is None:
                    continue
                push((v, depth))
        else:
            raise _NotPlain
    return floats


def _with_fragments(o: Any) -> Any:
    """``o`` with every float replaced by its JCS bytes; containers without one are reused."""
    t = type(o)
    if t is float:
        return _Fragment(format_float(o))
    if t is dict:
        new = None
        for k, v in o.items():
            tv = type(v)
            if tv is float or tv is dict or tv is list:
                nv = _with_fragments(v)
                if nv is not v:
                    if new is None:
                        new = dict(o)
                    new[k] = nv
        return o if new is None else new
    if t is list:
        items = [_with_fragments(v) for v in o]
        return o if all(a is b for a, b in zip(items, o, strict=True)) else items
    return o


def canonical_json(obj: Any) -> bytes:
    """Serialize ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Args:
        obj: JSON-compatible data: dict with str keys, list, str, int, float, bool, None.

    Returns:
        The canonical bytes: sorted keys (UTF-16 code-unit order), no whitespace,
        ECMAScript number formatting.

    Raises:
        rfc8785.CanonicalizationError: (or a subclass) for values JCS cannot represent:
            NaN, infinities, integers beyond ±(2**53 - 1), non-str keys, other types.

    >>> canonical_json({"b": 1, "a": [True, None, "é", 2.50]})
    b'{"a":[true,null,"\\xc3\\xa9",2.5],"b":1}'
    """
    try:
        if _scan(obj):
            # A new name: the fallback below must get the caller's value, not the fragments.
            return orjson.dumps(_with_fragments(obj), option=_OPTS)
        return orjson.dumps(obj, option=_OPTS)
    except (_NotPlain, orjson.JSONEncodeError):
        return rfc8785.dumps(obj)


def canonical_plain(obj: Any, max_depth: int = _MAX_DEPTH) -> bytes | None:
    """`canonical_json` of ``obj`` when it is plain JSON nested at most ``max_depth``
    containers deep (the root container counts 1); None otherwise, without trying the
    reference path.

    Plain: dicts (str keys at or below U+FFFF), lists, str, bool, None, finite floats and
    ints within ±(2**53 - 1), of exactly these types. For such a value the bytes are the
    ones `canonical_json` gives; a caller that would convert other values first (tuples to
    lists, say) converts only when this returns None.
    """
    try:
        if _scan(obj, max_depth):
            return orjson.dumps(_with_fragments(obj), option=_OPTS)
        return orjson.dumps(obj, option=_OPTS)
    except (_NotPlain, orjson.JSONEncodeError):
        return None


def is_plain(obj: Any, max_depth: int = _MAX_DEPTH) -> bool:
    """True when `canonical_plain` takes ``obj`` (see there for what plain means)."""
    stack = [(obj, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        o, depth = pop()
        t = type(o)
        if t is str or t is bool or o is None:
            continue
        if t is int:
            if -_SAFE < o < _SAFE:
                continue
            return False
        if t is float:
            if math.isfinite(o):
                continue
            return False
        if depth > max_depth:
            return False
        depth += 1
        if t is dict:
            for k, v in o.items():
                if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                    return False
                push((v, depth))
        elif t is list:
            for v in o:
                push((v, depth))
        else:
            return False
    return True


def _attrs_fast(attrs: Any) -> Any:
    """``attrs`` ready for orjson: itself, or a copy with its floats as JCS fragments."""
    if type(attrs) is not dict:
        raise _NotPlain
    floats = None
    for k, v in attrs.items():
        if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
            raise _NotPlain
        tv = type(v)
        if tv is str or tv is int or tv is bool or v is None:
            continue
        if tv is float:
            if not math.isfinite(v):
                raise _NotPlain
        elif not _scan(v):
            continue
        floats = [k] if floats is None else [*floats, k]
    if floats is None:
        return attrs
    patched = dict(attrs)
    for k in floats:
        patched[k] = _with_fragments(attrs[k])
    return patched


def canonical_event(envelope: dict[str, Any], attrs: Any, *, plain: bool = False) -> bytes:
    """``canonical_json({**envelope, "attrs": attrs})``, scanning only ``attrs``.

    The event's hot path: `build_event` makes the envelope itself, so only the attrs can
    hold values the fast path must divert.

    Args:
        envelope: the event without ``attrs``. Precondition: ASCII keys, and values that are
            str, None, or int within ±(2**53 - 1).
        attrs: the event's attrs (any JSON value).
        plain: the caller guarantees ``attrs`` holds only dicts with keys at or below
            U+FFFF, lists, str, bool, None and ints (no floats, no other types), so the scan
            is skipped; integers beyond ±(2**53 - 1) still divert to the reference.
    """
    try:
        fast = dict(envelope)
        fast["attrs"] = attrs if plain else _attrs_fast(attrs)
        return orjson.dumps(fast, option=_OPTS)
    except (_NotPlain, orjson.JSONEncodeError):
        full = dict(envelope)
        full["attrs"] = attrs
        return rfc8785.dumps(full)


CanonicalizationError = rfc8785.CanonicalizationError
