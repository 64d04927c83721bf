"""A LangGraph support agent, recorded and governed by two lines of Execord.

    python examples/langgraph_agent.py

It runs offline: the agent's chat model is a small scripted stand-in (no API key needed),
which reports itself as OpenAI's gpt-4o-mini so that its calls are priced. Swap in any
LangChain chat model (``ChatOpenAI(model="gpt-4o-mini")``…) and nothing else changes.

Each ``graph.invoke`` becomes one execution: the graph, its nodes, every model call (with
its usage and cost) and every tool run are its steps. A governance policy refuses refunds
over 100: the second ticket asks for one, the tool never runs, and the graph stops with
``execord.Halted``. Then look at what was recorded (in ./.execord/execord.db):

    execord executions list
    execord executions steps <id>
    execord executions timeline <id>
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
from typing import Any

import execord

POLICY = """
version: 1
policies:
  - id: no-refunds-over-100
    on: [tool.request]
    when: tool.name == "issue_refund" && tool.args.amount > 100
    effect: deny
    message: Refunds over 100 need a person.
"""

# Usually ./execord.yaml; here a temporary file (each version is stored in the record anyway).
_policy_dir = tempfile.TemporaryDirectory()
atexit.register(_policy_dir.cleanup)
policy_path = os.path.join(_policy_dir.name, "execord.yaml")
with open(policy_path, "w", encoding="utf-8") as f:
    f.write(POLICY)

recorder = execord.init(agent="support-bot", governance=policy_path)  # 1: LangChain runs become steps

# LangChain and LangGraph are imported after init() here, but the order does not matter.
from langchain_core.language_models.chat_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402


class SupportModel(BaseChatModel):
    """A scripted chat model: asks for a tool the ticket needs, then answers from its result."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_model_type": "chat",
                "ls_temperature": 0.0, "ls_max_tokens": 300}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[{"type": "function", "function": {"name": t.name}} for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        usage = {"input_tokens": 40 * len(messages) + 120, "output_tokens": 24, "total_tokens": 40 * len(messages) + 144}
        if last.type == "tool":
            reply = AIMessage(content=f"Here is what I found: {last.content}", usage_metadata=usage)  # type: ignore[arg-type]
        else:
            text = str(last.content)
            found = re.search(r"[A-Z]-\d+", text)
            order = found[0] if found else "A-1001"
            amount = re.search(r"(\d+) EUR", text)
            call = ({"name": "issue_refund", "args": {"order_id": order, "amount": int(amount[1])}} if amount
                    else {"name": "lookup_order", "args": {"order_id": order}})
            reply = AIMessage(content="", tool_calls=[{**call, "id": "call_1"}], usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return f"order {order_id} shipped with DHL on Monday"


@tool
def issue_refund(order_id: str, amount: int) -> str:
    """Refund an amount (in EUR) on an order."""
    return f"refunded {amount} EUR on order {order_id}"  # (never reached for more than 100)


def build_agent() -> Any:
    tools = [lookup_order, issue_refund]
    model = SupportModel().bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(name="support-agent")


if __name__ == "__main__":
    app = build_agent()

    result = app.invoke({"messages": [("user", "Where is my order A-1001?")]})
    print(result["messages"][-1].content)
    execord.flush()
    run = recorder.store.list_executions()[0]
    print(f"recorded execution {run['id']}: {run['status']}, {run['totals']['steps']} steps, "
          f"{run['totals']['llm_calls']} LLM calls, {run['totals']['cost_micros']} micro-USD")

    try:
        app.invoke({"messages": [("user", "Please refund 250 EUR for order A-1002.")]})
    except execord.Halted as halted:
        print(f"stopped by governance ({halted.rule_id}): {halted}")
        print(f"recorded execution {halted.execution_id}: halted")
