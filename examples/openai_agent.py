"""A support agent on the OpenAI API, recorded and governed by two lines of Execord.

    python examples/openai_agent.py

With OPENAI_API_KEY set it calls the real API (model: $OPENAI_MODEL, default gpt-4o-mini).
Without it, it starts a small local stand-in for the API, so the example runs offline.
Then look at what was recorded:

    execord executions list
    execord executions timeline <id>
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai

import execord

recorder = execord.init(agent="support-bot")  # 1: every OpenAI call below becomes a governed, recorded step

TOOLS = [{"type": "function", "function": {
    "name": "lookup_order", "description": "Look an order up by its id.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
}}]


@execord.tool
def lookup_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL"}


@execord.workflow  # 2: each call of the entry point is one execution
def answer_ticket(client: openai.OpenAI, model: str, ticket: str) -> str:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a support agent."},
                                      {"role": "user", "content": ticket}]
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=300)
    reply = first.choices[0].message
    for call in reply.tool_calls or ():
        result = lookup_order(**json.loads(call.function.arguments))
        messages.append(reply.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    final = client.chat.completions.create(model=model, messages=messages, max_tokens=300)
    return final.choices[0].message.content or ""


# -- the offline stand-in for the OpenAI API ------------------------------------------------------


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions: a tool call first, then a reply, with usage."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answered = any(m.get("role") == "tool" for m in body["messages"])
        if answered:
            message: dict[str, Any] = {"role": "assistant", "content": "Your order A-1001 shipped with DHL."}
        else:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "lookup_order", "arguments": json.dumps({"order_id": "A-1001"})}}]}
        data = json.dumps({
            "id": "chatcmpl-example", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop" if answered else "tool_calls"}],
            "usage": {"prompt_tokens": 180, "completion_tokens": 24, "total_tokens": 204,
                      "prompt_tokens_details": {"cached_tokens": 0}},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def client() -> openai.OpenAI:
    if os.environ.get("OPENAI_API_KEY"):
        return openai.OpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"OPENAI_API_KEY is not set: using a local stand-in for the API on port {server.server_port}")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="not-a-real-key")


if __name__ == "__main__":
    print(answer_ticket(client(), os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), "Where is my order A-1001?"))
    execord.flush()
    last = recorder.store.list_executions()[0]
    print(f"recorded execution {last['id']}: {last['status']}, {last['totals']['llm_calls']} LLM calls, "
          f"{last['totals']['cost_micros']} micro-USD")
