"""The OpenAI Agents SDK integration: real `agents.Agent`s and `Runner`, on the official
`openai` client pointed at a local fake Responses API (never the internet).

What a user relies on: after `execord.init()`, a `Runner.run` is one execution whose steps
are the agents that ran, their model calls (once each), their function tools (with arguments
and results) and their handoffs, nested as they happened; a deny on a tool stops it before
its function runs and `Runner.run` raises `execord.Halted`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agents
import pytest
from _fake_openai import FakeOpenAI
from _helpers import only
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    ShellTool,
    function_tool,
)
from openai import AsyncOpenAI
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import execord
from execord import integrations
from execord.integrations import openai_agents
from execord.store import blob_value, steps_from_events

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
USAGE = {"input_tokens": 220, "output_tokens": 30, "total_tokens": 250,
         "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}


# -- a scripted Responses API ---------------------------------------------------------------------


class ScriptedResponses:
    """Answers ``POST /v1/responses`` with the next scripted output item (JSON or SSE)."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.script: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []
        server.expect_request("/v1/responses", method="POST").respond_with_handler(self._answer)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/v1")

    def call(self, name: str, **arguments: Any) -> ScriptedResponses:
        n = len(self.script) + 1
        self.script.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "status": "completed",
                            "name": name, "arguments": json.dumps(arguments)})
        return self

    def shell(self, *commands: str) -> ScriptedResponses:
        n = len(self.script) + 1
        self.script.append({"type": "shell_call", "id": f"sh_{n}", "call_id": f"call_{n}", "status": "completed",
                            "action": {"commands": list(commands), "timeout_ms": 1000, "max_output_length": 1000}})
        return self

    def say(self, text: str) -> ScriptedResponses:
        n = len(self.script) + 1
        self.script.append({"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]})
        return self

    def _answer(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.bodies.append(body)
        if not self.script:
            return Response(json.dumps({"error": {"message": "the script is over", "type": "server_error"}}),
                            status=500, content_type="application/json")
        item = self.script.pop(0)
        response = {
            "id": f"resp_{len(self.bodies)}", "object": "response", "created_at": 1764633600, "model": body["model"],
            "status": "completed", "output": [item], "usage": USAGE, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        }
        if not body.get("stream"):
            return Response(json.dumps(response), status=200, content_type="application/json")
        events = [{"type": "response.created", "sequence_number": 0,
                   "response": {**response, "status": "in_progress", "output": [], "usage": None}},
                  {"type": "response.completed", "sequence_number": 1, "response": response}]
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return Response(sse, status=200, content_type="text/event-stream")


@pytest.fixture(autouse=True)
def _no_openai_exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK's default trace exporter would post to api.openai.com: not in these tests."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    multi = agents.tracing.get_trace_provider()._multi_processor  # type: ignore[attr-defined]
    saved = multi._processors
    agents.set_trace_processors([])
    yield
    integrations.uninstrument()
    multi.set_processors(list(saved))


@pytest.fixture
def api(httpserver: HTTPServer) -> ScriptedResponses:
    return ScriptedResponses(httpserver)


@pytest.fixture
def model(api: ScriptedResponses) -> OpenAIResponsesModel:
    return OpenAIResponsesModel(model=MODEL, openai_client=AsyncOpenAI(base_url=api.base_url, api_key="sk-test",
                                                                       max_retries=0))


class Shop:
    """A support agent with a refund tool and a handoff to a billing agent."""

    def __init__(self, model: OpenAIResponsesModel, fail: bool = False):
        self.refunds: list[tuple[str, float]] = []

        @function_tool
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            if fail:
                raise ConnectionError("the payments API is down")
            self.refunds.append((order_id, amount))
            return f"refunded {amount:.2f} on {order_id}"

        self.billing = Agent(name="Billing", instructions="You handle invoices.", model=model)
        self.support = Agent(name="Support", instructions="You help customers.", model=model,
                             tools=[refund], handoffs=[self.billing])


def script_the_shop(api: ScriptedResponses) -> None:
    api.call("refund", order_id="A-1001", amount=20).call("transfer_to_billing").say("Refunded; Billing will follow up.")


def steps_of(ex: execord.Execord, execution_id: str) -> list[dict[str, Any]]:
    ex.flush()
    steps = steps_from_events(ex.store.events(execution_id))
    for s in steps:
        s["input"] = blob_value(ex.store, s["input"])
        s["output"] = blob_value(ex.store, s["output"])
    return steps


def run_output(ex: execord.Execord, execution_id: str) -> Any:
    """What ``execution.ended`` recorded as the execution's output."""
    ended = ex.store.events(execution_id)[-1]
    assert ended.type == "execution.ended"
    return blob_value(ex.store, ended.attrs["output"])


def tree(steps: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(kind, name, parent's name) of each step, in start order."""
    names = {s["step_id"]: s["name"] for s in steps}
    return [(s["kind"], s["name"], names.get(s["parent_step_id"])) for s in steps]


SHOP_TREE = [
    ("agent", "Support", None),
    ("llm", "openai.responses", "Support"),
    ("tool", "refund", "Support"),
    ("llm", "openai.responses", "Support"),
    ("custom", "handoff", "Support"),
    ("agent", "Billing", None),
    ("llm", "openai.responses", "Billing"),
]


# -- a run is one execution -----------------------------------------------------------------------


async def test_a_run_is_one_execution_with_its_agents_tool_and_handoff_as_nested_steps(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    shop = Shop(model)
    script_the_shop(api)

    result = await Runner.run(shop.support, "Please refund order A-1001, 20 EUR.")

    assert result.final_output == "Refunded; Billing will follow up."
    assert shop.refunds == [("A-1001", 20.0)]
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["execution_type"], run["status"]) == ("Support", "agent", "succeeded")
    assert run_output(engine, run["id"]) == "Refunded; Billing will follow up."
    steps = steps_of(engine, run["id"])
    assert tree(steps) == SHOP_TREE
    assert all(s["status"] == "ok" for s in steps)
    by_name = {s["name"]: s for s in steps if s["kind"] != "llm"}
    tool = by_name["refund"]
    assert tool["input"] == {"order_id": "A-1001", "amount": 20}
    assert tool["output"] == "refunded 20.00 on A-1001"
    assert by_name["handoff"]["input"] == {"from_agent": "Support"}
    assert by_name["handoff"]["output"] == {"from_agent": "Support", "to_agent": "Billing"}
    assert by_name["Support"]["output"]["tools"] == ["refund"]
    # One llm step per request the server received (the openai integration's), none from the spans.
    llm = [s for s in steps if s["kind"] == "llm"]
    assert len(llm) == len(api.bodies) == 3
    assert all(s["usage"]["input_tokens"] == 220 and s["model"] == MODEL for s in llm)
    assert run["totals"]["llm_calls"] == 3 and run["totals"]["tool_calls"] == 1
    assert run["totals"]["input_tokens"] == 3 * 220


async def test_inside_a_workflow_the_run_is_part_of_that_execution(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    shop = Shop(model)
    script_the_shop(api)

    @execord.workflow
    async def handle_ticket(ticket: str) -> str:
        with execord.step("triage", kind="custom"):
            result = await Runner.run(shop.support, ticket)
        return str(result.final_output)

    assert await handle_ticket("refund A-1001") == "Refunded; Billing will follow up."
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["status"]) == ("handle_ticket", "succeeded")
    steps = steps_of(engine, run["id"])
    assert tree(steps)[0] == ("custom", "triage", None)
    assert [(k, n, p if p != "triage" else None) for k, n, p in tree(steps)[1:]] == SHOP_TREE
    assert {p for k, n, p in tree(steps) if k == "agent"} == {"triage"}


async def test_a_chat_completions_model_is_recorded_once_too(engine: execord.Execord, httpserver: HTTPServer) -> None:
    fake = FakeOpenAI(httpserver).install()
    client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    agent = Agent(name="Tracker", instructions="Track orders.",
                  model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client))

    result = await Runner.run(agent, "Where is order A-1001?")

    assert result.final_output == fake.reply
    engine.flush()
    steps = steps_of(engine, only(engine.store)["id"])
    assert tree(steps) == [("agent", "Tracker", None), ("llm", "openai.chat.completions", "Tracker")]
    assert len(fake.bodies) == 1 and steps[1]["usage"]["input_tokens"] > 0


async def test_with_tracing_disabled_the_run_keeps_its_execution_tools_and_model_calls(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    shop = Shop(model)
    script_the_shop(api)

    await Runner.run(shop.support, "refund A-1001", run_config=agents.RunConfig(tracing_disabled=True))

    engine.flush()
    run = only(engine.store)
    assert run["status"] == "succeeded"
    assert tree(steps_of(engine, run["id"])) == [  # no agent or handoff steps: those come from the spans
        ("llm", "openai.responses", None), ("tool", "refund", None),
        ("llm", "openai.responses", None), ("llm", "openai.responses", None)]


def test_run_sync_is_one_execution_too(engine: execord.Execord, api: ScriptedResponses,
                                       model: OpenAIResponsesModel) -> None:
    shop = Shop(model)
    script_the_shop(api)
    try:
        result = Runner.run_sync(shop.support, "refund A-1001")
    finally:
        loop = asyncio.get_event_loop_policy().get_event_loop()  # the SDK leaves its loop open
        loop.close()
        asyncio.set_event_loop(None)
    assert result.final_output == "Refunded; Billing will follow up."
    engine.flush()
    run = only(engine.store)
    assert run["status"] == "succeeded"
    assert tree(steps_of(engine, run["id"])) == SHOP_TREE


async def test_a_streamed_run_is_one_execution_ended_with_the_stream(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    shop = Shop(model)
    script_the_shop(api)

    result = Runner.run_streamed(shop.support, "refund A-1001")
    from execord.runtime import current_frame

    assert current_frame.get() is None  # the caller's context is not inside the run's execution
    kinds = [event.type async for event in result.stream_events()]

    assert "run_item_stream_event" in kinds
    assert result.final_output == "Refunded; Billing will follow up."
    engine.flush()
    run = only(engine.store)
    assert (run["status"], run["execution_type"]) == ("succeeded", "agent")
    assert run_output(engine, run["id"]) == "Refunded; Billing will follow up."
    assert tree(steps_of(engine, run["id"])) == SHOP_TREE


# -- tools ----------------------------------------------------------------------------------------


async def test_a_denied_tool_never_runs_and_the_run_raises_halted(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-refunds
            on: [tool.request]
            when: tool.name == "refund"
            effect: deny
            message: Refunds need a person.
    """)
    shop = Shop(model)
    script_the_shop(api)

    with pytest.raises(execord.Halted) as caught:
        await Runner.run(shop.support, "refund A-1001")

    assert shop.refunds == []  # the tool's function never ran
    assert caught.value.rule_id == "no-refunds" and caught.value.phase == "tool.request"
    assert len(api.bodies) == 1  # nothing was sent after the refusal
    ex.flush()
    run = only(ex.store)
    assert (run["status"], run["failure_class"]) == ("halted", "policy_block")
    assert run["halt"]["rule_id"] == "no-refunds"
    steps = steps_of(ex, run["id"])
    assert tree(steps) == SHOP_TREE[:3]
    tool = steps[2]
    assert (tool["status"], tool["input"]) == ("blocked", {"order_id": "A-1001", "amount": 20})
    assert steps[0]["status"] == "error" and steps[0]["error"]["type"] == "execord.errors.Halted"
    assert run["totals"]["tool_calls"] == 0


async def test_a_tool_that_raises_is_an_error_step_and_the_sdk_tells_the_model(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    shop = Shop(model, fail=True)
    script_the_shop(api)

    result = await Runner.run(shop.support, "refund A-1001")

    assert result.final_output == "Refunded; Billing will follow up."
    sent_back = [i for i in api.bodies[1]["input"] if i.get("type") == "function_call_output"]
    assert "error" in sent_back[0]["output"].lower()  # the SDK's failure_error_function answered the model
    engine.flush()
    run = only(engine.store)
    assert run["status"] == "succeeded"
    tool = next(s for s in steps_of(engine, run["id"]) if s["kind"] == "tool")
    assert tool["status"] == "error"
    assert tool["error"]["type"] == "ConnectionError" and "payments API is down" in tool["error"]["message"]


async def test_redactions_apply_to_what_the_function_receives_and_the_model_gets_back(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: mask-contact
            on: [tool.request, tool.response]
            effect: redact
            detectors: [email]
    """)
    received: list[str] = []

    @function_tool
    def notify(address: str) -> str:
        """Email the customer."""
        received.append(address)
        return "sent; replies go to ops@example.com"

    agent = Agent(name="Notifier", instructions="Notify.", model=model, tools=[notify])
    api.call("notify", address="jane.doe@example.com").say("Sent.")

    await Runner.run(agent, "tell jane")

    assert len(received) == 1 and "jane.doe@example.com" not in received[0]
    (returned,) = [i["output"] for i in api.bodies[1]["input"] if i.get("type") == "function_call_output"]
    assert returned.startswith("sent; replies go to ") and "ops@example.com" not in returned  # what the model got
    ex.flush()
    tool = next(s for s in steps_of(ex, only(ex.store)["id"]) if s["kind"] == "tool")
    assert tool["input"] == {"address": received[0]}
    assert tool["output"] == returned


async def test_an_agent_used_as_a_tool_nests_under_that_tool_s_step(
        engine: execord.Execord, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    writer = Agent(name="Writer", instructions="Write replies.", model=model)
    lead = Agent(name="Lead", instructions="Delegate.", model=model,
                 tools=[writer.as_tool(tool_name="write_reply", tool_description="Draft a reply.")])
    api.call("write_reply", input="thank the customer").say("Thank you!").say("Sent: Thank you!")

    result = await Runner.run(lead, "reply to the customer")

    assert result.final_output == "Sent: Thank you!"
    engine.flush()
    run = only(engine.store)  # the inner run is part of the outer execution
    assert tree(steps_of(engine, run["id"])) == [
        ("agent", "Lead", None),
        ("llm", "openai.responses", "Lead"),
        ("tool", "write_reply", "Lead"),
        ("agent", "Writer", "write_reply"),
        ("llm", "openai.responses", "Writer"),
        ("llm", "openai.responses", "Lead"),
    ]


async def test_native_tools_are_governed_by_name(governed: Any, api: ScriptedResponses,
                                                 model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-shell
            on: [tool.request]
            when: tool.name == "shell"
            effect: deny
    """)
    ran: list[Any] = []

    async def executor(request: Any) -> str:
        ran.append(request)
        return "README.md"

    agent = Agent(name="Ops", instructions="Operate.", model=model, tools=[ShellTool(executor=executor)])
    api.shell("ls").say("Listed.")

    with pytest.raises(execord.Halted):
        await Runner.run(agent, "list the files")

    assert ran == []
    ex.flush()
    run = only(ex.store)
    assert run["status"] == "halted"
    assert [(s["kind"], s["name"], s["status"]) for s in steps_of(ex, run["id"])][1:] == [
        ("llm", "openai.responses", "ok"), ("tool", "shell", "blocked")]


async def test_a_tool_waiting_for_approval_does_not_run_when_nobody_approves(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: refunds-need-finance
            on: [tool.request]
            when: tool.name == "refund" && tool.args.amount > 10
            effect: require_approval
            approvers: [finance]
            timeout: 300ms
            on_timeout: reject
    """)
    shop = Shop(model)
    script_the_shop(api)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(execord.Halted) as caught:
            await Runner.run(shop.support, "refund A-1001")
    finally:
        ticker.cancel()

    assert caught.value.reason == "approval_expired"
    assert shop.refunds == []
    assert ticks > 5  # the wait did not block the event loop
    ex.flush()
    run = only(ex.store)
    assert (run["status"], run["failure_class"]) == ("halted", "approval")
    tool = next(s for s in steps_of(ex, run["id"]) if s["kind"] == "tool")
    assert tool["status"] == "blocked"


async def test_a_function_tool_made_from_an_execord_tool_is_one_step(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-refunds
            on: [tool.request]
            when: tool.name == "refund"
            effect: deny
    """)
    ran: list[str] = []

    @execord.tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        ran.append(order_id)
        return "delivered"

    @execord.tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        ran.append("refund " + order_id)
        return "refunded"

    agent = Agent(name="Clerk", instructions="Help.", model=model, tools=[function_tool(lookup), function_tool(refund)])
    api.call("lookup", order_id="A-1").call("refund", order_id="A-1").say("never")

    with pytest.raises(execord.Halted):  # refused inside the function, where the SDK would have told the model
        await Runner.run(agent, "refund A-1")

    assert ran == ["A-1"]
    assert len(api.bodies) == 2
    ex.flush()
    run = only(ex.store)
    assert run["status"] == "halted"
    assert [(s["kind"], s["name"], s["status"]) for s in steps_of(ex, run["id"]) if s["kind"] == "tool"] == [
        ("tool", "lookup", "ok"), ("tool", "refund", "blocked")]


# -- handoffs and agents --------------------------------------------------------------------------


async def test_a_denied_handoff_stops_the_run_before_the_next_agent(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-handoffs
            on: [step.request]
            when: step.kind == "custom" && step.name == "handoff"
            effect: deny
    """)
    shop = Shop(model)
    script_the_shop(api)

    with pytest.raises(execord.Halted) as caught:
        await Runner.run(shop.support, "refund A-1001")

    assert caught.value.rule_id == "no-handoffs"
    assert len(api.bodies) == 2  # Billing never ran
    from execord.runtime import current_frame

    # Stopped from inside the SDK's tracing, the run still unwound cleanly.
    assert agents.tracing.get_current_trace() is None and agents.tracing.get_current_span() is None
    assert current_frame.get() is None
    ex.flush()
    run = only(ex.store)
    assert run["status"] == "halted"
    steps = steps_of(ex, run["id"])
    assert tree(steps) == SHOP_TREE[:5]
    assert steps[4]["status"] == "blocked"


async def test_a_run_after_a_halt_is_refused_before_any_call(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-refunds
            on: [tool.request]
            when: tool.name == "refund"
            effect: deny
    """)
    shop = Shop(model)
    script_the_shop(api)

    @execord.workflow
    async def twice() -> str:
        with pytest.raises(execord.Halted):
            await Runner.run(shop.support, "refund A-1001")
        sent = len(api.bodies)
        with pytest.raises(execord.Halted):
            await Runner.run(shop.billing, "anything else?")
        assert len(api.bodies) == sent  # the second run did not reach the model
        return "done"

    assert await twice() == "done"
    ex.flush()
    assert only(ex.store)["status"] == "halted"


async def test_a_denied_agent_never_calls_the_model(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: billing-is-closed
            on: [step.request]
            when: step.kind == "agent" && step.name == "Billing"
            effect: deny
    """)
    shop = Shop(model)
    script_the_shop(api)

    with pytest.raises(execord.Halted) as caught:
        await Runner.run(shop.support, "refund A-1001")

    assert caught.value.rule_id == "billing-is-closed"
    assert len(api.bodies) == 2
    ex.flush()
    steps = steps_of(ex, only(ex.store)["id"])
    assert tree(steps) == SHOP_TREE[:6]
    assert steps[5]["status"] == "blocked"


async def test_a_denied_admission_is_a_halted_execution_with_no_steps(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: closed
            on: [admission]
            when: true
            effect: deny
    """)
    shop = Shop(model)
    script_the_shop(api)

    with pytest.raises(execord.Halted):
        await Runner.run(shop.support, "refund A-1001")

    assert api.bodies == []
    ex.flush()
    run = only(ex.store)
    assert run["status"] == "halted" and run["halt"]["phase"] == "admission"
    assert steps_of(ex, run["id"]) == []


async def test_a_streamed_run_raises_halted_from_its_events(
        governed: Any, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = governed("""
        policies:
          - id: no-refunds
            on: [tool.request]
            when: tool.name == "refund"
            effect: deny
    """)
    shop = Shop(model)
    script_the_shop(api)

    result = Runner.run_streamed(shop.support, "refund A-1001")
    with pytest.raises(execord.Halted) as caught:
        async for _ in result.stream_events():
            pass

    assert caught.value.rule_id == "no-refunds"
    assert shop.refunds == []
    ex.flush()
    run = only(ex.store)
    assert (run["status"], run["halt"]["rule_id"]) == ("halted", "no-refunds")


# -- switching on and off -------------------------------------------------------------------------


def test_the_processor_is_added_next_to_the_user_s_and_kept_by_set_trace_processors(
        engine: execord.Execord) -> None:
    multi = agents.tracing.get_trace_provider()._multi_processor  # type: ignore[attr-defined]
    ours = openai_agents._processor
    assert ours is not None and ours in multi._processors

    class Mine(agents.tracing.TracingProcessor):
        def on_trace_start(self, trace: Any) -> None: ...
        def on_trace_end(self, trace: Any) -> None: ...
        def on_span_start(self, span: Any) -> None: ...
        def on_span_end(self, span: Any) -> None: ...
        def shutdown(self) -> None: ...
        def force_flush(self) -> None: ...

    mine = Mine()
    agents.set_trace_processors([mine])
    assert list(multi._processors) == [mine, ours]
    openai_agents.instrument(agents)  # instrumenting again changes nothing
    execord.init(agent="again", db=str(Path.cwd() / "again.db"))
    assert list(multi._processors) == [mine, ours]
    original = agents.run.AgentRunner.run.__execord_original__
    assert not hasattr(original, "__execord_original__")  # wrapped once

    integrations.uninstrument()
    assert list(multi._processors) == [mine]
    assert not hasattr(agents.run.AgentRunner.run, "__execord_original__")


async def test_with_the_integration_off_runs_are_not_recorded(
        db_path: str, api: ScriptedResponses, model: OpenAIResponsesModel) -> None:
    ex = execord.init(agent="test-agent", db=db_path, integrations="none")
    shop = Shop(model)
    script_the_shop(api)

    await Runner.run(shop.support, "refund A-1001")

    assert shop.refunds == [("A-1001", 20.0)]
    ex.flush()
    assert ex.store.list_executions() == []


# -- the example ----------------------------------------------------------------------------------


def test_the_example_runs_offline_and_records_its_steps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECORD_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "openai_agents_agent.py")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    from execord.store import open_store

    store = open_store(str(tmp_path / ".execord" / "execord.db"))
    try:
        run = only(store)
        assert (run["workflow"], run["status"], run["execution_type"]) == ("Front desk", "succeeded", "agent")
        steps = steps_from_events(store.events(run["id"]))
        assert tree(steps) == [
            ("agent", "Front desk", None),
            ("llm", "openai.responses", "Front desk"),
            ("tool", "lookup_order", "Front desk"),
            ("llm", "openai.responses", "Front desk"),
            ("custom", "handoff", "Front desk"),
            ("agent", "Billing", None),
            ("llm", "openai.responses", "Billing"),
        ]
        tool = steps[2]
        assert blob_value(store, tool["input"]) == {"order_id": "A-1001"}
        assert blob_value(store, tool["output"])["status"] == "delivered"
        assert run["totals"]["cost_micros"] > 0
        assert run["id"] in r.stdout
    finally:
        store.close()
