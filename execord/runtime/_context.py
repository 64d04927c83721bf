"""The current execution and step, kept in one ContextVar that only the runtime writes."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar

if TYPE_CHECKING:
    from ._handles import ExecutionHandle

P = ParamSpec("P")
R = TypeVar("R")


class Frame(NamedTuple):
    """Where the code is: which execution, and inside which step (if any)."""

    execution: ExecutionHandle
    step_id: str | None
    step_kind: str | None


current_frame: contextvars.ContextVar[Frame | None] = contextvars.ContextVar(
    "execord_frame", default=None
)


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """Carry the current execution and step into another thread or executor.

    asyncio tasks inherit the context by themselves; threads do not. Wrap the callable
    where it is handed over, and steps it runs nest under the step that handed it over.

    Example:
        >>> import concurrent.futures, execord
        >>> with concurrent.futures.ThreadPoolExecutor() as pool:
        ...     future = pool.submit(execord.wrap(lambda: 2 + 2))
        >>> future.result()
        4
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A Context can be entered by one thread at a time: run in a copy of it.
        return ctx.copy().run(fn, *args, **kwargs)

    return run


def current_execution() -> Any:
    """The execution the calling code runs in, or None."""
    frame = current_frame.get()
    return None if frame is None else frame.execution
