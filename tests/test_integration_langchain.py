"""The LangChain / LangGraph integration: a LangGraph agent (a model node and a ToolNode) on a
fake chat model, recorded by the callback handler `execord.init()` installs.

What a user relies on: one graph invocation is one execution, with its nodes, model calls
and tool runs as steps nested as LangChain ran them; model calls carry their model, usage
and cost; a denied tool never runs and stops the graph with `execord.Halted`; sync and
async behave the same; a chat model that wraps the OpenAI client is one llm step, not two;
switched off, nothing is recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from _fake_openai import USAGE, FakeOpenAI
from _helpers import AGENT, only
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import ToolException, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pytest_httpserver import HTTPServer

import execord
from execord.governance._prices import default_table
from execord.runtime import current_frame
from execord.store import blob_value, steps_from_events

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
QUESTION = "Where is my order A-1001?"
FIRST_USAGE = {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
               "input_token_details": {"cache_read": 1000}, "output_token_details": {"reasoning": 120}}
SECOND_USAGE = {"input_tokens": 1500, "output_tokens": 40, "total_tokens": 1540}


# -- a fake chat model and a small agent ----------------------------------------------------------


class ScriptedChat(BaseChatModel):
    """Answers with the next scripted AIMessage; reports itself as OpenAI's gpt-4o-mini."""

    replies: list[AIMessage]
    calls: list[list[BaseMessage]] = []
    temperature: float = 0.2
    max_tokens: int = 256

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": MODEL, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "openai", "ls_model_name": MODEL, "ls_model_type": "chat",
                "ls_temperature": self.temperature, "ls_max_tokens": self.max_tokens}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        reply = self.replies[min(len(self.calls), len(self.replies)) - 1]
        return ChatResult(generations=[ChatGeneration(message=reply.model_copy(deep=True))])

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[{"type": "function", "function": {"name": t.name}} for t in tools], **kwargs)


def scripted(tool_name: str = "lookup_order", args: dict[str, Any] | None = None) -> ScriptedChat:
    """A model that asks for one tool call, then answers."""
    return ScriptedChat(calls=[], replies=[
        AIMessage(content="", tool_calls=[{"name": tool_name, "args": args or {"order_id": "A-1001"}, "id": "call_1"}],
                  usage_metadata=FIRST_USAGE),  # type: ignore[arg-type]
        AIMessage(content="Your order A-1001 has shipped.", usage_metadata=SECOND_USAGE),  # type: ignore[arg-type]
    ])


class Tools:
    """The agent's tools, and what they were called with."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

        @tool
        def lookup_order(order_id: str) -> str:
            """Look an order up by its id."""
            self.ran.append(("lookup_order", {"order_id": order_id}))
            return f"order {order_id}: shipped with DHL; questions to jane.doe@example.com"

        @tool
        def delete_account(account_id: str) -> str:
            """Delete a customer's account."""
            self.ran.append(("delete_account", {"account_id": account_id}))
            return "deleted"

        @tool
        def flaky_lookup(order_id: str) -> str:
            """A lookup whose backend is down."""
            self.ran.append(("flaky_lookup", {"order_id": order_id}))
            raise ConnectionError("orders API is down")

        @tool
        def handled_lookup(order_id: str) -> str:
            """A lookup that reports its own failure to the model."""
            self.ran.append(("handled_lookup", {"order_id": order_id}))
            raise ToolException(f"no order {order_id}")

        handled_lookup.handle_tool_error = True
        self.all = [lookup_order, delete_account, flaky_lookup, handled_lookup]


def agent_graph(model: BaseChatModel, tools: list[Any], *, name: str = "support-agent",
                asynchronous: bool = False) -> Any:
    """A LangGraph agent: a model node that may call tools, and a ToolNode."""
    bound = model.bind_tools(tools)

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", acall_model if asynchronous else call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(name=name)


def ask() -> dict[str, Any]:
    return {"messages": [("user", QUESTION)]}


def steps_of(ex: execord.Execord, run_id: str) -> list[dict[str, Any]]:
    ex.flush()
    return steps_from_events(ex.store.events(run_id))


def started_attrs(ex: execord.Execord, run_id: str, step_id: str) -> dict[str, Any]:
    return next(e.attrs for e in ex.store.events(run_id) if e.type == "step.started" and e.step_id == step_id)


def tree(steps: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(kind, name, parent's name) of each step, in start order."""
    names = {s["step_id"]: s["name"] for s in steps}
    return [(s["kind"], s["name"], names.get(s["parent_step_id"])) for s in steps]


AGENT_TREE = [
    ("agent", "support-agent", None),
    ("custom", "agent", "support-agent"),
    ("llm", "ScriptedChat", "agent"),
    ("custom", "tools_condition", "agent"),
    ("custom", "tools", "support-agent"),
    ("tool", "lookup_order", "tools"),
    ("custom", "agent", "support-agent"),
    ("llm", "ScriptedChat", "agent"),
    ("custom", "tools_condition", "agent"),
]


def expected_cost(usage: dict[str, Any]) -> int:
    cost, _ = default_table().price(
        provider="openai", model=MODEL, input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
        cached_input_tokens=(usage.get("input_token_details") or {}).get("cache_read", 0),
        reasoning_tokens=(usage.get("output_token_details") or {}).get("reasoning", 0))
    assert cost is not None and cost > 0
    return cost


# -- one invocation, one execution ----------------------------------------------------------------


def test_a_graph_invocation_is_one_execution_of_nested_steps(engine: execord.Execord) -> None:
    tools = Tools()
    model = scripted()
    result = agent_graph(model, tools.all).invoke(ask())
    assert result["messages"][-1].content == "Your order A-1001 has shipped."
    assert tools.ran == [("lookup_order", {"order_id": "A-1001"})]
    assert current_frame.get() is None  # nothing of the run is left in the caller's context

    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["execution_type"], run["status"]) == ("support-agent", "agent", "succeeded")
    steps = steps_of(engine, run["id"])
    assert tree(steps) == AGENT_TREE
    assert all(s["status"] == "ok" for s in steps)
    assert run["totals"]["llm_calls"] == 2 and run["totals"]["tool_calls"] == 1 and run["totals"]["steps"] == 9
    opened = engine.store.events(run["id"])[0].attrs
    assert blob_value(engine.store, opened["inputs"]) == {"messages": [["user", QUESTION]]}  # as given

    tool_step = steps[5]
    assert blob_value(engine.store, tool_step["input"]) == {"order_id": "A-1001"}
    assert blob_value(engine.store, tool_step["output"]).startswith("order A-1001: shipped")
    assert started_attrs(engine, run["id"], tool_step["step_id"])["tool_call_id"] == "call_1"


def test_an_llm_step_has_the_model_its_params_usage_and_cost(engine: execord.Execord) -> None:
    agent_graph(scripted(), Tools().all).invoke(ask())
    run = only(engine.store)
    first, second = [s for s in steps_of(engine, run["id"]) if s["kind"] == "llm"]
    attrs = started_attrs(engine, run["id"], first["step_id"])
    assert (attrs["provider"], attrs["model"], attrs["integration"]) == ("openai", MODEL, "langchain")
    assert attrs["params"]["temperature"] == 0.2 and attrs["params"]["max_tokens"] == 256
    assert attrs["params"]["tools"] == ["lookup_order", "delete_account", "flaky_lookup", "handled_lookup"]
    assert blob_value(engine.store, first["input"]) == {"messages": [{"role": "user", "content": QUESTION}]}
    assert first["usage"] == {"input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 1000,
                              "reasoning_tokens": 120}
    assert first["cost_micros"] == expected_cost(FIRST_USAGE) and first["price_source"].startswith("genai-prices")
    out = blob_value(engine.store, first["output"])
    assert out["role"] == "assistant"
    assert out["tool_calls"] == [{"id": "call_1", "name": "lookup_order", "args": {"order_id": "A-1001"}}]
    # the second call saw the tool's answer, as a tool message
    prompt = blob_value(engine.store, second["input"])["messages"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool"] and prompt[2]["tool_call_id"] == "call_1"
    assert second["usage"]["input_tokens"] == 1500 and second["usage"]["cached_input_tokens"] == 0
    assert run["totals"]["cost_micros"] == expected_cost(FIRST_USAGE) + expected_cost(SECOND_USAGE)
    assert run["totals"]["input_tokens"] == 2700 and run["totals"]["output_tokens"] == 340


def test_inside_a_workflow_the_graph_is_a_step_of_it(engine: execord.Execord) -> None:
    graph = agent_graph(scripted(), Tools().all)

    @execord.workflow
    def handle_ticket(ticket: str) -> str:
        return str(graph.invoke({"messages": [("user", ticket)]})["messages"][-1].content)

    assert handle_ticket(QUESTION) == "Your order A-1001 has shipped."
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["status"]) == ("handle_ticket", "succeeded")
    steps = steps_of(engine, run["id"])
    assert tree(steps) == AGENT_TREE
    assert steps[0]["parent_step_id"] is None


async def test_ainvoke_records_the_same_tree(engine: execord.Execord) -> None:
    tools = Tools()
    for asynchronous in (False, True):  # a sync model node in an async graph, then an async one
        result = await agent_graph(scripted(), tools.all, asynchronous=asynchronous).ainvoke(ask())
        assert result["messages"][-1].content == "Your order A-1001 has shipped."
        assert current_frame.get() is None
    engine.flush()
    runs = engine.store.list_executions()
    assert len(runs) == 2 and {r["status"] for r in runs} == {"succeeded"}
    for run in runs:
        steps = steps_of(engine, run["id"])
        assert tree(steps) == AGENT_TREE
        assert [s["usage"]["input_tokens"] for s in steps if s["kind"] == "llm"] == [1200, 1500]


def test_a_streamed_graph_is_one_execution_and_leaves_nothing_behind(engine: execord.Execord) -> None:
    updates = list(agent_graph(scripted(), Tools().all).stream(ask(), stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["agent", "tools", "agent"]
    assert current_frame.get() is None
    run = only(engine.store)
    assert run["status"] == "succeeded" and tree(steps_of(engine, run["id"])) == AGENT_TREE


# -- governance on tools --------------------------------------------------------------------------


NO_DELETES = """
    policies:
      - id: no-account-deletion
        on: [tool.request]
        when: tool.name == "delete_account"
        effect: deny
        message: Accounts are never deleted by an agent.
"""


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_denied_tool_never_runs_and_stops_the_graph(governed: Any, asynchronous: bool) -> None:
    ex = governed(NO_DELETES)
    tools = Tools()
    model = scripted("delete_account", {"account_id": "acct-7"})
    graph = agent_graph(model, tools.all, asynchronous=asynchronous)
    with pytest.raises(execord.Halted) as halted:
        if asynchronous:
            await graph.ainvoke(ask())
        else:
            graph.invoke(ask())
    assert halted.value.rule_id == "no-account-deletion" and halted.value.phase == "tool.request"
    assert tools.ran == []            # the tool never ran
    assert len(model.calls) == 1      # and the graph went no further
    ex.flush()
    run = only(ex.store)
    assert (run["status"], run["failure_class"]) == ("halted", "policy_block")
    assert (run["halt"]["rule_id"], run["halt"]["phase"]) == ("no-account-deletion", "tool.request")
    steps = steps_of(ex, run["id"])
    statuses = {(s["kind"], s["name"]): s["status"] for s in steps}
    assert statuses[("tool", "delete_account")] == "blocked"
    assert statuses[("custom", "tools")] == "error" and statuses[("agent", "support-agent")] == "error"
    assert [s["kind"] for s in steps].count("llm") == 1


def test_a_denied_model_call_is_never_made(governed: Any) -> None:
    ex = governed("""
        policies:
          - id: no-openai
            on: [llm.request]
            when: llm.provider == "openai" && llm.model == "gpt-4o-mini"
            effect: deny
    """)
    model = scripted()
    with pytest.raises(execord.Halted) as halted:
        agent_graph(model, Tools().all).invoke(ask())
    assert halted.value.phase == "llm.request" and model.calls == []
    run = only(ex.store)
    assert run["status"] == "halted"
    llm = next(s for s in steps_of(ex, run["id"]) if s["kind"] == "llm")
    assert llm["status"] == "blocked"


def test_a_tool_result_redaction_is_what_the_graph_goes_on_with(governed: Any) -> None:
    ex = governed("""
        policies:
          - id: mask-contact-data
            on: [tool.response]
            effect: redact
            detectors: [email]
    """)
    model = scripted()
    result = agent_graph(model, Tools().all).invoke(ask())
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_message.content == "order A-1001: shipped with DHL; questions to [REDACTED:email]"
    assert model.calls[1][-1].content == tool_message.content  # what the model saw next
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


def test_an_answer_redaction_is_masked_in_the_message_the_caller_gets(governed: Any) -> None:
    ex = governed("""
        policies:
          - id: mask-contact-data
            on: [llm.response]
            effect: redact
            detectors: [email]
    """)
    model = ScriptedChat(calls=[], replies=[AIMessage(content="Write to jane.doe@example.com.")])
    assert model.invoke(QUESTION).content == "Write to [REDACTED:email]."
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


def test_a_prompt_redaction_reaches_the_provider_through_an_instrumented_client(
        governed: Any, fake: FakeOpenAI, wrapped: OpenAIChat) -> None:
    """The chat model's llm step decides; the OpenAI call inside it sends what it let through."""
    ex = governed("""
        policies:
          - id: mask-contact-data
            on: [llm.request]
            effect: redact
            detectors: [email]
    """)
    wrapped.invoke("Reply to jane.doe@example.com about A-1001")
    assert fake.bodies[0]["messages"][0]["content"] == "Reply to [REDACTED:email] about A-1001"
    (step,) = llm_steps(ex)
    assert blob_value(ex.store, step["input"])["messages"][0]["content"] == "Reply to [REDACTED:email] about A-1001"


def test_a_tool_that_raises_is_a_failed_step_and_a_connector_failure(engine: execord.Execord) -> None:
    tools = Tools()
    with pytest.raises(ConnectionError):
        agent_graph(scripted("flaky_lookup"), tools.all).invoke(ask())
    assert tools.ran == [("flaky_lookup", {"order_id": "A-1001"})]
    engine.flush()
    run = only(engine.store)
    assert (run["status"], run["failure_class"]) == ("failed", "connector_failure")
    tool_step = next(s for s in steps_of(engine, run["id"]) if s["kind"] == "tool")
    assert tool_step["status"] == "error" and tool_step["error"]["type"] == "ConnectionError"


def test_a_tool_error_the_tool_handles_is_a_failed_step_and_the_graph_goes_on(engine: execord.Execord) -> None:
    result = agent_graph(scripted("handled_lookup"), Tools().all).invoke(ask())
    assert result["messages"][-1].content == "Your order A-1001 has shipped."
    run = only(engine.store)
    assert run["status"] == "succeeded"
    tool_step = next(s for s in steps_of(engine, run["id"]) if s["kind"] == "tool")
    assert tool_step["status"] == "error"
    assert tool_step["error"] == {"type": "execord.integrations.langchain.LangChainToolError",
                                  "message": "no order A-1001"}


def test_a_model_that_raises_is_a_failed_step_and_a_provider_failure(engine: execord.Execord) -> None:
    class Down(ScriptedChat):
        def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                      run_manager: Any = None, **kwargs: Any) -> ChatResult:
            raise TimeoutError("the model timed out")

    with pytest.raises(TimeoutError):
        agent_graph(Down(replies=[]), Tools().all).invoke(ask())
    run = only(engine.store)
    assert (run["status"], run["failure_class"]) == ("failed", "provider_failure")
    llm = next(s for s in steps_of(engine, run["id"]) if s["kind"] == "llm")
    assert llm["status"] == "error" and llm["error"]["type"] == "TimeoutError"


# -- what runs inside a run -----------------------------------------------------------------------


class OpenAIChat(BaseChatModel):
    """A LangChain chat model on the official OpenAI client (as langchain-openai is)."""

    client: Any = None
    aclient: Any = None

    @property
    def _llm_type(self) -> str:
        return "openai-wrapper"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "openai", "ls_model_name": MODEL, "ls_model_type": "chat"}

    @staticmethod
    def _wire(messages: list[BaseMessage]) -> list[dict[str, Any]]:
        return [{"role": {"human": "user", "ai": "assistant"}.get(m.type, m.type), "content": m.content} for m in messages]

    @staticmethod
    def _result(response: Any) -> ChatResult:
        u = response.usage
        usage = {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens, "total_tokens": u.total_tokens,
                 "input_token_details": {"cache_read": u.prompt_tokens_details.cached_tokens},
                 "output_token_details": {"reasoning": u.completion_tokens_details.reasoning_tokens}}
        message = AIMessage(content=response.choices[0].message.content, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self._result(self.client.chat.completions.create(model=MODEL, messages=self._wire(messages)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self._result(await self.aclient.chat.completions.create(model=MODEL, messages=self._wire(messages)))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        stream = self.client.chat.completions.create(model=MODEL, messages=self._wire(messages), stream=True,
                                                     stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices:
                yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.choices[0].delta.content or ""))
            elif chunk.usage is not None:
                yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata={
                    "input_tokens": chunk.usage.prompt_tokens, "output_tokens": chunk.usage.completion_tokens,
                    "total_tokens": chunk.usage.total_tokens}))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: Any = None, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        stream = await self.aclient.chat.completions.create(model=MODEL, messages=self._wire(messages), stream=True,
                                                            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices:
                yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.choices[0].delta.content or ""))


@pytest.fixture
def fake(httpserver: HTTPServer) -> FakeOpenAI:
    return FakeOpenAI(httpserver).install()


@pytest.fixture
def wrapped(fake: FakeOpenAI) -> OpenAIChat:
    return OpenAIChat(client=openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0),
                      aclient=openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0))


def llm_steps(ex: execord.Execord) -> list[dict[str, Any]]:
    run = only(ex.store)  # one execution: the OpenAI call did not become one of its own
    return [s for s in steps_of(ex, run["id"]) if s["kind"] == "llm"]


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
async def test_a_chat_model_that_wraps_the_openai_client_is_one_llm_step(
        engine: execord.Execord, wrapped: OpenAIChat, fake: FakeOpenAI, how: str) -> None:
    assert "openai" in execord.integrations.active()  # the OpenAI client is instrumented too
    if how == "invoke":
        text = wrapped.invoke(QUESTION).content
    elif how == "ainvoke":
        text = (await wrapped.ainvoke(QUESTION)).content
    elif how == "stream":
        text = "".join(str(c.content) for c in wrapped.stream(QUESTION))
    else:
        text = "".join([str(c.content) async for c in wrapped.astream(QUESTION)])
    assert str(text).strip() == fake.reply
    assert len(fake.bodies) == 1
    assert current_frame.get() is None
    (step,) = llm_steps(engine)
    assert (step["name"], step["model"]) == ("OpenAIChat", MODEL)
    assert started_attrs(engine, only(engine.store)["id"], step["step_id"])["integration"] == "langchain"
    if how in ("invoke", "ainvoke"):
        assert step["usage"] == {"input_tokens": USAGE["prompt_tokens"], "output_tokens": USAGE["completion_tokens"],
                                 "cached_input_tokens": USAGE["cached_tokens"],
                                 "reasoning_tokens": USAGE["reasoning_tokens"]}
    if how == "stream":
        assert step["usage"]["input_tokens"] == USAGE["prompt_tokens"]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_what_a_node_calls_nests_under_the_node(engine: execord.Execord, wrapped: OpenAIChat,
                                                      fake: FakeOpenAI, asynchronous: bool) -> None:
    """A node that calls a chat model, then the OpenAI client itself, then an @execord.tool:
    all in the graph's execution, under the node (and the direct OpenAI call is recorded:
    the chat model's step is over)."""

    @execord.tool
    def audit(note: str) -> str:
        return "noted"

    def node(state: MessagesState) -> dict[str, Any]:
        first = wrapped.invoke(state["messages"])
        wrapped.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}])
        audit("answered")
        return {"messages": [first]}

    async def anode(state: MessagesState) -> dict[str, Any]:
        first = await wrapped.ainvoke(state["messages"])
        await wrapped.aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}])
        audit("answered")
        return {"messages": [first]}

    graph = StateGraph(MessagesState)
    graph.add_node("answer", anode if asynchronous else node)
    graph.add_edge(START, "answer")
    app = graph.compile(name="answerer")
    if asynchronous:
        await app.ainvoke(ask())
    else:
        app.invoke(ask())
    assert len(fake.bodies) == 2
    run = only(engine.store)
    assert tree(steps_of(engine, run["id"])) == [
        ("agent", "answerer", None), ("custom", "answer", "answerer"), ("llm", "OpenAIChat", "answer"),
        ("llm", "openai.chat.completions", "answer"), ("tool", "audit", "answer")]


def test_an_explicit_handler_records_when_the_integration_is_off(db_path: str) -> None:
    from execord.integrations.langchain import ExecordCallbackHandler

    ex = execord.init(agent=AGENT, db=db_path, integrations="none")
    handler = ExecordCallbackHandler()
    agent_graph(scripted(), Tools().all).invoke(ask(), config={"callbacks": [handler]})
    run = only(ex.store)
    assert tree(steps_of(ex, run["id"])) == AGENT_TREE


def test_a_run_never_gets_two_handlers(engine: execord.Execord) -> None:
    from execord.integrations.langchain import ExecordCallbackHandler

    agent_graph(scripted(), Tools().all).invoke(ask(), config={"callbacks": [ExecordCallbackHandler()]})
    run = only(engine.store)
    assert tree(steps_of(engine, run["id"])) == AGENT_TREE  # each step once


@pytest.mark.parametrize("setting", ["none", "auto,-langchain"])
def test_switched_off_nothing_is_recorded_from_langchain(db_path: str, setting: str) -> None:
    from langchain_core.tracers import context

    execord.init(agent=AGENT, db=db_path)  # on first…
    ex = execord.init(agent=AGENT, db=db_path, integrations=setting)  # …then off
    tools = Tools()
    with execord.execution("support") as run:
        result = agent_graph(scripted(), tools.all).invoke(ask())
    assert result["messages"][-1].content == "Your order A-1001 has shipped." and len(tools.ran) == 1
    assert steps_of(ex, run.id) == []
    assert not any(type(var).__module__.startswith("execord") for var, *_ in context._configure_hooks)
    from langchain_core.runnables import config as runnable_config

    assert not hasattr(runnable_config._set_config_context, "__execord_original__")


def test_init_does_not_import_langchain_and_instruments_it_when_imported(tmp_path: Path) -> None:
    code = """
import sys, execord
recorder = execord.init(db="e.db")
assert "langchain_core" not in sys.modules, "init() imported langchain_core"
from langchain_core.runnables import RunnableLambda
print(RunnableLambda(lambda x: x * 2, name="double").invoke(21))
execord.flush()
run = recorder.store.list_executions()[0]
print(run["workflow"], run["status"], run["totals"]["steps"])
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["42", "double succeeded 1"]


# -- the example ----------------------------------------------------------------------------------


def test_the_example_runs_offline_and_records_the_graph(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECORD_", "OPENAI_"))} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "langgraph_agent.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    from execord.store import open_store

    store = open_store(str(tmp_path / ".execord" / "execord.db"))
    try:
        runs = store.list_executions()
        assert {r["status"] for r in runs} == {"succeeded", "halted"}
        done = next(x for x in runs if x["status"] == "succeeded")
        assert done["id"] in r.stdout and done["execution_type"] == "agent"
        steps = steps_from_events(store.events(done["id"]))
        assert [(s["kind"], s["name"]) for s in steps if s["kind"] in ("llm", "tool")] == [
            ("llm", "SupportModel"), ("tool", "lookup_order"), ("llm", "SupportModel")]
        assert done["totals"]["cost_micros"] > 0
        halted = next(x for x in runs if x["status"] == "halted")
        assert halted["halt"]["rule_id"] == "no-refunds-over-100" and halted["id"] in r.stdout
    finally:
        store.close()
