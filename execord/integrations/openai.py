"""OpenAI: ``chat.completions.create`` and ``responses.create``, sync and async, streamed or not.

Each call is one ``llm`` step named ``openai.chat.completions`` or ``openai.responses``:

- its input is ``{"messages": [...]}``: the chat messages, or for the Responses API its
  ``instructions`` (as a ``developer`` message) and ``input``;
- ``llm.request`` is evaluated before the HTTP request: a deny raises `execord.Halted` and
  nothing is sent; what a redaction masks is masked in the request that leaves the process;
- its output is the response (the final one assembled from the chunks of a stream), its
  usage the response's (cached and reasoning tokens included), priced with the execution's
  pinned price table; ``llm.response`` is evaluated on it;
- a streamed chat completion asks for usage in its last chunk
  (``stream_options.include_usage``) when the caller did not, and that chunk, which the
  caller did not ask for, is not passed on. The step ends when the stream does (or is
  closed, with what had arrived).

Also recorded: the model, the provider (``openai``, or ``azure`` for an Azure endpoint),
the request parameters (``temperature``, ``max_tokens``, the names of the tools…; never
headers), latency, and the error the client raised.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ._base import Call, Usage, begin, get, outer_redaction, patch, to_plain, unpatch

log = logging.getLogger("execord")

#: Request arguments recorded as the step's ``params`` (when given and plain).
PARAMS = (
    "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_p", "n", "stop", "seed",
    "stream", "tool_choice", "parallel_tool_calls", "reasoning_effort", "reasoning", "service_tier",
    "frequency_penalty", "presence_penalty", "response_format", "text", "truncation", "store", "modalities",
    "previous_response_id", "verbosity", "user",
)
_TARGETS = (
    ("openai.resources.chat.completions.completions", "Completions", "chat", False),
    ("openai.resources.chat.completions.completions", "AsyncCompletions", "chat", True),
    ("openai.resources.responses.responses", "Responses", "responses", False),
    ("openai.resources.responses.responses", "AsyncResponses", "responses", True),
)


def instrument(module: Any = None) -> None:
    """Patch the four ``create`` methods (idempotent)."""
    import importlib

    for path, cls, api, is_async in _TARGETS:
        owner = getattr(importlib.import_module(path), cls)
        patch(owner, "create", functools.partial(_async_create if is_async else _sync_create, _APIS[api]))


def uninstrument() -> None:
    """Put the original methods back."""
    import importlib
    import sys

    for path, cls, _api, _is_async in _TARGETS:
        if path in sys.modules:
            unpatch(getattr(importlib.import_module(path), cls), "create")


# -- what each API sends and answers --------------------------------------------------------------


def _plain_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in PARAMS:
        value = kwargs.get(key)
        if value is None or type(value).__name__ in ("Omit", "NotGiven"):
            continue
        if isinstance(value, type):  # response_format=SomePydanticModel
            value = value.__name__
        params[key] = to_plain(value)
    tools = kwargs.get("tools")
    if isinstance(tools, list | tuple):
        params["tools"] = [get(t, "function", "name") or get(t, "name") or get(t, "type") for t in tools]
    return params


def _provider(resource: Any) -> str:
    host = str(get(resource, "_client", "base_url", "host") or "")
    return "azure" if host.endswith(".openai.azure.com") else "openai"


class _Chat:
    name = "openai.chat.completions"

    @staticmethod
    def prompt(kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [to_plain(m) for m in kwargs.get("messages") or ()]}

    @staticmethod
    def send(kwargs: dict[str, Any], prompt: dict[str, Any]) -> None:
        kwargs["messages"] = prompt["messages"]

    @staticmethod
    def usage(u: Any) -> Usage | None:
        if u is None:
            return None
        return Usage(input_tokens=get(u, "prompt_tokens") or 0, output_tokens=get(u, "completion_tokens") or 0,
                     cached_input_tokens=get(u, "prompt_tokens_details", "cached_tokens") or 0,
                     reasoning_tokens=get(u, "completion_tokens_details", "reasoning_tokens") or 0)

    @staticmethod
    def ask_usage(kwargs: dict[str, Any]) -> bool:
        """Ask a stream for its usage; True when we asked (the caller did not)."""
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and "include_usage" in options:
            return False
        kwargs["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return True

    @staticmethod
    def collector() -> _ChatStream:
        return _ChatStream()


class _Responses:
    name = "openai.responses"

    @staticmethod
    def prompt(kwargs: dict[str, Any]) -> dict[str, Any]:
        messages: list[Any] = []
        instructions = kwargs.get("instructions")
        if isinstance(instructions, str):
            messages.append({"role": "developer", "content": instructions})
        given = kwargs.get("input")
        if isinstance(given, str):
            messages.append({"role": "user", "content": given})
        elif isinstance(given, list | tuple):
            messages.extend(to_plain(m) for m in given)
        return {"messages": messages}

    @staticmethod
    def send(kwargs: dict[str, Any], prompt: dict[str, Any]) -> None:
        messages = list(prompt["messages"])
        if isinstance(kwargs.get("instructions"), str):
            kwargs["instructions"] = messages.pop(0)["content"]
        if isinstance(kwargs.get("input"), str):
            kwargs["input"] = messages[0]["content"]
        elif isinstance(kwargs.get("input"), list | tuple):
            kwargs["input"] = messages

    @staticmethod
    def usage(u: Any) -> Usage | None:
        if u is None:
            return None
        return Usage(input_tokens=get(u, "input_tokens") or 0, output_tokens=get(u, "output_tokens") or 0,
                     cached_input_tokens=get(u, "input_tokens_details", "cached_tokens") or 0,
                     reasoning_tokens=get(u, "output_tokens_details", "reasoning_tokens") or 0)

    @staticmethod
    def ask_usage(kwargs: dict[str, Any]) -> bool:
        return False  # a Responses stream always ends with the response and its usage

    @staticmethod
    def collector() -> _ResponsesStream:
        return _ResponsesStream()


_APIS: dict[str, Any] = {"chat": _Chat, "responses": _Responses}


def _parsed(result: Any) -> Any:
    """The response model (the parsed body of ``with_raw_response``, too)."""
    if hasattr(result, "model_dump"):
        return result
    parse = getattr(result, "parse", None)
    if callable(parse):
        try:
            return parse()
        except Exception:
            return None
    return None


# -- streams --------------------------------------------------------------------------------------


class _ChatStream:
    """The completion a chat stream adds up to, chunk by chunk."""

    def __init__(self) -> None:
        self.id = self.model = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        # The fields are read directly (a chunk is the client's ChatCompletionChunk): this
        # runs for every chunk of every stream. A chunk of another shape goes through `get`.
        try:
            chunk_id, model, usage, choices = chunk.id, chunk.model, chunk.usage, chunk.choices
        except AttributeError:
            chunk_id, model, usage, choices = get(chunk, "id"), get(chunk, "model"), get(chunk, "usage"), get(chunk, "choices")
        if chunk_id:
            self.id = chunk_id
        if model:
            self.model = model
        if usage is not None:
            self.usage = usage
        for c in choices or ():
            choice = self.choices.get(c.index)
            if choice is None:
                choice = self.choices[c.index] = {"index": c.index, "message": {"role": "assistant", "content": None},
                                                  "finish_reason": None}
            delta, message = c.delta, choice["message"]
            content = getattr(delta, "content", None)
            if content:
                message["content"] = (message["content"] or "") + content
            tool_calls = getattr(delta, "tool_calls", None)
            if tool_calls:
                self._tool_calls(message, tool_calls)
            if c.finish_reason:
                choice["finish_reason"] = c.finish_reason

    @staticmethod
    def _tool_calls(message: dict[str, Any], tool_calls: Any) -> None:
        calls = message.setdefault("tool_calls", {})
        for tc in tool_calls:
            call = calls.setdefault(tc.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] = tc.id or call["id"]
            if tc.function is not None:
                call["function"]["name"] += tc.function.name or ""
                call["function"]["arguments"] += tc.function.arguments or ""

    def output(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            calls = choice["message"].pop("tool_calls", None)
            if calls:
                choice["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
            choices.append(choice)
        return {"id": self.id, "object": "chat.completion", "model": self.model, "choices": choices}

    def skip(self, chunk: Any) -> bool:
        """The usage-only last chunk that only we asked for."""
        try:
            return not chunk.choices and chunk.usage is not None
        except AttributeError:
            return not get(chunk, "choices") and get(chunk, "usage") is not None


class _ResponsesStream:
    """The response a Responses stream ends with."""

    def __init__(self) -> None:
        self.response: Any = None
        self.usage: Any = None
        self.text: list[str] = []

    def add(self, event: Any) -> None:
        if get(event, "type") == "response.output_text.delta":
            self.text.append(get(event, "delta") or "")
        response = get(event, "response")
        if response is not None:
            self.response = response
            self.usage = get(response, "usage") or self.usage

    def output(self) -> Any:
        if self.response is not None and get(self.response, "status") == "completed":
            return to_plain(self.response)
        return {"status": get(self.response, "status") or "incomplete", "output_text": "".join(self.text)}

    def skip(self, event: Any) -> bool:
        return False


def _finish_stream(call: Call, api: Any, seen: Any, error: BaseException | None, *, closed: bool) -> None:
    if error is not None:
        call.error(error, api.usage(seen.usage))
        return
    if closed:
        # Closed (or dropped) before its end: record what arrived; nothing to raise into.
        try:
            call.ok(seen.output(), api.usage(seen.usage))
        except Exception:
            log.warning("execord: could not end the step of a closed OpenAI stream", exc_info=True)
        return
    call.ok(seen.output(), api.usage(seen.usage))


def _observe(stream: Any, call: Call, api: Any, asked: bool) -> Any:
    seen = api.collector()
    inner: Iterator[Any] = stream._iterator
    original_close = stream.close

    def chunks() -> Iterator[Any]:
        ended = False
        try:
            for chunk in inner:
                seen.add(chunk)
                if asked and seen.skip(chunk):
                    continue
                yield chunk
            ended = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            _finish_stream(call, api, seen, exc, closed=False)
            raise
        finally:
            if not call.done:
                _finish_stream(call, api, seen, None, closed=not ended)

    wrapped = chunks()

    def close() -> None:
        try:
            original_close()
        finally:
            wrapped.close()

    stream._iterator = wrapped
    stream.close = close
    return stream


def _observe_async(stream: Any, call: Call, api: Any, asked: bool) -> Any:
    seen = api.collector()
    inner: AsyncIterator[Any] = stream._iterator
    original_close = stream.close

    async def chunks() -> AsyncIterator[Any]:
        ended = False
        try:
            async for chunk in inner:
                seen.add(chunk)
                if asked and seen.skip(chunk):
                    continue
                yield chunk
            ended = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            _finish_stream(call, api, seen, exc, closed=False)
            raise
        finally:
            if not call.done:
                _finish_stream(call, api, seen, None, closed=not ended)

    wrapped = chunks()

    async def close() -> None:
        try:
            await original_close()
        finally:
            await wrapped.aclose()

    stream._iterator = wrapped
    stream.close = close
    return stream


# -- the wrappers ---------------------------------------------------------------------------------


def _start(api: Any, resource: Any, kwargs: dict[str, Any]) -> tuple[Call | None, dict[str, Any], bool]:
    """Begin the step; the arguments to send (redacted) and whether we asked for stream usage."""
    prompt = api.prompt(kwargs)
    call = begin("llm", api.name, prompt, integration="openai", provider=_provider(resource),
                 model=kwargs.get("model") if isinstance(kwargs.get("model"), str) else None,
                 params=_plain_params(kwargs))
    send = dict(kwargs)
    if call is None:
        outer = outer_redaction(prompt)  # inside another integration's LLM step: its redactions
        if outer is not prompt:
            api.send(send, outer)
        return None, send, False
    if call.input is not prompt:
        api.send(send, call.input)
    asked = bool(send.get("stream")) and api.ask_usage(send)
    return call, send, asked


def _sync_create(api: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return original(self, *args, **kwargs)
        call, send, asked = _start(api, self, kwargs)
        if call is None:
            return original(self, **send)
        call.wait()
        with call.running():
            result = original(self, **send)
        if send.get("stream"):
            if hasattr(result, "_iterator"):
                return _observe(result, call, api, asked)
            return _observe_on_parse(result, call, api, asked)
        response = _parsed(result)
        call.ok(to_plain(response), api.usage(get(response, "usage")))
        return result

    return create


def _observe_on_parse(result: Any, call: Call, api: Any, asked: bool) -> Any:
    """``with_raw_response`` / ``with_streaming_response`` of a stream: the stream comes out
    of the response's ``parse()``; observe it there (the step ends with the stream)."""
    parse = getattr(result, "parse", None)
    if not callable(parse):
        call.ok(None)
        return result
    if inspect.iscoroutinefunction(parse):
        async def parse_async(*args: Any, **kwargs: Any) -> Any:
            stream = await parse(*args, **kwargs)
            return _observe_async(stream, call, api, asked) if hasattr(stream, "_iterator") else stream

        result.parse = parse_async
    else:
        def parse_sync(*args: Any, **kwargs: Any) -> Any:
            stream = parse(*args, **kwargs)
            return _observe(stream, call, api, asked) if hasattr(stream, "_iterator") else stream

        result.parse = parse_sync
    return result


def _async_create(api: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return await original(self, *args, **kwargs)
        call, send, asked = _start(api, self, kwargs)
        if call is None:
            return await original(self, **send)
        await call.wait_async()
        with call.running():
            result = await original(self, **send)
        if send.get("stream"):
            if hasattr(result, "_iterator"):
                return _observe_async(result, call, api, asked)
            return _observe_on_parse(result, call, api, asked)
        response = _parsed(result)
        call.ok(to_plain(response), api.usage(get(response, "usage")))
        return result

    return create
