"""The SDK engine: `Execord`, its execution and step scopes, and its decorators."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError
from ..record import STEP_KINDS, uuid7
from ..store import DEFAULT_DB, open_store
from ._config import resolve
from ._context import Frame, current_frame
from ._governed import Governor
from ._handles import ExecutionHandle, StepHandle
from ._reaper import reap
from ._writer import Writer

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()


def _default_agent() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(path))[0] if path else "python"


class Execord:
    """One configured recorder: settings, a store and a writer.

    `execord.init()` makes the default one; build your own for tests or for several projects
    in one process. Every keyword of `init()` is accepted here.
    """

    def __init__(self, **settings: Any):
        self.settings = resolve(settings)
        if not self.settings["agent"]:
            self.settings["agent"] = _default_agent()
        self.disabled: bool = bool(self.settings["disabled"])
        self.db_path: str = self.settings["db"] or DEFAULT_DB
        self._governor = Governor(self.settings["governance"], self.settings["agent"])
        if self.settings["governance"] and not self.disabled:
            from ..governance import load_spec

            load_spec(self.settings["governance"])  # fail fast: a bad file is an error at init()
        self._writer = Writer(
            self._open_store,
            durability=self.settings["durability"],
            flush_interval_ms=self.settings["flush_interval_ms"],
            on_record_error=self.settings["on_record_error"],
            lease_s=self.settings["lease_s"],
            heartbeat_s=self.settings["heartbeat_s"],
            flush_at_exit_s=self.settings["flush_at_exit_s"],
        )

    def _open_store(self) -> Any:
        s = self.settings
        if s["url"]:
            from ._remote import RemoteStore, default_spool_dir

            # Server mode: the server's reaper seals the executions of dead processes.
            remote = RemoteStore(s["url"], s["api_key"], spool_dir=s["spool_dir"] or default_spool_dir(s["url"], s["api_key"]),
                                 spool_max_bytes=s["spool_max_bytes"], lease_s=s["lease_s"],
                                 spool_fsync=s["spool_fsync"], sync_interval_s=s["flush_interval_ms"] / 1000)
            self._governor.register(remote)
            return remote
        store = open_store(self.db_path, busy_timeout_ms=s["busy_timeout_ms"])
        # Whoever opens a store seals the executions of processes that died (DESIGN §2).
        reap(store)
        self._governor.register(store)
        return store

    @property
    def store(self) -> Any:
        """The store this recorder writes to (opened on first use)."""
        return self._writer.store

    # -- scopes --------------------------------------------------------------------------

    def execution(
        self,
        workflow: str | None = None,
        *,
        inputs: Any = None,
        labels: dict[str, str] | None = None,
        agent: str | None = None,
        execution_type: str = "workflow",
        workflow_version: str | None = None,
    ) -> ExecutionScope:
        """A scope that is one execution, for ``with`` and ``async with``.

        Example:
            >>> import execord
            >>> with execord.execution("nightly-report", labels={"team": "ops"}) as ex:
            ...     execord.log("starting")
            >>> ex.status
            'succeeded'
        """
        if labels is not None and (not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels)):
            raise ConfigError("labels must be a dict of str keys to str values, e.g. {'team': 'ops'}")
        return ExecutionScope(
            self, workflow or "default", inputs=inputs, labels={k: str(v) for k, v in (labels or {}).items()},
            agent=agent, execution_type=execution_type, workflow_version=workflow_version,
        )

    def step(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        kind: str = "custom",
        input: Any = _UNSET,  # noqa: A002 - the DESIGN's word
        provider: str | None = None,
        model: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """A governed step: a decorator, or a scope for ``with`` / ``async with``."""
        if callable(name):
            return StepSpec(self, None, kind, _UNSET, provider, model, params)(name)
        if kind not in STEP_KINDS:
            raise ConfigError(f"step kind must be one of {', '.join(sorted(STEP_KINDS))}, not {kind!r}")
        return StepSpec(self, name, kind, input, provider, model, params)

    def tool(self, fn: F | None = None, *, name: str | None = None) -> Any:
        """Record (and later govern) every call of ``fn`` as a ``tool`` step."""
        spec = StepSpec(self, name, "tool", _UNSET, None, None, None)
        return spec if fn is None else spec(fn)

    def workflow(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        version: str | None = None,
        execution_type: str = "workflow",
        labels: dict[str, str] | None = None,
    ) -> Any:
        """Make every call of ``fn`` one execution."""

        def decorate(f: F) -> F:
            return _decorate_workflow(lambda: self, f, name, version, execution_type, labels)

        return decorate if fn is None else decorate(fn)

    # -- the rest --------------------------------------------------------------------------

    def log(self, message: str, *, level: str = "info", **data: Any) -> None:
        """Append a ``log`` event to the current execution (a no-op outside one)."""
        frame = current_frame.get()
        if frame is None or self.disabled:
            return
        frame.execution.log(message, level=level, step_id=frame.step_id, data=data or None)

    def flush(self, timeout: float | None = None) -> bool:
        """Commit everything recorded so far; True when nothing is left pending."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Flush, stop the background threads and close the store."""
        self._writer.close()


class ExecutionScope:
    """``with execord.execution(...) as ex:``: one execution, sync or async."""

    def __init__(self, engine: Execord, workflow: str, *, inputs: Any, labels: dict[str, str],
                 agent: str | None, execution_type: str, workflow_version: str | None):
        self._engine = engine
        self._workflow = workflow
        self._inputs = inputs
        self._labels = labels
        self._agent = agent
        self._execution_type = execution_type
        self._workflow_version = workflow_version
        self._token: Any = None
        self.handle: ExecutionHandle | None = None

    def __enter__(self) -> ExecutionHandle:
        e = self._engine
        parent = current_frame.get()
        handle = ExecutionHandle(
            e._writer, e.settings, execution_id=uuid7(), workflow=self._workflow,
            workflow_version=self._workflow_version, agent=self._agent or e.settings["agent"],
            execution_type=self._execution_type,
            parent_execution_id=parent.execution.id if parent else None, labels=self._labels,
        )
        if not e.disabled:
            store = e._writer.store
            if getattr(store, "remote", False):
                # Server mode: the server pins the version and decides admission.
                admission = e._governor.admit(store, handle.admission_request())
                handle.start(self._inputs, admission.pinned, admission=admission.answer)
            else:
                # Pin the governance version active now; every decision of this run names it.
                handle.start(self._inputs, e._governor.pin(store))
        else:
            handle.status = "disabled"
        self.handle = handle
        self._token = current_frame.set(Frame(handle, None, None))
        return handle

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        current_frame.reset(self._token)
        if self._engine.disabled or self.handle is None:
            return
        try:
            self.handle.end(exc)
        except Exception:
            if exc is None:
                raise
            # The workflow's own exception wins: it is re-raised unchanged. The record
            # failure is logged, and the reaper seals the execution later.
            import logging

            logging.getLogger("execord").exception("execord could not seal execution %s", self.handle.id)

    async def __aenter__(self) -> ExecutionHandle:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


class StepSpec:
    """What a step is (kind, name, model…); used as a decorator or as a scope."""

    def __init__(self, engine: Execord | None, name: str | None, kind: str, input_value: Any,
                 provider: str | None, model: str | None, params: dict[str, Any] | None):
        if kind not in STEP_KINDS:
            raise ConfigError(f"step kind must be one of {', '.join(sorted(STEP_KINDS))}, not {kind!r}")
        self.engine = engine
        self.name = name
        self.kind = kind
        self.input_value = input_value
        self.extra: dict[str, Any] | None = None
        if provider is not None or model is not None or params is not None:
            self.extra = {"provider": provider, "model": model, "params": params}
        self._stack: list[tuple[Any, StepHandle | None, Any, Any]] = []

    # -- as a decorator ----------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if not callable(fn) or isinstance(fn, type):
            raise TypeError(f"@execord.{'tool' if self.kind == 'tool' else 'step'} decorates a function, not {fn!r}")
        if self.name is None:
            self.name = getattr(fn, "__name__", None) or repr(fn)
        return _decorate_step(self, fn)

    # -- as a scope --------------------------------------------------------------------------

    def __enter__(self) -> StepHandle | None:
        if not self.name:
            raise ConfigError("a step used with `with` needs a name: execord.step('fetch-orders', kind=...)")
        engine = self.engine or get_default()
        frame = current_frame.get()
        implicit = None
        if frame is None and not engine.disabled:
            implicit = engine.execution(self.name, execution_type=self.kind)
            implicit.__enter__()
            frame = current_frame.get()
        if engine.disabled or frame is None:
            self._stack.append((implicit, None, None, None))
            return None
        value = None if self.input_value is _UNSET else self.input_value
        try:
            step, _redacted, wait = frame.execution.begin_step(self.kind, self.name, value, frame.step_id, self.extra)
            if wait is not None:
                frame.execution.wait_approval(wait)
        except BaseException as exc:
            if implicit is not None:
                implicit.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self._entered(implicit, step, frame)

    def _entered(self, implicit: Any, step: StepHandle, frame: Frame) -> StepHandle:
        token = current_frame.set(Frame(frame.execution, step.id, step.kind))
        self._stack.append((implicit, step, token, frame))
        return step

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        implicit, step, token, frame = self._stack.pop()
        try:
            if step is not None:
                current_frame.reset(token)
                if exc is None:
                    frame.execution.finish_step(step, None, extra=self.extra)
                else:
                    frame.execution.end_step(step, error=exc)
        except BaseException as raised:
            if implicit is not None:
                implicit.__exit__(type(raised), raised, raised.__traceback__)
            raise
        if implicit is not None:
            implicit.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> StepHandle | None:
        if not self.name:
            raise ConfigError("a step used with `with` needs a name: execord.step('fetch-orders', kind=...)")
        engine = self.engine or get_default()
        frame = current_frame.get()
        if frame is None or engine.disabled:
            return self.__enter__()
        value = None if self.input_value is _UNSET else self.input_value
        step, _redacted, wait = frame.execution.begin_step(self.kind, self.name, value, frame.step_id, self.extra)
        if wait is not None:
            await frame.execution.wait_approval_async(wait)
        return self._entered(None, step, frame)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


def _call_args(sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any], bound: Any,
               redacted: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call the body with: the caller's, or rebuilt from the redacted ones."""
    if redacted is bound or sig is None or not isinstance(redacted, dict):
        return args, kwargs
    try:
        ba = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return args, kwargs
    for name, value in redacted.items():
        if name in ba.arguments:
            ba.arguments[name] = value
    return ba.args, ba.kwargs


def _bind(sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args and not kwargs:
        return {}
    if sig is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    return dict(bound.arguments)


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _decorate_step(spec: StepSpec, fn: F) -> F:
    sig = _signature(fn)

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Engine, Frame | None]:
        engine = spec.engine or get_default()
        return engine, current_frame.get()

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_step(*args: Any, **kwargs: Any) -> Any:
            engine, frame = begin(args, kwargs)
            if engine.disabled:
                return await fn(*args, **kwargs)
            if frame is None:  # a step outside any execution is its own execution
                async with engine.execution(spec.name, execution_type=spec.kind, inputs=_bind(sig, args, kwargs)):
                    return await async_step(*args, **kwargs)
            ex = frame.execution
            bound = _bind(sig, args, kwargs)
            step, redacted, wait = ex.begin_step(spec.kind, spec.name or "step", bound, frame.step_id, spec.extra)
            if wait is not None:
                await ex.wait_approval_async(wait)
            call_args, call_kwargs = _call_args(sig, args, kwargs, bound, redacted)
            token = current_frame.set(Frame(ex, step.id, step.kind))
            try:
                result = await fn(*call_args, **call_kwargs)
            except BaseException as exc:
                current_frame.reset(token)
                ex.end_step(step, error=exc)
                raise
            current_frame.reset(token)
            return ex.finish_step(step, result, extra=spec.extra)

        wrapper: Any = async_step
    else:

        @functools.wraps(fn)
        def sync_step(*args: Any, **kwargs: Any) -> Any:
            engine, frame = begin(args, kwargs)
            if engine.disabled:
                return fn(*args, **kwargs)
            if frame is None:  # a step outside any execution is its own execution
                with engine.execution(spec.name, execution_type=spec.kind, inputs=_bind(sig, args, kwargs)):
                    return sync_step(*args, **kwargs)
            ex = frame.execution
            bound = _bind(sig, args, kwargs)
            step, redacted, wait = ex.begin_step(spec.kind, spec.name or "step", bound, frame.step_id, spec.extra)
            if wait is not None:
                ex.wait_approval(wait)
            call_args, call_kwargs = _call_args(sig, args, kwargs, bound, redacted)
            token = current_frame.set(Frame(ex, step.id, step.kind))
            try:
                result = fn(*call_args, **call_kwargs)
            except BaseException as exc:
                current_frame.reset(token)
                ex.end_step(step, error=exc)
                raise
            current_frame.reset(token)
            return ex.finish_step(step, result, extra=spec.extra)

        wrapper = sync_step
    wrapper.__execord_step__ = spec
    return wrapper  # type: ignore[no-any-return]


def _decorate_workflow(get_engine: Callable[[], Execord], fn: F, name: str | None, version: str | None,
                       execution_type: str, labels: dict[str, str] | None) -> F:
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(f"@execord.workflow decorates a function, not {fn!r}")
    wf_name = name or getattr(fn, "__name__", None) or "workflow"
    sig = _signature(fn)

    def scope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ExecutionScope:
        return get_engine().execution(
            wf_name, inputs=_bind(sig, args, kwargs), labels=labels,
            execution_type=execution_type, workflow_version=version,
        )

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_workflow(*args: Any, **kwargs: Any) -> Any:
            async with scope(args, kwargs) as ex:
                result = await fn(*args, **kwargs)
                ex.set_output(result)
                return result

        wrapper: Any = async_workflow
    else:

        @functools.wraps(fn)
        def sync_workflow(*args: Any, **kwargs: Any) -> Any:
            with scope(args, kwargs) as ex:
                result = fn(*args, **kwargs)
                ex.set_output(result)
                return result

        wrapper = sync_workflow
    wrapper.__execord_workflow__ = wf_name
    return wrapper  # type: ignore[no-any-return]


Engine = Execord
_default: Execord | None = None


def get_default() -> Execord:
    """The default recorder: the one `init()` made, or one with default settings."""
    global _default
    if _default is None:
        _default = Execord()
    return _default


def set_default(engine: Execord | None) -> None:
    """Replace the default recorder (closing the old one)."""
    global _default
    old, _default = _default, engine
    if old is not None and old is not engine:
        old.close()
