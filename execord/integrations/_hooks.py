"""Run a function when a module is imported, or now if it already is.

`execord.init()` must not import every library it could instrument (importing ``openai``
alone costs a third of a second): each integration waits for its library's import instead.
The finder below sits first on ``sys.meta_path``, answers only for the modules someone waits
for, asks the other finders for the real spec, and wraps its loader so that the waiting
functions run right after the module's body has executed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

_lock = threading.RLock()
_waiting: dict[str, list[Callable[[ModuleType], None]]] = {}


def when_imported(module: str, fn: Callable[[ModuleType], None]) -> None:
    """Call ``fn(module)`` once ``module`` is imported: now if it is already."""
    with _lock:
        loaded = sys.modules.get(module)
        if loaded is None:
            _waiting.setdefault(module, []).append(fn)
            if not any(isinstance(f, _Finder) for f in sys.meta_path):
                sys.meta_path.insert(0, _Finder())
            return
    fn(loaded)


def cancel(module: str) -> None:
    """Stop waiting for ``module``."""
    with _lock:
        _waiting.pop(module, None)


def _fire(name: str, module: ModuleType) -> None:
    with _lock:
        fns = _waiting.pop(name, [])
    for fn in fns:
        fn(module)


class _Loader(importlib.abc.Loader):
    """The real loader, with the waiting functions run after the module executes."""

    def __init__(self, name: str, loader: Any):
        self._name = name
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self._loader  # type: ignore[union-attr]  # as if we were never here
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        _fire(self._name, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        with _lock:
            if fullname not in _waiting:
                return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(fullname, spec.loader)
                return spec
        return None
