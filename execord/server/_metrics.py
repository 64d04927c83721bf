"""``/metrics``: what operators watch, in Prometheus form (prometheus-client).

Counters and histograms move as events are ingested (and as the reaper seals), so each
replica counts what passed through it and Prometheus sums the replicas. Gauges of the
current state (running executions, pending approvals and their age) are read from the
store at scrape time, from indexed queries.

Every metric name is listed in `METRIC_NAMES`; ``deploy/grafana/execord.json`` and
``deploy/prometheus/alerts.yml`` may use only these (tests/test_deploy.py checks).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..record import (
    APPROVAL_DECIDED,
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    GOVERNANCE_DECISION,
    STEP_ENDED,
    STEP_STARTED,
    Event,
    now_us,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

METRIC_NAMES = (
    "execord_executions_started_total",
    "execord_executions_ended_total",
    "execord_executions_active",
    "execord_execution_duration_seconds",
    "execord_llm_tokens_total",
    "execord_llm_cost_micros_total",
    "execord_provider_errors_total",
    "execord_provider_retries_total",
    "execord_tool_call_duration_seconds",
    "execord_tool_errors_total",
    "execord_decisions_total",
    "execord_redactions_total",
    "execord_approvals_pending",
    "execord_approval_oldest_pending_age_seconds",
    "execord_approvals_decided_total",
    "execord_ingest_events_total",
    "execord_ingest_batches_total",
    "execord_ingest_rejected_total",
    "execord_ingest_latency_seconds",
    "execord_stream_subscribers",
    "execord_reaper_interrupted_total",
    "execord_decision_checks_total",
)


class _Lru(OrderedDict[str, Any]):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class _StateCollector(Collector):
    """Gauges read from the store at scrape time."""

    def __init__(self, store: Any):
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        active = GaugeMetricFamily("execord_executions_active", "Executions not yet sealed, by status and workflow.",
                                   labels=["status", "workflow"])
        for status, workflow, n in self.store._read(
            "SELECT status, workflow, count(*) FROM executions WHERE sealed = 0 GROUP BY status, workflow"
        ):
            active.add_metric([status, workflow or ""], n)
        yield active
        n, oldest = self.store._read("SELECT count(*), min(requested_us) FROM approvals WHERE status = 'pending'")[0]
        yield GaugeMetricFamily("execord_approvals_pending", "Approvals waiting for a reviewer.", value=n)
        age = 0.0 if oldest is None else max(0.0, (now_us() - int(oldest)) / 1e6)
        yield GaugeMetricFamily("execord_approval_oldest_pending_age_seconds",
                                "Age of the oldest pending approval (0 when none).", value=age)


class Metrics:
    """The server's metrics registry, fed by `observe`."""

    def __init__(self, store: Any, hub: Any):
        self.store = store
        r = self.registry = CollectorRegistry()
        self.started = Counter("execord_executions_started", "Executions started.", ["workflow"], registry=r)
        self.ended = Counter("execord_executions_ended", "Executions sealed, by status, workflow and failure class.",
                             ["status", "workflow", "failure_class"], registry=r)
        self.duration = Histogram("execord_execution_duration_seconds", "Execution duration, at sealing.",
                                  ["workflow", "status"], buckets=_DURATION_BUCKETS, registry=r)
        self.tokens = Counter("execord_llm_tokens", "LLM tokens, by provider, model, workflow and type.",
                              ["provider", "model", "workflow", "type"], registry=r)
        self.cost = Counter("execord_llm_cost_micros", "LLM cost in micro-USD.", ["provider", "model", "workflow"],
                            registry=r)
        self.provider_errors = Counter("execord_provider_errors", "LLM steps that raised.", ["provider", "model"],
                                       registry=r)
        self.provider_retries = Counter("execord_provider_retries", "LLM calls that were retries (attempt > 1).",
                                        ["provider", "model"], registry=r)
        self.tool_latency = Histogram("execord_tool_call_duration_seconds", "Tool (connector) call latency.",
                                      ["tool"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tool_errors = Counter("execord_tool_errors", "Tool (connector) calls that raised.", ["tool"], registry=r)
        self.decisions = Counter("execord_decisions", "Governance outcomes by effect and the rule or budget behind it.",
                                 ["effect", "rule"], registry=r)
        self.redactions = Counter("execord_redactions", "Values redacted, by detector.", ["detector"], registry=r)
        self.approvals_decided = Counter("execord_approvals_decided", "Approvals decided.", ["decision"], registry=r)
        self.ingest_events = Counter("execord_ingest_events", "Events made durable through ingest.", registry=r)
        self.ingest_batches = Counter("execord_ingest_batches", "Ingest requests.", registry=r)
        self.ingest_rejected = Counter("execord_ingest_rejected", "Events refused at ingest, by problem type.",
                                       ["type"], registry=r)
        self.ingest_latency = Histogram("execord_ingest_latency_seconds", "Time to make one ingest batch durable.",
                                        buckets=_INGEST_BUCKETS, registry=r)
        subscribers = Gauge("execord_stream_subscribers", "Open execution streams on this replica.", registry=r)
        subscribers.set_function(hub.count)
        self.reaped = Counter("execord_reaper_interrupted", "Executions this replica sealed as interrupted.",
                              registry=r)
        self.decision_checks = Counter("execord_decision_checks", "Sealed executions whose decisions the server "
                                       "evaluated again, by result (ok or mismatch).", ["result"], registry=r)
        r.register(_StateCollector(store))
        self._lock = threading.Lock()
        self._steps = _Lru(50_000)       # step_id -> (kind, name, provider, model)
        self._workflows = _Lru(50_000)   # execution_id -> workflow

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

    # -- feeding ---------------------------------------------------------------------------------

    def observe(self, events: Sequence[Event]) -> None:
        """Count what a batch of freshly stored events says."""
        for e in events:
            handler = _HANDLERS.get(e.type)
            if handler is not None:
                try:
                    handler(self, e)
                except Exception:  # a metric must never fail an ingest that is already durable
                    continue
            for r in e.attrs.get("redactions") or ():
                self.redactions.labels(str(r.get("detector", "")) if isinstance(r, dict) else "").inc()

    def _workflow(self, execution_id: str) -> str:
        wf = self._workflows.get(execution_id)
        if wf is None:
            try:
                wf = self.store.get_execution(execution_id)["workflow"] or ""
            except Exception:
                wf = ""
            with self._lock:
                self._workflows.put(execution_id, wf)
        return str(wf)

    def _step(self, e: Event) -> tuple[str, str, str, str]:
        info = self._steps.get(e.step_id or "")
        if info is None:
            # The step began in a batch another replica ingested: read its step.started.
            rows = self.store._read(
                "SELECT body, hash FROM events WHERE execution_id = ? AND step_id = ? AND type = ? LIMIT 1",
                (e.execution_id, e.step_id, STEP_STARTED),
            )
            if rows:
                from ..record import parse_event

                info = _step_info(parse_event(bytes(rows[0][0]), bytes(rows[0][1])))
            else:
                info = ("custom", "", "", "")
        return info

    def _started(self, e: Event) -> None:
        wf = str((e.attrs.get("workflow") or {}).get("name") or "")
        with self._lock:
            self._workflows.put(e.execution_id, wf)
        self.started.labels(wf).inc()

    def _step_started(self, e: Event) -> None:
        info = _step_info(e)
        with self._lock:
            self._steps.put(e.step_id or "", info)
        attempt = e.attrs.get("attempt")
        if info[0] == "llm" and (isinstance(attempt, int) and attempt > 1 or e.attrs.get("retry")):
            self.provider_retries.labels(info[2], info[3]).inc()

    def _step_ended(self, e: Event) -> None:
        kind, name, provider, model = self._step(e)
        a = e.attrs
        failed = a.get("status") == "error"
        if kind == "llm":
            if failed:
                self.provider_errors.labels(provider, model).inc()
            usage = a.get("usage") or {}
            wf = self._workflow(e.execution_id)
            for t in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
                n = usage.get(t)
                if isinstance(n, int) and n > 0:
                    self.tokens.labels(provider, model, wf, t.removesuffix("_tokens")).inc(n)
            if isinstance(a.get("cost_micros"), int) and a["cost_micros"] > 0:
                self.cost.labels(provider, model, wf).inc(a["cost_micros"])
        elif kind in ("tool", "retrieval"):
            if isinstance(a.get("latency_ms"), int | float):
                self.tool_latency.labels(name).observe(a["latency_ms"] / 1000)
            if failed:
                self.tool_errors.labels(name).inc()

    def _decision(self, e: Event) -> None:
        a = e.attrs
        hits = 0
        for r in a.get("rules") or ():
            if r.get("matched"):
                self.decisions.labels(str(r.get("effect")), str(r.get("id"))).inc()
                hits += 1
        for b in a.get("budgets") or ():
            if b.get("ok") is False:
                self.decisions.labels("deny", str(b.get("id"))).inc()
                hits += 1
        if not hits:
            self.decisions.labels(str(a.get("decision")), "").inc()

    def _ended(self, e: Event) -> None:
        a = e.attrs
        wf = self._workflow(e.execution_id)
        status = str(a.get("status"))
        self.ended.labels(status, wf, str(a.get("failure_class") or "")).inc()
        duration = (a.get("totals") or {}).get("duration_ms")
        if isinstance(duration, int):
            self.duration.labels(wf, status).observe(duration / 1000)
        with self._lock:
            self._workflows.pop(e.execution_id, None)

    def _approval(self, e: Event) -> None:
        self.approvals_decided.labels(str(e.attrs.get("decision"))).inc()


def _step_info(e: Event) -> tuple[str, str, str, str]:
    a = e.attrs
    return (str(a.get("kind") or "custom"), str(a.get("name") or ""), str(a.get("provider") or ""),
            str(a.get("model") or ""))


_HANDLERS = {
    EXECUTION_STARTED: Metrics._started,
    STEP_STARTED: Metrics._step_started,
    STEP_ENDED: Metrics._step_ended,
    GOVERNANCE_DECISION: Metrics._decision,
    EXECUTION_ENDED: Metrics._ended,
    APPROVAL_DECIDED: Metrics._approval,
}
