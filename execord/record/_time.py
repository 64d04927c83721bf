"""Timestamps: RFC 3339, UTC, microseconds, ``Z`` suffix."""

from __future__ import annotations

import time
from datetime import UTC, datetime

# (second, "YYYY-MM-DDTHH:MM:SS") swapped as one tuple so threads never see half an update.
_cache: tuple[int, str] = (-1, "")


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
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
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
    dt = parse_ts(text)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond
