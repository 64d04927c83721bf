"""Anthropic: ``messages.create`` (sync, async, ``stream=True``), ``messages.parse`` and the
``messages.stream(...)`` helper (sync and async).

Each call is one ``llm`` step named ``anthropic.messages``:

- its input is ``{"messages": [...], "system": ...}`` (``system`` only when given), as the
  JSON the client sends. ``llm.request`` is evaluated before the HTTP request: a deny
  raises `execord.Halted` and nothing is sent; what a redaction masks (in the messages or
  the system prompt) is masked in the request that leaves the process;
- its output is the message as plain JSON (``id``, ``model``, ``content`` with its
  ``text``, ``tool_use`` and ``thinking`` blocks, ``stop_reason``, ``usage``); for a stream,
  the message its events add up to. ``llm.response`` is evaluated on it;
- its usage is the response's, converted to the record's convention: Anthropic's
  ``input_tokens`` leaves out the cache, so the step's ``input_tokens`` is
  ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``, of which
  ``cached_input_tokens`` are the cache reads; cache writes are priced at the cache-write
  price; ``reasoning_tokens`` is ``output_tokens_details.thinking_tokens``. It is priced
  with the execution's pinned price table;
- a stream (``create(stream=True)`` or ``messages.stream``) is returned as the library's own
  object, with its events observed on their way to the caller: the step ends when the
  stream is exhausted, or when it is closed or dropped before that, with what had arrived
  (usage from ``message_start`` and ``message_delta``). With the helper, the request is
  sent (and ``llm.request`` evaluated) when its ``with`` block is entered, as the library
  sends it then.

Also recorded: the model, the provider (``anthropic``; ``aws.bedrock``, ``gcp.vertex_ai``
or ``azure`` for the Bedrock, Vertex and Foundry clients), the request parameters
(``max_tokens``, ``temperature``, ``thinking``, ``tool_choice``, the names of the
``tools``…; never the messages, headers or keys), latency, and the error the client raised.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import logging
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ..errors import ExecutionSealed
from ._base import Call, Usage, begin, get, outer_redaction, patch, to_plain, unpatch

log = logging.getLogger("execord")

NAME = "anthropic.messages"

#: Request arguments recorded as the step's ``params`` (when given).
PARAMS = (
    "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "stream", "tool_choice", "thinking",
    "service_tier", "output_config", "output_format", "speed", "inference_geo", "cache_control", "container",
)
_MODULE = "anthropic.resources.messages.messages"
_TARGETS = (("Messages", False), ("AsyncMessages", True))
_METHODS = ("create", "parse", "stream")


def instrument(module: Any = None) -> None:
    """Patch ``create``, ``parse`` and ``stream`` of ``Messages`` and ``AsyncMessages`` (idempotent)."""
    resources = importlib.import_module(_MODULE)
    for cls, is_async in _TARGETS:
        owner = getattr(resources, cls)
        for method in _METHODS:
            if method in vars(owner):
                patch(owner, method, functools.partial(_WRAPPERS[method, is_async], NAME))


def uninstrument() -> None:
    """Put the original methods back."""
    resources = sys.modules.get(_MODULE)
    if resources is None:
        return
    for cls, _is_async in _TARGETS:
        for method in _METHODS:
            unpatch(getattr(resources, cls), method)


# -- what a request sends -------------------------------------------------------------------------


def _given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in ("Omit", "NotGiven")


def _wire(value: Any) -> Any:
    """``value`` as the JSON the client sends for it (pydantic models dumped as it dumps them)."""
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if hasattr(value, "model_dump"):
        try:
            from anthropic._utils._json import openapi_model_dump

            return _wire(openapi_model_dump(value))
        except Exception:
            return to_plain(value)
    return value


def _holder(send: dict[str, Any], key: str) -> dict[str, Any]:
    """Where a body field comes from: ``extra_body`` when it has it (the library lets it
    override the named arguments), else the named arguments."""
    extra = send.get("extra_body")
    return extra if isinstance(extra, dict) and key in extra else send


def _materialize(send: dict[str, Any]) -> bool:
    """Turn one-shot iterables (a generator of messages…) into lists, so that what is
    recorded is also what is sent. True when something changed."""
    changed = False
    for key in ("messages", "system", "tools"):
        holder = _holder(send, key)
        value = holder.get(key)
        if _given(value) and not isinstance(value, str | bytes | dict | list | tuple) and hasattr(value, "__iter__"):
            _put(send, key, list(value))
            changed = True
    return changed


def _put(send: dict[str, Any], key: str, value: Any) -> None:
    """Set a body field where it comes from (a copy of ``extra_body``, never the caller's)."""
    if _holder(send, key) is send:
        send[key] = value
    else:
        send["extra_body"] = {**send["extra_body"], key: value}


def _prompt(send: dict[str, Any]) -> dict[str, Any]:
    messages = _holder(send, "messages").get("messages")
    prompt: dict[str, Any] = {"messages": _wire(messages) if _given(messages) else []}
    system = _holder(send, "system").get("system")
    if _given(system):
        prompt["system"] = _wire(system)
    return prompt


def _params(send: dict[str, Any], *, helper: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in PARAMS:
        value = _holder(send, key).get(key)
        if not _given(value):
            continue
        if isinstance(value, type):  # output_format=SomePydanticModel
            value = value.__name__
        params[key] = _wire(value)
    tools = _holder(send, "tools").get("tools")
    if isinstance(tools, list | tuple):
        params["tools"] = [get(t, "name") or get(t, "type") for t in tools]
    if helper:
        params["stream"] = True
    return params


def _provider(resource: Any) -> str:
    name = type(get(resource, "_client")).__name__
    if "Bedrock" in name:
        return "aws.bedrock"
    if "Vertex" in name:
        return "gcp.vertex_ai"
    if "Foundry" in name:
        return "azure"
    return "anthropic"


def _start(name: str, resource: Any, kwargs: dict[str, Any], *,
           helper: bool = False) -> tuple[Call | None, dict[str, Any], bool]:
    """Begin the step. Returns it (None when not recorded here), the arguments to send
    (redacted), and whether they differ from the caller's."""
    send = dict(kwargs)
    changed = _materialize(send)
    prompt = _prompt(send)
    model = _holder(send, "model").get("model")
    call = begin("llm", name, prompt, integration="anthropic", provider=_provider(resource),
                 model=model if isinstance(model, str) else None, params=_params(send, helper=helper))
    # Recorded elsewhere (inside another integration's LLM step): send what that step redacted.
    masked = call.input if call is not None else outer_redaction(prompt)
    if masked is not prompt and isinstance(masked, dict):
        _put(send, "messages", masked.get("messages", prompt["messages"]))
        if "system" in prompt:
            _put(send, "system", masked.get("system", prompt["system"]))
        changed = True
    return call, send, changed


# -- what a response says -------------------------------------------------------------------------


def _usage(u: Any) -> Usage | None:
    """Anthropic's usage in the record's convention (input_tokens include the cache)."""
    if u is None:
        return None
    fresh = get(u, "input_tokens") or 0
    read = get(u, "cache_read_input_tokens") or 0
    write = get(u, "cache_creation_input_tokens") or 0
    return Usage(input_tokens=fresh + read + write, output_tokens=get(u, "output_tokens") or 0,
                 cached_input_tokens=read, cache_write_tokens=write,
                 cache_write_1h_tokens=min(write, get(u, "cache_creation", "ephemeral_1h_input_tokens") or 0),
                 reasoning_tokens=get(u, "output_tokens_details", "thinking_tokens") or 0)


def _message(result: Any) -> Any:
    """The message of a result (the parsed body of ``with_raw_response`` too), or None."""
    if hasattr(result, "model_dump"):
        return result
    parse = getattr(result, "parse", None)
    if callable(parse) and not inspect.iscoroutinefunction(parse):
        try:
            return parse()
        except Exception:
            return None
    return None


def _finish(call: Call, message: Any) -> None:
    if message is None:
        call.ok(None)  # a raw response we cannot read (a streamed one's): recorded without its content
        return
    call.ok(to_plain(message), _usage(get(message, "usage")))


# -- streams --------------------------------------------------------------------------------------


class _Collector:
    """The message a stream's events add up to, as plain JSON."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial_json: dict[int, str] = {}

    def add(self, event: Any) -> None:
        try:
            self._add(event)
        except Exception:  # never break the caller's stream over the record
            log.debug("execord: could not follow an Anthropic stream event", exc_info=True)

    def _add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "message_start":
            start = to_plain(get(event, "message"))
            self.message = dict(start) if isinstance(start, dict) else {}
            self.blocks = dict(enumerate(b for b in self.message.pop("content", None) or () if isinstance(b, dict)))
            return
        if self.message is None:
            return
        index = get(event, "index")
        if kind == "content_block_start":
            block = to_plain(get(event, "content_block"))
            self.blocks[index] = dict(block) if isinstance(block, dict) else {"value": block}
        elif kind == "content_block_delta":
            block, delta = self.blocks.get(index), get(event, "delta")
            if block is None:
                return
            dtype = get(delta, "type")
            if dtype == "text_delta":
                block["text"] = (block.get("text") or "") + (get(delta, "text") or "")
            elif dtype == "input_json_delta":
                self.partial_json[index] = self.partial_json.get(index, "") + (get(delta, "partial_json") or "")
            elif dtype == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (get(delta, "thinking") or "")
            elif dtype == "signature_delta":
                block["signature"] = get(delta, "signature")
            elif dtype == "citations_delta":
                block.setdefault("citations", []).append(to_plain(get(delta, "citation")))
        elif kind == "content_block_stop":
            self._settle(index)
        elif kind == "message_delta":
            # Usage on a message_delta is cumulative: it replaces what message_start said.
            for key, value in (to_plain(get(event, "delta")) or {}).items():
                if value is not None:
                    self.message[key] = value
            usage = self.message.setdefault("usage", {})
            for key, value in (to_plain(get(event, "usage")) or {}).items():
                if value is not None:
                    usage[key] = value

    def _settle(self, index: int) -> None:
        raw = self.partial_json.pop(index, None)
        block = self.blocks.get(index)
        if raw is None or block is None:
            return
        try:
            block["input"] = json.loads(raw) if raw.strip() else {}
        except ValueError:
            block["input"] = raw  # cut off mid-way: the text that arrived

    def output(self) -> dict[str, Any] | None:
        if self.message is None:
            return None
        for index in list(self.partial_json):
            self._settle(index)
        return {**self.message, "content": [self.blocks[i] for i in sorted(self.blocks)]}

    def usage(self) -> Usage | None:
        return _usage(self.message.get("usage")) if self.message is not None else None


def _end(call: Call, seen: _Collector, error: BaseException | None, *, closed: bool) -> None:
    if call.done:
        return
    if error is not None:
        call.error(error, seen.usage())
        return
    if closed:
        # Closed (or dropped) before its end: record what arrived; there is nothing to raise into.
        try:
            call.ok(seen.output(), seen.usage())
        except ExecutionSealed:
            log.warning("execord: an Anthropic stream of step %s was dropped after its execution ended; "
                        "the step has no end in the record (close streams, or use them in a with block)",
                        call.step.id)
        except Exception:
            log.warning("execord: could not end the step of a closed Anthropic stream", exc_info=True)
        return
    call.ok(seen.output(), seen.usage())  # a deny of llm.response raises here, at the stream's end


def _dropped(call: Call, seen: _Collector) -> None:
    """The stream was garbage-collected before it ended (maybe before it was read at all)."""
    try:
        _end(call, seen, None, closed=True)
    except Exception:
        log.debug("execord: could not end the step of a dropped Anthropic stream", exc_info=True)


def _observe(stream: Any, call: Call) -> Any:
    """Follow a `anthropic.Stream`'s events (it stays the same object); end the step with it."""
    seen = _Collector()
    inner: Iterator[Any] = stream._iterator
    # The stream's generator does not refer to the stream (the library keeps it free of
    # cycles, so that a dropped stream is closed at once); neither do ours.
    ref = weakref.ref(stream)
    own_close = stream.__dict__.get("close")
    class_close = type(stream).close

    def events() -> Iterator[Any]:
        ended = False
        try:
            for event in inner:
                seen.add(event)
                yield event
            ended = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            _end(call, seen, exc, closed=False)
            raise
        finally:
            if not call.done:
                _end(call, seen, None, closed=not ended)

    wrapped = events()

    def close() -> None:
        try:
            if own_close is not None:
                own_close()
            elif (s := ref()) is not None:
                class_close(s)
        finally:
            # The step ends with what the caller had; the stream itself goes on as the
            # library's does (events already buffered may still be read from it).
            _end(call, seen, None, closed=True)

    stream._iterator = wrapped
    stream.close = close
    weakref.finalize(stream, _dropped, call, seen).atexit = False
    return stream


def _observe_async(stream: Any, call: Call) -> Any:
    """`_observe` for an `anthropic.AsyncStream`."""
    seen = _Collector()
    inner: AsyncIterator[Any] = stream._iterator
    ref = weakref.ref(stream)
    own_close = stream.__dict__.get("close")
    class_close = type(stream).close

    async def events() -> AsyncIterator[Any]:
        ended = False
        try:
            async for event in inner:
                seen.add(event)
                yield event
            ended = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            _end(call, seen, exc, closed=False)
            raise
        finally:
            if not call.done:
                _end(call, seen, None, closed=not ended)

    wrapped = events()

    async def close() -> None:
        try:
            if own_close is not None:
                await own_close()
            elif (s := ref()) is not None:
                await class_close(s)
        finally:
            _end(call, seen, None, closed=True)

    stream._iterator = wrapped
    stream.close = close
    weakref.finalize(stream, _dropped, call, seen).atexit = False
    return stream


def _is_stream(result: Any, kind: str) -> bool:
    from anthropic import AsyncStream, Stream

    return isinstance(result, Stream if kind == "sync" else AsyncStream)


# -- the wrappers ---------------------------------------------------------------------------------


def _sync_create(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return original(self, *args, **kwargs)
        call, send, _ = _start(name, self, kwargs)
        if call is None:
            return original(self, **send)
        call.wait()
        with call.running():
            result = original(self, **send)
        if _is_stream(result, "sync"):
            return _observe(result, call)
        _finish(call, None if send.get("stream") else _message(result))
        return result

    return create


def _async_create(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return await original(self, *args, **kwargs)
        call, send, _ = _start(name, self, kwargs)
        if call is None:
            return await original(self, **send)
        await call.wait_async()
        with call.running():
            result = await original(self, **send)
        if _is_stream(result, "async"):
            return _observe_async(result, call)
        message = None if send.get("stream") else _message(result)
        if message is None and not send.get("stream") and inspect.iscoroutinefunction(getattr(result, "parse", None)):
            try:
                message = await result.parse()  # with_streaming_response: its (cached) parsed body
            except Exception:
                message = None
        _finish(call, message)
        return result

    return create


# ``messages.stream(...)`` returns a manager that sends the request when it is entered. We
# return an instance of a subclass of the library's manager class, which begins the step
# then (governance first, then the request) and observes the raw stream under the
# library's `MessageStream`, which is returned as it is.


class _SyncManager:
    def __init__(self, opener: Callable[[], tuple[Any, Any]]) -> None:
        self._execord_opener = opener
        self._execord_manager: Any = None

    def __enter__(self) -> Any:
        self._execord_manager, stream = self._execord_opener()
        return stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        manager, self._execord_manager = self._execord_manager, None
        if manager is not None:
            return manager.__exit__(exc_type, exc, tb)
        return None


class _AsyncManager:
    def __init__(self, opener: Callable[[], Any]) -> None:
        self._execord_opener = opener
        self._execord_manager: Any = None

    async def __aenter__(self) -> Any:
        self._execord_manager, stream = await self._execord_opener()
        return stream

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        manager, self._execord_manager = self._execord_manager, None
        if manager is not None:
            return await manager.__aexit__(exc_type, exc, tb)
        return None


_manager_classes: dict[type, type] = {}


def _manager_class(library: type, mixin: type) -> type:
    """Our manager class for the library's: an instance of it is an instance of the library's."""
    cls = _manager_classes.get(library)
    if cls is None:
        cls = _manager_classes[library] = type(library.__name__, (mixin, library),
                                               {"__module__": __name__, "__qualname__": library.__qualname__})
    return cls


def _discard(manager: Any) -> None:
    """Close the request coroutine an async manager holds and will never await."""
    for value in vars(manager).values():
        if inspect.iscoroutine(value):
            value.close()


def _sync_stream(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return original(self, *args, **kwargs)
        first = [original(self, **kwargs)]  # checks the arguments as the library does; sends nothing

        def opener() -> tuple[Any, Any]:
            call, send, changed = _start(name, self, kwargs, helper=True)
            unused = first.pop() if first else None
            if call is None:
                manager = original(self, **send) if changed or unused is None else unused
                return manager, manager.__enter__()
            call.wait()
            with call.running():
                manager = original(self, **send) if changed or unused is None else unused
                message_stream = manager.__enter__()
            raw = getattr(message_stream, "_raw_stream", None)
            if _is_stream(raw, "sync"):
                _observe(raw, call)
            else:
                call.ok(None)
            return manager, message_stream

        return _manager_class(type(first[0]), _SyncManager)(opener)

    return stream


def _async_stream(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            return original(self, *args, **kwargs)
        first = [original(self, **kwargs)]  # checks the arguments as the library does; sends nothing
        library = type(first[0])

        async def opener() -> tuple[Any, Any]:
            unused = first.pop() if first else None
            try:
                call, send, changed = _start(name, self, kwargs, helper=True)
                if call is not None:
                    await call.wait_async()
            except BaseException:
                if unused is not None:
                    _discard(unused)
                raise
            if unused is not None and changed:
                _discard(unused)
                unused = None
            if call is None:
                manager = unused if unused is not None else original(self, **send)
                return manager, await manager.__aenter__()
            with call.running():
                manager = unused if unused is not None else original(self, **send)
                message_stream = await manager.__aenter__()
            raw = getattr(message_stream, "_raw_stream", None)
            if _is_stream(raw, "async"):
                _observe_async(raw, call)
            else:
                call.ok(None)
            return manager, message_stream

        return _manager_class(library, _AsyncManager)(opener)

    return stream


_WRAPPERS: dict[tuple[str, bool], Callable[[str, Callable[..., Any]], Callable[..., Any]]] = {
    ("create", False): _sync_create, ("create", True): _async_create,
    ("parse", False): _sync_create, ("parse", True): _async_create,
    ("stream", False): _sync_stream, ("stream", True): _async_stream,
}
