"""OpenTelemetry export: executions as OTel traces, in the GenAI semantic conventions.

Each stored execution becomes one **trace**, built from its events after the fact (nothing
here runs while the agent does, and nothing is sampled): the execution is the root span
``invoke_workflow {workflow}``, each step a child span nested by ``parent_step_id``, and
governance decisions, approvals, cancels and logs are span events. Send the spans through any
`SpanExporter` — the SDK's ``InMemorySpanExporter`` or ``ConsoleSpanExporter``, or an OTLP
exporter you install (``opentelemetry-exporter-otlp``) — to Jaeger, Tempo, Honeycomb, Datadog,
Langfuse, Phoenix or any other OTLP backend::

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from execord.integrations import otel

    otel.export(".execord/execord.db", [execution_id], OTLPSpanExporter())

The mapping follows the OpenTelemetry GenAI semantic conventions (``gen_ai.*``, development
status; names checked against ``opentelemetry-semantic-conventions`` 0.66b2 and the
``semantic-conventions-genai`` registry, written out here rather than imported):

- the execution: ``invoke_workflow {workflow}``, INTERNAL, ``gen_ai.operation.name``
  ``invoke_workflow``;
- an ``llm`` step: ``chat {model}``, CLIENT, ``chat``;
- a ``tool`` step: ``execute_tool {name}``, INTERNAL, ``execute_tool``;
- an ``agent`` step: ``invoke_agent {name}``, INTERNAL, ``invoke_agent``;
- a ``retrieval`` step: ``retrieval {name}``, CLIENT, ``retrieval``;
- a ``custom`` step: ``{name}``, INTERNAL, no ``gen_ai.operation.name``.

The attributes, events and statuses are listed in docs/integrations.md.

Ids are deterministic, so exporting an execution twice gives the same trace: the trace id
*is* the execution's UUIDv7 (its 128 bits; search the backend for the id without dashes),
and each span id is the first 8 bytes of SHA-256 over ``"execord.span:" + step_id`` (over the
execution id for the root span), nonzero and unique within the trace (on the astronomically
rare collision, the later span is rehashed with a counter).

Timestamps are the events' ``ts``: a step's span runs from its ``step.started`` to its
``step.ended``, the root span from ``execution.started`` to ``execution.ended``. Status is
``ERROR`` (with a description and ``error.type``) for a step that raised (``error``) or that
governance blocked (``blocked``), and for an execution that ended ``failed``, ``halted``,
``cancelled`` or ``interrupted``; otherwise it is left ``UNSET``, as the conventions ask.

**Content is not exported by default**: no workflow inputs or outputs, no step inputs or
outputs, no prompts, completions, tool arguments or results, no log ``data``. Pass
``include_content=True`` to add them (as JSON strings: ``execord.execution.input`` /
``.output``, ``execord.step.input`` / ``.output``, and for tools ``gen_ai.tool.call.arguments``
/ ``gen_ai.tool.call.result``). What the record holds is already redacted by governance; an
erased blob is exported as ``{"$erased": "sha256:…"}``. Error messages, rule messages, log
messages and cancel reasons are part of the record's events (not blobs) and are exported.

The OpenTelemetry SDK is imported only when a function here is called: ``import execord``
never needs it. Without it, the functions raise `execord.ConfigError` saying
``pip install opentelemetry-sdk``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigError, ExecordError, NotFound
from ..record import (
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    CANCEL_REQUESTED,
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    GOVERNANCE_DECISION,
    LOG,
    STEP_ENDED,
    STEP_STARTED,
    Event,
    is_uuid,
    ts_to_us,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from ..store import Store

__all__ = [
    "SCOPE_NAME",
    "OtelExportError",
    "export",
    "export_since",
    "span_id_for",
    "to_spans",
    "trace_id_for",
]

#: The instrumentation scope the spans carry.
SCOPE_NAME = "execord"

_INSTALL_HINT = "OpenTelemetry export needs the OpenTelemetry SDK: pip install opentelemetry-sdk"
_INT64 = (-(2**63), 2**63 - 1)

# How much a decision weighs, to give a span its strongest one.
_SEVERITY = {"allow": 0, "warn": 1, "redact": 2, "require_approval": 3, "deny": 4}

# Request parameters (as the SDK and the integrations record them) → gen_ai.request.* names.
_PARAMS: dict[str, tuple[str, type]] = {
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "max_completion_tokens": ("gen_ai.request.max_tokens", int),
    "max_output_tokens": ("gen_ai.request.max_tokens", int),
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", int),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", float),
    "presence_penalty": ("gen_ai.request.presence_penalty", float),
    "seed": ("gen_ai.request.seed", int),
    "stream": ("gen_ai.request.stream", bool),
}

# Each step kind: its gen_ai.operation.name (None for custom), and whether its span is CLIENT.
_KINDS: dict[str, tuple[str | None, bool]] = {
    "llm": ("chat", True),
    "tool": ("execute_tool", False),
    "agent": ("invoke_agent", False),
    "retrieval": ("retrieval", True),
    "custom": (None, False),
}


class OtelExportError(ExecordError):
    """The span exporter reported that it could not send the spans.

    Attributes:
        spans: how many spans were in the batch that failed.
    """

    status = 502
    type = "otel-export-failed"

    def __init__(self, message: str, *, spans: int):
        super().__init__(message)
        self.spans = spans


# -- the OpenTelemetry SDK, imported on first use -------------------------------------------------


class _Otel:
    """The few OpenTelemetry names this module uses, imported once."""

    def __init__(self) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import OTELResourceDetector, Resource
            from opentelemetry.sdk.trace import Event as SpanEvent
            from opentelemetry.sdk.trace import ReadableSpan
            from opentelemetry.sdk.trace.export import SpanExportResult
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError as exc:
            raise ConfigError(f"{_INSTALL_HINT} ({exc})") from exc
        from .. import __version__

        self.trace = trace
        self.Resource = Resource
        self.env_resource = OTELResourceDetector
        self.SpanEvent = SpanEvent
        self.ReadableSpan = ReadableSpan
        self.SUCCESS = SpanExportResult.SUCCESS
        self.scope = InstrumentationScope(SCOPE_NAME, __version__)
        self.flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)


_otel_cache: list[_Otel] = []


def _otel() -> _Otel:
    if not _otel_cache:
        _otel_cache.append(_Otel())
    return _otel_cache[0]


# -- ids --------------------------------------------------------------------------------------------


def trace_id_for(execution_id: str) -> int:
    """The trace id of an execution: its UUID's 128 bits (SHA-256's first 16 bytes for an id
    that is not a UUID).

    >>> f"{trace_id_for('01a2014f-a0b0-72f4-87bf-254fc9ff0a73'):032x}"
    '01a2014fa0b072f487bf254fc9ff0a73'
    """
    if is_uuid(execution_id):
        value = int(execution_id.replace("-", ""), 16)
    else:
        value = int.from_bytes(hashlib.sha256(execution_id.encode()).digest()[:16], "big")
    return value or 1


def span_id_for(step_or_execution_id: str) -> int:
    """The span id of a step (or, given the execution id, of the root span): the first 8 bytes
    of SHA-256 over ``"execord.span:" + id``, as an integer. (`to_spans` rehashes, with a
    counter, the one-in-2**64 id that is 0 or already taken in the trace.)

    >>> span_id_for("01a2014f-a0b1-7578-a23e-84ed5de50ec7") == span_id_for("01a2014f-a0b1-7578-a23e-84ed5de50ec7")
    True
    """
    return _hashed_span_id(step_or_execution_id, 0)


def _hashed_span_id(text: str, attempt: int) -> int:
    salt = f"#{attempt}" if attempt else ""
    return int.from_bytes(hashlib.sha256(f"execord.span:{text}{salt}".encode()).digest()[:8], "big")


# -- attribute helpers -------------------------------------------------------------------------------


def _put(attrs: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` if ``value`` is a valid OTel attribute value (None and dicts are skipped)."""
    if value is None:
        return
    if isinstance(value, bool | str):
        attrs[key] = value
    elif isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            attrs[key] = value
    elif isinstance(value, float):
        attrs[key] = value
    elif isinstance(value, list | tuple):
        items = [v for v in value if v is not None]
        if items and all(isinstance(v, str) for v in items):
            attrs[key] = tuple(items)
        elif items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            attrs[key] = tuple(items)


def _number(value: Any, want: type) -> Any:
    """``value`` as ``want`` (int, float or bool), or None when it is not that kind of value."""
    if want is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if want is int:
        return value if isinstance(value, int) else (int(value) if float(value).is_integer() else None)
    return float(value)


def _json(value: Any) -> str:
    """``value`` as JSON text (a string value too: it is quoted)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _content(store: Store, ref: Any) -> Any:
    """The value behind a blob reference; ``{"$missing": digest}`` when the store lacks it."""
    from ..store import blob_value

    try:
        return blob_value(store, ref)
    except NotFound:
        return {"$missing": ref.get("$blob") if isinstance(ref, dict) else None}


def _ns(ts: str) -> int:
    return ts_to_us(ts) * 1000


# -- building the spans --------------------------------------------------------------------------------


class _SpanDraft:
    """A span being assembled from the events, before it is frozen into a ReadableSpan."""

    __slots__ = ("attrs", "blocking", "client", "decision", "end", "error", "events", "name", "parent",
                 "rules", "span_id", "start")

    def __init__(self, name: str, span_id: int, parent: int | None, start: int, client: bool) -> None:
        self.name = name
        self.span_id = span_id
        self.parent = parent
        self.start = start
        self.end = start
        self.client = client
        self.attrs: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.error: str | None = None  # the ERROR status description
        self.decision: str | None = None  # the strongest governance decision seen on this span
        self.rules: list[str] = []  # rules that matched in its decisions, in order
        self.blocking: str | None = None  # what its first deny / require_approval said


class _Builder:
    def __init__(self, store: Store, execution_id: str, events: list[Event], *,
                 include_content: bool, resource: Resource | None) -> None:
        self.store = store
        self.execution_id = execution_id
        self.events = events
        self.include_content = include_content
        self.resource = resource
        self.trace_id = trace_id_for(execution_id)
        self.used_ids: set[int] = set()
        self.steps: dict[str, _SpanDraft] = {}
        self.kinds: dict[str, str] = {}
        self.approvals: dict[Any, _SpanDraft] = {}  # approval id → the span its request is on
        self.root: _SpanDraft | None = None

    def span_id(self, text: str) -> int:
        attempt = 0
        while True:
            value = _hashed_span_id(text, attempt)
            if value and value not in self.used_ids:
                self.used_ids.add(value)
                return value
            attempt += 1

    def build(self) -> list[ReadableSpan]:
        first = self.events[0]
        started = first.attrs if first.type == EXECUTION_STARTED else {}
        self.root = self.start_root(first, started)
        ended: Event | None = None
        for e in self.events:
            if e.type == STEP_STARTED and e.step_id:
                self.start_step(e)
            elif e.type == STEP_ENDED and e.step_id in self.steps:
                self.end_step(e)
            elif e.type == GOVERNANCE_DECISION:
                self.decision(e)
            elif e.type == APPROVAL_REQUESTED:
                self.approval_requested(e)
            elif e.type == APPROVAL_DECIDED:
                self.approval_decided(e)
            elif e.type == CANCEL_REQUESTED:
                a = e.attrs
                attrs: dict[str, Any] = {"execord.event.seq": e.seq}
                _put(attrs, "execord.cancel.by", a.get("by"))
                _put(attrs, "execord.cancel.reason", a.get("reason"))
                self.root.events.append(("execord.cancel.requested", attrs, _ns(e.ts)))
            elif e.type == LOG:
                self.log(e)
            elif e.type == EXECUTION_ENDED:
                ended = e
        last_ns = _ns(self.events[-1].ts)
        self.end_root(ended, last_ns)
        for draft in self.steps.values():
            if "execord.step.status" not in draft.attrs:  # started, never ended
                draft.end = max(draft.start, last_ns)
                draft.attrs["execord.step.status"] = "unfinished"
                if ended is not None:
                    draft.error = f"the step did not end: the execution ended {ended.attrs.get('status')}"
                    draft.attrs["error.type"] = "execord.unfinished"
            self.finish_governance(draft)
        self.finish_governance(self.root)
        return [self.freeze(self.root), *(self.freeze(d) for d in self.steps.values())]

    # -- the execution ----------------------------------------------------------------------------

    def start_root(self, first: Event, started: Mapping[str, Any]) -> _SpanDraft:
        workflow = (started.get("workflow") or {}).get("name")
        agent = started.get("agent") or {}
        root = _SpanDraft(f"invoke_workflow {workflow}" if workflow else "invoke_workflow",
                          self.span_id(self.execution_id), None, _ns(first.ts), False)
        a = root.attrs
        a["gen_ai.operation.name"] = "invoke_workflow"
        _put(a, "gen_ai.workflow.name", workflow)
        _put(a, "gen_ai.agent.name", agent.get("name"))
        _put(a, "gen_ai.agent.version", agent.get("version"))
        a["execord.execution_id"] = self.execution_id
        _put(a, "execord.workflow.version", (started.get("workflow") or {}).get("version"))
        _put(a, "execord.agent.roles", list(agent.get("roles") or []))
        _put(a, "execord.execution_type", started.get("execution_type"))
        _put(a, "execord.parent_execution_id", started.get("parent_execution_id"))
        _put(a, "execord.governance_version", started.get("governance_version"))
        for key, value in sorted((started.get("labels") or {}).items()):
            _put(a, f"execord.label.{key}", str(value))
        if self.include_content and started.get("inputs") is not None:
            a["execord.execution.input"] = _json(_content(self.store, started["inputs"]))
        return root

    def end_root(self, ended: Event | None, last_ns: int) -> None:
        root = self.root
        assert root is not None
        a = root.attrs
        if ended is None:
            root.end = last_ns
            a["execord.status"] = "running"
            a["execord.sealed"] = False
            return
        root.end = _ns(ended.ts)
        e = ended.attrs
        status = e.get("status")
        a["execord.sealed"] = True
        _put(a, "execord.status", status)
        _put(a, "execord.failure_class", e.get("failure_class"))
        for key, value in (e.get("totals") or {}).items():
            _put(a, f"execord.totals.{key}", value)
        halt = e.get("halt") or {}
        for key in ("reason", "rule_id", "budget_id", "phase", "seq"):
            _put(a, f"execord.halt.{key}", halt.get(key))
        cancel = e.get("cancel") or {}
        _put(a, "execord.cancel.by", cancel.get("by"))
        _put(a, "execord.cancel.reason", cancel.get("reason"))
        error = e.get("error") or {}
        if self.include_content and e.get("output") is not None:
            a["execord.execution.output"] = _json(_content(self.store, e["output"]))
        if status == "failed":
            a["error.type"] = error.get("type") or "_OTHER"
            root.error = _error_text(error) or "the workflow raised"
            if error.get("step_id"):
                _put(a, "execord.error.step_id", error.get("step_id"))
        elif status == "halted":
            a["error.type"] = "execord.halted"
            by = halt.get("rule_id") or halt.get("budget_id")
            root.error = (f"halted ({halt.get('reason')})" + (f" by {by}" if by else "")
                          + (f" at {halt['phase']}" if halt.get("phase") else ""))
        elif status == "cancelled":
            a["error.type"] = "execord.cancelled"
            root.error = "cancelled" + (f" by {cancel['by']}" if cancel.get("by") else "") + (
                f": {cancel['reason']}" if cancel.get("reason") else "")
        elif status == "interrupted":
            a["error.type"] = "execord.interrupted"
            by = e.get("sealed_by") or {}
            root.error = "interrupted" + (f": {by['reason']}" if by.get("reason") else "")

    # -- steps ---------------------------------------------------------------------------------------

    def start_step(self, e: Event) -> None:
        assert self.root is not None and e.step_id is not None
        a = e.attrs
        kind = a.get("kind") or "custom"
        name = a.get("name")
        model = a.get("model")
        operation, client = _KINDS.get(kind, (None, False))
        if kind == "llm":
            span_name = f"chat {model}" if model else "chat"
        elif operation is not None:
            span_name = f"{operation} {name}" if name else operation
        else:
            span_name = name or kind
        parent = self.steps.get(e.parent_step_id) if e.parent_step_id else None
        draft = _SpanDraft(span_name, self.span_id(e.step_id),
                           (parent or self.root).span_id, _ns(e.ts), client)
        s = draft.attrs
        _put(s, "gen_ai.operation.name", operation)
        provider = a.get("provider")
        _put(s, "gen_ai.provider.name", provider)
        _put(s, "gen_ai.request.model", model)
        if kind == "tool":
            _put(s, "gen_ai.tool.name", name)
            s["gen_ai.tool.type"] = "extension" if a.get("integration") == "mcp" else "function"
        elif kind == "agent":
            _put(s, "gen_ai.agent.name", name)
        params = a.get("params")
        if isinstance(params, dict):
            for key, (attr, want) in _PARAMS.items():
                if key in params and attr not in s:
                    _put(s, attr, _number(params[key], want))
            stop = params.get("stop")
            _put(s, "gen_ai.request.stop_sequences", [stop] if isinstance(stop, str) else stop)
            n = _number(params.get("n"), int)
            if n is not None and n != 1:
                s["gen_ai.request.choice.count"] = n
        s["execord.execution_id"] = self.execution_id
        s["execord.step_id"] = e.step_id
        _put(s, "execord.parent_step_id", e.parent_step_id)
        s["execord.step.kind"] = kind
        _put(s, "execord.step.name", name)
        _put(s, "execord.integration", a.get("integration"))
        if self.include_content and a.get("input") is not None:
            value = _content(self.store, a["input"])
            s["execord.step.input"] = _json(value)
            if kind == "tool":
                s["gen_ai.tool.call.arguments"] = s["execord.step.input"]
        self.steps[e.step_id] = draft
        self.kinds[e.step_id] = kind

    def end_step(self, e: Event) -> None:
        assert e.step_id is not None
        draft = self.steps[e.step_id]
        kind = self.kinds[e.step_id]
        a = e.attrs
        draft.end = max(draft.start, _ns(e.ts))
        s = draft.attrs
        status = a.get("status")
        _put(s, "execord.step.status", status)
        usage = a.get("usage")
        if isinstance(usage, dict):
            _put(s, "gen_ai.usage.input_tokens", usage.get("input_tokens"))
            _put(s, "gen_ai.usage.output_tokens", usage.get("output_tokens"))
            _put(s, "gen_ai.usage.cache_read.input_tokens", usage.get("cached_input_tokens"))
            _put(s, "gen_ai.usage.reasoning.output_tokens", usage.get("reasoning_tokens"))
        _put(s, "execord.cost_micros", a.get("cost_micros"))
        _put(s, "execord.price_source", a.get("price_source"))
        _put(s, "execord.latency_ms", a.get("latency_ms"))
        output = a.get("output")
        if output is not None and (kind == "llm" or self.include_content):
            value = _content(self.store, output)
            if kind == "llm":
                _response_attrs(s, value)
            if self.include_content:
                s["execord.step.output"] = _json(value)
                if kind == "tool" and status == "ok":
                    s["gen_ai.tool.call.result"] = s["execord.step.output"]
        if status == "error":
            error = a.get("error") or {}
            s["error.type"] = error.get("type") or "_OTHER"
            draft.error = _error_text(error) or "the step raised"
            attrs: dict[str, Any] = {}
            _put(attrs, "exception.type", error.get("type"))
            _put(attrs, "exception.message", error.get("message"))
            draft.events.append(("exception", attrs, draft.end))
        elif status == "blocked":
            s["error.type"] = "execord.blocked"
            draft.error = "blocked by governance"  # made precise by finish_governance

    # -- governance, approvals, logs ------------------------------------------------------------------

    def owner(self, e: Event, step_id: Any = None) -> _SpanDraft:
        assert self.root is not None
        sid = step_id if isinstance(step_id, str) else e.step_id
        return self.steps.get(sid, self.root) if sid else self.root

    def decision(self, e: Event) -> None:
        a = e.attrs
        draft = self.owner(e, a.get("step_id"))
        rules = [r for r in a.get("rules") or [] if isinstance(r, dict)]
        matched = [r for r in rules if r.get("matched")]
        budgets = [b for b in a.get("budgets") or [] if isinstance(b, dict)]
        redactions = [r for r in a.get("redactions") or [] if isinstance(r, dict)]
        attrs: dict[str, Any] = {"execord.event.seq": e.seq}
        _put(attrs, "execord.governance.phase", a.get("phase"))
        _put(attrs, "execord.governance.decision", a.get("decision"))
        _put(attrs, "execord.governance.rule_ids", [r.get("id") for r in matched])
        _put(attrs, "execord.governance.rule_effects", [r.get("effect") for r in matched])
        _put(attrs, "execord.governance.messages", [r.get("message") for r in matched])
        attrs["execord.governance.rules_evaluated"] = len(rules)
        _put(attrs, "execord.governance.budget_ids", [b.get("id") for b in budgets])
        _put(attrs, "execord.governance.budgets_exceeded", [b.get("id") for b in budgets if b.get("ok") is False])
        attrs["execord.governance.redactions"] = len(redactions)
        _put(attrs, "execord.governance.detectors", sorted({str(r.get("detector")) for r in redactions
                                                            if r.get("detector") is not None}))
        _put(attrs, "execord.governance_version", a.get("governance_version"))
        _put(attrs, "execord.governance.engine", a.get("engine"))
        _put(attrs, "execord.governance.eval_us", a.get("eval_us"))
        draft.events.append(("execord.governance.decision", attrs, _ns(e.ts)))
        decided = a.get("decision")
        if decided in _SEVERITY and (draft.decision is None or _SEVERITY[decided] > _SEVERITY[draft.decision]):
            draft.decision = decided
        if decided in ("deny", "require_approval") and draft.blocking is None:
            ids = [str(r.get("id")) for r in matched if r.get("id")]
            ids += [str(b.get("id")) for b in budgets if b.get("ok") is False and b.get("id")]
            messages = [str(r.get("message")) for r in matched if r.get("message")]
            draft.blocking = _decision_text(decided, a.get("phase"), ids, messages)
        for r in matched:
            rid = r.get("id")
            if isinstance(rid, str) and rid not in draft.rules:
                draft.rules.append(rid)

    def approval_requested(self, e: Event) -> None:
        a = e.attrs
        attrs: dict[str, Any] = {"execord.event.seq": e.seq}
        for key in ("approval_id", "rule_id", "action_digest", "expires_at", "message"):
            _put(attrs, f"execord.approval.{key}", a.get(key))
        _put(attrs, "execord.approval.approvers", [str(x) for x in a.get("approvers") or []])
        owner = self.owner(e, a.get("step_id"))
        if isinstance(a.get("approval_id"), str):
            self.approvals[a["approval_id"]] = owner
        owner.events.append(("execord.approval.requested", attrs, _ns(e.ts)))

    def approval_decided(self, e: Event) -> None:
        a = e.attrs
        attrs: dict[str, Any] = {"execord.event.seq": e.seq}
        for key in ("approval_id", "decision", "reviewer", "comment"):
            _put(attrs, f"execord.approval.{key}", a.get(key))
        owner = self.approvals.get(a.get("approval_id")) or self.owner(e, a.get("step_id"))
        owner.events.append(("execord.approval.decided", attrs, _ns(e.ts)))

    def log(self, e: Event) -> None:
        a = e.attrs
        attrs: dict[str, Any] = {"execord.event.seq": e.seq}
        _put(attrs, "execord.log.level", a.get("level"))
        _put(attrs, "execord.log.message", a.get("message"))
        if self.include_content and a.get("data") is not None:
            attrs["execord.log.data"] = _json(a["data"])
        self.owner(e).events.append(("execord.log", attrs, _ns(e.ts)))

    def finish_governance(self, draft: _SpanDraft) -> None:
        if draft.decision is not None:
            draft.attrs["execord.governance.decision"] = draft.decision
        if draft.rules:
            draft.attrs["execord.governance.rule_ids"] = tuple(draft.rules)
        if draft.attrs.get("execord.step.status") == "blocked" and draft.blocking:
            draft.error = draft.blocking

    # -- freezing ------------------------------------------------------------------------------------

    def freeze(self, draft: _SpanDraft) -> ReadableSpan:
        o = _otel()
        trace = o.trace
        context = trace.SpanContext(self.trace_id, draft.span_id, is_remote=False, trace_flags=o.flags)
        parent = None if draft.parent is None else trace.SpanContext(
            self.trace_id, draft.parent, is_remote=False, trace_flags=o.flags)
        if draft.error is not None:
            status = trace.Status(trace.StatusCode.ERROR, draft.error)
        else:
            status = trace.Status(trace.StatusCode.UNSET)
        links: Sequence[Any] = ()
        parent_execution = self.root.attrs.get("execord.parent_execution_id") if self.root else None
        if draft is self.root and isinstance(parent_execution, str):
            link_ctx = trace.SpanContext(trace_id_for(parent_execution), span_id_for(parent_execution),
                                         is_remote=True, trace_flags=o.flags)
            links = (trace.Link(link_ctx, {"execord.link": "parent_execution"}),)
        events = tuple(o.SpanEvent(name, attrs, timestamp=max(draft.start, min(ts, draft.end)))
                       for name, attrs, ts in draft.events)
        return o.ReadableSpan(
            name=draft.name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=dict(draft.attrs),
            events=events,
            links=links,
            kind=trace.SpanKind.CLIENT if draft.client else trace.SpanKind.INTERNAL,
            status=status,
            start_time=draft.start,
            end_time=draft.end,
            instrumentation_scope=o.scope,
        )


def _error_text(error: Mapping[str, Any]) -> str:
    kind, message = error.get("type"), error.get("message")
    if kind and message:
        return f"{kind}: {message}"
    return str(kind or message or "")


def _decision_text(decision: str, phase: Any, ids: list[str], messages: list[str]) -> str:
    text = f"blocked at {phase}: {decision}" if phase else f"blocked: {decision}"
    if ids:
        text += f" by {', '.join(ids)}"
    if messages:
        text += f": {' '.join(messages)}"
    return text


def _response_attrs(attrs: dict[str, Any], output: Any) -> None:
    """``gen_ai.response.*`` from a recorded LLM response (OpenAI or Anthropic shaped)."""
    if not isinstance(output, dict):
        return
    model, rid = output.get("model"), output.get("id")
    if isinstance(model, str) and model:
        attrs["gen_ai.response.model"] = model
    if isinstance(rid, str) and rid:
        attrs["gen_ai.response.id"] = rid
    reasons: list[str] = []
    for choice in output.get("choices") or []:
        if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
            reasons.append(choice["finish_reason"])
    if isinstance(output.get("stop_reason"), str):
        reasons.append(output["stop_reason"])
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = tuple(reasons)


def _resource_for(started: Mapping[str, Any], cache: dict[tuple[Any, ...], Resource]) -> Resource:
    """The agent that ran the execution, as an OTel Resource (``OTEL_RESOURCE_ATTRIBUTES``
    adds to it; what the record says wins)."""
    agent = started.get("agent") or {}
    host = started.get("host") or {}
    key = (agent.get("name"), agent.get("version"), host.get("hostname"), host.get("pid"))
    if key not in cache:
        o = _otel()
        attrs: dict[str, Any] = {}
        _put(attrs, "service.name", agent.get("name") or "execord")
        _put(attrs, "service.version", agent.get("version"))
        _put(attrs, "host.name", host.get("hostname"))
        _put(attrs, "process.pid", host.get("pid"))
        cache[key] = o.env_resource().detect().merge(o.Resource(attrs))
    return cache[key]


# -- public API -----------------------------------------------------------------------------------------


def _spans(store: Store, execution_id: str, *, include_content: bool, resource: Resource | None,
           cache: dict[tuple[Any, ...], Resource]) -> list[ReadableSpan]:
    _otel()
    events = store.events(execution_id)
    if not events:
        raise NotFound(f"no execution {execution_id!r} in the store")
    started = events[0].attrs if events[0].type == EXECUTION_STARTED else {}
    chosen = resource if resource is not None else _resource_for(started, cache)
    return _Builder(store, execution_id, events, include_content=include_content, resource=chosen).build()


def to_spans(store: Store | str | os.PathLike[str], execution_id: str, *, include_content: bool = False,
             resource: Resource | None = None) -> list[ReadableSpan]:
    """One execution as finished OpenTelemetry spans: the root span first, then its steps in
    the order they started.

    Works on a running execution too: its root span and unfinished steps end at its last
    stored event, with ``execord.sealed`` false and ``execord.status`` ``running`` (export it
    again once it ends: the ids stay the same).

    Args:
        store: a `Store`, or the path or URL of one (opened and closed here).
        execution_id: the execution's id, or a unique prefix of it.
        include_content: also export inputs, outputs, prompts, completions, tool arguments and
            results, and log data (off by default: content stays in the record).
        resource: the OTel Resource of every span (default: ``service.name`` = the agent's
            name, ``service.version``, ``host.name``, ``process.pid`` from the record, plus
            whatever ``OTEL_RESOURCE_ATTRIBUTES`` says).

    Raises:
        ConfigError: the OpenTelemetry SDK is not installed.
        NotFound: no such execution.
    """
    with _opened(store) as s:
        return _spans(s, s.resolve_id(execution_id), include_content=include_content, resource=resource,
                      cache={})


def export(store: Store | str | os.PathLike[str], execution_ids: Iterable[str], exporter: SpanExporter, *,
           include_content: bool = False, resource: Resource | None = None) -> int:
    """Send executions' spans through ``exporter`` in one batch (one ``exporter.export`` call).

    The exporter is the caller's: it is neither flushed nor shut down here (an OTLP exporter
    sends synchronously; call ``exporter.shutdown()`` when you are done with it). Exporting an
    execution again sends the same trace and span ids.

    Args:
        store: a `Store`, or the path or URL of one (opened and closed here).
        execution_ids: ids (or unique prefixes) of the executions to export.
        exporter: any ``opentelemetry.sdk.trace.export.SpanExporter``.
        include_content: see `to_spans`.
        resource: see `to_spans`.

    Returns:
        How many spans were exported (0, and no call, for no ids).

    Raises:
        ConfigError: the OpenTelemetry SDK is not installed.
        NotFound: one of the executions does not exist (nothing is exported).
        OtelExportError: the exporter reported a failure.
    """
    with _opened(store) as s:
        cache: dict[tuple[Any, ...], Resource] = {}
        spans: list[ReadableSpan] = []
        for execution_id in execution_ids:
            spans.extend(_spans(s, s.resolve_id(execution_id), include_content=include_content,
                                resource=resource, cache=cache))
    return _send(exporter, spans)


def export_since(store: Store | str | os.PathLike[str], since: str | datetime, exporter: SpanExporter, *,
                 until: str | datetime | None = None, workflow: str | None = None, agent: str | None = None,
                 statuses: Sequence[str] | None = None, include_running: bool = False,
                 include_content: bool = False, resource: Resource | None = None, page_size: int = 100,
                 project: str = "default") -> int:
    """Export every execution that started at or after ``since`` (and before ``until``).

    Only sealed executions are exported unless ``include_running``: a running one would be
    exported again, changed, once it ends. Executions are read a page at a time, newest first,
    and each page is one ``exporter.export`` call.

    Args:
        store: a `Store`, or the path or URL of one.
        since: a duration back from now (``15m``, ``2h``, ``7d``), an ISO 8601 time, or an aware
            datetime. It bounds the execution's *start*: to catch up periodically, overlap the
            windows (re-exported executions keep their ids).
        until: the same, exclusive; None for no end.
        workflow: only this workflow.
        agent: only this agent.
        statuses: only these statuses.
        include_running: export unsealed executions too.
        include_content: see `to_spans`.
        resource: see `to_spans`.
        page_size: executions per page (and per ``export`` call).
        project: the project whose executions are read.

    Returns:
        How many spans were exported.

    Raises:
        ConfigError: the OpenTelemetry SDK is not installed, or a bad ``since``/``until``.
        OtelExportError: the exporter reported a failure (pages before it were sent).
    """
    from ..store import ExecutionFilter

    _otel()
    if page_size < 1:
        raise ConfigError(f"page_size must be at least 1, not {page_size}")
    flt = ExecutionFilter(statuses=list(statuses) if statuses else None, workflow=workflow, agent=agent,
                          since_us=_when(since, "since"), until_us=None if until is None else _when(until, "until"),
                          limit=page_size, project=project)
    total = 0
    with _opened(store) as s:
        cache: dict[tuple[Any, ...], Resource] = {}
        while True:
            rows = s.list_executions(flt)
            spans: list[ReadableSpan] = []
            for row in rows:
                if row.get("sealed") or include_running:
                    spans.extend(_spans(s, row["id"], include_content=include_content, resource=resource,
                                        cache=cache))
            total += _send(exporter, spans)
            if len(rows) < page_size:
                return total
            last = rows[-1]
            flt.before = (ts_to_us(last["started_at"]), last["id"])


def _when(value: str | datetime, option: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{option} must be an aware datetime (with a timezone)")
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    from ..store._query import parse_when

    return parse_when(value, option=option)


def _send(exporter: SpanExporter, spans: list[ReadableSpan]) -> int:
    if not spans:
        return 0
    result = exporter.export(spans)
    if result != _otel().SUCCESS:
        raise OtelExportError(f"the span exporter {type(exporter).__name__} could not export "
                              f"{len(spans)} spans ({getattr(result, 'name', result)})", spans=len(spans))
    return len(spans)


class _opened:
    """``with _opened(store_or_path) as store``: a path is opened here and closed after."""

    def __init__(self, target: Store | str | os.PathLike[str]) -> None:
        self.target = target
        self.owned: Store | None = None

    def __enter__(self) -> Store:
        if isinstance(self.target, str | os.PathLike):
            from ..store import open_store

            self.owned = open_store(self.target, create=False)
            return self.owned
        return self.target

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.close()
