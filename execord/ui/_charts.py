"""The overview's charts, drawn on the server as SVG: no chart library, no script.

Each chart is labelled for screen readers (``role="img"`` with a title and a description)
and the page shows the same figures as a table beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

STATUS_ORDER = ("succeeded", "running", "awaiting_approval", "failed", "halted", "cancelled", "interrupted")


def _when(us: int, bucket_us: int) -> str:
    t = datetime.fromtimestamp(us / 1e6, UTC)
    return t.strftime("%H:%M") if bucket_us < 86_400_000_000 else t.strftime("%b %d")


def status_bars(buckets: Sequence[tuple[int, str, int]], *, since_us: int, bucket_us: int, count: int) -> Markup:
    """Stacked bars: executions started per time bucket, by status."""
    per: list[dict[str, int]] = [{} for _ in range(count)]
    for start, status, n in buckets:
        i = (start - since_us) // bucket_us
        if 0 <= i < count:
            per[i][status] = per[i].get(status, 0) + n
    top = max([sum(b.values()) for b in per] + [1])
    w, h, left, bottom = 1000, 200, 36, 22
    bw = (w - left) / count
    parts = [f'<svg viewBox="0 0 {w} {h + bottom}" class="chart" role="img" aria-labelledby="sb-t sb-d">',
             '<title id="sb-t">Executions started over time, by status</title>',
             f'<desc id="sb-d">{sum(n for _, _, n in buckets)} executions in {count} intervals; '
             f'the busiest interval has {top}. The table below lists the same counts.</desc>']
    for frac in (0, 0.5, 1):
        y = h - frac * (h - 10)
        parts.append(f'<line x1="{left}" x2="{w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" class="axis" text-anchor="end">{round(top * frac)}</text>')
    for i, b in enumerate(per):
        x = left + i * bw
        y = float(h)
        for status in STATUS_ORDER:
            n = b.get(status, 0)
            if not n:
                continue
            bh = n / top * (h - 10)
            y -= bh
            label = f"{_when(since_us + i * bucket_us, bucket_us)}: {n} {status}"
            parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" '
                         f'class="s-{status}"><title>{escape(label)}</title></rect>')
        if count <= 12 or i % max(1, count // 8) == 0:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{h + 16}" class="axis" text-anchor="middle">'
                         f'{_when(since_us + i * bucket_us, bucket_us)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def hbars(rows: Sequence[dict[str, Any]], *, label: Callable[[dict[str, Any]], str], value: str,
          fmt: Callable[[int], str], title: str, ident: str) -> Markup:
    """Horizontal bars, one per row, longest first as given."""
    rows = [r for r in rows if r.get(value)][:10]
    if not rows:
        return Markup("")
    top = max(int(r[value]) for r in rows) or 1
    w, rh, left = 1000, 24, 220
    h = rh * len(rows) + 4
    parts = [f'<svg viewBox="0 0 {w} {h}" class="chart" role="img" aria-labelledby="{ident}-t">',
             f'<title id="{ident}-t">{escape(title)}</title>']
    for i, r in enumerate(rows):
        y = 2 + i * rh
        bw = int(r[value]) / top * (w - left - 110)
        name = label(r)
        short = name if len(name) <= 30 else name[:29] + "…"
        parts.append(f'<text x="{left - 8}" y="{y + 16}" class="axis" text-anchor="end">{escape(short)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{max(bw, 1):.1f}" height="{rh - 8}" class="bar">'
                     f'<title>{escape(name)}: {escape(fmt(int(r[value])))}</title></rect>'
                     f'<text x="{left + bw + 6:.1f}" y="{y + 16}" class="axis">{escape(fmt(int(r[value])))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
