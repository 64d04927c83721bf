"""The OpenAI Agents SDK (``openai-agents``): agent runs, function tools and handoffs as steps.

Three pieces, all switched on by `instrument` (that is, by ``execord.init()``):

- **Runs.** ``Runner.run``, ``Runner.run_sync`` and ``Runner.run_streamed`` (through the SDK's
  ``AgentRunner``) made outside any execution are one execution each: workflow named after
  the run's ``workflow_name`` when one is set in its ``RunConfig``, else after the starting
  agent; ``execution_type: "agent"``; the run's input as its inputs and the final output as
  its output. A streamed run's execution ends when its background run does. Inside
  ``@execord.workflow`` (or ``with execord.execution(...)``, or a step), a run is part of
  that execution.
- **A tracing processor** (added with ``agents.add_trace_processor``, next to the SDK's own
  exporter, not instead of it) maps the SDK's spans to steps of the current execution:
  an agent span is an ``agent`` step named after the agent, a handoff span a ``custom`` step
  named ``handoff`` (input ``{"from_agent"}``, output ``{"from_agent", "to_agent"}``).
  Steps nest as the spans do: the model calls, tools and handoffs of an agent's turns are
  children of its step, and an agent run as a tool (``Agent.as_tool``) nests under that
  tool's step. ``step.request`` / ``step.response`` are evaluated on these steps, and a
  refusal stops the run there: the processor raises it through the SDK (which catches what
  a processor raises as an ``Exception``) and the run raises `execord.Halted`. The SDK calls
  processors synchronously, so a ``require_approval`` on one of these steps blocks the
  event loop's thread while it waits (approvals on tools do not).
  ``agents.set_trace_processors([...])`` keeps Execord's processor in the list it sets.
- **Function tools** are governed where the SDK invokes them (every ``FunctionTool``: the
  ``@function_tool`` ones, MCP server tools, agents as tools): each call is one ``tool``
  step named after the tool, its input the arguments the model sent (a dict),
  ``tool.request`` evaluated before the tool's function runs. A deny: the function never
  runs and ``Runner.run`` raises `execord.Halted` (not the ``UserError`` the SDK wraps tool
  exceptions in, nor an error message handed back to the model). A redaction masks the
  arguments the function receives; ``require_approval`` waits without blocking the event
  loop. The step's output is what the tool returned (``tool.response`` evaluated on it,
  redactions applied to what the model receives). When the tool raises and the SDK turns
  the exception into a message for the model (its ``failure_error_function``, on by
  default), the step ends ``error`` with that exception and the run goes on, as the SDK
  intends. The SDK's native tools (shell, computer, apply-patch, local shell) are ``tool``
  steps too, named after the tool, governed by name (their input is not recorded).

Model calls are not recorded from the SDK's ``response`` / ``generation`` spans: the
``openai`` integration records each ``responses.create`` / ``chat.completions.create`` the
SDK's OpenAI models make as an ``llm`` step (nested under the agent step, governed before
the request is sent, with usage and cost). The SDK fills a response span's model and input
only once the response is back, so a step opened from it could not be governed before the
call, and it would be a second record of the same call.

Agent and handoff steps come from the SDK's tracing: a run with tracing disabled
(``RunConfig(tracing_disabled=True)``, ``agents.set_tracing_disabled(True)``,
``OPENAI_AGENTS_DISABLE_TRACING=1``) still records its execution, tools and model calls, but
not those steps. To keep tracing on without sending traces to OpenAI, drop the SDK's
exporter instead: ``agents.set_trace_processors([])`` (Execord's processor stays).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import importlib
import json
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import Halted
from ..runtime import current_frame, get_default
from ._base import Call, begin, outer_redaction, patch, to_plain, unpatch

log = logging.getLogger("execord")

INTEGRATION = "openai_agents"

_on = False
_lock = threading.Lock()
_spans: dict[str, tuple[Call, str]] = {}  # span id -> the step it opened, and its span type
_failures: dict[str, BaseException | None] = {}  # tool step id -> the exception the SDK handled
_in_run: contextvars.ContextVar[bool] = contextvars.ContextVar("execord_agents_run", default=False)
_processor: Any = None

# What is patched: (module, class) or (module, function). The tool invocation, its failure
# handler and the native tools' span helper are the SDK's internals (0.24): a version without
# one of them leaves that part off, with a warning.
_RUNNER = ("agents.run", "AgentRunner")
_TOOL_INVOKE = (("agents.tool", "_invoke_function_tool_with_metadata"),
                ("agents.run_internal.tool_execution", "_invoke_function_tool_with_metadata"))
_TOOL_FAILURE = ("agents.tool", "maybe_invoke_function_tool_failure_error_function")
_NATIVE_TOOL = ("agents.run_internal.tool_actions", "with_tool_function_span")
_MULTI = ("agents.tracing.provider", "SynchronousMultiTracingProcessor")


class _Refused(BaseException):
    """What the tracing processor raises to stop the SDK at a step governance refused.

    The SDK catches every ``Exception`` a trace processor raises (and only logs it), so the
    refusal travels as a ``BaseException``; the run wrapper turns it back into ``error``.
    """

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


class AgentSpanError(Exception):
    """What an agent step records as its error when the SDK marked the agent's span failed
    and no exception was in flight: the SDK's message."""


# -- switching on and off -------------------------------------------------------------------------


def instrument(module: Any = None) -> None:
    """Wrap the runner and the tool invocation, add the tracing processor (idempotent)."""
    global _on
    runner = _owner(*_RUNNER)
    if runner is not None:
        patch(runner, "run", _wrap_run)
        patch(runner, "run_streamed", _wrap_run_streamed)
    for path, attr in _TOOL_INVOKE:
        mod = _owner(path)
        if mod is not None and hasattr(mod, attr):
            patch(mod, attr, _wrap_invoke)
    mod = _owner(_TOOL_FAILURE[0])
    if mod is not None and hasattr(mod, _TOOL_FAILURE[1]):
        patch(mod, _TOOL_FAILURE[1], _wrap_failure)
    mod = _owner(_NATIVE_TOOL[0])
    if mod is not None and hasattr(mod, _NATIVE_TOOL[1]):
        patch(mod, _NATIVE_TOOL[1], _wrap_native)
    multi = _owner(*_MULTI)
    if multi is not None:
        patch(multi, "set_processors", _wrap_set_processors)
    _on = True
    _register()


def uninstrument() -> None:
    """Take the processor out and put the SDK's functions back."""
    global _on
    _on = False
    multi = _owner(*_MULTI, imported_only=True)
    if multi is not None:
        unpatch(multi, "set_processors")
    _unregister()
    runner = _owner(*_RUNNER, imported_only=True)
    if runner is not None:
        unpatch(runner, "run")
        unpatch(runner, "run_streamed")
    for path, attr in (*_TOOL_INVOKE, _TOOL_FAILURE, _NATIVE_TOOL):
        mod = _owner(path, imported_only=True)
        if mod is not None:
            unpatch(mod, attr)
    with _lock:
        _spans.clear()
        _failures.clear()


def _owner(path: str, cls: str | None = None, *, imported_only: bool = False) -> Any:
    """A module of the SDK (or a class in it); None, with a warning, when this version has none."""
    if imported_only and path not in sys.modules:
        return None
    try:
        mod = importlib.import_module(path)
    except ImportError:
        log.warning("execord: openai-agents has no module %s; that part of the integration is off", path)
        return None
    if cls is None:
        return mod
    owner = getattr(mod, cls, None)
    if owner is None:
        log.warning("execord: openai-agents has no %s.%s; that part of the integration is off", path, cls)
    return owner


def _multi_processor() -> Any:
    from agents.tracing import get_trace_provider

    return getattr(get_trace_provider(), "_multi_processor", None)


def _register() -> None:
    global _processor
    from agents.tracing import add_trace_processor

    if _processor is None:
        _processor = _make_processor()
    current = getattr(_multi_processor(), "_processors", None)
    if current is None or _processor not in current:
        add_trace_processor(_processor)


def _unregister() -> None:
    if _processor is None or "agents.tracing" not in sys.modules:
        return
    multi = _multi_processor()
    current = getattr(multi, "_processors", None)
    if current is not None and _processor in current:
        multi.set_processors([p for p in current if p is not _processor])


def _wrap_set_processors(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def set_processors(self: Any, processors: Any) -> Any:
        processors = list(processors)
        if _on and _processor is not None and _processor not in processors:
            processors.append(_processor)  # replacing the exporters does not switch Execord off
        return original(self, processors)

    return set_processors


# -- runs -----------------------------------------------------------------------------------------


def _workflow_name(agent: Any, kwargs: dict[str, Any]) -> str:
    config = kwargs.get("run_config")
    name = config.get("workflow_name") if isinstance(config, dict) else getattr(config, "workflow_name", None)
    if isinstance(name, str) and name and name != "Agent workflow":  # the SDK's default
        return name
    agent_name = getattr(agent, "name", None)
    return agent_name if isinstance(agent_name, str) and agent_name else "agent-run"


def _run_inputs(input_value: Any) -> Any:
    if isinstance(input_value, str | list | tuple):
        return {"input": to_plain(input_value) if isinstance(input_value, str) else [to_plain(i) for i in input_value]}
    return None  # a RunState being resumed


def _scope_for(agent: Any, input_value: Any, kwargs: dict[str, Any]) -> Any:
    """The execution a run opens (None inside one, or when recording is off)."""
    if current_frame.get() is not None:
        return None
    engine = get_default()
    if engine.disabled:
        return None
    return engine.execution(_workflow_name(agent, kwargs), inputs=_run_inputs(input_value), execution_type="agent")


def _halt_in(exc: BaseException | None) -> BaseException | None:
    """The governance refusal an exception out of the SDK is, or wraps (UserError(...) from Halted)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _Refused):
            return exc.error
        if isinstance(exc, Halted):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _current_halt() -> BaseException | None:
    frame = current_frame.get()
    if frame is None or frame.execution.status == "disabled":
        return None
    return frame.execution.gov.halted


def _output(result: Any) -> Any:
    return to_plain(getattr(result, "final_output", None))


def _wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def run(self: Any, starting_agent: Any, input: Any, **kwargs: Any) -> Any:  # noqa: A002 - the SDK's name
        if not _on:
            return await original(self, starting_agent, input, **kwargs)
        scope = _scope_for(starting_agent, input, kwargs)
        if scope is not None:
            scope.__enter__()  # an admission deny raises Halted here: the run never starts
        before = _current_halt()
        token = _in_run.set(True)
        outcome: BaseException | None
        try:
            result = await original(self, starting_agent, input, **kwargs)
        except BaseException as exc:
            outcome = _halt_in(exc) or exc
        else:
            # Halted inside, and the SDK carried on (a refusal it swallowed): the run stops here.
            halt = _current_halt()
            outcome = halt if halt is not None and halt is not before else None
        finally:
            _in_run.reset(token)
        if outcome is None:
            if scope is not None:
                scope.handle.set_output(_output(result))
                scope.__exit__(None, None, None)
            return result
        if scope is not None:
            scope.__exit__(type(outcome), outcome, outcome.__traceback__)
        raise outcome

    return run


def _wrap_run_streamed(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_streamed(self: Any, starting_agent: Any, input: Any, **kwargs: Any) -> Any:  # noqa: A002
        if not _on:
            return original(self, starting_agent, input, **kwargs)
        # The run happens in a background task, which copies the context it is created in:
        # this copy, where the execution (if the run opens one) is current. The caller's own
        # context is left as it was.
        ctx = contextvars.copy_context()
        scope = ctx.run(_scope_for, starting_agent, input, kwargs)
        if scope is not None:
            ctx.run(scope.__enter__)
        ctx.run(_in_run.set, True)
        try:
            result = ctx.run(original, self, starting_agent, input, **kwargs)
        except BaseException as exc:
            if scope is not None:
                ctx.run(scope.__exit__, type(exc), exc, exc.__traceback__)
            raise
        _watch_stream(result, ctx, scope)
        return result

    return run_streamed


def _watch_stream(result: Any, ctx: contextvars.Context, scope: Any) -> None:
    """End a streamed run's execution with its background task; raise refusals as Halted."""
    task = getattr(result, "run_loop_task", None)
    if scope is not None:
        if task is None:
            ctx.run(scope.__exit__, None, None, None)
        else:
            def ended(t: Any) -> None:
                error: BaseException | None
                if t.cancelled():
                    error = asyncio.CancelledError("the streamed agent run was cancelled")
                else:
                    error = t.exception() or getattr(result, "_stored_exception", None)
                if error is None:
                    scope.handle.set_output(_output(result))
                    scope.__exit__(None, None, None)
                    return
                outcome = _halt_in(error) or error
                scope.__exit__(type(outcome), outcome, outcome.__traceback__)

            def on_done(t: Any) -> None:
                try:
                    ctx.run(ended, t)
                except Exception:
                    log.exception("execord could not end the execution of a streamed agent run")

            task.add_done_callback(on_done)
    events = result.stream_events

    @functools.wraps(events)
    async def stream_events() -> AsyncIterator[Any]:
        refusal: BaseException | None = None
        try:
            async for event in events():
                yield event
        except BaseException as exc:
            refusal = _halt_in(exc)
            if refusal is None or refusal is exc:
                raise
        if refusal is not None:
            raise refusal

    result.stream_events = stream_events


# -- function tools -------------------------------------------------------------------------------


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw


def _is_execord_tool(function_tool: Any) -> bool:
    """A function tool made from an ``@execord.tool`` function records its own step."""
    try:
        wrapped = function_tool.__wrapped__
    except Exception:
        return False
    return getattr(wrapped, "__execord_step__", None) is not None


def _tool_attrs(context: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    call_id = getattr(context, "tool_call_id", None)
    if isinstance(call_id, str):
        attrs["tool_call_id"] = call_id
    agent = getattr(getattr(context, "agent", None), "name", None)
    if isinstance(agent, str):
        attrs["agent"] = agent
    return attrs


def _wrap_invoke(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def invoke(*, function_tool: Any, context: Any, arguments: Any, **more: Any) -> Any:
        if not _on:
            return await original(function_tool=function_tool, context=context, arguments=arguments, **more)
        return await _governed_tool(original, function_tool, context, arguments, more)

    return invoke


async def _governed_tool(original: Callable[..., Any], function_tool: Any, context: Any, arguments: Any,
                         more: dict[str, Any]) -> Any:
    def send(args: Any) -> Any:
        return original(function_tool=function_tool, context=context, arguments=args, **more)

    args = _arguments(arguments)
    if _is_execord_tool(function_tool):
        result = await send(arguments)
        halt = _current_halt()
        if halt is not None:
            raise halt  # the @execord.tool step was refused; the SDK made it a message
        return result
    call = begin("tool", str(getattr(function_tool, "name", "tool")), args, integration=INTEGRATION,
                 attrs=_tool_attrs(context))
    if call is None:
        # Inside a tool step another integration records: that step's redactions still apply.
        masked = outer_redaction(args)
        return await send(arguments if masked is args else _encode(masked))
    await call.wait_async()
    if call.input is not args and call.input != args:
        arguments = _encode(call.input)
        if hasattr(context, "_function_tool_arguments"):
            context._function_tool_arguments = None  # prepared for the unredacted arguments
    with _lock:
        _failures[call.step.id] = None
    try:
        with call.running():
            result = await send(arguments)
    finally:
        with _lock:
            failure = _failures.pop(call.step.id, None)
    halt = call.execution.gov.halted  # refused inside the tool (a nested run, an @execord step)
    if failure is not None:
        call.error(failure)
        if halt is not None:
            raise halt  # the SDK made the refusal a message for the model: the run stops instead
        return result
    output = getattr(result, "output", result)
    plain = to_plain(output)
    let_out = call.ok(plain)
    if halt is not None:
        raise halt  # the tool caught the refusal and returned: the run stops all the same
    if let_out == plain:
        return result
    if dataclasses.is_dataclass(result) and hasattr(result, "output"):
        return dataclasses.replace(result, output=let_out)  # type: ignore[type-var]
    return let_out


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _wrap_failure(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def failure(*args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("error")
        frame = current_frame.get()
        if isinstance(error, BaseException) and frame is not None and frame.step_id is not None:
            with _lock:
                if frame.step_id in _failures and _failures[frame.step_id] is None:
                    _failures[frame.step_id] = error
        return await original(*args, **kwargs)

    return failure


def _wrap_native(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def with_tool_function_span(*, config: Any, tool_name: Any, fn: Any, **more: Any) -> Any:
        if not _on:
            return await original(config=config, tool_name=tool_name, fn=fn, **more)
        call = begin("tool", str(tool_name), None, integration=INTEGRATION, attrs={"tool_type": "native"})
        if call is None:
            return await original(config=config, tool_name=tool_name, fn=fn, **more)
        await call.wait_async()
        with call.running():
            result = await original(config=config, tool_name=tool_name, fn=fn, **more)
        call.ok(to_plain(getattr(result, "output", result)))
        return result

    return with_tool_function_span


# -- the tracing processor ------------------------------------------------------------------------


def _make_processor() -> Any:
    from agents.tracing import AgentSpanData, HandoffSpanData, TracingProcessor

    class ExecordProcessor(TracingProcessor):
        """Agent and handoff spans as steps of the current execution (see the module's docstring)."""

        def on_trace_start(self, trace: Any) -> None:
            pass

        def on_trace_end(self, trace: Any) -> None:
            pass

        def on_span_start(self, span: Any) -> None:
            if not _on:
                return
            data = span.span_data
            if isinstance(data, AgentSpanData):
                kind, name, value, what = "agent", str(data.name), {"agent": data.name}, "agent"
            elif isinstance(data, HandoffSpanData):
                kind, name, value, what = "custom", "handoff", {"from_agent": data.from_agent}, "handoff"
            else:
                return
            if current_frame.get() is None:
                return  # a span outside any execution (and outside a run we wrap): not ours to record
            with _lock:
                if span.span_id in _spans:
                    return
            attrs = {"agents_trace_id": span.trace_id, "agents_span_id": span.span_id}
            try:
                call = begin(kind, name, value, integration=INTEGRATION, attrs=attrs)
                if call is not None:
                    call.wait()  # an approval for an agent or a handoff: the SDK calls us synchronously
            except BaseException as exc:
                _refuse(exc)
                return
            if call is None:
                return
            call.enter()
            with _lock:
                _spans[span.span_id] = (call, what)

        def on_span_end(self, span: Any) -> None:
            with _lock:
                entry = _spans.pop(span.span_id, None)
            if entry is None:
                return
            call, what = entry
            call.leave()
            data = span.span_data
            if what == "agent":
                output = {"tools": list(data.tools or []), "handoffs": list(data.handoffs or []),
                          "output_type": data.output_type}
            else:
                output = {"from_agent": data.from_agent, "to_agent": data.to_agent}
            error = span.error
            in_flight = sys.exc_info()[1]  # what the run is failing with, if it is
            halt = _halt_in(in_flight)
            try:
                if halt is not None or (what == "agent" and error is not None):
                    if halt is None and not isinstance(in_flight, Exception):
                        message = error.get("message") if isinstance(error, dict) else None
                        in_flight = AgentSpanError(message or "the agent run failed")
                    call.error(halt or in_flight)
                else:
                    if error is not None:
                        output["error"] = to_plain(error)
                    call.ok(output)
            except BaseException as exc:
                _refuse(exc)

        def shutdown(self) -> None:
            pass

        def force_flush(self) -> None:
            pass

    return ExecordProcessor()


def _refuse(exc: BaseException) -> None:
    """A step the processor opens or ends was refused (or could not be recorded)."""
    if _in_run.get():
        raise _Refused(exc)
    log.warning("execord: an agents span could not be recorded as a step: %s", exc)


__all__ = ["INTEGRATION", "AgentSpanError", "instrument", "uninstrument"]
