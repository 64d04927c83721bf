"""One local server standing in for the OpenAI and the Anthropic API, for code that runs in
another process (the examples of the docs): `serve()` yields the environment variables that
point the official clients at it (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, and keys)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _fake_openai import FakeOpenAI
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


def _anthropic(request: Request) -> Response:
    """``POST /v1/messages``: a text answer with usage, as JSON or as the API's event stream."""
    body = json.loads(request.get_data())
    usage = {"input_tokens": 150, "output_tokens": 20, "cache_read_input_tokens": 1000,
             "cache_creation_input_tokens": 0}
    text = "Your order A-1001 has shipped."
    message: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                               "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                               "stop_sequence": None, "usage": usage}
    if not body.get("stream"):
        return Response(json.dumps(message), content_type="application/json")
    events = [
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                                "usage": {**usage, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": usage["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return Response(sse, content_type="text/event-stream")


@contextmanager
def serve() -> Iterator[dict[str, str]]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        FakeOpenAI(server).install()
        server.expect_request("/v1/messages", method="POST").respond_with_handler(_anthropic)
        yield {"OPENAI_BASE_URL": server.url_for("/v1"), "OPENAI_API_KEY": "sk-docs-example",
               "ANTHROPIC_BASE_URL": server.url_for(""), "ANTHROPIC_API_KEY": "sk-ant-docs-example"}
    finally:
        server.clear()
        server.stop()
