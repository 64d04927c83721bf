"""OpenTelemetry export (`execord.integrations.otel`): real executions, recorded by the SDK into
a real SQLite store, exported through the OpenTelemetry SDK's own in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import execord
from execord.errors import NotFound, StoreError
from execord.integrations import otel
from execord.record import build_event, genesis_hash, now_ts, ts_to_us, uuid7
from execord.store import steps_from_events

SECRET_IN = "prompt-4f1c-do-not-export"
SECRET_OUT = "answer-9b2e-do-not-export"
SECRET_ARG = "arg-77aa-do-not-export"
SECRET_RESULT = "result-d00d-do-not-export"
SECRET_LOG = "logdata-31c3-do-not-export"


# -- helpers ------------------------------------------------------------------------------------------


def exported(store: Any, *ids: str, **kw: Any) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    count = otel.export(store, list(ids), exporter, **kw)
    spans = list(exporter.get_finished_spans())
    assert count == len(spans) > 0
    return spans


def by_step(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["execord.step_id"]): s for s in spans if "execord.step_id" in (s.attributes or {})}


def root_of(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1, [s.name for s in roots]
    return roots[0]


def ns(ts: str) -> int:
    return ts_to_us(ts) * 1000


def signature(spans: Sequence[ReadableSpan]) -> list[Any]:
    """Everything an exporter sends of each span."""
    return [orjson.loads(s.to_json()) for s in spans]


def only_row(store: Any, workflow: str) -> dict[str, Any]:
    rows = [r for r in store.list_executions() if r["workflow"] == workflow]
    assert len(rows) == 1, rows
    return rows[0]


# -- the shape of a trace -----------------------------------------------------------------------------


def test_an_execution_is_a_trace_in_genai_conventions(engine: execord.Execord, store: Any) -> None:
    @execord.tool
    def lookup_order(order_id: str) -> dict[str, str]:
        return {"id": order_id, "status": "shipped"}

    @execord.step(kind="retrieval")
    def search_kb(query: str) -> list[str]:
        return ["kb/shipping.md"]

    @execord.step
    def summarize(docs: list[str]) -> str:
        return "ok"

    @execord.workflow(name="support", version="1.2.0", labels={"team": "care"})
    def support(question: str) -> str:
        lookup_order("A-1")
        with execord.step("draft", kind="llm", provider="openai", model="gpt-4o-mini",
                          params={"max_tokens": 64, "temperature": 0, "top_p": 0.5, "stop": "END", "n": 2},
                          input={"prompt": "hi"}) as s:
            s.record_usage(input_tokens=120, output_tokens=30, cached_input_tokens=20, reasoning_tokens=5,
                           cost_micros=4321, price_source="manual")
            s.set_output({"model": "gpt-4o-mini-2024-07-18", "id": "chatcmpl-1",
                          "choices": [{"finish_reason": "stop"}]})
        with execord.step("planner", kind="agent"):
            lookup_order("A-2")
        summarize(search_kb(question))
        return "done"

    support("where is my order?")
    row = only_row(store, "support")
    events = store.events(row["id"])
    steps = {s["name"] if s["name"] != "lookup_order" else f"lookup_order:{i}": s
             for i, s in enumerate(steps_from_events(events))}
    spans = exported(store, row["id"])

    assert [s.name for s in spans] == [
        "invoke_workflow support", "execute_tool lookup_order", "chat gpt-4o-mini", "invoke_agent planner",
        "execute_tool lookup_order", "retrieval search_kb", "summarize",
    ]
    root = root_of(spans)
    # One trace, whose id is the execution's UUIDv7.
    assert {s.context.trace_id for s in spans} == {int(row["id"].replace("-", ""), 16)}
    assert f"{root.context.trace_id:032x}" == row["id"].replace("-", "")
    assert len({s.context.span_id for s in spans}) == len(spans) and all(s.context.span_id for s in spans)
    assert all(s.context.trace_flags.sampled for s in spans)

    # The root: the workflow, its agent, its ids, totals; timestamps are the record's.
    ra = root.attributes
    assert root.kind == SpanKind.INTERNAL
    assert (ra["gen_ai.operation.name"], ra["gen_ai.workflow.name"], ra["gen_ai.agent.name"]) == (
        "invoke_workflow", "support", "test-agent")
    assert (ra["execord.execution_id"], ra["execord.status"], ra["execord.sealed"]) == (row["id"], "succeeded", True)
    assert ra["execord.workflow.version"] == "1.2.0" and ra["execord.label.team"] == "care"
    assert ra["execord.totals.cost_micros"] == 4321 and ra["execord.totals.steps"] == 6
    assert ra["execord.totals.llm_calls"] == 1 and ra["execord.totals.tool_calls"] == 2
    assert "execord.failure_class" not in ra and "error.type" not in ra
    assert "gen_ai.usage.input_tokens" not in ra  # totals are execord.*, so backends do not count twice
    assert (root.start_time, root.end_time) == (ns(events[0].ts), ns(events[-1].ts))
    assert root.status.status_code == StatusCode.UNSET
    assert root.resource.attributes["service.name"] == "test-agent"
    assert root.instrumentation_scope is not None and root.instrumentation_scope.name == "execord"

    spans_by_step = by_step(spans)
    for step in steps.values():
        span = spans_by_step[step["step_id"]]
        # Parent links follow parent_step_id; top-level steps hang off the root.
        parent = spans_by_step[step["parent_step_id"]] if step["parent_step_id"] else root
        assert span.parent is not None and span.parent.span_id == parent.context.span_id
        assert span.parent.trace_id == root.context.trace_id
        assert (span.start_time, span.end_time) == (ns(step["started_at"]), ns(step["ended_at"]))
        assert span.attributes["execord.execution_id"] == row["id"]
        assert span.attributes["execord.step.kind"] == step["kind"]
        assert span.attributes["execord.step.status"] == "ok"
        assert span.status.status_code == StatusCode.UNSET

    chat = spans_by_step[steps["draft"]["step_id"]]
    assert chat.kind == SpanKind.CLIENT
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.choice.count": 2,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.usage.cache_read.input_tokens": 20,
        "gen_ai.usage.reasoning.output_tokens": 5,
        "execord.execution_id": row["id"],
        "execord.step_id": steps["draft"]["step_id"],
        "execord.step.kind": "llm",
        "execord.step.name": "draft",
        "execord.step.status": "ok",
        "execord.cost_micros": 4321,
        "execord.price_source": "manual",
        "execord.latency_ms": steps["draft"]["latency_ms"],
    }
    assert isinstance(chat.attributes["gen_ai.request.temperature"], float)

    tool = spans_by_step[steps["lookup_order:0"]["step_id"]]
    assert tool.kind == SpanKind.INTERNAL
    assert (tool.attributes["gen_ai.operation.name"], tool.attributes["gen_ai.tool.name"],
            tool.attributes["gen_ai.tool.type"]) == ("execute_tool", "lookup_order", "function")
    assert "gen_ai.usage.input_tokens" not in tool.attributes

    agent = spans_by_step[steps["planner"]["step_id"]]
    assert (agent.attributes["gen_ai.operation.name"], agent.attributes["gen_ai.agent.name"]) == (
        "invoke_agent", "planner")
    nested = spans_by_step[steps["lookup_order:3"]["step_id"]]
    assert nested.parent is not None and nested.parent.span_id == agent.context.span_id
    assert nested.attributes["execord.parent_step_id"] == steps["planner"]["step_id"]

    retrieval = spans_by_step[steps["search_kb"]["step_id"]]
    assert retrieval.kind == SpanKind.CLIENT and retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    custom = spans_by_step[steps["summarize"]["step_id"]]
    assert "gen_ai.operation.name" not in custom.attributes and custom.attributes["execord.step.kind"] == "custom"


def test_exporting_twice_sends_the_same_trace_and_span_ids(engine: execord.Execord, store: Any) -> None:
    @execord.tool
    def lookup(order: int) -> str:
        return "shipped"

    @execord.workflow
    def twice(n: int) -> None:
        for i in range(n):
            lookup(i)

    twice(5)
    twice(2)
    ids = [r["id"] for r in store.list_executions()]
    first, second = exported(store, *ids), exported(store, *ids)
    assert signature(first) == signature(second)
    assert len(first) == 5 + 1 + 2 + 1
    # Each execution is its own trace; span ids match the documented derivation.
    assert len({s.context.trace_id for s in first}) == 2
    for span in first:
        owner = span.attributes.get("execord.step_id") or span.attributes["execord.execution_id"]
        assert span.context.span_id == otel.span_id_for(str(owner))
        assert span.context.trace_id == otel.trace_id_for(str(span.attributes["execord.execution_id"]))
    # to_spans gives what export sends, and takes an id prefix.
    again = otel.to_spans(store, ids[0][:13])
    assert signature(again) == [s for s in signature(first)
                                if s["attributes"]["execord.execution_id"] == ids[0]]


def test_a_failing_tool_is_an_error_span_and_a_failed_execution(engine: execord.Execord, store: Any) -> None:
    @execord.tool
    def charge(amount: int) -> None:
        raise ValueError("card declined")

    @execord.workflow
    def checkout() -> None:
        charge(12)

    with pytest.raises(ValueError):
        checkout()
    row = only_row(store, "checkout")
    spans = exported(store, row["id"])
    root, (tool,) = root_of(spans), [s for s in spans if s.parent is not None]

    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "ValueError: card declined"
    assert tool.attributes["error.type"] == "ValueError"
    assert tool.attributes["execord.step.status"] == "error"
    (exc,) = [e for e in tool.events if e.name == "exception"]
    assert dict(exc.attributes) == {"exception.type": "ValueError", "exception.message": "card declined"}
    assert exc.timestamp == tool.end_time

    assert root.status.status_code == StatusCode.ERROR
    assert root.status.description == "ValueError: card declined"
    assert root.attributes["error.type"] == "ValueError"
    assert (root.attributes["execord.status"], root.attributes["execord.failure_class"]) == (
        "failed", "connector_failure")
    assert root.attributes["execord.error.step_id"] == tool.attributes["execord.step_id"]


GOVERNANCE = """
version: 1
policies:
  - id: note-every-run
    on: [admission]
    when: "true"
    effect: warn
    message: Every run is reviewed weekly.
  - id: watch-llm
    on: [llm.request]
    when: llm.model == "gpt-4o-mini"
    effect: warn
    message: Small model in use.
  - id: no-shell
    on: [tool.request]
    when: tool.name == "shell"
    effect: deny
    message: Only ops agents may run shell commands.
"""


def test_governance_decisions_are_span_events_and_a_deny_is_an_error(governed: Any, store: Any) -> None:
    governed(GOVERNANCE)

    @execord.tool
    def shell(cmd: str) -> str:
        raise AssertionError("a denied tool must not run")

    @execord.workflow
    def ops() -> None:
        with execord.step("draft", kind="llm", provider="openai", model="gpt-4o-mini") as s:
            s.record_usage(input_tokens=3, output_tokens=1)
        shell("rm -rf /")

    with pytest.raises(execord.Halted):
        ops()
    row = only_row(store, "ops")
    events = store.events(row["id"])
    decisions = {e.attrs["phase"]: e for e in events if e.type == "governance.decision"}
    assert set(decisions) == {"admission", "llm.request", "tool.request"}
    spans = exported(store, row["id"])
    root = root_of(spans)
    spans_by_name = {s.name: s for s in spans}
    chat, blocked = spans_by_name["chat gpt-4o-mini"], spans_by_name["execute_tool shell"]

    def decision_events(span: ReadableSpan) -> list[Any]:
        return [e for e in span.events if e.name == "execord.governance.decision"]

    # The admission decision is on the root span; each step's on its own span.
    (admission,) = decision_events(root)
    assert admission.attributes["execord.governance.phase"] == "admission"
    assert admission.attributes["execord.governance.decision"] == "warn"
    assert admission.attributes["execord.governance.rule_ids"] == ("note-every-run",)
    assert admission.attributes["execord.governance.messages"] == ("Every run is reviewed weekly.",)
    assert admission.attributes["execord.event.seq"] == decisions["admission"].seq
    assert admission.timestamp == ns(decisions["admission"].ts)
    assert admission.attributes["execord.governance_version"] == row["governance_version"]

    (llm_event,) = decision_events(chat)
    assert (llm_event.attributes["execord.governance.phase"], llm_event.attributes["execord.governance.decision"],
            llm_event.attributes["execord.governance.rule_ids"]) == ("llm.request", "warn", ("watch-llm",))
    assert chat.status.status_code == StatusCode.UNSET  # a warning is not an error
    assert chat.attributes["execord.governance.decision"] == "warn"

    (deny,) = decision_events(blocked)
    assert deny.attributes["execord.governance.decision"] == "deny"
    assert deny.attributes["execord.governance.rule_ids"] == ("no-shell",)
    assert deny.attributes["execord.governance.rule_effects"] == ("deny",)
    assert deny.attributes["execord.event.seq"] == decisions["tool.request"].seq
    assert deny.timestamp == ns(decisions["tool.request"].ts)
    assert blocked.start_time <= deny.timestamp <= blocked.end_time
    assert blocked.status.status_code == StatusCode.ERROR
    assert blocked.status.description == (
        "blocked at tool.request: deny by no-shell: Only ops agents may run shell commands.")
    assert blocked.attributes["error.type"] == "execord.blocked"
    assert blocked.attributes["execord.step.status"] == "blocked"
    assert blocked.attributes["execord.governance.decision"] == "deny"
    assert blocked.attributes["execord.governance.rule_ids"] == ("no-shell",)

    assert root.status.status_code == StatusCode.ERROR
    assert root.status.description == "halted (policy) by no-shell at tool.request"
    ra = root.attributes
    assert (ra["execord.status"], ra["execord.failure_class"], ra["error.type"]) == (
        "halted", "policy_block", "execord.halted")
    assert (ra["execord.halt.reason"], ra["execord.halt.rule_id"], ra["execord.halt.phase"],
            ra["execord.halt.seq"]) == ("policy", "no-shell", "tool.request", decisions["tool.request"].seq)
    assert ra["execord.governance_version"] == row["governance_version"]
    assert "execord.halt.budget_id" not in ra


def test_a_budget_halt_names_the_budget(governed: Any, store: Any) -> None:
    governed("""
        version: 1
        budgets:
          execution:
            tool_calls: 1
        """)

    @execord.tool
    def ping() -> str:
        return "pong"

    @execord.workflow
    def chatty() -> None:
        ping()
        ping()

    with pytest.raises(execord.Halted):
        chatty()
    spans = exported(store, only_row(store, "chatty")["id"])
    root = root_of(spans)
    assert root.attributes["execord.halt.reason"] == "budget"
    assert root.attributes["execord.halt.budget_id"] == "execution.tool_calls"
    assert root.status.description is not None and "execution.tool_calls" in root.status.description
    blocked = [s for s in spans if s.attributes.get("execord.step.status") == "blocked"]
    assert len(blocked) == 1
    assert blocked[0].status.status_code == StatusCode.ERROR
    assert "execution.tool_calls" in str(blocked[0].status.description)
    (event,) = [e for e in blocked[0].events if e.name == "execord.governance.decision"]
    assert event.attributes["execord.governance.budgets_exceeded"] == ("execution.tool_calls",)


# -- content ---------------------------------------------------------------------------------------------


def _record_with_content(store: Any) -> str:
    @execord.tool
    def fetch(arg: str) -> dict[str, str]:
        return {"value": SECRET_RESULT}

    @execord.workflow
    def private(question: str) -> str:
        with execord.step("draft", kind="llm", provider="openai", model="gpt-4o-mini",
                          input={"prompt": SECRET_IN}) as s:
            s.set_output({"text": SECRET_OUT})
        fetch(SECRET_ARG)
        execord.log("fetched", note=SECRET_LOG)
        return SECRET_OUT

    private(SECRET_IN)
    return str(only_row(store, "private")["id"])


def test_content_is_not_exported_by_default(engine: execord.Execord, store: Any) -> None:
    execution_id = _record_with_content(store)
    spans = exported(store, execution_id)
    text = orjson.dumps(signature(spans)).decode()
    for secret in (SECRET_IN, SECRET_OUT, SECRET_ARG, SECRET_RESULT, SECRET_LOG):
        assert secret not in text
    for span in spans:
        assert not {"execord.step.input", "execord.step.output", "gen_ai.tool.call.arguments",
                    "gen_ai.tool.call.result", "execord.execution.input", "execord.execution.output",
                    "gen_ai.input.messages", "gen_ai.output.messages"} & set(span.attributes)
    # The log itself is there (its level and message), without its data.
    (log,) = [e for e in root_of(spans).events if e.name == "execord.log"]
    assert dict(log.attributes) == {"execord.event.seq": log.attributes["execord.event.seq"],
                                    "execord.log.level": "info", "execord.log.message": "fetched"}


def test_content_is_exported_when_asked(engine: execord.Execord, store: Any) -> None:
    execution_id = _record_with_content(store)
    spans = exported(store, execution_id, include_content=True)
    root = root_of(spans)
    by_name = {s.name: s for s in spans}
    assert orjson.loads(root.attributes["execord.execution.input"]) == {"question": SECRET_IN}
    assert orjson.loads(root.attributes["execord.execution.output"]) == SECRET_OUT
    chat = by_name["chat gpt-4o-mini"]
    assert orjson.loads(chat.attributes["execord.step.input"]) == {"prompt": SECRET_IN}
    assert orjson.loads(chat.attributes["execord.step.output"]) == {"text": SECRET_OUT}
    tool = by_name["execute_tool fetch"]
    assert orjson.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"arg": SECRET_ARG}
    assert orjson.loads(tool.attributes["gen_ai.tool.call.result"]) == {"value": SECRET_RESULT}
    (log,) = [e for e in root.events if e.name == "execord.log"]
    assert orjson.loads(log.attributes["execord.log.data"]) == {"note": SECRET_LOG}


# -- states the SDK cannot easily reach: approvals, cancels, a step cut off ---------------------------------


class _Chain:
    """A hand-made, valid record, appended event by event."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.id = uuid7()
        self.events: list[Any] = []

    def add(self, type_: str, attrs: dict[str, Any], **kw: Any) -> Any:
        prev = self.events[-1].hash if self.events else genesis_hash(self.id)
        e = build_event(self.id, len(self.events), type_, now_ts(), attrs, prev, **kw)
        self.store.append([e])
        self.events.append(e)
        return e


def test_approvals_cancels_and_a_step_that_never_ended(store: Any) -> None:
    c = _Chain(store)
    c.add("execution.started", {
        "agent": {"name": "refund-bot", "version": "3.1", "roles": ["finance"]},
        "workflow": {"name": "refunds", "version": None}, "execution_type": "workflow",
        "parent_execution_id": None, "labels": {}, "inputs": None, "governance_version": None,
        "sdk": {}, "host": {"hostname": "worker-7", "pid": 42}, "lease_s": 30})
    step = uuid7()
    c.add("step.started", {"kind": "tool", "name": "issue_refund", "input": None}, step_id=step)
    c.add("approval.requested", {"approval_id": "ap_1", "rule_id": "big-refunds", "step_id": step,
                                 "action_digest": "ab" * 32, "approvers": ["finance"],
                                 "expires_at": "2099-01-01T00:00:00.000000Z",
                                 "message": "needs a second pair of eyes"})
    c.add("approval.decided", {"approval_id": "ap_1", "decision": "approved", "reviewer": "bob",
                               "comment": None})
    cancel = c.add("cancel.requested", {"by": "alice", "reason": "wrong customer"})
    running = otel.to_spans(store, c.id)
    assert root_of(running).attributes["execord.status"] == "running"
    assert root_of(running).attributes["execord.sealed"] is False
    assert root_of(running).end_time == ns(cancel.ts)
    assert all(s.status.status_code == StatusCode.UNSET for s in running)

    end = c.add("execution.ended", {"status": "cancelled", "error": None, "halt": None,
                                    "cancel": {"by": "alice", "reason": "wrong customer"},
                                    "failure_class": "cancelled",
                                    "totals": {"input_tokens": 0, "output_tokens": 0, "cost_micros": 0,
                                               "llm_calls": 0, "tool_calls": 1, "steps": 1, "duration_ms": 5}})
    spans = otel.to_spans(store, c.id)
    root, (tool,) = root_of(spans), [s for s in spans if s.parent is not None]
    assert root.resource.attributes["service.name"] == "refund-bot"
    assert root.resource.attributes["service.version"] == "3.1"
    assert root.resource.attributes["host.name"] == "worker-7"
    assert root.attributes["execord.agent.roles"] == ("finance",)

    assert [e.name for e in tool.events] == ["execord.approval.requested", "execord.approval.decided"]
    requested, decided = tool.events
    assert requested.attributes["execord.approval.rule_id"] == "big-refunds"
    assert requested.attributes["execord.approval.approvers"] == ("finance",)
    assert (decided.attributes["execord.approval.decision"], decided.attributes["execord.approval.reviewer"]) == (
        "approved", "bob")
    # The step never ended: its span ends with the execution, as an error.
    assert tool.attributes["execord.step.status"] == "unfinished"
    assert tool.end_time == root.end_time == ns(end.ts)
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "the step did not end: the execution ended cancelled"

    (cancelled,) = [e for e in root.events if e.name == "execord.cancel.requested"]
    assert dict(cancelled.attributes) == {"execord.event.seq": cancel.seq, "execord.cancel.by": "alice",
                                          "execord.cancel.reason": "wrong customer"}
    assert root.status.status_code == StatusCode.ERROR
    assert root.status.description == "cancelled by alice: wrong customer"
    assert root.attributes["error.type"] == "execord.cancelled"


def test_a_nested_execution_links_to_its_parent(engine: execord.Execord, store: Any) -> None:
    with execord.execution("outer") as outer, execord.execution("inner") as inner:
        pass
    child = root_of(otel.to_spans(store, inner.id))
    assert child.attributes["execord.parent_execution_id"] == outer.id
    (link,) = child.links
    parent_root = root_of(otel.to_spans(store, outer.id))
    assert (link.context.trace_id, link.context.span_id) == (
        parent_root.context.trace_id, parent_root.context.span_id)
    assert link.attributes["execord.link"] == "parent_execution"
    assert not parent_root.links


# -- export, export_since --------------------------------------------------------------------------------


class _Counting(SpanExporter):
    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.batches: list[list[ReadableSpan]] = []
        self.result = result

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(list(spans))
        return self.result

    def shutdown(self) -> None:
        pass


def test_export_sends_one_batch_and_reports_failures(engine: execord.Execord, store: Any, db_path: str) -> None:
    for name in ("a", "b", "c"):
        with execord.execution(name):
            with execord.step("s"):
                pass
    ids = [r["id"] for r in store.list_executions()]
    exporter = _Counting()
    assert otel.export(db_path, ids, exporter) == 6  # a path works as well as a store
    assert [len(b) for b in exporter.batches] == [6]
    assert otel.export(store, [], exporter) == 0 and len(exporter.batches) == 1

    with pytest.raises(otel.OtelExportError) as err:
        otel.export(store, ids[:1], _Counting(SpanExportResult.FAILURE))
    assert err.value.spans == 2 and isinstance(err.value, execord.ExecordError)
    with pytest.raises(NotFound):
        otel.export(store, [ids[0], "ffffffff-ffff-7fff-bfff-ffffffffffff"], exporter)
    assert len(exporter.batches) == 1  # nothing sent for a request that names a missing execution


def test_export_since_pages_through_sealed_executions(engine: execord.Execord, store: Any) -> None:
    for i in range(5):
        with execord.execution("batch", labels={"i": str(i)}):
            pass
    with execord.execution("other"):
        pass
    with execord.execution("batch") as running:
        engine.flush()
        exporter = _Counting()
        assert otel.export_since(store, "1h", exporter, workflow="batch", page_size=2) == 5
        assert [len(b) for b in exporter.batches] == [1, 2, 2]  # newest first; the running one skipped
        exported_ids = {s.attributes["execord.execution_id"] for b in exporter.batches for s in b}
        assert running.id not in exported_ids and len(exported_ids) == 5

        with_running = _Counting()
        assert otel.export_since(store, "1h", with_running, workflow="batch", include_running=True) == 6
        (live,) = [s for s in with_running.batches[0] if s.attributes["execord.execution_id"] == running.id]
        assert live.attributes["execord.sealed"] is False

        assert otel.export_since(store, "1h", _Counting(), until="2000-01-01T00:00:00Z") == 0
        with pytest.raises(execord.ConfigError, match="since"):
            otel.export_since(store, "yesterday", _Counting())


def test_spans_encode_as_otlp(engine: execord.Execord, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.common import (
        trace_encoder as encoder,  # the otel extra installs it
    )

    with execord.execution("w") as run, execord.step("draft", kind="llm", model="m") as s:
        s.record_usage(input_tokens=1, output_tokens=2)
    request = encoder.encode_spans(otel.to_spans(store, run.id))
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "execord"
    assert [s.name for s in scope_spans.spans] == ["invoke_workflow w", "chat m"]
    assert {bytes(s.trace_id).hex() for s in scope_spans.spans} == {run.id.replace("-", "")}


# -- without the OpenTelemetry SDK ----------------------------------------------------------------------


def test_without_the_sdk_a_clear_error(monkeypatch: pytest.MonkeyPatch, engine: execord.Execord,
                                       store: Any) -> None:
    with execord.execution("w") as run:
        pass
    for name in list(sys.modules):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(otel, "_otel_cache", [])
    with pytest.raises(execord.ConfigError, match="pip install opentelemetry-sdk"):
        otel.to_spans(store, run.id)
    with pytest.raises(execord.ConfigError, match="pip install opentelemetry-sdk"):
        otel.export_since(store, "1h", object())  # type: ignore[arg-type]


def test_importing_execord_does_not_import_opentelemetry(tmp_path: Any) -> None:
    code = ("import sys, execord, execord.integrations.otel; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'); "
            "print(loaded); sys.exit(1 if loaded else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_path_that_is_no_store_is_refused(tmp_path: Any) -> None:
    with pytest.raises(StoreError):
        otel.to_spans(str(tmp_path / "nope.db"), "01a2014f-a0b0-72f4-87bf-254fc9ff0a73")
    assert not (tmp_path / "nope.db").exists()  # looking does not create a store
