"""What the viewer's pages show, computed from the store: the list's filters, the waterfall,
the content blobs with their redactions marked, and the diff of two governance versions."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
from markupsafe import Markup, escape

from .._format import fmt_duration
from ..errors import ExecordError
from ..record import Event, now_us, ts_to_us
from ..store import ExecutionFilter, blob_value, step_depths, steps_from_events
from ..store._query import decode_cursor, parse_labels, parse_when

STATUSES = ("running", "awaiting_approval", "succeeded", "failed", "halted", "cancelled", "interrupted")
FAILURE_CLASSES = ("policy_block", "approval", "approval_pending", "provider_failure", "connector_failure",
                   "logic_error", "cancelled", "interrupted")
TERMINAL = frozenset({"succeeded", "failed", "halted", "cancelled", "interrupted"})
FILTER_KEYS = ("status", "failure_class", "workflow", "agent", "since", "until", "label", "id")
PAGE_SIZES = (25, 50, 100, 200)


@dataclass
class ListQuery:
    """The executions list's filters as the URL gives them, and the store filter they make."""

    values: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    limit: int = 50
    error: str | None = None

    @classmethod
    def parse(cls, params: Any) -> ListQuery:
        """From the query string; a bad value becomes ``error`` (shown above an empty list)."""
        q = cls(values={k: str(params.get(k, "")).strip()[:256] for k in FILTER_KEYS if params.get(k)})
        q.cursor = params.get("cursor") or None
        try:
            q.limit = int(params.get("limit") or 50)
        except ValueError:
            q.limit = 50
        q.limit = q.limit if q.limit in PAGE_SIZES else 50
        return q

    def store_filter(self, project: str) -> ExecutionFilter | None:
        """The filter for the store (one row more than a page), or None with ``error`` set."""
        v = self.values
        try:
            status = v.get("status")
            if status and status not in STATUSES:
                raise ValueError(f"status {status!r} is not a status; pick one of the list")
            fc = v.get("failure_class")
            if fc and fc not in FAILURE_CLASSES:
                raise ValueError(f"failure class {fc!r} is unknown; pick one of the list")
            prefix = v.get("id", "").lower()
            if prefix and not re.fullmatch(r"[0-9a-f-]{1,36}", prefix):
                raise ValueError("an id prefix has only hex digits and dashes (e.g. 0193a2)")
            labels = [p.strip() for p in v.get("label", "").split(",") if p.strip()]
            return ExecutionFilter(
                statuses=[status] if status else None, workflow=v.get("workflow") or None,
                agent=v.get("agent") or None, failure_class=fc or None,
                since_us=parse_when(v["since"], option="since") if v.get("since") else None,
                until_us=parse_when(v["until"], option="until") if v.get("until") else None,
                labels=parse_labels(labels[:20]), id_prefix=prefix or None,
                before=decode_cursor(self.cursor) if self.cursor else None,
                limit=self.limit + 1, project=project,
            )
        except (ValueError, ExecordError) as exc:
            self.error = str(exc)
            return None

    def url(self, **changes: str | None) -> str:
        """This list's URL with some parameters changed (None removes one)."""
        params: dict[str, Any] = dict(self.values)
        if self.limit != 50:
            params["limit"] = str(self.limit)
        params.update(changes)
        kept = {k: v for k, v in params.items() if v}
        return "/ui/executions" + ("?" + urlencode(kept) if kept else "")


# -- the execution detail ---------------------------------------------------------------------

_REDACTED = re.compile(r"\[REDACTED:[A-Za-z0-9_.-]+\]")
MAX_SHOWN = 200_000  # characters of one content blob shown on the page (the export has it all)


def pretty(store: Any, value: Any) -> dict[str, Any]:
    """A content value as formatted JSON (or text) with redaction markers marked.

    Returns ``{"html", "erased", "truncated", "redactions", "digest"}``.
    """
    digest = value.get("$blob") if isinstance(value, dict) else None
    try:
        plain = blob_value(store, value)
    except ExecordError:
        plain = {"$missing": digest}
    erased = isinstance(plain, dict) and set(plain) == {"$erased"}
    text = plain if isinstance(plain, str) else orjson.dumps(plain, option=orjson.OPT_INDENT_2).decode()
    truncated = len(text) > MAX_SHOWN
    text = text[:MAX_SHOWN]
    out, last, count = [], 0, 0
    for m in _REDACTED.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(Markup('<mark class="redacted" title="redacted before it was recorded">{}</mark>').format(m.group()))
        last, count = m.end(), count + 1
    out.append(escape(text[last:]))
    return {"html": Markup("").join(out), "erased": erased, "truncated": truncated, "redactions": count,
            "digest": digest}


@dataclass
class Bar:
    """One step of the waterfall: where its bar starts and how wide it is, in percent."""

    step: dict[str, Any]
    depth: int
    left: float
    width: float
    start_ms: float
    running: bool


def waterfall(events: list[Event], steps: list[dict[str, Any]], *, ended: bool) -> tuple[list[Bar], float, list[str]]:
    """The waterfall's bars, the total span in ms, and the axis labels (0, ¼, ½, ¾, end)."""
    if not events:
        return [], 0.0, []
    t0 = ts_to_us(events[0].ts)
    t_end = ts_to_us(events[-1].ts) if ended else max(now_us(), ts_to_us(events[-1].ts))
    span = max(t_end - t0, 1)
    depths = step_depths(steps)
    bars = []
    for s in steps:
        start = ts_to_us(s["started_at"]) - t0
        stop = (ts_to_us(s["ended_at"]) if s["ended_at"] else t_end) - t0
        left = 100 * start / span
        width = max(100 * (stop - start) / span, 0.4)
        bars.append(Bar(s, depths.get(s["step_id"], 0), round(min(left, 99.6), 3), round(min(width, 100 - left), 3),
                        start / 1000, s["status"] is None and not ended))
    return bars, span / 1000, [fmt_ms(span / 1000 * f) for f in (0, 0.25, 0.5, 0.75, 1)]


def fmt_ms(ms: float | None) -> str:
    """A duration in milliseconds as the CLI shows it (840ms, 2.4s, 3m05s)."""
    return fmt_duration(None if ms is None else round(ms))


def detail(store: Any, execution_id: str, project: str) -> dict[str, Any]:
    """Everything the detail page shows of one execution of ``project``."""
    summary = store.get_execution(execution_id, project=project)
    events = store.events(execution_id)
    steps = steps_from_events(events)
    ended = events[-1].attrs if events and events[-1].type == "execution.ended" else None
    names = {s["step_id"]: s["name"] for s in steps}
    bars, span_ms, axis = waterfall(events, steps, ended=ended is not None)
    for s in steps:
        s["shown_input"] = pretty(store, s["input"]) if s["input"] is not None else None
        s["shown_output"] = pretty(store, s["output"]) if s["output"] is not None else None
    decisions = [{"seq": e.seq, "step": names.get(e.attrs.get("step_id") or "", ""), **e.attrs}
                 for e in events if e.type == "governance.decision"]
    started = events[0].attrs if events and events[0].type == "execution.started" else {}
    logs = [{"seq": e.seq, **e.attrs} for e in events if e.type == "log"]
    return {
        "x": summary, "events": events, "steps": steps, "bars": bars, "span_ms": span_ms, "axis": axis,
        "decisions": decisions, "ended": ended, "logs": logs,
        "inputs": pretty(store, started["inputs"]) if started.get("inputs") is not None else None,
        "agent_roles": (started.get("agent") or {}).get("roles") or [],
        "approvals": [store.expire_if_due(a) for a in
                      store.list_approvals(status=None, project=project, execution_id=execution_id, limit=500)],
        "cancel": store.get_cancel(execution_id),
        "live": summary["status"] not in TERMINAL,
        "last_seq": events[-1].seq if events else -1,
    }


def governance_diff(store: Any, a: str, b: str) -> list[tuple[str, str]]:
    """The unified diff of two versions' documents, as (kind, line) with kind ``add``,
    ``del``, ``hunk`` or ``same``."""
    def lines(vid: str) -> list[str]:
        doc = store.get_governance_version(vid)["document"]
        doc = orjson.loads(doc) if isinstance(doc, bytes | str) else doc
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()

    out = []
    for line in difflib.unified_diff(lines(a), lines(b), fromfile=a, tofile=b, lineterm="", n=3):
        kind = ("hunk" if line.startswith("@@") else "add" if line.startswith("+") and not line.startswith("+++")
                else "del" if line.startswith("-") and not line.startswith("---") else "same")
        out.append((kind, line))
    return out
