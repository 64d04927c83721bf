"""A local stand-in for the OpenAI API, served by pytest-httpserver: what the official client
is pointed at in the tests (never the internet).

It answers ``POST /v1/chat/completions`` and ``POST /v1/responses`` the way the API does,
usage included, as JSON or, for ``stream: true``, as server-sent events; and it keeps every
request body it received, so a test can see what left the process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

USAGE = {"prompt_tokens": 1200, "completion_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 120}


@dataclass
class FakeOpenAI:
    """The fake server and what it received."""

    server: HTTPServer
    bodies: list[dict[str, Any]] = field(default_factory=list)
    reply: str = "Your order A-1001 has shipped."
    tool_call: dict[str, Any] | None = None  # {"name": ..., "arguments": {...}}: answer with a tool call
    status: int = 200

    @property
    def base_url(self) -> str:
        return self.server.url_for("/v1")

    def install(self) -> FakeOpenAI:
        self.server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(self._chat)
        self.server.expect_request("/v1/responses", method="POST").respond_with_handler(self._responses)
        return self

    # -- chat completions -------------------------------------------------------------------------

    def _chat(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.bodies.append(body)
        if self.status != 200:
            return _error(self.status)
        usage = {
            "prompt_tokens": USAGE["prompt_tokens"], "completion_tokens": USAGE["completion_tokens"],
            "total_tokens": USAGE["prompt_tokens"] + USAGE["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": USAGE["cached_tokens"], "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": USAGE["reasoning_tokens"], "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        message: dict[str, Any] = {"role": "assistant", "content": self.reply, "refusal": None}
        finish = "stop"
        if self.tool_call is not None:
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": self.tool_call["name"], "arguments": json.dumps(self.tool_call["arguments"])},
            }]}
            finish = "tool_calls"
        base = {"id": "chatcmpl-1", "created": 1764633600, "model": body["model"], "system_fingerprint": "fp_1"}
        if not body.get("stream"):
            return _json({**base, "object": "chat.completion", "usage": usage,
                          "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]})
        chunks: list[dict[str, Any]] = []

        def chunk(delta: dict[str, Any], reason: str | None = None) -> None:
            chunks.append({**base, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]})

        chunk({"role": "assistant", "content": ""})
        if self.tool_call is not None:
            args = json.dumps(self.tool_call["arguments"])
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": self.tool_call["name"], "arguments": ""}}]})
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        else:
            for word in self.reply.split(" "):
                chunk({"content": word + " "})
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        return _sse([json.dumps(c) for c in chunks] + ["[DONE]"])

    # -- responses --------------------------------------------------------------------------------

    def _responses(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.bodies.append(body)
        if self.status != 200:
            return _error(self.status)
        usage = {
            "input_tokens": USAGE["prompt_tokens"], "output_tokens": USAGE["completion_tokens"],
            "total_tokens": USAGE["prompt_tokens"] + USAGE["completion_tokens"],
            "input_tokens_details": {"cached_tokens": USAGE["cached_tokens"]},
            "output_tokens_details": {"reasoning_tokens": USAGE["reasoning_tokens"]},
        }
        if self.tool_call is not None:
            item: dict[str, Any] = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed",
                                    "name": self.tool_call["name"], "arguments": json.dumps(self.tool_call["arguments"])}
        else:
            item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": self.reply, "annotations": []}]}
        response = {
            "id": "resp_1", "object": "response", "created_at": 1764633600, "model": body["model"],
            "status": "completed", "output": [item], "usage": usage, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        }
        if not body.get("stream"):
            return _json(response)
        started = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": started})]
        if self.tool_call is None:
            for i, word in enumerate(self.reply.split(" ")):
                events.append(("response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_1",
                    "output_index": 0, "content_index": 0, "delta": word + " ", "logprobs": []}))
        events.append(("response.completed", {"type": "response.completed", "sequence_number": 99,
                                              "response": response}))
        return _sse([json.dumps(data) for _, data in events], names=[name for name, _ in events])


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), status=200, content_type="application/json")


def _error(status: int) -> Response:
    return Response(json.dumps({"error": {"message": "the fake server is down", "type": "server_error",
                                          "param": None, "code": None}}),
                    status=status, content_type="application/json")


def _sse(datas: list[str], names: list[str] | None = None) -> Response:
    lines = []
    for i, data in enumerate(datas):
        if names is not None and i < len(names):
            lines.append(f"event: {names[i]}\n")
        lines.append(f"data: {data}\n\n")
    return Response("".join(lines), status=200, content_type="text/event-stream")
