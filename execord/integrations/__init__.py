"""Instrumentation of the LLM clients and agent frameworks an agent already uses.

`execord.init()` calls `instrument()`: every integration whose library is installed is
switched on, and takes effect when that library is imported (or at once, if it already is),
so ``init()`` itself imports none of them. Each integration is one module here:

=================  ====================  ==================================================
name               library               what becomes a step
=================  ====================  ==================================================
``openai``         ``openai``            ``chat.completions.create``, ``responses.create``
``anthropic``      ``anthropic``         ``messages.create``, ``messages.stream``
``langchain``      ``langchain_core``    chains, chat models and tools (LangGraph too)
``openai_agents``  ``agents``            agent runs, function tools, handoffs
``mcp``            ``mcp``               ``Client.call_tool``, ``ClientSession.call_tool``
=================  ====================  ==================================================

Switch them with the ``integrations`` setting (``EXECORD_INTEGRATIONS``): ``auto`` (the
default: every installed one), ``none``, or a comma-separated list of names, where
``-name`` switches one off (``auto,-langchain``). OpenTelemetry export is not an
instrumentation: see `execord.integrations.otel`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

from ..errors import ConfigError
from . import _hooks

#: Each integration's name and the module it instruments.
INTEGRATIONS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "langchain": "langchain_core",
    "openai_agents": "agents",
    "mcp": "mcp",
}
_active: set[str] = set()


def chosen(spec: Iterable[str]) -> list[str]:
    """The integrations a setting value names (see the module's docstring).

    >>> chosen(["auto", "-langchain"])
    ['openai', 'anthropic', 'openai_agents', 'mcp']
    >>> chosen(["none"])
    []
    """
    names: list[str] = []
    for raw in spec:
        item = raw.strip()
        off = item.startswith("-")
        name = item[1:] if off else item
        if name in ("auto", "all"):
            group = list(INTEGRATIONS)
        elif name in ("none", ""):
            names = [] if not off else names
            continue
        elif name in INTEGRATIONS:
            group = [name]
        else:
            raise ConfigError(f"unknown integration {name!r} in integrations; known: auto, none, "
                              + ", ".join(INTEGRATIONS) + " (prefix a name with - to switch it off)")
        names = [n for n in names if n not in group] if off else names + [n for n in group if n not in names]
    return names


def installed(name: str) -> bool:
    """True when the library integration ``name`` instruments can be imported."""
    try:
        return importlib.util.find_spec(INTEGRATIONS[name]) is not None
    except (ImportError, ValueError):
        return False


def instrument(spec: Iterable[str] = ("auto",)) -> list[str]:
    """Switch on the integrations ``spec`` names whose library is installed, and off the rest.

    Returns:
        The names now on (each takes effect when its library is imported).
    """
    wanted = [n for n in chosen(spec) if installed(n)]
    for name in sorted(_active - set(wanted)):
        uninstrument([name])
    for name in wanted:
        if name in _active:
            continue
        _active.add(name)
        module = importlib.import_module(f"{__name__}.{name}")
        _hooks.when_imported(INTEGRATIONS[name], module.instrument)
    return wanted


def uninstrument(names: Iterable[str] | None = None) -> None:
    """Switch integrations off (all of them by default): the libraries are as they were."""
    for name in list(_active if names is None else names):
        if name not in _active:
            continue
        _active.discard(name)
        _hooks.cancel(INTEGRATIONS[name])
        module = importlib.import_module(f"{__name__}.{name}")
        module.uninstrument()


def active() -> list[str]:
    """The integrations switched on."""
    return [n for n in INTEGRATIONS if n in _active]


__all__ = ["INTEGRATIONS", "active", "chosen", "installed", "instrument", "uninstrument"]
