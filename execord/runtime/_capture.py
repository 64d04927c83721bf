"""Turning arbitrary Python values into JSON for the record, without ever failing.

Values that JSON cannot hold are stored through a tagged fallback, so the agent never
crashes because of what it passed to a tool:

============================  =========================================================
value                         stored as
============================  =========================================================
dict / list / str / int /...  itself (keys that are not strings become strings)
tuple, set, frozenset         a list (sets sorted when their items allow it)
float NaN / ±inf              ``{"$type": "float", "value": "nan" | "inf" | "-inf"}``
int beyond ±(2**53 - 1)       ``{"$type": "int", "value": "<decimal digits>"}``
bytes / bytearray             ``{"$type": "bytes", "base64": "...", "size": n}``
datetime / date / time        ``{"$type": "datetime", "value": "<ISO 8601>"}`` (all three)
UUID, Decimal, Path           ``{"$type": "<class name, lowercased>", "value": "<text>"}``
Enum member                   ``{"$type": "<module.Class>", "value": <its value>}``
dataclass, pydantic model     ``{"$type": "<module.Class>", "value": {...fields...}}``
anything else                 ``{"$type": "<module.Class>", "repr": "<repr, ≤ 1000 chars>"}``
============================  =========================================================
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import math
import pathlib
import uuid
from typing import Any

from ..record import Blob, canonical_json, make_blob
from ..record._canonical import canonical_plain, is_plain

_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 64
# A plain value whose containers all sit at most this deep (the root at 1) is its own
# `to_jsonable` copy: to_jsonable replaces a container only below _MAX_DEPTH + 1 levels.
_PLAIN_DEPTH = _MAX_DEPTH + 1
_REPR_CHARS = 1000


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _repr(value: Any) -> dict[str, Any]:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the agent
        text = f"<repr failed: {type(exc).__name__}>"
    return {"$type": _type_name(value), "repr": text[:_REPR_CHARS]}


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``; see the module table for the fallbacks."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        return value if -_SAFE_INT <= value <= _SAFE_INT else {"$type": "int", "value": str(value)}
    if t is float:
        if math.isfinite(value):
            return value
        return {"$type": "float", "value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if _depth > _MAX_DEPTH:
        return {"$type": _type_name(value), "repr": "<nested too deep>"}
    d = _depth + 1
    if t is dict:
        return {k if type(k) is str else str(k): to_jsonable(v, d) for k, v in value.items()}
    if t is list or t is tuple:
        return [to_jsonable(v, d) for v in value]
    try:
        return _fallback(value, d)
    except Exception:
        return _repr(value)


def jsonable(value: Any) -> Any:
    """`to_jsonable`, without the copy: ``value`` itself when it is plain JSON already (the
    copy would be equal to it). The result is shared with the caller: read it, never change it."""
    return value if is_plain(value, _PLAIN_DEPTH) else to_jsonable(value)


def _fallback(value: Any, d: int) -> Any:
    if isinstance(value, enum.Enum):
        return {"$type": _type_name(value), "value": to_jsonable(value.value, d)}
    if isinstance(value, bool | str):
        return bool(value) if isinstance(value, bool) else str(value)
    if isinstance(value, int):
        return to_jsonable(int(value), d)
    if isinstance(value, float):
        return to_jsonable(float(value), d)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, d) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, d) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v, d) for v in value]
        try:
            items.sort()
        except TypeError:
            items.sort(key=repr)
        return items
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return {"$type": "bytes", "base64": base64.b64encode(raw[:65536]).decode(), "size": len(raw)}
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return {"$type": "datetime", "value": value.isoformat()}
    if isinstance(value, uuid.UUID | decimal.Decimal | pathlib.PurePath):
        return {"$type": type(value).__name__.lower(), "value": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_jsonable(getattr(value, f.name), d) for f in dataclasses.fields(value)}
        return {"$type": _type_name(value), "value": fields}
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump):
        return {"$type": _type_name(value), "value": to_jsonable(dump(mode="json"), d)}
    return _repr(value)


# The values most steps take or return; their blobs are made once.
_COMMON: dict[Any, Blob] = {}


def capture(value: Any, max_bytes: int) -> Blob:
    """The blob of a captured value: canonical JSON, truncated past ``max_bytes``."""
    if value is None or (type(value) is dict and not value):
        key = "null" if value is None else "{}"
        blob = _COMMON.get(key)
        if blob is None:
            blob = _COMMON[key] = make_blob(canonical_json(value), "json")
        return blob
    # Plain JSON (nearly every prompt and response) is canonicalized as it is: to_jsonable
    # would only copy it.
    data = canonical_plain(value, _PLAIN_DEPTH)
    if data is None:
        try:
            data = canonical_json(to_jsonable(value))
        except Exception:
            data = canonical_json(_repr(value))
    if len(data) > max_bytes:
        marker = {"$type": "truncated", "size": len(data), "head": data[: max_bytes // 2].decode("utf-8", "replace")}
        data = canonical_json(marker)
    return make_blob(data, "json")
