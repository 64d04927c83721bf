"""RFC 8785 (JSON Canonicalization Scheme) serialization.

`canonical_json` is the one function every hash in Execord is computed over. It has a fast
path through orjson and falls back to the reference `rfc8785` package; the two produce
byte-identical output (property-tested in tests/test_canonical.py).

Where orjson and JCS differ, and how the fast path avoids each difference:

- floats: JCS prints ECMAScript Number.toString (``1.0`` → ``1``, ``1e16`` →
  ``10000000000000000``, ``-0.0`` → ``0``); orjson prints ``1.0`` and ``1e+16``. Any float
  sends the value to the reference path.
- integers: JCS (I-JSON) refuses magnitudes above 2**53 - 1; orjson with
  OPT_STRICT_INTEGER raises for them, which sends the value to the reference path, which
  raises the reference error.
- key order: JCS sorts by UTF-16 code units, orjson by code points. They agree unless a
  key holds a character above U+FFFF, so such keys go to the reference path.
- anything that is not dict, list, str, int, bool or None (tuples, subclasses, enums) goes
  to the reference path, so the reference decides how (or whether) it serializes.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_SUBCLASS


class _NotPlain(Exception):
    pass


# orjson refuses to nest deeper than 255 containers (it raises, and we fall back anyway).
# Stopping the walk there too is what keeps a self-referencing value from looping forever:
# it goes to the reference path, which raises RecursionError like rfc8785.dumps does.
_MAX_DEPTH = 255


def _check(obj: Any) -> None:
    # An explicit stack beats recursion here: it is the hot path of every event.
    # Containers are pushed with their depth; scalars are skipped without a push.
    stack = [(obj, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        o, depth = pop()
        t = type(o)
        if t is str or t is int or t is bool or o is None:
            continue
        if depth > _MAX_DEPTH:
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

    >>> canonical_json({"b": 1, "a": [True, None, "é"]})
    b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
    >>> canonical_json(1.0)
    b'1'
    """
    try:
        _check(obj)
        return orjson.dumps(obj, option=_OPTS)
    except (_NotPlain, orjson.JSONEncodeError):
        return rfc8785.dumps(obj)


CanonicalizationError = rfc8785.CanonicalizationError
