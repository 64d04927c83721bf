"""What every integration shares: patching a library's methods, and one governed step per call.

An integration turns one library call (an OpenAI completion, an MCP tool call…) into one
step of the current execution, with governance around it::

    call = begin("llm", "openai.chat.completions", {"messages": messages}, integration="openai",
                 provider="openai", model=model, params=params)
    if call is None:                    # not recorded here: call the library as it is
        return original(*args, **kwargs)
    call.wait()                         # (or: await call.wait_async()) an approval, if one is needed
    kwargs["messages"] = call.input["messages"]    # what governance let through (redacted)
    with call.running():                # nested calls see this step as their parent; an
        response = original(*args, **kwargs)    # exception ends the step "error" and goes on
    call.ok(output, Usage(input_tokens=…, output_tokens=…))   # prices it, runs llm.response

`begin` returns None, and the library call runs untouched, when recording is off, or when the
call is already being recorded one level up: an LLM call made inside an LLM step (a LangChain
chat model that wraps the OpenAI client) is that step, not a second one. The inner call then
still sends what the outer step's request decision redacted (`outer_redaction`).

A call made outside any execution is an execution of its own, as an ``@execord.step`` is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..record import TERMINAL
from ..runtime import ExecutionScope, StepHandle, current_frame, get_default
from ..runtime._context import Frame

log = logging.getLogger("execord")

_lock = threading.Lock()
_patched: dict[tuple[int, str], tuple[Any, str, Any]] = {}
_open: dict[str, StepHandle] = {}  # steps opened by an integration, by id, while they run


# -- patching -------------------------------------------------------------------------------------


def patch(owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
    """Replace ``owner.attr`` by ``make(original)``, once; `unpatch_all` puts it back."""
    with _lock:
        key = (id(owner), attr)
        if key in _patched:
            return
        original = owner.__dict__[attr] if attr in getattr(owner, "__dict__", {}) else getattr(owner, attr)
        wrapper = make(original)
        wrapper.__execord_original__ = original
        _patched[key] = (owner, attr, original)
        setattr(owner, attr, wrapper)


def unpatch(owner: Any, attr: str) -> None:
    """Put back what `patch` replaced (nothing if it never did)."""
    with _lock:
        entry = _patched.pop((id(owner), attr), None)
    if entry is not None:
        setattr(entry[0], entry[1], entry[2])


def is_patched(owner: Any, attr: str) -> bool:
    """True while ``owner.attr`` is ours."""
    return (id(owner), attr) in _patched


# -- one governed call ----------------------------------------------------------------------------


@dataclass
class Usage:
    """What a call used, in the record's convention (docs/record.md): ``input_tokens`` is every
    input token, cache reads and writes included; ``output_tokens`` every output token,
    reasoning included."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written with a 1-hour TTL (Anthropic)


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class Call:
    """One library call being recorded as a step (see the module's docstring)."""

    __slots__ = ("execution", "step", "input", "extra", "_implicit", "_wait", "_token", "done")

    def __init__(self, execution: Any, step: StepHandle, redacted: Any, extra: dict[str, Any],
                 implicit: ExecutionScope | None, wait: Any):
        self.execution = execution
        self.step = step
        self.input = redacted
        self.extra = extra
        self._implicit = implicit
        self._wait = wait
        self._token: Any = None
        self.done = False

    def wait(self) -> None:
        """Block until the approval this call needs (if any) is decided; `Halted` if refused."""
        if self._wait is not None:
            wait, self._wait = self._wait, None
            try:
                self.execution.wait_approval(wait)
            except BaseException as exc:
                self._close(exc)
                raise

    async def wait_async(self) -> None:
        """`wait`, without blocking the event loop."""
        if self._wait is not None:
            wait, self._wait = self._wait, None
            try:
                await self.execution.wait_approval_async(wait)
            except BaseException as exc:
                self._close(exc)
                raise

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Inside: this step is the current one (what the library calls nests under it). An
        exception that leaves the block ends the step ``error`` (unless it already ended)
        and goes on unchanged."""
        token = current_frame.set(Frame(self.execution, self.step.id, self.step.kind))
        try:
            yield
        except BaseException as exc:
            current_frame.reset(token)  # before ending: an implicit execution resets its own frame
            token = None
            self.error(exc)
            raise
        finally:
            if token is not None:
                current_frame.reset(token)

    def enter(self) -> None:
        """`running` for callbacks that start and end in different calls (LangChain's)."""
        self._token = current_frame.set(Frame(self.execution, self.step.id, self.step.kind))

    def leave(self) -> None:
        """Undo `enter` (from the same context it was entered in; a no-op otherwise)."""
        token, self._token = self._token, None
        if token is not None:
            try:
                current_frame.reset(token)
            except ValueError:  # entered in another context (a thread pool's copy): nothing to undo here
                pass

    def usage(self, usage: Usage | None) -> None:
        """Record what the call used, priced with the execution's pinned price table."""
        if usage is None or self.step.usage is not None:
            return
        u = Usage(*(_whole(getattr(usage, f)) for f in ("input_tokens", "output_tokens", "cached_input_tokens",
                                                        "reasoning_tokens", "cache_write_tokens",
                                                        "cache_write_1h_tokens")))
        cost: int | None
        try:
            cost, source = self.execution._price(
                self.extra, u.input_tokens, u.output_tokens, cached_input_tokens=u.cached_input_tokens,
                reasoning_tokens=u.reasoning_tokens, cache_write_tokens=u.cache_write_tokens,
                cache_write_1h_tokens=u.cache_write_1h_tokens)
        except ValueError as exc:  # the provider's parts exceed their whole: no number beats a wrong one
            log.warning("execord: usage of %s does not add up (%s); recorded without a cost", self.step.name, exc)
            cost, source = None, "unknown"
        self.step.record_usage(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                               cached_input_tokens=u.cached_input_tokens, reasoning_tokens=u.reasoning_tokens)
        self.step.cost_micros, self.step.price_source = cost, source

    def ok(self, output: Any, usage: Usage | None = None) -> Any:
        """End the step ``ok`` with ``output``: the response phase runs (`Halted` on a deny)."""
        if self.done:
            return output
        self.done = True
        self.usage(usage)
        self.step.set_output(output)
        try:
            result = self.execution.finish_step(self.step, output, extra=self.extra)
        except BaseException as exc:
            self._close(exc)
            raise
        self._close(None)
        return result

    def error(self, exc: BaseException, usage: Usage | None = None) -> None:
        """End the step ``error`` with the exception the library raised."""
        if self.done:
            return
        self.done = True
        self.usage(usage)
        try:
            self.execution.end_step(self.step, error=exc)
        finally:
            self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        _open.pop(self.step.id, None)
        implicit, self._implicit = self._implicit, None
        if implicit is not None:
            implicit.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


def begin(kind: str, name: str, input_value: Any, *, integration: str, provider: str | None = None,
          model: str | None = None, params: dict[str, Any] | None = None,
          attrs: dict[str, Any] | None = None) -> Call | None:
    """Start recording one library call as a ``kind`` step: write ``step.started`` and the
    request phase's decision (committed before this returns).

    Returns:
        The call, or None when it is not recorded here (recording off, or already recorded
        by the step it runs in).

    Raises:
        Halted: governance refused the call (the step is recorded as blocked); it must not run.
        RecordError: the call could not be recorded; it must not run.
    """
    frame = current_frame.get()
    if frame is not None and frame.execution.status in TERMINAL:
        frame = None  # a frame left behind by an execution that has ended: the call is not part of it
    if frame is not None and frame.step_kind == kind and (kind == "llm" or (kind == "tool" and frame.step_id in _open)):
        return None  # this call is the step it runs in (an agent run inside an agent step is another step)
    implicit = None
    if frame is None:
        engine = get_default()
        if engine.disabled:
            return None
        implicit = engine.execution(name, execution_type=kind)
        implicit.__enter__()
        frame = current_frame.get()
        assert frame is not None
    elif frame.execution.status == "disabled":
        return None
    extra: dict[str, Any] = {"integration": integration}
    if kind == "llm":
        extra.update(provider=provider, model=model, params=params or {})
    if attrs:
        extra.update(attrs)
    try:
        step, redacted, wait = frame.execution.begin_step(kind, name, input_value, frame.step_id, extra)
    except BaseException as exc:
        if implicit is not None:
            implicit.__exit__(type(exc), exc, exc.__traceback__)
        raise
    _open[step.id] = step
    return Call(frame.execution, step, redacted, extra, implicit, wait)


def outer_redaction(value: Any) -> Any:
    """Inside a step an outer integration records, ``value`` as that step's governance would
    let it out: its request decision's redactions and the secret detectors. Outside one,
    ``value`` unchanged."""
    frame = current_frame.get()
    if frame is None or frame.step_id is None or frame.execution.status == "disabled":
        return value
    step = _open.get(frame.step_id)
    decision = getattr(step, "request_decision", None) if step is not None else None
    redacted, _ = frame.execution.gov.redact(value, decision)
    return redacted


def to_plain(obj: Any) -> Any:
    """A library's response object (pydantic, usually) as plain JSON values."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            pass
    return obj


def get(obj: Any, *path: str) -> Any:
    """``obj.a.b`` or ``obj["a"]["b"]``, None where anything on the way is missing."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj
