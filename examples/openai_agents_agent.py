"""A front-desk agent on the OpenAI Agents SDK, recorded and governed by two lines of Execord.

    python examples/openai_agents_agent.py

The front desk looks the order up with a function tool, then hands the customer off to
the billing agent, which answers. ``execord.init()`` is all it takes: the run is one
execution, with the two agents, their model calls, the tool call (arguments and result)
and the handoff as nested steps, and governance (``./execord.yaml``, if there is one) is
checked before each tool runs. Try a rule that stops the tool::

    policies:
      - id: no-lookups
        on: [tool.request]
        when: tool.name == "lookup_order"
        effect: deny

With OPENAI_API_KEY set it calls the real API (model: $OPENAI_MODEL, default gpt-4o-mini).
Without it, it starts a small local stand-in for the Responses API, so the example runs
offline. Then look at what was recorded:

    execord executions list
    execord executions timeline <id>
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import agents
from agents import Agent, OpenAIResponsesModel, Runner, function_tool
from openai import AsyncOpenAI

import execord

recorder = execord.init(agent="support-bot")  # 1: every agent, tool, handoff and model call below is recorded


@function_tool
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up by its id."""
    return {"order_id": order_id, "status": "delivered", "total_eur": 42.0, "invoice": "INV-7"}


def build(model: Any) -> Agent:
    billing = Agent(name="Billing", model=model,
                    instructions="You are the billing desk. Answer questions about invoices and refunds.")
    return Agent(name="Front desk", model=model, tools=[lookup_order], handoffs=[billing],
                 instructions="You are the front desk. Look the order up, then hand billing questions to Billing.")


async def main(model: Any) -> str:
    result = await Runner.run(build(model), "Why was I charged 42 EUR for order A-1001?")  # 2: one execution
    return str(result.final_output)


# -- the offline stand-in for the OpenAI Responses API --------------------------------------------


class FakeResponses(BaseHTTPRequestHandler):
    """Answers /v1/responses like the model would here: look up, hand off, answer; with usage."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        items = body["input"] if isinstance(body["input"], list) else []
        looked_up = any(i.get("type") == "function_call_output" and i.get("call_id") == "call_1" for i in items)
        if "billing desk" in (body.get("instructions") or ""):
            item: dict[str, Any] = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                    "content": [{"type": "output_text", "annotations": [],
                                                 "text": "Order A-1001 was delivered; the 42 EUR is invoice INV-7."}]}
        elif not looked_up:
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed",
                    "name": "lookup_order", "arguments": json.dumps({"order_id": "A-1001"})}
        else:
            item = {"type": "function_call", "id": "fc_2", "call_id": "call_2", "status": "completed",
                    "name": "transfer_to_billing", "arguments": "{}"}
        data = json.dumps({
            "id": "resp_example", "object": "response", "created_at": 0, "model": body["model"], "status": "completed",
            "output": [item], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None, "instructions": body.get("instructions"), "metadata": {},
            "usage": {"input_tokens": 240, "output_tokens": 28, "total_tokens": 268,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def model() -> Any:
    name = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    if os.environ.get("OPENAI_API_KEY"):
        return name  # the SDK's default client, and its trace exporter, as usual
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeResponses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"OPENAI_API_KEY is not set: using a local stand-in for the API on port {server.server_port}")
    agents.set_trace_processors([])  # no key for the SDK's exporter to send traces with; Execord's processor stays
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="not-a-real-key")
    return OpenAIResponsesModel(model=name, openai_client=client)


if __name__ == "__main__":
    try:
        print(asyncio.run(main(model())))
    except execord.Halted as halt:  # a rule refused an action: it did not run, and the record says why
        print(f"stopped by governance: {halt}")
    execord.flush()
    last = recorder.store.list_executions()[0]
    print(f"recorded execution {last['id']}: {last['status']}, {last['totals']['steps']} steps, "
          f"{last['totals']['llm_calls']} LLM calls, {last['totals']['cost_micros']} micro-USD")
