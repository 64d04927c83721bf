"""MCP (the ``mcp`` package, 2.x): every tool call to an MCP server is one governed ``tool`` step.

Patched: ``mcp.ClientSession.call_tool`` (what every client ends in: a bare session, a
``ClientSessionGroup``) and ``mcp.Client.call_tool`` (the high-level client). A call through
``Client`` is one step even when the client sends several ``tools/call`` requests for it
(rounds of ``InputRequiredResult``, a resend after ``HEADER_MISMATCH``): the session calls it
makes inside its step are that step.

Each step:

- is named after the tool (``lookup_order``), so governance rules match it with
  ``tool.name``; which server it went to is in ``step.started``'s ``mcp_server`` (the name
  the server gave in its ``initialize`` result, or its 2026-era ``serverInfo`` stamp; None
  for a server that did not name itself) and ``mcp_server_version``, with
  ``integration: "mcp"``;
- has the tool arguments (a dict, ``{}`` for none) as its input: ``tool.request`` is
  evaluated on them before the request is sent. A deny raises `execord.Halted` and the
  server never receives the call; what a redaction masks is masked in the arguments the
  server receives; ``require_approval`` waits (without blocking the event loop);
- has the result, in MCP's wire form (``{"content": [...], "structuredContent": ...,
  "isError": false}``, the JSON the server sent), as its output: ``tool.response`` is
  evaluated on it (``tool.result.content[0].text``, ``tool.result.structuredContent``…).
  What a response redaction masks is masked in the result the caller gets back too (a
  `CallToolResult` rebuilt from the redacted JSON); a deny raises `execord.Halted` and the
  result is withheld;
- ends ``error`` when the call raised (``mcp.MCPError``, a timeout, an output-schema
  violation…: re-raised unchanged), and also when the server answered with
  ``isError: true`` (an unknown tool, a tool that failed): the error is
  ``execord.integrations.mcp.MCPToolError`` with the result's text as its message, and the
  result is returned to the caller unchanged, as the library returns it (it does not raise).
  ``tool.response`` is not evaluated on such a result, as on any tool step that fails.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ._base import begin, outer_redaction, patch, unpatch

log = logging.getLogger("execord")

_TARGETS = (("mcp.client.session", "ClientSession"), ("mcp.client.client", "Client"))


class MCPToolError(Exception):
    """What a tool step records when the server answers a call with ``isError: true``.

    Attributes:
        tool: the tool's name.
        text: the text content of the server's result.
    """

    def __init__(self, tool: str, text: str):
        super().__init__(text or f"the MCP tool {tool!r} returned an error result with no text")
        self.tool = tool
        self.text = text


def instrument(module: Any = None) -> None:
    """Patch ``ClientSession.call_tool`` and ``Client.call_tool`` (idempotent)."""
    for path, cls in _TARGETS:
        owner = getattr(importlib.import_module(path), cls)
        patch(owner, "call_tool", functools.partial(_wrap, cls == "Client"))


def uninstrument() -> None:
    """Put the original methods back."""
    for path, cls in _TARGETS:
        mod = sys.modules.get(path)
        if mod is not None:
            unpatch(getattr(mod, cls), "call_tool")


# -- the wrapper ----------------------------------------------------------------------------------


def _wrap(high_level: bool, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def call_tool(self: Any, name: str, arguments: Mapping[str, Any] | None = None,
                        *args: Any, **kwargs: Any) -> Any:
        return await _governed(original, self, high_level, name, arguments, args, kwargs)

    return call_tool


def _server(owner: Any, high_level: bool) -> dict[str, Any]:
    """The ``mcp_server`` attrs of a call: the name and version the server gave."""
    try:
        session = owner.session if high_level else owner
        info = session.server_info
    except Exception:  # a Client that is not entered: the call itself will say so
        info = None
    name = getattr(info, "name", None)
    version = getattr(info, "version", None)
    return {"mcp_server": name if isinstance(name, str) else None,
            "mcp_server_version": version if isinstance(version, str) and version else None}


async def _governed(original: Callable[..., Any], owner: Any, high_level: bool, name: str,
                    arguments: Mapping[str, Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    given = dict(arguments) if isinstance(arguments, Mapping) else arguments
    call = begin("tool", name, given if given is not None else {}, integration="mcp",
                 attrs=_server(owner, high_level))
    if call is None:
        # Not recorded here: recording is off, or this call is the step it runs in (the
        # session call a `Client.call_tool` step makes, an MCP tool an agent framework's
        # tool step wraps). It still sends what that step's request decision let through.
        if given is not None:
            given = outer_redaction(given)
        return await original(owner, name, given, *args, **kwargs)
    await call.wait_async()
    sent = call.input if given is not None else None
    with call.running():
        result = await original(owner, name, sent, *args, **kwargs)
    if getattr(result, "is_error", None) is True:
        call.error(MCPToolError(name, _text(result)))
        return result
    output = _wire(result)
    let_out = call.ok(output)
    return result if let_out == output else _rebuild(result, let_out)


# -- results --------------------------------------------------------------------------------------


def _wire(result: Any) -> Any:
    """A result as the JSON the server sent (MCP's camelCase field names)."""
    dump = getattr(result, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", by_alias=True, exclude_none=True)
        except Exception:
            pass
    return result


def _text(result: Any) -> str:
    """The text blocks of a result, one a line (other blocks by their type)."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)


def _rebuild(result: Any, redacted: Any) -> Any:
    """The result the caller gets when a response redaction masked part of it."""
    if not isinstance(redacted, dict):
        return redacted
    try:
        return type(result).model_validate(redacted)
    except Exception as exc:  # cannot happen for masked strings; never hand back the unmasked result
        log.warning("execord: the redacted result of an MCP tool could not be rebuilt (%s); "
                    "returning its JSON", exc)
        return redacted


__all__ = ["MCPToolError", "instrument", "uninstrument"]
