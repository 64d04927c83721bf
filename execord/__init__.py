"""Execord: a durable, immutable execution record and live governance for AI agents.

Two lines instrument an agent::

    import execord
    execord.init(agent="support-bot")

    @execord.workflow
    def handle_ticket(ticket): ...

The public surface is the SDK (below); the rest lives in subpackages: `execord.record`,
`execord.store`, `execord.runtime`, `execord.cli`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    Cancelled,
    ConfigError,
    ExecordError,
    ExecutionSealed,
    GovernanceError,
    Halted,
    RecordError,
    StoreError,
    VerificationError,
)

if TYPE_CHECKING:
    from .runtime import ExecutionHandle, StepHandle, wrap
    from .runtime import _engine as _eng
    from .runtime._engine import Execord

__version__ = "0.1.0"

F = TypeVar("F", bound=Callable[..., Any])
_UNSET: Any = object()  # `step`'s "no input given"; the runtime's own sentinel is passed on

# The SDK runtime (and with it governance and the store) is imported on first use, not by
# `import execord`: `execord verify BUNDLE` and other tools that only need `execord.record`
# or `execord.ledger` then start in a fraction of the time. The names stay importable.
_LAZY = {"Execord": "Execord", "ExecutionHandle": "ExecutionHandle", "StepHandle": "StepHandle", "wrap": "wrap",
         "_eng": None}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    engine = importlib.import_module(".runtime._engine", __name__)
    value = engine if _LAZY[name] is None else getattr(importlib.import_module(".runtime", __name__), _LAZY[name])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | {name for name in _LAZY if not name.startswith("_")})


def _rt() -> Any:
    """The runtime's engine module (imported on first use)."""
    from .runtime import _engine

    return _engine


def _frame() -> Any:
    """The current frame; rebinds itself to the context variable's ``get`` on first call."""
    global _frame
    from .runtime._context import current_frame

    _frame = current_frame.get
    return _frame()


def init(
    agent: str | None = None,
    *,
    db: str | None = None,
    agent_version: str | None = None,
    roles: list[str] | tuple[str, ...] | None = None,
    disabled: bool | None = None,
    on_record_error: str | None = None,
    durability: str | None = None,
    flush_interval_ms: int | None = None,
    lease_s: int | None = None,
    busy_timeout_ms: int | None = None,
    capture: bool | None = None,
    max_value_bytes: int | None = None,
    governance: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    spool_dir: str | None = None,
    spool_max_bytes: int | None = None,
    spool_fsync: str | None = None,
    heartbeat_s: int | None = None,
    flush_at_exit_s: int | None = None,
    integrations: str | list[str] | tuple[str, ...] | None = None,
) -> Execord:
    """Configure the default recorder. Every argument falls back to its ``EXECORD_*``
    environment variable, then to its default (docs/sdk.md lists them).

    Args:
        agent: the agent's name (``EXECORD_AGENT``; default: the script's name).
        db: the SQLite file (``EXECORD_DB``; default ``./.execord/execord.db``).
        agent_version: the agent's version.
        roles: the agent's roles.
        disabled: record nothing (``EXECORD_DISABLED``).
        on_record_error: ``"halt"`` (default): a step that cannot be recorded does not run
            and raises `RecordError`; ``"continue"``: it runs and a warning is logged.
        durability: ``"batched"`` (default) or ``"strict"`` (commit every event).
        flush_interval_ms: how long completion events may wait before being committed.
        lease_s: how long an execution lives without a heartbeat.
        busy_timeout_ms: how long a write waits for another process's lock.
        capture: record inputs and outputs.
        max_value_bytes: larger captured values are truncated.
        governance: a governance file or folder (``EXECORD_GOVERNANCE``; default
            ``./execord.yaml`` when present, else the version active in the store).
        url: server mode: record through this Execord server (``EXECORD_URL``).
        api_key: server mode: the API key (``EXECORD_API_KEY``).
        spool_dir: server mode: where events wait to be shipped (``EXECORD_SPOOL_DIR``).
        spool_max_bytes: server mode: the spool's bound.
        spool_fsync: server mode: ``"always"`` (fsync before each governed action) or
            ``"interval"`` (fsync every ``flush_interval_ms``).
        heartbeat_s: seconds between heartbeats (how soon a cancel arrives).
        flush_at_exit_s: server mode: how long to wait at exit for the spool to ship.
        integrations: which installed LLM clients and agent frameworks to instrument
            (``EXECORD_INTEGRATIONS``): ``"auto"`` (default, all), ``"none"``, or names, where
            ``"-name"`` switches one off (docs/integrations.md).

    Returns:
        The configured `Execord`.

    Example:
        >>> import execord, tempfile, os
        >>> ex = execord.init(agent="support-bot", db=os.path.join(tempfile.mkdtemp(), "e.db"))
        >>> ex.settings["agent"]
        'support-bot'
    """
    _eng = _rt()
    engine = _eng.Execord(
        agent=agent, db=db, agent_version=agent_version, roles=roles, disabled=disabled,
        on_record_error=on_record_error, durability=durability,
        flush_interval_ms=flush_interval_ms, lease_s=lease_s, busy_timeout_ms=busy_timeout_ms,
        capture=capture, max_value_bytes=max_value_bytes, governance=governance, url=url, api_key=api_key,
        spool_dir=spool_dir, spool_max_bytes=spool_max_bytes, spool_fsync=spool_fsync, heartbeat_s=heartbeat_s,
        flush_at_exit_s=flush_at_exit_s, integrations=integrations,
    )
    _eng.set_default(engine)
    from . import integrations as _integrations

    _integrations.instrument(() if engine.disabled else engine.settings["integrations"])
    return engine


def _engine() -> Execord:
    return _rt().get_default()


def workflow(fn: F | None = None, *, name: str | None = None, version: str | None = None,
             execution_type: str = "workflow", labels: dict[str, str] | None = None) -> Any:
    """Make every call of the decorated function one execution.

    Returning ends it ``succeeded``; raising ends it ``failed`` and re-raises the exception
    unchanged. Works on sync and async functions, bare or with arguments.

    Example:
        >>> @execord.workflow(name="triage")
        ... def triage(ticket: str) -> str:
        ...     return "billing"
        >>> triage("refund please")
        'billing'
    """

    def decorate(f: F) -> F:
        return _rt()._decorate_workflow(_engine, f, name, version, execution_type, labels)

    return decorate if fn is None else decorate(fn)


def tool(fn: F | None = None, *, name: str | None = None) -> Any:
    """Record every call of the decorated function as a ``tool`` step.

    The arguments are captured as the step's input and the return value as its output.
    Called outside any execution, the call is an execution of its own.

    Example:
        >>> @execord.tool
        ... def lookup_order(order_id: int) -> dict:
        ...     return {"id": order_id, "status": "shipped"}
        >>> lookup_order(42)["status"]
        'shipped'
    """
    _eng = _rt()
    spec = _eng.StepSpec(None, name, "tool", _eng._UNSET, None, None, None)
    return spec if fn is None else spec(fn)


def step(name: str | Callable[..., Any] | None = None, *, kind: str = "custom", input: Any = _UNSET,  # noqa: A002
         provider: str | None = None, model: str | None = None, params: dict[str, Any] | None = None) -> Any:
    """A step: a decorator (``@execord.step(kind="retrieval")``) or a scope (``with``).

    Args:
        name: the step's name (default: the function's name); required with ``with``.
        kind: ``llm``, ``tool``, ``retrieval``, ``agent`` or ``custom``.
        input: for ``with``: the value recorded as the step's input.
        provider: for ``llm`` steps: the provider (``openai``…).
        model: for ``llm`` steps: the model.
        params: for ``llm`` steps: the request parameters.

    Example:
        >>> with execord.execution("research"):
        ...     with execord.step("search", kind="retrieval", input={"q": "cats"}) as s:
        ...         s.set_output(["doc-1", "doc-2"])
    """
    _eng = _rt()
    if input is _UNSET:
        input = _eng._UNSET  # noqa: A001
    if callable(name):
        return _eng.StepSpec(None, None, kind, _eng._UNSET, provider, model, params)(name)
    return _eng.StepSpec(None, name, kind, input, provider, model, params)


def execution(workflow: str | None = None, *, inputs: Any = None, labels: dict[str, str] | None = None,
              agent: str | None = None, execution_type: str = "workflow",
              workflow_version: str | None = None) -> _eng.ExecutionScope:
    """One execution as a ``with`` / ``async with`` scope; see `Execord.execution`."""
    return _engine().execution(workflow, inputs=inputs, labels=labels, agent=agent,
                               execution_type=execution_type, workflow_version=workflow_version)


def log(message: str, *, level: str = "info", **data: Any) -> None:
    """Append a ``log`` event (level debug, info, warning or error) to the current execution."""
    frame = _frame()
    if frame is None:
        return
    frame.execution.log(message, level=level, step_id=frame.step_id, data=data or None)


def current() -> ExecutionHandle | None:
    """The execution the calling code runs in, or None outside any."""
    frame = _frame()
    return None if frame is None else frame.execution


def in_execution() -> bool:
    """True inside an execution."""
    return _frame() is not None


def flush(timeout: float | None = None) -> bool:
    """Commit everything recorded so far; True when nothing is left pending."""
    return _engine().flush(timeout)


def shutdown() -> None:
    """Flush and close the default recorder."""
    _rt().set_default(None)


__all__ = [
    "Cancelled",
    "ConfigError",
    "ExecordError",
    "Execord",
    "ExecutionHandle",
    "ExecutionSealed",
    "GovernanceError",
    "Halted",
    "RecordError",
    "StepHandle",
    "StoreError",
    "VerificationError",
    "__version__",
    "current",
    "execution",
    "flush",
    "in_execution",
    "init",
    "log",
    "shutdown",
    "step",
    "tool",
    "workflow",
    "wrap",
]
