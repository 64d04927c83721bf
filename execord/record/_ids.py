"""UUIDv7 identifiers (RFC 9562 §5.7), monotonic within one process."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """A new UUIDv7 as a lowercase hyphenated string.

    The first 48 bits are the Unix time in milliseconds, so ids sort by creation time.
    Within one millisecond the 12-bit ``rand_a`` field is a counter seeded at random
    (RFC 9562 §6.2, method 1), so ids made by one process are strictly increasing.

    >>> a, b = uuid7(), uuid7()
    >>> a < b and len(a) == 36 and a[14] == "7"
    True
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(text: str) -> bool:
    """True when ``text`` is a lowercase hyphenated UUID string."""
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return False
    try:
        int(text.replace("-", ""), 16)
    except ValueError:
        return False
    return text == text.lower()
