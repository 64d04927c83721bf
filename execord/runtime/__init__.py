"""The SDK engine: context, execution handles, the writer and its durability, the reaper."""

from ._config import SETTINGS, Setting, resolve
from ._context import current_execution, current_frame, wrap
from ._engine import Execord, ExecutionScope, StepSpec, get_default, set_default
from ._handles import ExecutionHandle, StepHandle
from ._reaper import reap, seal_interrupted, why_dead

__all__ = [
    "SETTINGS",
    "Execord",
    "ExecutionHandle",
    "ExecutionScope",
    "Setting",
    "StepHandle",
    "StepSpec",
    "current_execution",
    "current_frame",
    "get_default",
    "reap",
    "resolve",
    "seal_interrupted",
    "set_default",
    "why_dead",
    "wrap",
]
