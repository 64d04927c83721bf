"""Timestamps: RFC 3339, UTC, microseconds, ``Z`` suffix."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

# (second, "YYYY-MM-DDTHH:MM:SS") swapped as one tuple so threads never see half an update.
_cache: tuple[int | None, str] = (None, "")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def format_ts(epoch_us: int) -> str:
    """Format microseconds since the Unix epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    >>> format_ts(0)
    '1970-01-01T00:00:00.000000Z'
    >>> format_ts(1_700_000_000_123_456)
    '2023-11-14T22:13:20.123456Z'
    """
    global _cache
    sec, us = divmod(epoch_us, 1_000_000)
    cached_sec, prefix = _cache
    if sec != cached_sec:  # formatting the date part once a second is most of the win
        t = time.gmtime(sec)
        # Formatted by hand: strftime("%Y") does not zero-pad years before 1000.
        prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        _cache = (sec, prefix)
    return f"{prefix}.{us:06d}Z"


def now_us() -> int:
    """Microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def now_ts() -> str:
    """The current time as an event timestamp."""
    return format_ts(now_us())


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime.

    >>> parse_ts("2023-11-14T22:13:20.123456Z").microsecond
    123456
    """
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def ts_to_us(text: str) -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp."""
    return (parse_ts(text) - _EPOCH) // _ONE_US  # exact integer arithmetic, no float
