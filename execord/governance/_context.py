"""The variables a rule's ``when`` expression can use, declared once.

The same table builds three things: the protobuf message types that expressions are
type-checked against when a governance file is loaded (so ``agent.nmae`` or
``agent.name > 5`` is an error at load, not at run time), the plain maps they are
evaluated against (every declared field present, with its default when unknown), and the
variable reference in docs/governance.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A field's type: "string", "int", "bool", "double", "list<string>", "map<string,string>",
# "map<string,int>", "dyn" (any JSON value) or "timestamp".
Field = tuple[str, str, str]  # (name, type, meaning)


@dataclass(frozen=True)
class Variable:
    """One top-level variable: a message with fields, or a scalar/map type."""

    name: str
    fields: tuple[Field, ...] | None
    type: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable("agent", (
        ("name", "string", "the agent's name (init(agent=...))"),
        ("version", "string", "the agent's version"),
        ("roles", "list<string>", "the agent's roles (init(roles=[...]))"),
    ), "message", "who is acting"),
    Variable("workflow", (
        ("name", "string", "the workflow's name"),
        ("version", "string", "the workflow's version"),
    ), "message", "what is running"),
    Variable("execution", (
        ("id", "string", "the execution id"),
        ("type", "string", "the execution type (workflow unless set)"),
        ("parent_execution_id", "string", "the enclosing execution, or empty"),
        ("duration_ms", "int", "milliseconds since the execution started"),
    ), "message", "this run"),
    Variable("step", (
        ("id", "string", "the step id (empty at admission and end)"),
        ("kind", "string", "llm, tool, retrieval, agent or custom"),
        ("name", "string", "the step's name"),
        ("parent_step_id", "string", "the enclosing step, or empty"),
    ), "message", "the governed step"),
    Variable("tool", (
        ("name", "string", "the tool's name (tool phases)"),
        ("args", "dyn", "the tool's arguments by parameter name (tool.request)"),
        ("result", "dyn", "what the tool returned (tool.response)"),
    ), "message", "the tool call"),
    Variable("llm", (
        ("provider", "string", "openai, anthropic, … (llm phases)"),
        ("model", "string", "the model asked for"),
        ("params", "dyn", "the request parameters (temperature, max_tokens, …)"),
        ("max_tokens", "int", "the request's output token limit, 0 if none"),
        ("messages", "dyn", "the prompt messages (llm.request)"),
        ("response", "dyn", "the model's answer (llm.response)"),
    ), "message", "the model call"),
    Variable("usage", (
        ("input_tokens", "int", "input tokens used so far in this execution"),
        ("output_tokens", "int", "output tokens used so far"),
        ("total_tokens", "int", "input + output tokens so far"),
        ("cost_micros", "int", "cost so far in micro-USD"),
        ("llm_calls", "int", "LLM calls so far"),
        ("tool_calls", "int", "tool calls so far"),
        ("steps", "int", "steps so far"),
        ("duration_ms", "int", "milliseconds since the execution started"),
    ), "message", "what this execution has used so far: before the action at request phases, including it at response phases"),
    Variable("labels", None, "map<string,string>", "the execution's labels"),
    Variable("now", None, "timestamp", "the time of the evaluation"),
)

_DEFAULTS = {"string": "", "int": 0, "double": 0.0, "bool": False, "dyn": None}


def default_for(type_: str) -> Any:
    """The value a field has when the action does not supply it."""
    if type_.startswith("list<"):
        return []
    if type_.startswith("map<"):
        return {}
    return _DEFAULTS.get(type_)


def blank_context() -> dict[str, Any]:
    """A context with every declared field at its default (``now`` excluded)."""
    out: dict[str, Any] = {}
    for v in VARIABLES:
        if v.fields is not None:
            out[v.name] = {name: default_for(t) for name, t, _ in v.fields}
        elif v.name != "now":
            out[v.name] = default_for(v.type)
    return out


def fill(context: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a partial context: every declared variable and field is present.

    Unknown top-level names are dropped (the type checker already refused expressions that
    use them); fields a caller sets override the defaults.
    """
    out = blank_context()
    for v in VARIABLES:
        given = context.get(v.name)
        if given is None:
            continue
        if v.fields is not None and isinstance(given, Mapping):
            merged = out[v.name]
            for name, type_, _ in v.fields:
                if name in given and given[name] is not None:
                    merged[name] = given[name]
                elif name in given and type_ == "dyn":
                    merged[name] = None
        else:
            out[v.name] = given
    return out


def names() -> list[str]:
    """Every top-level variable name."""
    return [v.name for v in VARIABLES]
