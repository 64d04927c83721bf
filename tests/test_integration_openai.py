"""The OpenAI integration, with the official `openai` client pointed at a local fake server.

What a user relies on: `execord.init()` alone makes every completion one governed LLM step,
recorded with its model, usage and cost; a denied request never leaves the process; a
redacted prompt is what the server receives; streams still stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from _fake_openai import USAGE, FakeOpenAI
from _helpers import AGENT, ended, llm_steps, only, started
from pytest_httpserver import HTTPServer

import execord
from execord.governance._prices import default_table
from execord.store import blob_value, steps_from_events

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
ASK = [{"role": "user", "content": "Where is order A-1001? Reply to jane.doe@example.com"}]


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeOpenAI:
    return FakeOpenAI(httpserver).install()


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def aclient(fake: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)










def expected_cost(model: str = MODEL) -> int:
    cost, source = default_table().price(provider="openai", model=model, input_tokens=USAGE["prompt_tokens"],
                                         output_tokens=USAGE["completion_tokens"],
                                         cached_input_tokens=USAGE["cached_tokens"],
                                         reasoning_tokens=USAGE["reasoning_tokens"])
    assert cost is not None and cost > 0 and source.startswith("genai-prices")
    return cost


def assert_usage(attrs: dict[str, Any]) -> None:
    assert attrs["usage"] == {"input_tokens": USAGE["prompt_tokens"], "output_tokens": USAGE["completion_tokens"],
                              "cached_input_tokens": USAGE["cached_tokens"],
                              "reasoning_tokens": USAGE["reasoning_tokens"]}
    assert attrs["cost_micros"] == expected_cost()
    assert attrs["price_source"].startswith("genai-prices")
    assert attrs["latency_ms"] > 0


# -- chat completions -----------------------------------------------------------------------------


def test_a_chat_completion_is_one_llm_step_with_model_usage_and_cost(engine: execord.Execord,
                                                                      client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with execord.execution("support") as run:
        answer = client.chat.completions.create(model=MODEL, messages=ASK, temperature=0.2, max_tokens=400,
                                                extra_headers={"X-Secret": "do-not-record"})
    assert answer.choices[0].message.content == fake.reply  # the caller's response, untouched
    assert len(fake.bodies) == 1
    st = started(engine, run.id)
    assert (st["name"], st["provider"], st["model"], st["integration"]) == ("openai.chat.completions", "openai", MODEL, "openai")
    assert st["params"] == {"temperature": 0.2, "max_tokens": 400}
    assert "do-not-record" not in json.dumps(st)
    assert blob_value(engine.store, st["input"])["messages"][0]["content"].startswith("Where is order A-1001?")
    end = ended(engine, run.id)
    assert end["status"] == "ok"
    assert_usage(end)
    assert blob_value(engine.store, end["output"])["choices"][0]["message"]["content"] == fake.reply
    summary = engine.store.get_execution(run.id)
    assert summary["totals"]["llm_calls"] == 1 and summary["totals"]["cost_micros"] == expected_cost()


def test_a_call_outside_any_execution_is_an_execution_of_its_own(engine: execord.Execord,
                                                                 client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=ASK)
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["status"], run["totals"]["llm_calls"]) == ("openai.chat.completions", "succeeded", 1)


async def test_async_chat_completions_are_recorded_the_same(engine: execord.Execord, aclient: openai.AsyncOpenAI,
                                                            fake: FakeOpenAI) -> None:
    async with execord.execution("support") as run:
        answer = await aclient.chat.completions.create(model=MODEL, messages=ASK)
    assert answer.choices[0].message.content == fake.reply
    assert_usage(ended(engine, run.id))


def test_tool_calls_in_the_answer_are_recorded(engine: execord.Execord, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.tool_call = {"name": "lookup_order", "arguments": {"order_id": "A-1001"}}
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}]
    with execord.execution("support") as run:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=tools)
    assert started(engine, run.id)["params"]["tools"] == ["lookup_order"]
    out = blob_value(engine.store, ended(engine, run.id)["output"])
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup_order", "arguments": '{"order_id": "A-1001"}'}


# -- streams --------------------------------------------------------------------------------------


def test_a_stream_gets_its_usage_from_the_last_chunk_and_still_streams(engine: execord.Execord,
                                                                       client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with execord.execution("support") as run:
        stream = client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        chunks = list(stream)
    # we asked for usage; the caller did not, so the usage-only chunk is not theirs to see
    assert fake.bodies[0]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == fake.reply
    end = ended(engine, run.id)
    assert_usage(end)
    assert blob_value(engine.store, end["output"])["choices"][0]["message"]["content"].strip() == fake.reply


def test_a_caller_who_asked_for_stream_usage_still_gets_it(engine: execord.Execord, client: openai.OpenAI,
                                                           fake: FakeOpenAI) -> None:
    with execord.execution("support") as run:
        chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, stream=True,
                                                     stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == USAGE["prompt_tokens"]
    assert_usage(ended(engine, run.id))


def test_a_streamed_tool_call_is_assembled(engine: execord.Execord, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.tool_call = {"name": "lookup_order", "arguments": {"order_id": "A-1001"}}
    with execord.execution("support") as run, client.chat.completions.create(model=MODEL, messages=ASK, stream=True) as stream:
        for _ in stream:
            pass
    out = blob_value(engine.store, ended(engine, run.id)["output"])
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": "A-1001"}'}}]


def test_a_stream_closed_early_ends_its_step_with_what_arrived(engine: execord.Execord, client: openai.OpenAI) -> None:
    with execord.execution("support") as run:
        stream = client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        first = next(iter(stream))
        stream.close()
    assert first.choices[0].delta.role == "assistant"
    end = ended(engine, run.id)
    assert end["status"] == "ok" and end["usage"] is None  # the usage chunk never arrived
    assert engine.store.get_execution(run.id)["status"] == "succeeded"


async def test_an_async_stream_is_recorded(engine: execord.Execord, aclient: openai.AsyncOpenAI,
                                           fake: FakeOpenAI) -> None:
    async with execord.execution("support") as run:
        stream = await aclient.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text.strip() == fake.reply
    assert_usage(ended(engine, run.id))


# -- the Responses API ----------------------------------------------------------------------------


def test_a_response_is_one_llm_step(engine: execord.Execord, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with execord.execution("support") as run:
        response = client.responses.create(model=MODEL, instructions="Be brief.", input="Where is A-1001?",
                                           max_output_tokens=200)
    assert response.output_text == fake.reply
    st = started(engine, run.id)
    assert (st["name"], st["params"]) == ("openai.responses", {"max_output_tokens": 200})
    assert blob_value(engine.store, st["input"]) == {"messages": [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Where is A-1001?"}]}
    assert_usage(ended(engine, run.id))


async def test_an_async_streamed_response_is_recorded(engine: execord.Execord, aclient: openai.AsyncOpenAI,
                                                      fake: FakeOpenAI) -> None:
    async with execord.execution("support") as run:
        stream = await aclient.responses.create(model=MODEL, input=ASK, stream=True)
        kinds = [event.type async for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    end = ended(engine, run.id)
    assert_usage(end)
    assert blob_value(engine.store, end["output"])["output"][0]["content"][0]["text"] == fake.reply


# -- governance at the call -----------------------------------------------------------------------


def test_a_denied_request_is_never_sent(governed: Any, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    ex = governed("""
        policies:
          - id: no-big-models
            on: [llm.request]
            when: llm.model == "gpt-4o"
            effect: deny
            message: Use gpt-4o-mini.
    """)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert halted.value.rule_id == "no-big-models" and halted.value.phase == "llm.request"
    assert fake.bodies == []  # zero requests reached the server
    ex.flush()
    summary = ex.store.get_execution(run.id)
    assert (summary["status"], summary["halt"]["rule_id"]) == ("halted", "no-big-models")
    assert ended(ex, run.id)["status"] == "blocked"


async def test_a_denied_async_request_is_never_sent(governed: Any, aclient: openai.AsyncOpenAI,
                                                    fake: FakeOpenAI) -> None:
    governed("""
        policies:
          - id: no-responses
            on: [llm.request]
            when: llm.model == "gpt-4o-mini"
            effect: deny
    """)
    with pytest.raises(execord.Halted):
        async with execord.execution("support"):
            await aclient.responses.create(model=MODEL, input="hello", stream=True)
    assert fake.bodies == []


def test_a_redacted_prompt_is_what_the_server_receives(governed: Any, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    ex = governed("""
        policies:
          - id: mask-email
            on: [llm.request]
            effect: redact
            detectors: [email]
    """)
    with execord.execution("support"):
        client.chat.completions.create(model=MODEL, messages=ASK)
        client.responses.create(model=MODEL, instructions="Write to jane.doe@example.com", input=ASK)
    chat, responses = fake.bodies
    assert chat["messages"][0]["content"] == "Where is order A-1001? Reply to [REDACTED:email]"
    assert responses["instructions"] == "Write to [REDACTED:email]"
    assert responses["input"][0]["content"].endswith("[REDACTED:email]")
    assert "jane.doe" not in json.dumps(fake.bodies)
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


def test_a_denied_answer_halts_after_the_call(governed: Any, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    ex = governed("""
        policies:
          - id: no-shipping-talk
            on: [llm.response]
            when: usage.output_tokens > 100
            effect: deny
    """)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert halted.value.phase == "llm.response" and len(fake.bodies) == 1
    ex.flush()
    assert ex.store.get_execution(run.id)["status"] == "halted"


def test_a_cost_budget_counts_what_the_calls_cost(governed: Any, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    ex = governed(f"""
        budgets:
          execution:
            cost_usd: {expected_cost() * 1.5 / 1e6:.6f}
    """)
    with pytest.raises(execord.Halted) as halted, execord.execution("support") as run:
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=ASK)
    assert halted.value.reason == "budget" and halted.value.budget_id == "execution.cost_usd"
    assert len(fake.bodies) == 2  # the third call was refused before it was sent
    ex.flush()
    assert ex.store.get_execution(run.id)["totals"]["cost_micros"] == 2 * expected_cost()


# -- errors, unknown prices, stacking, switching off ----------------------------------------------


def test_an_api_error_is_a_failed_step_and_a_provider_failure(engine: execord.Execord, client: openai.OpenAI,
                                                              fake: FakeOpenAI) -> None:
    fake.status = 500

    @execord.workflow
    def support() -> None:
        client.chat.completions.create(model=MODEL, messages=ASK)

    with pytest.raises(openai.InternalServerError):
        support()
    engine.flush()
    run = only(engine.store)
    assert (run["status"], run["failure_class"]) == ("failed", "provider_failure")
    end = ended(engine, run["id"])
    assert end["status"] == "error" and end["error"]["type"] == "openai.InternalServerError"


def test_an_unknown_model_gets_no_cost_and_one_warning(engine: execord.Execord, client: openai.OpenAI,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with execord.execution("support") as run:
        for _ in range(2):
            client.chat.completions.create(model="acme-llm-7", messages=ASK)
    engine.flush()
    ends = [e.attrs for e in engine.store.events(run.id) if e.type == "step.ended"]
    assert [(e["cost_micros"], e["price_source"]) for e in ends] == [(None, "unknown"), (None, "unknown")]
    assert ends[0]["usage"]["input_tokens"] == USAGE["prompt_tokens"]
    assert len([r for r in caplog.records if "acme-llm-7" in r.getMessage()]) == 1


def test_a_call_inside_an_llm_step_is_that_step(engine: execord.Execord, client: openai.OpenAI) -> None:
    with execord.execution("support") as run, execord.step("draft", kind="llm", provider="openai", model=MODEL):
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert [s["name"] for s in llm_steps(engine, run.id)] == ["draft"]


def test_calls_inside_a_tool_nest_under_it(engine: execord.Execord, client: openai.OpenAI) -> None:
    @execord.tool
    def summarize() -> str:
        return client.chat.completions.create(model=MODEL, messages=ASK).choices[0].message.content or ""

    with execord.execution("support") as run:
        summarize()
    engine.flush()
    steps = steps_from_events(engine.store.events(run.id))
    tool = next(s for s in steps if s["kind"] == "tool")
    assert next(s for s in steps if s["kind"] == "llm")["parent_step_id"] == tool["step_id"]


def test_switched_off_nothing_is_recorded(db_path: str, fake: FakeOpenAI) -> None:
    ex = execord.init(agent=AGENT, db=db_path, integrations="auto,-openai")
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    with execord.execution("support") as run:
        client.chat.completions.create(model=MODEL, messages=ASK)
    assert llm_steps(ex, run.id) == [] and len(fake.bodies) == 1
    from openai.resources.chat.completions.completions import Completions

    assert not hasattr(Completions.create, "__execord_original__")


def test_an_unknown_integration_name_is_a_config_error(db_path: str) -> None:
    with pytest.raises(execord.ConfigError, match="unknown integration 'opnai'"):
        execord.init(db=db_path, integrations="opnai")


def test_init_does_not_import_openai_and_patches_it_when_imported(tmp_path: Path) -> None:
    code = """
import sys, execord
execord.init(db="e.db")
assert "openai" not in sys.modules, "init() imported openai"
import openai
from openai.resources.chat.completions.completions import Completions, AsyncCompletions
from openai.resources.responses.responses import Responses
assert all(hasattr(m, "__execord_original__") for m in (Completions.create, AsyncCompletions.create, Responses.create))
print("patched")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "patched", r.stderr


def test_the_example_runs_offline_and_records_its_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECORD_", "OPENAI_"))} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "openai_agent.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    from execord.store import open_store

    store = open_store(str(tmp_path / ".execord" / "execord.db"))
    try:
        run = only(store)
        assert (run["workflow"], run["status"]) == ("answer_ticket", "succeeded")
        steps = steps_from_events(store.events(run["id"]))
        assert [s["kind"] for s in steps] == ["llm", "tool", "llm"]
        assert run["totals"]["cost_micros"] > 0
        assert run["id"] in r.stdout
    finally:
        store.close()


def test_a_call_inside_another_integration_s_llm_step_sends_what_that_step_redacted(
        governed: Any, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    """A framework's chat model wrapping the OpenAI client: one step (the framework's), and the
    request the client sends is masked by that step's decision."""
    from execord.integrations import _base

    ex = governed("""
        policies:
          - id: mask-email
            on: [llm.request]
            effect: redact
            detectors: [email]
    """)
    with execord.execution("support") as run:
        outer = _base.begin("llm", "framework.chat", {"messages": ASK}, integration="framework",
                            provider="openai", model=MODEL)
        assert outer is not None
        with outer.running():
            client.chat.completions.create(model=MODEL, messages=ASK)
        outer.ok({"content": "done"})
    assert fake.bodies[0]["messages"][0]["content"] == "Where is order A-1001? Reply to [REDACTED:email]"
    assert [s["name"] for s in llm_steps(ex, run.id)] == ["framework.chat"]


async def test_a_stream_through_with_streaming_response_is_recorded(engine: execord.Execord,
                                                                    aclient: openai.AsyncOpenAI) -> None:
    """How the Agents SDK streams: the stream comes out of the raw response's parse()."""
    async with execord.execution("support") as run:
        async with aclient.responses.with_streaming_response.create(model=MODEL, input=ASK, stream=True) as raw:
            stream = await raw.parse()
            kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.completed"
    assert_usage(ended(engine, run.id))


def test_a_raw_response_is_recorded(engine: execord.Execord, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with execord.execution("support") as run:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.parse().choices[0].message.content == fake.reply
    assert_usage(ended(engine, run.id))


def test_a_call_under_a_frame_left_by_an_ended_execution_is_its_own_execution(engine: execord.Execord,
                                                                              client: openai.OpenAI) -> None:
    """A frame a library kept past its execution's end (a context copied at the wrong moment)
    does not make the next call fail against a sealed execution."""
    from execord.runtime import current_frame

    with execord.execution("first") as first:
        leaked = current_frame.get()
    token = current_frame.set(leaked)
    try:
        client.chat.completions.create(model=MODEL, messages=ASK)
    finally:
        current_frame.reset(token)
    engine.flush()
    runs = {r["workflow"]: r for r in engine.store.list_executions()}
    assert runs["first"]["id"] == first.id and runs["first"]["totals"]["llm_calls"] == 0
    assert runs["openai.chat.completions"]["status"] == "succeeded"
