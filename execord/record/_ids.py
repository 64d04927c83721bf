"""UUIDv7 identifiers (RFC 9562 §5.7), monotonic within one process."""

from __future__ import annotations

import os
import random
import re
import threading
import time

# Ids need uniqueness, not secrecy: a PRNG seeded from the OS once per process (and again in
# a forked child) saves two getrandom() system calls per id, which are dear in sandboxes.
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))
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
            _counter = _rng.getrandbits(11)  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand_b = _rng.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: A lowercase hyphenated UUID, as a regular expression (also the API's path and field patterns).
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(UUID_PATTERN)


def is_uuid(text: str) -> bool:
    """True when ``text`` is a lowercase hyphenated UUID string (ASCII hex digits only).

    >>> is_uuid("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"), is_uuid("+17f22e2-79b0-7cc3-98c4-dc0c0c07398f")
    (True, False)
    """
    return type(text) is str and _UUID.fullmatch(text) is not None
