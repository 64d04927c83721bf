"""How figures are shown to people, the same in the CLI's tables and the viewer's pages.

Imports nothing, so the CLI's fastest paths (``execord verify BUNDLE``) can use it.
"""

from __future__ import annotations


def fmt_duration(ms: int | None) -> str:
    """1234 → '1.2s'; None → '-'."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_cost(micros: int | None) -> str:
    """Micro-USD as dollars, to the micro-dollar: 1234 → '$0.001234', 2_500_000 → '$2.50'."""
    if micros is None:
        return "-"
    dollars, rest = divmod(micros, 1_000_000)
    if rest % 10_000 == 0:
        return f"${dollars}.{rest // 10_000:02d}"
    return f"${dollars}.{rest:06d}".rstrip("0")
