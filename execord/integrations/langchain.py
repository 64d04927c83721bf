"""LangChain and LangGraph: every run of a chain, a chat model, a tool or a retriever is one step.

One callback handler, `ExecordCallbackHandler`, turns LangChain's run tree into steps of an
execution, nested as the runs are (``parent_step_id`` follows ``parent_run_id``):

=====================================  ===========  ==============================================
LangChain run                          step kind    name
=====================================  ===========  ==============================================
the top-level run (a graph, a chain)   ``agent``    the run's name (``LangGraph``, or the
                                                    ``name`` given to ``compile()``)
a chain inside it (a graph node, a     ``custom``   the run's name (the node's name…)
subgraph, a sequence, a routing
function, a prompt, a parser)
a chat model or an LLM                 ``llm``      the run's name (the model's class name)
a tool                                 ``tool``     the tool's name
a retriever                            ``retrieval``  the run's name
=====================================  ===========  ==============================================

`instrument` (what `execord.init()` calls when ``langchain_core`` is imported) makes the
handler part of every run through LangChain's configure hook, sync and async, LangGraph
included; it can also be passed explicitly (``config={"callbacks": [ExecordCallbackHandler()]}``).

- A top-level run outside any execution opens one execution for the whole invocation
  (``workflow`` = the run's name, ``execution_type`` = the kind of its step, ``inputs`` = its
  input, label ``thread_id`` when LangGraph has one); it is sealed when the run ends.
  Inside ``@execord.workflow`` or ``with execord.execution()``, the run is a step of it.
- Tools are governed: ``tool.request`` is evaluated before the tool runs. A deny raises
  `execord.Halted` from the callback (``raise_error = True``), so the tool never runs and
  the graph stops with the exception; ``require_approval`` waits for a reviewer (blocking
  the thread). ``tool.response`` is evaluated on the tool's result; what a response
  redaction masks is masked in the ``ToolMessage`` the graph goes on with.
- Chat models are ``llm`` steps with ``provider`` (``ls_provider``), ``model``
  (``ls_model_name``, or the invocation's ``model``), ``params`` (``temperature``,
  ``max_tokens``, the names of the bound tools…) and usage (``AIMessage.usage_metadata``,
  cache reads and reasoning included, else ``llm_output["token_usage"]``), priced with the
  execution's pinned price table. ``llm.request`` is evaluated before the model is called
  (a deny raises `execord.Halted` and nothing is sent); what a response redaction masks in
  the answer's ``content`` is masked in the ``AIMessage`` the caller gets.
- Inside a recorded run's body its step is the current one: a chat model that wraps the
  ``openai`` client is one ``llm`` step (LangChain's), not two, and an ``@execord.tool`` or
  an OpenAI call made inside a graph node nests under that node's step. Nothing is set in
  the caller's context, so nothing of a run outlives it.
- An exception a run raises ends its step ``error``; a LangGraph interrupt
  (``GraphInterrupt``, a ``Command`` to the parent graph) ends it ``ok``.

What a callback cannot do: change the arguments a tool is called with, or the messages a
chat model sends. A request redaction masks them in the record (and in what an instrumented
client inside the model, OpenAI or Anthropic, sends), not in what LangChain passes on. An
approval waits in the callback, which blocks the thread: in async code, the event loop's.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..runtime import get_default
from ..runtime._context import Frame, current_frame
from . import _hooks
from ._base import Call, Usage, begin, get, patch, to_plain, unpatch

if TYPE_CHECKING:
    from langchain_core.callbacks.base import BaseCallbackHandler

    from ..runtime import Execord

log = logging.getLogger("execord")

_CONTEXT_MODULE = "langchain_core.tracers.context"
_HIDDEN = "langsmith:hidden"  # LangGraph's and LangChain's internal runs (channel writes…)
_TERMINAL = frozenset({"succeeded", "failed", "halted", "cancelled", "interrupted"})
_MAX_DEPTH = 32

#: Invocation parameters recorded as an llm step's ``params`` (when given).
PARAMS = (
    "temperature", "max_tokens", "max_completion_tokens", "max_output_tokens", "max_tokens_to_sample",
    "top_p", "top_k", "n", "stop", "seed", "stream", "streaming", "tool_choice", "parallel_tool_calls",
    "reasoning_effort", "reasoning", "response_format", "frequency_penalty", "presence_penalty",
    "service_tier", "thinking",
)
_LS_PARAMS = (("ls_temperature", "temperature"), ("ls_max_tokens", "max_tokens"), ("ls_stop", "stop"))
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
          "developer": "developer", "remove": "remove"}


class LangChainToolError(Exception):
    """What a tool step records when the tool answered with an error ``ToolMessage``
    (``status="error"``: a ``ToolException`` or a validation error the tool handled).

    Attributes:
        tool: the tool's name.
        text: the message's content.
    """

    def __init__(self, tool: str, text: str):
        super().__init__(text or f"the LangChain tool {tool!r} returned an error with no text")
        self.tool = tool
        self.text = text


class RunNotEnded(Exception):
    """What a step records when LangChain never reported the end of its run before the
    top-level run ended."""


# -- the handler ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    """One LangChain run this handler saw."""

    call: Call | None              # None: not a step of its own
    anchor: Frame | None           # what the run's children nest under; None: nothing is recorded
    root: _Run | None              # the top-level run (None: this one is)
    scope: Any = None              # the execution this top-level run opened, and its context
    ctx: contextvars.Context | None = None
    members: set[UUID] = field(default_factory=set)


class _Recorder:
    """What `ExecordCallbackHandler` does (LangChain's base class is mixed in when it is built)."""

    raise_error = True  # a Halted from governance must stop the run, not be logged and ignored
    run_inline = True   # called where the run starts (an async run manager would use a thread)

    def __init__(self, recorder: Execord | None = None) -> None:
        self._recorder = recorder
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()
        _install_frames()  # an explicit handler nests what runs inside its runs too

    # -- LangChain's callbacks --------------------------------------------------------------------

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _run_name(serialized, kwargs, "chain")
        meta = metadata or {}
        top = parent_run_id is None or parent_run_id not in self._runs
        kind = "agent" if top or (meta.get("lc_agent_name") and meta.get("lc_agent_name") == name) else "custom"
        attrs: dict[str, Any] = {"langchain_run_id": str(run_id)}
        if any(isinstance(t, str) and t.startswith("graph:step:") for t in tags or ()):
            attrs.update(langgraph_node=meta.get("langgraph_node"), langgraph_step=meta.get("langgraph_step"))
        self._start(kind, name, _plain(inputs), run_id, parent_run_id, tags, meta, attrs=attrs)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, _plain(outputs))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if _bubbles_up(error):  # a LangGraph interrupt or a Command to the parent graph: not a failure
            self._end(run_id, {"langgraph": type(error).__name__, "args": _plain(list(error.args))})
        else:
            self._fail(run_id, error)

    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[Any]], *,
                            run_id: UUID, parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        prompt = [_message(m) for batch in messages for m in batch]
        self._start_llm(serialized, {"messages": prompt}, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        prompt = [{"role": "user", "content": p} for p in prompts]
        self._start_llm(serialized, {"messages": prompt}, run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        generations = [g for batch in get(response, "generations") or () for g in batch or ()]
        if run is not None and run.call is not None and not run.call.extra.get("model"):
            model = _response_model(generations, response)
            if model:
                run.call.extra["model"] = model  # what prices it
        outputs = [_generation(g) for g in generations]
        output: Any = outputs[0] if len(outputs) == 1 else {"generations": outputs}
        let_out = self._finish(run, output, usage=_usage(generations, response))
        if let_out != output:
            _redact_generations(generations, let_out)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
        args = _plain(inputs) if isinstance(inputs, dict) else {"input": input_str}
        attrs: dict[str, Any] = {"langchain_run_id": str(run_id)}
        if kwargs.get("tool_call_id"):
            attrs["tool_call_id"] = kwargs["tool_call_id"]
        self._start("tool", str(name), args, run_id, parent_run_id, tags, metadata or {}, attrs=attrs)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._pop(run_id)
        if not _is_tool_message(output):
            self._finish(run, _plain(output))
            return
        if getattr(output, "status", None) == "error":  # the tool handled its own error
            name = run.call.step.name if run is not None and run.call is not None else "tool"
            self._finish(run, error=LangChainToolError(name, _text(output.content)))
            return
        value = _plain(output.content)
        let_out = self._finish(run, value)
        if let_out != value:
            try:
                output.content = let_out  # what the graph goes on with is what governance let out
            except Exception:  # an unexpected message type: the record is right either way
                log.warning("execord: could not mask the result of a LangChain tool in its ToolMessage")

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if _bubbles_up(error):
            self._end(run_id, {"langgraph": type(error).__name__, "args": _plain(list(error.args))})
        else:
            self._fail(run_id, error)

    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = _run_name(serialized, kwargs, "retriever")
        self._start("retrieval", name, {"query": query}, run_id, parent_run_id, tags, metadata or {},
                    attrs={"langchain_run_id": str(run_id)})

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, _plain(documents))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # -- runs and steps ---------------------------------------------------------------------------

    def _start_llm(self, serialized: dict[str, Any] | None, prompt: dict[str, Any], run_id: UUID,
                   parent_run_id: UUID | None, tags: list[str] | None, metadata: dict[str, Any] | None,
                   kwargs: dict[str, Any]) -> None:
        meta = metadata or {}
        invocation = kwargs.get("invocation_params") or {}
        provider = meta.get("ls_provider") or None
        model = (meta.get("ls_model_name") or invocation.get("model") or invocation.get("model_name")
                 or invocation.get("model_id") or None)
        self._start("llm", _run_name(serialized, kwargs, "llm"), prompt, run_id, parent_run_id, tags, meta,
                    provider=str(provider) if provider else None, model=str(model) if model else None,
                    params=_params(invocation, meta), attrs={"langchain_run_id": str(run_id)})

    def _start(self, kind: str, name: str, value: Any, run_id: UUID, parent_run_id: UUID | None,
               tags: list[str] | None, metadata: dict[str, Any], *, provider: str | None = None,
               model: str | None = None, params: dict[str, Any] | None = None,
               attrs: dict[str, Any] | None = None) -> None:
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        root = None if parent is None else (parent.root or parent)
        if parent is not None:
            anchor = parent.anchor
            if anchor is None or anchor.execution.status in _TERMINAL:
                self._add(run_id, _Run(None, None, root))  # its parent is not recorded: neither is it
                return
            # An llm run inside an llm step is that step; any other run is a step of its own,
            # even under a step of the same kind (a tool a tool runs is governed too).
            frame = Frame(anchor.execution, anchor.step_id, "llm" if kind == "llm" and anchor.step_kind == "llm" else None)
        else:
            frame = self._live(current_frame.get())  # in a run's body, or in the caller's code
        if tags and _HIDDEN in tags and frame is not None:
            self._add(run_id, _Run(None, frame, root))  # an internal run: its children nest under its parent
            return
        scope = ctx = None
        if frame is None:
            engine = self._recorder or get_default()
            if engine.disabled:
                self._add(run_id, _Run(None, None, None))
                return
            scope, ctx, frame = _open_execution(engine, kind, name, value, metadata)
        token = current_frame.set(frame)  # begin() nests the step under the frame it sees
        try:
            call = begin(kind, name, value, integration="langchain", provider=provider, model=model,
                         params=params, attrs=attrs)
        except BaseException as exc:
            current_frame.reset(token)
            _close_execution(scope, ctx, exc)
            raise
        current_frame.reset(token)
        if call is None:  # not recorded here (recording is off, or this is the step it runs in)
            _close_execution(scope, ctx, None)
            self._add(run_id, _Run(None, frame if scope is None else None, root))
            return
        try:
            call.wait()  # an approval, if one is needed (blocks the thread until it is decided)
        except BaseException as exc:
            _close_execution(scope, ctx, exc)
            raise
        run = _Run(call, Frame(call.execution, call.step.id, call.step.kind), root, scope, ctx)
        self._add(run_id, run)
        if kind == "llm":
            _stream_started(run.anchor)

    def _add(self, run_id: UUID, run: _Run) -> None:
        with self._lock:
            self._runs[run_id] = run
            if run.root is not None:
                run.root.members.add(run_id)

    def _pop(self, run_id: UUID) -> _Run | None:
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is not None and run.root is not None:
                run.root.members.discard(run_id)
        return run

    def _end(self, run_id: UUID, output: Any) -> None:
        self._finish(self._pop(run_id), output)

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        self._finish(self._pop(run_id), error=error)

    def _finish(self, run: _Run | None, output: Any = None, *, usage: Usage | None = None,
                error: BaseException | None = None) -> Any:
        """End a run's step: ``ok`` with ``output`` (the response phase runs: returns what it
        lets out), or ``error``; then, for a top-level run, its execution."""
        if run is None or run.call is None:
            self._after(run, error)
            return output
        call = run.call
        if call.execution.status in _TERMINAL:  # a run that outlived its execution: nothing to add
            log.debug("execord: LangChain run %s ended after its execution", call.step.name)
            self._after(run, error)
            return output
        try:
            if error is not None:
                call.error(error, usage)
                let_out = output
            else:
                let_out = call.ok(output, usage)
        except BaseException as exc:  # the response phase denied (Halted), or the record failed
            self._after(run, exc)
            raise
        self._after(run, error)
        return let_out

    def _after(self, run: _Run | None, error: BaseException | None) -> None:
        """After a top-level run ended: end what is left of it, then its execution."""
        if run is None or run.root is not None:
            return
        with self._lock:
            left = [r for r in (self._runs.pop(m, None) for m in run.members) if r is not None]
            run.members.clear()
        for r in left:  # LangChain never said they ended: end them now, before the execution
            if r.call is not None and not r.call.done and r.call.execution.status not in _TERMINAL:
                try:
                    r.call.error(RunNotEnded(f"LangChain did not report the end of {r.call.step.name!r} "
                                             "before its top-level run ended"))
                except Exception:
                    log.exception("execord: could not end the step of LangChain run %s", r.call.step.name)
        if run.scope is not None:
            if error is None and run.call is not None and run.call.step.has_output:
                run.scope.handle.set_output(run.call.step.output)
            _close_execution(run.scope, run.ctx, error)

    def _live(self, frame: Frame | None) -> Frame | None:
        """``frame``, unless its execution has ended (then the run is outside any execution)."""
        return None if frame is None or frame.execution.status in _TERMINAL else frame

    def _frame(self, run_id: Any) -> Frame | None:
        """The frame what runs inside run ``run_id`` nests under (None: not a run of ours)."""
        run = self._runs.get(run_id) if run_id is not None else None
        anchor = run.anchor if run is not None else None
        return anchor if anchor is not None and anchor.execution.status not in _TERMINAL else None


_CLASS: type | None = None


def _handler_class() -> type:
    """`ExecordCallbackHandler`, built on first use (so that importing this module, which
    `execord.init()` does, does not import LangChain)."""
    global _CLASS
    if _CLASS is None:
        from langchain_core.callbacks.base import BaseCallbackHandler

        class ExecordCallbackHandler(_Recorder, BaseCallbackHandler):
            """A LangChain callback handler that records every run as an Execord step.

            `execord.init()` adds one to every LangChain run by itself; pass one explicitly
            (``config={"callbacks": [ExecordCallbackHandler()]}``) when instrumentation is off,
            or to record into a recorder that is not the default one
            (``ExecordCallbackHandler(recorder)``). A run never gets two of them.
            """

        ExecordCallbackHandler.__module__ = __name__
        ExecordCallbackHandler.__qualname__ = "ExecordCallbackHandler"
        _CLASS = ExecordCallbackHandler
    return _CLASS


if TYPE_CHECKING:

    class ExecordCallbackHandler(_Recorder, BaseCallbackHandler):
        """(Built by `_handler_class` at run time.)"""


def __getattr__(name: str) -> Any:
    if name == "ExecordCallbackHandler":
        return _handler_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- switching it on and off ----------------------------------------------------------------------


class _Switch:
    """What LangChain's configure hook asks for the handler to add to a run: ours while on."""

    def __init__(self) -> None:
        self.handler: Any = None

    def get(self) -> Any:
        return self.handler


_switch = _Switch()
_hook: tuple[Any, ...] | None = None
_install_lock = threading.RLock()
_frames_on = False

#: Where a run's body starts, by module: its code runs with the run's step as the current one.
_FRAME_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("langchain_core.runnables.config", "", "_set_config_context"),        # chains, tools, sequences…
    ("langgraph._internal._runnable", "", "_set_config_context"),          # LangGraph nodes
    ("langchain_core.language_models.chat_models", "BaseChatModel", "_generate_with_cache"),
    ("langchain_core.language_models.chat_models", "BaseChatModel", "_agenerate_with_cache"),
    ("langchain_core.language_models.chat_models", "BaseChatModel", "stream"),
    ("langchain_core.language_models.chat_models", "BaseChatModel", "astream"),
    ("langchain_core.language_models.llms", "BaseLLM", "_generate_helper"),
    ("langchain_core.language_models.llms", "BaseLLM", "_agenerate_helper"),
)


class _QuietRefusals(logging.Filter):
    """LangChain logs every exception a handler raises as "Error in … callback" before
    raising it; a refusal by governance is not an error of the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (len(args) == 3 and args[0] == "ExecordCallbackHandler" and isinstance(args[2], str)
                    and args[2].startswith(("Halted(", "Cancelled(")))


_quiet = _QuietRefusals()
_MANAGER_LOGGER = "langchain_core.callbacks.manager"


def instrument(module: Any = None) -> None:
    """Add `ExecordCallbackHandler` to every LangChain run from now on (idempotent): through
    ``langchain_core``'s configure hook, as soon as LangChain first configures a run."""
    with _install_lock:
        if _switch.handler is None:
            _switch.handler = _handler_class()()  # installs the frames too
        _hooks.when_imported(_CONTEXT_MODULE, _register)


def _register(context: Any) -> None:
    global _hook
    with _install_lock:
        if _hook is not None and _hook in context._configure_hooks:
            return
        before = list(context._configure_hooks)
        context.register_configure_hook(_switch, True, _handler_class())
        added = [h for h in context._configure_hooks if h not in before]
        _hook = added[0] if added else None


def uninstrument() -> None:
    """Stop adding the handler to new runs (runs already under way finish recording), and
    put LangChain's methods back."""
    global _hook, _frames_on
    with _install_lock:
        _hooks.cancel(_CONTEXT_MODULE)
        _switch.handler = None
        context = sys.modules.get(_CONTEXT_MODULE)
        if context is not None and _hook is not None:
            try:
                context._configure_hooks.remove(_hook)
            except ValueError:
                pass
        _hook = None
        for module_name, _cls, _attr in _FRAME_TARGETS:
            _hooks.cancel(module_name)
        for module_name, cls, attr in _FRAME_TARGETS:
            module = sys.modules.get(module_name)
            if module is not None:
                owner = getattr(module, cls, None) if cls else module
                if owner is not None:
                    unpatch(owner, attr)
        logging.getLogger(_MANAGER_LOGGER).removeFilter(_quiet)
        _frames_on = False


# -- the current step inside a run ----------------------------------------------------------------
#
# LangChain calls a handler's ``on_*_end`` in another context than its ``on_*_start`` (async
# run managers shield them in a task of their own), so a step set as the current one when a
# run starts could never be unset where it was set. Instead, the step is made current where
# the run's body runs: the context LangChain copies for it (``_set_config_context``, where
# LangChain and LangGraph put the run's child config), and around a chat model's call of its
# provider. Nothing is set in the caller's context, so nothing outlives a run.


def _install_frames() -> None:
    """Make each run's step the current one inside its body (idempotent)."""
    global _frames_on
    with _install_lock:
        if _frames_on:
            return
        _frames_on = True
        logging.getLogger(_MANAGER_LOGGER).addFilter(_quiet)
        for module_name in dict.fromkeys(m for m, _c, _a in _FRAME_TARGETS):
            _hooks.when_imported(module_name, _patch_module)


def _patch_module(module: Any) -> None:
    with _install_lock:
        if not _frames_on:
            return
        for module_name, cls, attr in _FRAME_TARGETS:
            if module_name != module.__name__:
                continue
            owner = getattr(module, cls, None) if cls else module
            if owner is None or not hasattr(owner, attr):
                log.debug("execord: %s.%s is not there; what runs inside it is not nested", module_name, attr)
                continue
            patch(owner, attr, _WRAPPERS[attr])


def _frame_in(manager: Any, run_id: Any) -> Frame | None:
    """The frame of run ``run_id`` if one of our handlers, among ``manager``'s, records it."""
    for handler in getattr(manager, "handlers", None) or ():
        if isinstance(handler, _Recorder):
            frame = handler._frame(run_id)
            if frame is not None:
                return frame
    return None


def _wrap_set_config_context(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def set_config_context(config: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(config, *args, **kwargs)
        callbacks = config.get("callbacks") if isinstance(config, dict) else None
        frame = _frame_in(callbacks, getattr(callbacks, "parent_run_id", None))
        if frame is not None:
            # This runs inside the context LangChain copied for the run's body (and drops after it).
            current_frame.set(frame)
        return result

    return set_config_context


def _wrap_generate(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _manager_frame(args, kwargs)
        if frame is None:
            return original(self, *args, **kwargs)
        token = current_frame.set(frame)
        try:
            return original(self, *args, **kwargs)
        finally:
            current_frame.reset(token)

    return generate


def _wrap_agenerate(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def agenerate(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _manager_frame(args, kwargs)
        if frame is None:
            return await original(self, *args, **kwargs)
        token = current_frame.set(frame)
        try:
            return await original(self, *args, **kwargs)
        finally:
            current_frame.reset(token)

    return agenerate


def _manager_frame(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Frame | None:
    """The frame of the llm run whose ``run_manager`` (or single ``run_managers``) a chat
    model's or an LLM's generate helper was given."""
    manager = kwargs.get("run_manager")
    if manager is None:
        managers = kwargs.get("run_managers")
        if managers is None:  # positional: (messages, stop, run_manager) or (prompts, stop, run_managers)
            managers = args[2] if len(args) > 2 else None
        if isinstance(managers, list | tuple):
            managers = managers[0] if len(managers) == 1 else None
        manager = managers
    if manager is None:
        return None
    return _frame_in(manager, getattr(manager, "run_id", None))


class _Cell:
    """A chat model's stream: the frame of its run, once it started."""

    __slots__ = ("frame", "token")

    def __init__(self) -> None:
        self.frame: Frame | None = None
        self.token: Any = None


_stream_cell: contextvars.ContextVar[_Cell | None] = contextvars.ContextVar("execord_langchain_stream", default=None)


def _stream_started(frame: Frame | None) -> None:
    """An llm run started: if a stream is pulling its first chunk, its call of the provider
    (right after this, in the same pull) runs inside the run's step."""
    cell = _stream_cell.get()
    if cell is not None and cell.frame is None and frame is not None:
        cell.frame = frame
        cell.token = current_frame.set(frame)


@contextlib.contextmanager
def _pulling(cell: _Cell) -> Iterator[None]:
    """One pull of a stream: with its run's step current, and nothing left set after it."""
    cell_token = _stream_cell.set(cell)
    token = current_frame.set(cell.frame) if cell.frame is not None else None
    try:
        yield
    finally:
        if cell.token is not None:
            started, cell.token = cell.token, None
            try:
                current_frame.reset(started)
            except ValueError:  # set in a context the model copied: nothing to undo here
                pass
        if token is not None:
            current_frame.reset(token)
        _stream_cell.reset(cell_token)


def _wrap_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        cell = _Cell()
        chunks = original(self, *args, **kwargs)
        try:
            while True:
                with _pulling(cell):
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        return
                yield chunk
        finally:
            with _pulling(cell):
                chunks.close()

    return stream


def _wrap_astream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def astream(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        cell = _Cell()
        chunks = original(self, *args, **kwargs)
        try:
            while True:
                with _pulling(cell):
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        return
                yield chunk
        finally:
            with _pulling(cell):
                await chunks.aclose()

    return astream


_WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "_set_config_context": _wrap_set_config_context,
    "_generate_with_cache": _wrap_generate,
    "_agenerate_with_cache": _wrap_agenerate,
    "_generate_helper": _wrap_generate,
    "_agenerate_helper": _wrap_agenerate,
    "stream": _wrap_stream,
    "astream": _wrap_astream,
}


# -- executions -----------------------------------------------------------------------------------


def _open_execution(engine: Execord, kind: str, name: str, value: Any,
                    metadata: dict[str, Any]) -> tuple[Any, contextvars.Context, Frame]:
    """Open the execution of a top-level run, in a context of its own (so that it can be
    closed from whichever context the run ends in); returns the frame to begin its step in."""
    labels = {}
    thread = metadata.get("thread_id")
    if isinstance(thread, str | int) and not isinstance(thread, bool):
        labels["thread_id"] = str(thread)
    scope = engine.execution(name, inputs=value, labels=labels, execution_type=kind)
    ctx = contextvars.copy_context()
    ctx.run(current_frame.set, None)
    handle = ctx.run(scope.__enter__)
    return scope, ctx, Frame(handle, None, None)


def _close_execution(scope: Any, ctx: contextvars.Context | None, exc: BaseException | None) -> None:
    if scope is None or ctx is None:
        return
    ctx.run(scope.__exit__, type(exc) if exc is not None else None, exc, exc.__traceback__ if exc is not None else None)


# -- LangChain's values as plain JSON ------------------------------------------------------------


def _run_name(serialized: dict[str, Any] | None, kwargs: dict[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    s = serialized or {}
    if isinstance(s.get("name"), str) and s["name"]:
        return str(s["name"])
    ident = s.get("id")
    if isinstance(ident, list) and ident and isinstance(ident[-1], str):
        return ident[-1]
    return default


def _role(message: Any) -> str:
    t = str(getattr(message, "type", "") or "")
    if t.endswith("MessageChunk"):
        t = t[: -len("MessageChunk")].lower()
    if t == "chat":
        return str(getattr(message, "role", "") or "chat")
    return _ROLES.get(t, t)


def _is_message(value: Any) -> bool:
    try:
        from langchain_core.messages import BaseMessage
    except ImportError:  # pragma: no cover - LangChain is what calls us
        return False
    return isinstance(value, BaseMessage)


def _is_tool_message(value: Any) -> bool:
    try:
        from langchain_core.messages import ToolMessage
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, ToolMessage)


def _message(message: Any) -> Any:
    """A LangChain message as ``{"role", "content", …}``: the shape the other LLM
    integrations record, so one governance rule reads them all (``llm.messages[0].content``)."""
    if not _is_message(message):
        return _plain(message)
    out: dict[str, Any] = {"role": _role(message), "content": _plain(message.content)}
    name = getattr(message, "name", None)
    if name:
        out["name"] = name
    calls = getattr(message, "tool_calls", None)
    if calls:
        out["tool_calls"] = [{"id": get(c, "id"), "name": get(c, "name"), "args": _plain(get(c, "args"))}
                             for c in calls]
    if out["role"] == "tool":
        out["tool_call_id"] = getattr(message, "tool_call_id", None)
        if getattr(message, "status", None) == "error":
            out["status"] = "error"
    return out


def _plain(value: Any, depth: int = 0) -> Any:
    """Messages, documents and prompt values as plain JSON; the rest as it is (the record's
    capture turns what is left into JSON)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if _is_message(value):
        return _message(value)
    cls = type(value).__name__
    if cls == "Document" and hasattr(value, "page_content"):
        doc: dict[str, Any] = {"page_content": value.page_content, "metadata": _plain(getattr(value, "metadata", {}), depth + 1)}
        if getattr(value, "id", None):
            doc["id"] = value.id
        return doc
    to_messages = getattr(value, "to_messages", None)
    if callable(to_messages) and cls.endswith("PromptValue"):
        try:
            return {"messages": [_message(m) for m in to_messages()]}
        except Exception:
            return value
    return value


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(get(b, "text") or "") if not isinstance(b, str) else b for b in content)
    return str(content)


def _params(invocation: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in PARAMS:
        value = invocation.get(key)
        if value is None:
            continue
        if isinstance(value, type):  # response_format=SomePydanticModel
            value = value.__name__
        params[key] = _jsonish(value)
    for ls_key, key in _LS_PARAMS:
        if key not in params and metadata.get(ls_key) is not None:
            params[key] = _jsonish(metadata[ls_key])
    tools = invocation.get("tools")
    if isinstance(tools, list | tuple):
        params["tools"] = [t if isinstance(t, str) else (get(t, "function", "name") or get(t, "name") or get(t, "type"))
                           for t in tools]
    return params


def _jsonish(value: Any) -> Any:
    value = to_plain(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonish(v) for k, v in value.items()}
    return repr(value)


def _generation(generation: Any) -> Any:
    message = getattr(generation, "message", None)
    if message is not None:
        return _message(message)
    return {"role": "assistant", "content": getattr(generation, "text", None)}


def _redact_generations(generations: list[Any], let_out: Any) -> None:
    """Mask in the caller's messages what a response redaction masked in their content."""
    outs = [let_out] if len(generations) == 1 else (get(let_out, "generations") or [])
    for generation, out in zip(generations, outs, strict=False):
        content = get(out, "content")
        message = getattr(generation, "message", None)
        try:
            if message is not None and content != message.content:
                message.content = content
            if isinstance(content, str) and getattr(generation, "text", None) != content:
                generation.text = content
        except Exception:
            log.warning("execord: could not mask a LangChain model's answer in place")


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(generations: Iterable[Any], response: Any) -> Usage | None:
    """The usage of one model call: the answer's ``usage_metadata`` (LangChain's standard
    fields), else the provider's ``llm_output["token_usage"]`` (OpenAI's names)."""
    for generation in generations:
        u = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if u:
            return Usage(
                input_tokens=_whole(get(u, "input_tokens")), output_tokens=_whole(get(u, "output_tokens")),
                cached_input_tokens=_whole(get(u, "input_token_details", "cache_read")),
                cache_write_tokens=_whole(get(u, "input_token_details", "cache_creation")),
                reasoning_tokens=_whole(get(u, "output_token_details", "reasoning")))
    llm_output = get(response, "llm_output") or {}
    u = get(llm_output, "token_usage") or get(llm_output, "usage")
    if not u:
        return None
    return Usage(
        input_tokens=_whole(get(u, "prompt_tokens") or get(u, "input_tokens")),
        output_tokens=_whole(get(u, "completion_tokens") or get(u, "output_tokens")),
        cached_input_tokens=_whole(get(u, "prompt_tokens_details", "cached_tokens")),
        reasoning_tokens=_whole(get(u, "completion_tokens_details", "reasoning_tokens")))


def _response_model(generations: list[Any], response: Any) -> str | None:
    for generation in generations:
        meta = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
        model = get(meta, "model_name") or get(meta, "model")
        if isinstance(model, str) and model:
            return model
    model = get(get(response, "llm_output") or {}, "model_name")
    return model if isinstance(model, str) and model else None


def _bubbles_up(error: BaseException) -> bool:
    """LangGraph's ``GraphBubbleUp`` (an interrupt, a ``Command`` for the parent graph)."""
    return any(c.__name__ == "GraphBubbleUp" and c.__module__.startswith("langgraph") for c in type(error).__mro__)


__all__ = ["PARAMS", "ExecordCallbackHandler", "LangChainToolError", "RunNotEnded", "instrument", "uninstrument"]
