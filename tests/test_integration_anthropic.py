"""The Anthropic integration, with the official `anthropic` client pointed at a local fake server.

What a user relies on: `execord.init()` alone makes every Messages call one governed LLM step,
recorded with its model, usage (cache reads and writes included) and cost; a denied request
never leaves the process; a redacted prompt is what the server receives; streams, and the
`messages.stream` helper, still behave as the library's own.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from _helpers import AGENT, ended, llm_steps, only, started, the_step
from anthropic.lib.streaming import (
    AsyncMessageStream,
    AsyncMessageStreamManager,
    MessageStream,
    MessageStreamManager,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import execord
from execord.governance._prices import default_table
from execord.store import blob_value, open_store, steps_from_events

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-sonnet-4-5"
SYSTEM = "You are a support agent. Escalations go to ops@example.com."
ASK = [{"role": "user", "content": "Where is order A-1001? Reply to jane.doe@example.com"}]
# What the fake server reports: Anthropic's input_tokens leave out the cache reads and writes.
USAGE = {"input_tokens": 150, "output_tokens": 300, "cache_read_input_tokens": 1000,
         "cache_creation_input_tokens": 200, "thinking_tokens": 120}
RECORDED = {"input_tokens": 150 + 1000 + 200, "output_tokens": 300, "cached_input_tokens": 1000,
            "reasoning_tokens": 120}
TOOLS = [{"name": "lookup_order", "description": "Look an order up.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}}}]


# -- a local stand-in for the Messages API --------------------------------------------------------


@dataclass
class FakeAnthropic:
    """``POST /v1/messages`` as the API answers it (JSON, or server-sent events for
    ``stream: true``), keeping every request body it received."""

    server: HTTPServer
    bodies: list[dict[str, Any]] = field(default_factory=list)
    reply: str = "Your order A-1001 has shipped."
    tool_use: bool = False
    status: int = 200
    stream_error: bool = False  # an `error` event in the middle of a stream

    @property
    def base_url(self) -> str:
        return self.server.url_for("")

    def install(self) -> FakeAnthropic:
        self.server.expect_request("/v1/messages", method="POST").respond_with_handler(self._messages)
        return self

    def _content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": self.reply}]
        if self.tool_use:
            blocks = [{"type": "text", "text": "Let me look that up."},
                      {"type": "tool_use", "id": "toolu_01", "name": "lookup_order", "input": {"order_id": "A-1001"}}]
        return blocks

    def _messages(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.bodies.append(body)
        if self.status != 200:
            return Response(json.dumps({"type": "error", "error": {"type": "api_error", "message": "the fake is down"}}),
                            status=self.status, content_type="application/json")
        usage = {"input_tokens": USAGE["input_tokens"], "output_tokens": USAGE["output_tokens"],
                 "cache_read_input_tokens": USAGE["cache_read_input_tokens"],
                 "cache_creation_input_tokens": USAGE["cache_creation_input_tokens"],
                 "output_tokens_details": {"thinking_tokens": USAGE["thinking_tokens"]}, "service_tier": "standard"}
        stop = "tool_use" if self.tool_use else "end_turn"
        message = {"id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
                   "content": self._content(), "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return Response(json.dumps(message), content_type="application/json")
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens_details"} | {"output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start",
                               "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(self._content()):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "text", "text": ""}}))
                for word in block["text"].split(" "):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "text_delta", "text": word + " "}}))
                    if self.stream_error:
                        events.append(("error", {"type": "error",
                                                 "error": {"type": "overloaded_error", "message": "Overloaded"}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {**block, "input": {}}}))
                args = json.dumps(block["input"])
                for part in (args[: len(args) // 2], args[len(args) // 2:]):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                           "delta": {"type": "input_json_delta", "partial_json": part}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": USAGE["output_tokens"],
                                                   "output_tokens_details": {"thinking_tokens": USAGE["thinking_tokens"]}}}))
        events.append(("message_stop", {"type": "message_stop"}))
        sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        return Response(sse, content_type="text/event-stream")


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeAnthropic:
    return FakeAnthropic(httpserver).install()


@pytest.fixture
def client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def aclient(fake: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0)


# -- reading the record ---------------------------------------------------------------------------










def output(ex: execord.Execord, run_id: str) -> dict[str, Any]:
    return blob_value(ex.store, ended(ex, run_id)["output"])


def expected_cost(model: str = MODEL) -> int:
    """The price of the fake's usage, straight from the price table."""
    table = default_table()
    cost, source = table.price(provider="anthropic", model=model, input_tokens=RECORDED["input_tokens"],
                               output_tokens=RECORDED["output_tokens"], cached_input_tokens=1000,
                               cache_write_tokens=200, reasoning_tokens=RECORDED["reasoning_tokens"])
    assert cost is not None and cost > 0 and source.startswith("genai-prices")
    # The ways of getting it wrong give other numbers: Anthropic's own input_tokens (no cache),
    # or cache writes billed as plain input.
    wrong = [table.price(provider="anthropic", model=model, input_tokens=150, output_tokens=300)[0],
             table.price(provider="anthropic", model=model, input_tokens=1350, output_tokens=300,
                         cached_input_tokens=1000)[0]]
    assert cost not in wrong
    return cost


def assert_usage(attrs: dict[str, Any]) -> None:
    assert attrs["status"] == "ok"
    assert attrs["usage"] == RECORDED
    assert attrs["cost_micros"] == expected_cost()
    assert attrs["price_source"].startswith("genai-prices")
    assert attrs["latency_ms"] > 0


# -- messages.create ------------------------------------------------------------------------------


def test_a_message_is_one_llm_step_with_model_usage_and_cost(engine: execord.Execord, client: anthropic.Anthropic,
                                                             fake: FakeAnthropic) -> None:
    with execord.execution("support") as run:
        answer = client.messages.create(model=MODEL, max_tokens=400, system=SYSTEM, messages=ASK,
                                        stop_sequences=["###"], extra_body={"temperature": 0.2},
                                        extra_headers={"X-Secret": "do-not-record"})
    assert isinstance(answer, anthropic.types.Message) and answer.content[0].text == fake.reply  # untouched
    assert len(fake.bodies) == 1
    st = started(engine, run.id)
    assert (st["name"], st["provider"], st["model"], st["integration"]) == ("anthropic.messages", "anthropic", MODEL,
                                                                           "anthropic")
    assert st["params"] == {"max_tokens": 400, "temperature": 0.2, "stop_sequences": ["###"]}
    assert fake.bodies[0]["temperature"] == 0.2
    assert "do-not-record" not in json.dumps(st) and "sk-ant-test" not in json.dumps(st)
    assert blob_value(engine.store, st["input"]) == {"messages": ASK, "system": SYSTEM}
    end = ended(engine, run.id)
    assert_usage(end)
    out = blob_value(engine.store, end["output"])
    assert (out["id"], out["model"], out["stop_reason"]) == ("msg_01", MODEL, "end_turn")
    assert out["content"] == [{"type": "text", "text": fake.reply}]
    summary = engine.store.get_execution(run.id)
    assert summary["totals"]["llm_calls"] == 1 and summary["totals"]["cost_micros"] == expected_cost()
    assert summary["totals"]["input_tokens"] == RECORDED["input_tokens"]


def test_tool_use_blocks_are_in_the_output(engine: execord.Execord, client: anthropic.Anthropic,
                                           fake: FakeAnthropic) -> None:
    fake.tool_use = True
    with execord.execution("support") as run:
        answer = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, tools=TOOLS,
                                        tool_choice={"type": "auto"})
    assert answer.stop_reason == "tool_use"
    assert started(engine, run.id)["params"] == {"max_tokens": 400, "tool_choice": {"type": "auto"},
                                                 "tools": ["lookup_order"]}
    out = output(engine, run.id)
    assert out["stop_reason"] == "tool_use"
    assert out["content"][1] == {"type": "tool_use", "id": "toolu_01", "name": "lookup_order",
                                 "input": {"order_id": "A-1001"}}


def test_a_call_outside_any_execution_is_an_execution_of_its_own(engine: execord.Execord,
                                                                 client: anthropic.Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=100, messages=ASK)
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["status"], run["totals"]["llm_calls"]) == ("anthropic.messages", "succeeded", 1)


async def test_async_messages_are_recorded_the_same(engine: execord.Execord, aclient: anthropic.AsyncAnthropic,
                                                    fake: FakeAnthropic) -> None:
    async with execord.execution("support") as run:
        answer = await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK)
    assert answer.content[0].text == fake.reply
    assert_usage(ended(engine, run.id))
    assert output(engine, run.id)["content"][0]["text"] == fake.reply


def test_parse_is_recorded_with_its_parsed_output(engine: execord.Execord, client: anthropic.Anthropic,
                                                  fake: FakeAnthropic) -> None:
    import pydantic

    class Order(pydantic.BaseModel):
        order_id: str
        status: str

    fake.reply = '{"order_id": "A-1001", "status": "shipped"}'
    with execord.execution("support") as run:
        parsed = client.messages.parse(model=MODEL, max_tokens=400, messages=ASK, output_format=Order)
    assert parsed.parsed_output == Order(order_id="A-1001", status="shipped")
    assert "format" in fake.bodies[0]["output_config"]
    assert started(engine, run.id)["params"] == {"max_tokens": 400, "output_format": "Order"}
    assert_usage(ended(engine, run.id))
    assert output(engine, run.id)["content"] == [{"type": "text", "text": fake.reply}]  # as the API answered


def test_a_conversation_with_the_library_s_own_blocks_and_a_generator(governed: Any, client: anthropic.Anthropic,
                                                                     fake: FakeAnthropic) -> None:
    """The assistant turn passed back as the response's pydantic blocks, the messages as a
    generator: recorded as the JSON that is sent, and redacted inside those blocks too."""
    ex = governed("""
        policies:
          - id: mask-email
            on: [llm.request]
            effect: redact
            detectors: [email]
    """)
    fake.tool_use = True
    with execord.execution("support") as run:
        first = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, tools=TOOLS)
        turns = [*ASK, {"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                               "content": "shipped; contact jane.doe@example.com"}]}]
        fake.tool_use = False
        client.messages.create(model=MODEL, max_tokens=400, messages=(m for m in turns), tools=TOOLS)
    sent = fake.bodies[1]["messages"]
    assert len(sent) == 3
    assert sent[1]["content"][1] == {"type": "tool_use", "id": "toolu_01", "name": "lookup_order",
                                     "input": {"order_id": "A-1001"}}
    assert sent[2]["content"][0]["content"] == "shipped; contact [REDACTED:email]"
    assert "jane.doe" not in json.dumps(fake.bodies)
    second = llm_steps(ex, run.id)[1]
    recorded = blob_value(ex.store, second["input"])["messages"]
    assert recorded == sent


# -- streams --------------------------------------------------------------------------------------


def test_a_stream_still_streams_and_its_usage_comes_from_its_events(engine: execord.Execord,
                                                                    client: anthropic.Anthropic,
                                                                    fake: FakeAnthropic) -> None:
    with execord.execution("support") as run:
        stream = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        assert isinstance(stream, anthropic.Stream)
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text.strip() == fake.reply
    assert started(engine, run.id)["params"] == {"max_tokens": 400, "stream": True}
    end = ended(engine, run.id)
    assert_usage(end)  # input and cache from message_start, output from message_delta
    out = blob_value(engine.store, end["output"])
    assert (out["id"], out["stop_reason"]) == ("msg_01", "end_turn")
    assert [b["text"].strip() for b in out["content"]] == [fake.reply]


def test_a_streamed_tool_use_is_assembled(engine: execord.Execord, client: anthropic.Anthropic,
                                          fake: FakeAnthropic) -> None:
    fake.tool_use = True
    with execord.execution("support") as run, client.messages.create(model=MODEL, max_tokens=400, messages=ASK,
                                                                     tools=TOOLS, stream=True) as stream:
        for _ in stream:
            pass
    out = output(engine, run.id)
    assert out["stop_reason"] == "tool_use"
    assert out["content"][1] == {"type": "tool_use", "id": "toolu_01", "name": "lookup_order",
                                 "input": {"order_id": "A-1001"}}


def test_the_stream_helper_is_the_library_s_and_is_recorded(engine: execord.Execord, client: anthropic.Anthropic,
                                                            fake: FakeAnthropic) -> None:
    fake.tool_use = True
    with execord.execution("support") as run:
        manager = client.messages.stream(model=MODEL, max_tokens=400, system=SYSTEM, messages=ASK, tools=TOOLS)
        assert isinstance(manager, MessageStreamManager)
        assert fake.bodies == []  # the helper sends when its block is entered, as the library does
        with manager as stream:
            assert isinstance(stream, MessageStream)
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert text.strip() == "Let me look that up."
    assert final.content[1].input == {"order_id": "A-1001"} and final.usage.cache_read_input_tokens == 1000
    assert fake.bodies[0]["stream"] is True
    st = started(engine, run.id)
    assert st["params"] == {"max_tokens": 400, "tools": ["lookup_order"], "stream": True}
    assert blob_value(engine.store, st["input"])["system"] == SYSTEM
    end = ended(engine, run.id)
    assert_usage(end)
    out = blob_value(engine.store, end["output"])
    assert out["content"][1]["input"] == {"order_id": "A-1001"}
    assert out == final.model_dump(mode="json", exclude_none=True) | {
        "content": [{"type": "text", "text": "Let me look that up. "}, out["content"][1]]}


async def test_the_async_stream_helper_is_recorded(engine: execord.Execord, aclient: anthropic.AsyncAnthropic,
                                                   fake: FakeAnthropic) -> None:
    async with execord.execution("support") as run:
        manager = aclient.messages.stream(model=MODEL, max_tokens=400, messages=ASK)
        assert isinstance(manager, AsyncMessageStreamManager)
        async with manager as stream:
            assert isinstance(stream, AsyncMessageStream)
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert text.strip() == fake.reply and final.stop_reason == "end_turn"
    assert_usage(ended(engine, run.id))
    assert output(engine, run.id)["content"][0]["text"].strip() == fake.reply


async def test_an_async_stream_is_recorded(engine: execord.Execord, aclient: anthropic.AsyncAnthropic,
                                           fake: FakeAnthropic) -> None:
    fake.tool_use = True
    async with execord.execution("support") as run:
        stream = await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert_usage(ended(engine, run.id))
    assert output(engine, run.id)["content"][1]["input"] == {"order_id": "A-1001"}


def test_a_stream_closed_early_ends_its_step_with_what_arrived(engine: execord.Execord,
                                                               client: anthropic.Anthropic) -> None:
    with execord.execution("support") as run:
        stream = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        first = next(iter(stream))
        stream.close()
        assert the_step(engine, run.id)["status"] == "ok"  # ended at the close, not at the execution's end
    assert first.type == "message_start"
    end = ended(engine, run.id)
    # what message_start said: all the input, one output token so far
    assert end["usage"] == {"input_tokens": RECORDED["input_tokens"], "output_tokens": 1,
                            "cached_input_tokens": 1000, "reasoning_tokens": 0}
    assert blob_value(engine.store, end["output"])["content"] == []
    assert engine.store.get_execution(run.id)["status"] == "succeeded"


def test_a_stream_closed_before_it_is_read_ends_its_step(engine: execord.Execord,
                                                         client: anthropic.Anthropic) -> None:
    with execord.execution("support") as run:
        stream = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        stream.close()
        assert the_step(engine, run.id)["status"] == "ok"  # at the close (the stream is still referenced)
        with pytest.raises(httpx2.StreamClosed):  # as the library's own stream would
            list(stream)
    assert ended(engine, run.id)["usage"] is None


async def test_an_async_stream_closed_early_ends_its_step(engine: execord.Execord,
                                                          aclient: anthropic.AsyncAnthropic) -> None:
    async with execord.execution("support") as run:
        stream = await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        unread = await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        assert (await stream.__anext__()).type == "message_start"
        await stream.close()
        await unread.close()
        assert [s["status"] for s in llm_steps(engine, run.id)] == ["ok", "ok"]
    first, second = [e.attrs for e in engine.store.events(run.id) if e.type == "step.ended"]
    assert first["usage"]["output_tokens"] == 1 and second["usage"] is None


def test_a_helper_left_early_ends_its_step_at_the_block_s_end(engine: execord.Execord,
                                                             client: anthropic.Anthropic) -> None:
    with execord.execution("support") as run:
        with client.messages.stream(model=MODEL, max_tokens=400, messages=ASK) as stream:
            for event in stream:
                if event.type == "content_block_delta":
                    break
        assert the_step(engine, run.id)["status"] == "ok"
    out = output(engine, run.id)
    assert out["content"] == [{"type": "text", "text": "Your "}]


def test_a_dropped_stream_ends_its_step_when_it_is_collected(engine: execord.Execord,
                                                             client: anthropic.Anthropic) -> None:
    with execord.execution("support") as run:
        stream = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        next(iter(stream))
        untouched = client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
        assert [s["status"] for s in llm_steps(engine, run.id)] == [None, None]
        del stream, untouched
        gc.collect()
        assert [s["status"] for s in llm_steps(engine, run.id)] == ["ok", "ok"]
    engine.flush()
    ends = [e.attrs for e in engine.store.events(run.id) if e.type == "step.ended"]
    assert ends[0]["usage"]["input_tokens"] == RECORDED["input_tokens"]
    assert ends[1]["usage"] is None and blob_value(engine.store, ends[1]["output"]) is None  # never read


def test_an_error_event_in_a_stream_is_a_failed_step(engine: execord.Execord, client: anthropic.Anthropic,
                                                     fake: FakeAnthropic) -> None:
    fake.stream_error = True
    with pytest.raises(anthropic.APIStatusError), execord.execution("support") as run:
        for _ in client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True):
            pass
    end = ended(engine, run.id)
    assert end["status"] == "error" and end["error"]["type"].startswith("anthropic.")
    assert end["usage"]["input_tokens"] == RECORDED["input_tokens"]  # what had arrived is still counted
    engine.flush()
    assert engine.store.get_execution(run.id)["failure_class"] == "provider_failure"


# -- governance at the call -----------------------------------------------------------------------

DENY_SONNET = f"""
    policies:
      - id: no-sonnet
        on: [llm.request]
        when: llm.model == "{MODEL}" && llm.provider == "anthropic"
        effect: deny
        message: Use Haiku.
"""
MASK_EMAIL = """
    policies:
      - id: mask-email
        on: [llm.request]
        effect: redact
        detectors: [email]
"""


def test_a_denied_request_is_never_sent(governed: Any, client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    ex = governed(DENY_SONNET)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        client.messages.create(model=MODEL, max_tokens=400, messages=ASK)
    assert halted.value.rule_id == "no-sonnet" and halted.value.phase == "llm.request"
    assert fake.bodies == []  # zero requests reached the server
    ex.flush()
    summary = ex.store.get_execution(run.id)
    assert (summary["status"], summary["halt"]["rule_id"], summary["failure_class"]) == ("halted", "no-sonnet",
                                                                                         "policy_block")
    assert ended(ex, run.id)["status"] == "blocked"


def test_a_denied_stream_helper_sends_nothing(governed: Any, client: anthropic.Anthropic,
                                              fake: FakeAnthropic) -> None:
    governed(DENY_SONNET)
    body_ran = False
    with pytest.raises(execord.Halted), execord.execution("support"):
        with client.messages.stream(model=MODEL, max_tokens=400, messages=ASK):
            body_ran = True
    assert fake.bodies == [] and not body_ran


async def test_a_denied_async_request_is_never_sent(governed: Any, aclient: anthropic.AsyncAnthropic,
                                                    fake: FakeAnthropic) -> None:
    governed(DENY_SONNET)
    with pytest.raises(execord.Halted):
        async with execord.execution("support"):
            await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True)
    with pytest.raises(execord.Halted):
        async with execord.execution("support"):
            async with aclient.messages.stream(model=MODEL, max_tokens=400, messages=ASK):
                pass
    assert fake.bodies == []


def test_a_redacted_prompt_is_what_the_server_receives(governed: Any, client: anthropic.Anthropic,
                                                       fake: FakeAnthropic) -> None:
    ex = governed(MASK_EMAIL)
    with execord.execution("support"):
        client.messages.create(model=MODEL, max_tokens=400, system=SYSTEM, messages=ASK)
        with client.messages.stream(model=MODEL, max_tokens=400, messages=ASK,
                                    system=[{"type": "text", "text": SYSTEM}]) as stream:
            stream.until_done()
    created, streamed = fake.bodies
    assert created["messages"][0]["content"] == "Where is order A-1001? Reply to [REDACTED:email]"
    assert created["system"] == "You are a support agent. Escalations go to [REDACTED:email]."
    assert streamed["messages"] == created["messages"]
    assert streamed["system"] == [{"type": "text", "text": created["system"]}]
    assert "@example.com" not in json.dumps(fake.bodies)
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


async def test_an_async_redacted_stream_sends_the_masked_prompt(governed: Any, aclient: anthropic.AsyncAnthropic,
                                                                fake: FakeAnthropic) -> None:
    governed(MASK_EMAIL)
    async with execord.execution("support"):
        async with aclient.messages.stream(model=MODEL, max_tokens=400, messages=ASK) as stream:
            await stream.until_done()
        await aclient.messages.create(model=MODEL, max_tokens=400, messages=ASK)
    assert [b["messages"][0]["content"] for b in fake.bodies] == ["Where is order A-1001? Reply to [REDACTED:email]"] * 2


def test_a_denied_answer_halts_after_the_call(governed: Any, client: anthropic.Anthropic,
                                              fake: FakeAnthropic) -> None:
    ex = governed("""
        policies:
          - id: no-tool-use
            on: [llm.response]
            when: usage.output_tokens > 100
            effect: deny
    """)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        for _ in client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True):
            pass
    assert halted.value.phase == "llm.response" and len(fake.bodies) == 1
    ex.flush()
    assert ex.store.get_execution(run.id)["status"] == "halted"
    assert ended(ex, run.id)["status"] == "blocked"


def test_a_cost_budget_counts_what_the_calls_cost(governed: Any, client: anthropic.Anthropic,
                                                  fake: FakeAnthropic) -> None:
    ex = governed(f"""
        budgets:
          execution:
            cost_usd: {expected_cost() * 1.5 / 1e6:.6f}
    """)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        for _ in range(3):
            client.messages.create(model=MODEL, max_tokens=10, messages=ASK)
    assert halted.value.reason == "budget" and halted.value.budget_id == "execution.cost_usd"
    assert len(fake.bodies) == 2  # the third call was refused before it was sent
    ex.flush()
    assert ex.store.get_execution(run.id)["totals"]["cost_micros"] == 2 * expected_cost()


# -- errors, unknown prices, stacking, switching off ----------------------------------------------


@pytest.mark.parametrize("status, error", [(500, anthropic.InternalServerError), (400, anthropic.BadRequestError)])
def test_an_api_error_is_a_failed_step_and_a_provider_failure(engine: execord.Execord, client: anthropic.Anthropic,
                                                              fake: FakeAnthropic, status: int,
                                                              error: type[Exception]) -> None:
    fake.status = status

    @execord.workflow
    def support() -> None:
        client.messages.create(model=MODEL, max_tokens=400, messages=ASK)

    with pytest.raises(error):
        support()
    engine.flush()
    run = only(engine.store)
    assert (run["status"], run["failure_class"]) == ("failed", "provider_failure")
    end = ended(engine, run["id"])
    assert end["status"] == "error" and end["error"]["type"] == f"anthropic.{error.__name__}"
    assert end["latency_ms"] >= 0 and end["usage"] is None


def test_an_unknown_model_gets_no_cost(engine: execord.Execord, client: anthropic.Anthropic) -> None:
    assert default_table().price(provider="anthropic", model="claude-acme-9", input_tokens=1, output_tokens=1)[0] is None
    with execord.execution("support") as run:
        client.messages.create(model="claude-acme-9", max_tokens=400, messages=ASK)
    end = ended(engine, run.id)
    assert (end["cost_micros"], end["price_source"]) == (None, "unknown")
    assert end["usage"] == RECORDED  # the tokens are still recorded


def test_a_call_inside_an_llm_step_is_that_step(engine: execord.Execord, client: anthropic.Anthropic) -> None:
    with execord.execution("support") as run, execord.step("draft", kind="llm", provider="anthropic", model=MODEL):
        client.messages.create(model=MODEL, max_tokens=400, messages=ASK)
        with client.messages.stream(model=MODEL, max_tokens=400, messages=ASK) as stream:
            stream.until_done()
    assert [s["name"] for s in llm_steps(engine, run.id)] == ["draft"]


def test_a_call_inside_another_integration_s_llm_step_sends_what_that_step_redacted(
        governed: Any, client: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    from execord.integrations import _base

    ex = governed(MASK_EMAIL)
    with execord.execution("support") as run:
        outer = _base.begin("llm", "framework.chat", {"messages": ASK}, integration="framework",
                            provider="anthropic", model=MODEL)
        assert outer is not None
        with outer.running():
            client.messages.create(model=MODEL, max_tokens=400, messages=ASK)
        outer.ok({"content": "done"})
    assert fake.bodies[0]["messages"][0]["content"] == "Where is order A-1001? Reply to [REDACTED:email]"
    assert [s["name"] for s in llm_steps(ex, run.id)] == ["framework.chat"]


def test_calls_inside_a_tool_nest_under_it(engine: execord.Execord, client: anthropic.Anthropic) -> None:
    @execord.tool
    def summarize() -> str:
        return client.messages.create(model=MODEL, max_tokens=400, messages=ASK).content[0].text

    with execord.execution("support") as run:
        summarize()
    engine.flush()
    steps = steps_from_events(engine.store.events(run.id))
    tool = next(s for s in steps if s["kind"] == "tool")
    assert next(s for s in steps if s["kind"] == "llm")["parent_step_id"] == tool["step_id"]


def test_with_raw_response_is_recorded(engine: execord.Execord, client: anthropic.Anthropic,
                                       fake: FakeAnthropic) -> None:
    with execord.execution("support") as run:
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=400, messages=ASK)
    assert raw.parse().content[0].text == fake.reply
    assert_usage(ended(engine, run.id))


def test_with_streaming_response_is_recorded(engine: execord.Execord, client: anthropic.Anthropic,
                                            fake: FakeAnthropic) -> None:
    with execord.execution("support") as run:
        with client.messages.with_streaming_response.create(model=MODEL, max_tokens=400, messages=ASK) as response:
            assert response.parse().content[0].text == fake.reply
    assert_usage(ended(engine, run.id))


async def test_async_with_streaming_response_is_recorded(engine: execord.Execord, aclient: anthropic.AsyncAnthropic,
                                                         fake: FakeAnthropic) -> None:
    async with execord.execution("support") as run:
        async with aclient.messages.with_streaming_response.create(model=MODEL, max_tokens=400,
                                                                   messages=ASK) as response:
            assert (await response.parse()).content[0].text == fake.reply
    assert_usage(ended(engine, run.id))


def test_a_stream_outside_any_execution_is_an_execution_that_ends_with_it(engine: execord.Execord,
                                                                          client: anthropic.Anthropic) -> None:
    for _ in client.messages.create(model=MODEL, max_tokens=400, messages=ASK, stream=True):
        pass
    with client.messages.stream(model=MODEL, max_tokens=400, messages=ASK) as stream:
        stream.until_done()
    engine.flush()
    runs = engine.store.list_executions()
    assert [(r["workflow"], r["status"], r["totals"]["llm_calls"]) for r in runs] == [
        ("anthropic.messages", "succeeded", 1)] * 2
    assert all(r["totals"]["cost_micros"] == expected_cost() for r in runs)


def test_switched_off_nothing_is_recorded(db_path: str, fake: FakeAnthropic) -> None:
    ex = execord.init(agent=AGENT, db=db_path, integrations="auto,-anthropic")
    client = anthropic.Anthropic(base_url=fake.base_url, api_key="sk-ant-test", max_retries=0)
    with execord.execution("support") as run:
        client.messages.create(model=MODEL, max_tokens=400, messages=ASK)
    assert llm_steps(ex, run.id) == [] and len(fake.bodies) == 1
    from anthropic.resources.messages.messages import AsyncMessages, Messages

    assert not any(hasattr(m, "__execord_original__") for m in (Messages.create, Messages.stream, AsyncMessages.create))


def test_uninstrument_puts_the_library_back(engine: execord.Execord) -> None:
    from anthropic.resources.messages.messages import AsyncMessages, Messages

    methods = [(Messages, "create"), (Messages, "stream"), (Messages, "parse"), (AsyncMessages, "create"),
               (AsyncMessages, "stream"), (AsyncMessages, "parse")]
    assert all(hasattr(getattr(owner, name), "__execord_original__") for owner, name in methods)
    execord.integrations.uninstrument(["anthropic"])
    assert not any(hasattr(getattr(owner, name), "__execord_original__") for owner, name in methods)


def test_init_does_not_import_anthropic_and_patches_it_when_imported(tmp_path: Path) -> None:
    code = """
import sys, execord
execord.init(db="e.db")
assert "anthropic" not in sys.modules, "init() imported anthropic"
import anthropic
from anthropic.resources.messages.messages import Messages, AsyncMessages
assert all(hasattr(m, "__execord_original__") for m in (Messages.create, Messages.stream, AsyncMessages.create))
print("patched")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "patched", r.stderr


def test_the_example_runs_offline_and_records_its_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECORD_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "anthropic_agent.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    store = open_store(str(tmp_path / ".execord" / "execord.db"))
    try:
        run = only(store)
        assert (run["workflow"], run["status"]) == ("answer_ticket", "succeeded")
        assert run["id"] in r.stdout
        steps = steps_from_events(store.events(run["id"]))
        assert [(s["kind"], s["name"]) for s in steps] == [
            ("llm", "anthropic.messages"), ("tool", "lookup_order"), ("llm", "anthropic.messages")]
        first, _, last = steps
        # the first call wrote the system prompt to the cache, the second read it back
        assert (first["usage"]["input_tokens"], first["usage"]["cached_input_tokens"]) == (180 + 1200, 0)
        assert (last["usage"]["input_tokens"], last["usage"]["cached_input_tokens"]) == (40 + 1200, 1200)
        assert last["usage"]["output_tokens"] == 24
        assert first["cost_micros"] > 0 and run["totals"]["cost_micros"] == first["cost_micros"] + last["cost_micros"]
        assert blob_value(store, first["output"])["content"][-1]["type"] == "tool_use"
    finally:
        store.close()
