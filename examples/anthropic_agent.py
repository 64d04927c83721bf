"""A support agent on the Anthropic API, recorded and governed by two lines of Execord.

    python examples/anthropic_agent.py

With ANTHROPIC_API_KEY set it calls the real API (model: $ANTHROPIC_MODEL, default
claude-haiku-4-5). Without it, it starts a small local stand-in for the API, so the example
runs offline. Then look at what was recorded:

    execord executions list
    execord executions timeline <id>
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic

import execord

recorder = execord.init(agent="support-bot")  # 1: every Anthropic call below becomes a governed, recorded step

SYSTEM = [{"type": "text", "text": "You are a support agent. Look orders up before you answer.",
           "cache_control": {"type": "ephemeral"}}]
TOOLS = [{"name": "lookup_order", "description": "Look an order up by its id.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}]


@execord.tool
def lookup_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL"}


@execord.workflow  # 2: each call of the entry point is one execution
def answer_ticket(client: anthropic.Anthropic, model: str, ticket: str) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": ticket}]
    first = client.messages.create(model=model, max_tokens=300, system=SYSTEM, tools=TOOLS, messages=messages)
    results = [{"type": "tool_result", "tool_use_id": block.id, "content": json.dumps(lookup_order(**block.input))}
               for block in first.content if block.type == "tool_use"]
    if not results:
        return "".join(block.text for block in first.content if block.type == "text")
    messages += [{"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    # The answer is streamed with the library's helper; it is one step too, with its usage.
    with client.messages.stream(model=model, max_tokens=300, system=SYSTEM, tools=TOOLS, messages=messages) as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
        print()
        return stream.get_final_text()


# -- the offline stand-in for the Anthropic API ---------------------------------------------------


class FakeAnthropic(BaseHTTPRequestHandler):
    """Answers POST /v1/messages: a tool_use first, then (streamed) a reply, with usage."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answered = any(isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"])
                       for m in body["messages"])
        # The system prompt is cached: written by the first call, read by the second.
        usage = {"input_tokens": 40 if answered else 180, "output_tokens": 24,
                 "cache_creation_input_tokens": 0 if answered else 1200,
                 "cache_read_input_tokens": 1200 if answered else 0}
        if answered:
            content: list[dict[str, Any]] = [{"type": "text", "text": "Your order A-1001 shipped with DHL."}]
        else:
            content = [{"type": "text", "text": "Let me look that up."},
                       {"type": "tool_use", "id": "toolu_1", "name": "lookup_order", "input": {"order_id": "A-1001"}}]
        message = {"id": "msg_example", "type": "message", "role": "assistant", "model": body["model"],
                   "content": content, "stop_reason": "end_turn" if answered else "tool_use",
                   "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            self._send("application/json", json.dumps(message))
            return
        events = [("message_start", {"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}})]
        for i, block in enumerate(content):
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "text", "text": ""}}))
            for word in block["text"].split(" "):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": word + " "}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        self._send("text/event-stream", "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events))

    def _send(self, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def client() -> anthropic.Anthropic:
    if os.environ.get("ANTHROPIC_API_KEY"):
        return anthropic.Anthropic()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAnthropic)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ANTHROPIC_API_KEY is not set: using a local stand-in for the API on port {server.server_port}")
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{server.server_port}", api_key="not-a-real-key")


if __name__ == "__main__":
    answer_ticket(client(), os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5"), "Where is my order A-1001?")
    execord.flush()
    last = recorder.store.list_executions()[0]
    print(f"recorded execution {last['id']}: {last['status']}, {last['totals']['llm_calls']} LLM calls, "
          f"{last['totals']['input_tokens']} input tokens, {last['totals']['cost_micros']} micro-USD")
