"""Loading a governance file (``execord.yaml``, or a folder of YAML files) into a `Spec`.

Every problem is reported at once, each with its file, line and a hint at the fix: unknown
keys (with the nearest known one), duplicate keys and rule ids, bad CEL (syntax, unknown
names, type mismatches), unknown detectors, bad or too large durations, amounts and counts.
The YAML is read with limits (nesting depth, values once aliases are expanded), so a
hostile file is a problem like any other, not a hang.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from ..errors import GovernanceFileError
from ..record import PHASES
from ._cel import CelCompileError, Evaluator, default_evaluator
from ._context import VARIABLES

EFFECTS = ("allow", "warn", "redact", "require_approval", "deny")
BUDGET_METRICS = ("cost_usd", "input_tokens", "output_tokens", "total_tokens", "llm_calls", "tool_calls", "steps")
WINDOW_SCOPES = ("agent", "workflow", "project")
WINDOW_PERIODS = ("hour", "day", "month")
_TOP_KEYS = ("version", "policies", "budgets", "detectors", "pricing", "tests")
_RULE_KEYS = ("id", "on", "when", "effect", "message", "priority", "approvers", "timeout", "on_timeout", "detectors", "paths")
_EXEC_BUDGET_KEYS = (*BUDGET_METRICS, "duration", "per_tool")
_WINDOW_KEYS = ("id", "scope", "match", "period", *BUDGET_METRICS)
_TEST_KEYS = ("name", "phase", "context", "expect")
_CAN_WAIT = ("tool.request", "llm.request", "step.request")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DURATION = re.compile(r"^\s*(\d{1,30}(?:\.\d{1,30})?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600), "d": Decimal(86400)}


@dataclass(frozen=True)
class Where:
    """A position in a governance file."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
    """One policy rule, validated."""

    id: str
    on: tuple[str, ...]
    when: str | None
    effect: str
    message: str | None = None
    priority: int = 0
    approvers: tuple[str, ...] = ()
    timeout_s: int | None = None
    on_timeout: str = "reject"
    detectors: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    where: Where | None = field(default=None, compare=False)
    detectors_where: Where | None = field(default=None, compare=False)

    def document(self) -> dict[str, Any]:
        """The rule as it enters the governance version's canonical document."""
        # Sets are sorted: the order phases or approvers were written in decides nothing.
        doc: dict[str, Any] = {"id": self.id, "on": sorted(self.on), "when": self.when, "effect": self.effect,
                               "message": self.message, "priority": self.priority}
        if self.effect == "require_approval":
            doc.update(approvers=sorted(self.approvers), timeout_s=self.timeout_s, on_timeout=self.on_timeout)
        if self.effect == "redact":
            doc.update(detectors=list(self.detectors), paths=sorted(self.paths))
        return doc


@dataclass(frozen=True)
class WindowBudget:
    """A budget over many executions: per agent, workflow or project, per hour, day or month."""

    id: str
    scope: str
    match: dict[str, str]
    period: str
    limits: dict[str, int]
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Spec:
    """A validated governance file: what a governance version is made of."""

    rules: tuple[Rule, ...] = ()
    execution_budgets: dict[str, int] = field(default_factory=dict)
    per_tool: dict[str, int] = field(default_factory=dict)
    windows: tuple[WindowBudget, ...] = ()
    secrets: bool = True
    custom_detectors: dict[str, str] = field(default_factory=dict)
    pricing: dict[str, dict[str, Any]] = field(default_factory=dict)
    tests: tuple[dict[str, Any], ...] = ()
    sources: tuple[str, ...] = ()


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[Where, str, str]] = []

    def add(self, where: Where, message: str, hint: str = "") -> None:
        self.items.append((where, message, hint))


def _unknown_keys(keys: Any, allowed: tuple[str, ...], where_of: Any, what: str, problems: _Problems) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            problems.add(where_of(key), f"unknown key {key!r} in {what}", hint)


# -- reading YAML with positions --------------------------------------------------------------


_MAX_DEPTH = 100  # levels of nesting; a governance file needs a handful
_MAX_NODES = 100_000  # values, counting each alias as the values it stands for


class _Refused(yaml.YAMLError):
    """YAML that parses but is refused: too deep, too big once aliases expand, or recursive."""

    def __init__(self, message: str, mark: Any, hint: str):
        super().__init__(message)
        self.message, self.line, self.hint = message, mark.line + 1, hint


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false, so the key `on` stays a string),
    limits on nesting and on alias expansion ("billion laughs"), and duplicate keys noted."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, depth)
        self.duplicates: list[tuple[Any, int, int]] = []  # (key, line, line of the first)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._measured:  # still being composed
                raise _Refused(f"alias *{event.anchor} is inside the value it names (a recursive alias)",
                               event.start_mark, f"an alias may only repeat a value defined before it; remove *{event.anchor}")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _Refused(f"values nested more than {_MAX_DEPTH} levels deep", self.peek_event().start_mark,
                           "a governance file needs only a few levels; look for unclosed [ or {")
        node = super().compose_node(parent, index)
        self._depth -= 1
        children = _children(node)
        size = 1 + sum(self._measured[id(c)][0] for c in children)
        depth = 1 + max((self._measured[id(c)][1] for c in children), default=0)
        if size > _MAX_NODES:
            raise _Refused(f"the file holds more than {_MAX_NODES:,} values once its aliases (*name) are expanded",
                           node.start_mark, "write the values out or use fewer aliases; no governance file needs this many")
        if depth > _MAX_DEPTH:
            raise _Refused(f"values nested more than {_MAX_DEPTH} levels deep once aliases (*name) are expanded",
                           node.start_mark, "a governance file needs only a few levels; use fewer nested aliases")
        self._measured[id(node)] = (size, depth)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                if key in first:
                    self.duplicates.append((key, line, first[key]))
                else:
                    first[key] = line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts
            raise _Refused(f"the number {node.value[:20]}… has too many digits", node.start_mark,
                           "governance numbers are far smaller; check the value") from None


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Located:
    """The parsed YAML of one file and the line of every key and item, by path."""

    def __init__(self, path: str, text: str):
        self.file = path
        self.lines: dict[tuple[Any, ...], int] = {}
        self.value_lines: dict[tuple[Any, ...], int] = {}
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            self.data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        self.duplicates = loader.duplicates
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: Any, path: tuple[Any, ...]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            # A block scalar's text starts on the line after its `|` or `>`.
            self.value_lines[path] = node.start_mark.line + 2
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def at(self, *path: Any) -> Where:
        """The position of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return Where(self.file, self.lines.get(p, 1))


def _files(target: str | os.PathLike[str]) -> list[Path]:
    path = Path(target)
    if path.is_dir():
        # A broken symlink is kept, so that reading it reports it rather than skipping it.
        found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and (p.is_file() or p.is_symlink()))
        if not found:
            raise GovernanceFileError(f"{path} holds no .yaml or .yml files", problems=[])
        return found
    if not path.exists():
        raise GovernanceFileError(f"no governance file at {path}", problems=[])
    return [path]


# -- values -----------------------------------------------------------------------------------


# The largest numbers a governance version holds: its document is canonical JSON, whose
# integers stop at 2**53 - 1; durations stop at ten years (an approval's deadline is stored
# in microseconds since 1970).
_MAX_INT = 2**53 - 1
_MAX_USD = Decimal(9_007_199_254)  # whole dollars whose micro-USD stay below _MAX_INT
_MAX_SECONDS = 3650 * 86400


def _seconds(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return Decimal(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    return Decimal(m.group(1)) * _DURATION_UNITS[m.group(2)] if m else None


def _usd(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    text = str(value).strip().removeprefix("$").replace(",", "") if isinstance(value, str) else repr(value)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    if amount <= _MAX_USD and amount.scaleb(6) != amount.scaleb(6).to_integral_value():
        return None  # finer than a micro-dollar
    return amount


def parse_duration(value: Any) -> int | None:
    """Seconds in ``30s``, ``10m``, ``2h``, ``1d``, ``500ms`` (rounded up) or a bare number of seconds.

    None when not a duration, or longer than ten years.
    """
    seconds = _seconds(value)
    if seconds is None or seconds > _MAX_SECONDS:
        return None
    return int(seconds.to_integral_value(rounding="ROUND_CEILING"))


def parse_usd(value: Any) -> int | None:
    """Micro-USD in ``2``, ``2.50``, ``"$2.50"`` or ``"2.50"``; None when not an amount ≥ 0 (up to $9,007,199,254)."""
    amount = _usd(value)
    return None if amount is None or amount > _MAX_USD else int(amount.scaleb(6))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT else None


def _too_large(key: str, value: Any) -> str | None:
    """The "at most ..." hint when ``value`` is well formed but beyond what a version holds."""
    if key == "cost_usd":
        amount = _usd(value)
        return "at most $9,007,199,254" if amount is not None and amount > _MAX_USD else None
    if key in ("duration", "timeout"):
        seconds = _seconds(value)
        return "at most 3650d, ten years" if seconds is not None and seconds > _MAX_SECONDS else None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
        return f"at most {_MAX_INT:,}"
    return None


def _bad_value(problems: _Problems, where: Where, what: str, key: str, value: Any, message: str, hint: str) -> None:
    """Report a value of ``key`` that did not parse: as too large (with the limit), or else as ``message``."""
    most = _too_large(key, value)
    if most:
        problems.add(where, f"{what} {value!r} is too large", most)
    else:
        problems.add(where, message, hint)


# -- sections ---------------------------------------------------------------------------------


def _rules(doc: _Located, raw: Any, ev: Evaluator, problems: _Problems, seen: dict[str, Where]) -> Iterator[Rule]:
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.add(doc.at("policies"), "policies must be a list of rules", "start each rule with `- id: ...`")
        return
    for i, item in enumerate(raw):
        rule = _rule(doc, i, item, ev, problems, seen)
        if rule is not None:
            yield rule


def _rule(doc: _Located, i: int, item: Any, ev: Evaluator, problems: _Problems, seen: dict[str, Where]) -> Rule | None:
    at = lambda *k: doc.at("policies", i, *k)  # noqa: E731
    if not isinstance(item, dict):
        problems.add(at(), "a rule must be a mapping with id, on, effect", "e.g. `- id: no-shell`")
        return None
    before = len(problems.items)
    _unknown_keys(item, _RULE_KEYS, at, "a rule", problems)
    rid = item.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        problems.add(at("id"), f"rule id {rid!r} is missing or not a simple name", "use letters, digits, '-', '_' or '.'")
        rid = f"#{i}"
    elif rid in seen:
        problems.add(at("id"), f"duplicate rule id {rid!r} (first at {seen[rid]})", "give each rule its own id")
    else:
        seen[rid] = at("id")
    on = item.get("on")
    phases = [on] if isinstance(on, str) else on
    if not isinstance(phases, list) or not phases or not all(isinstance(p, str) for p in phases):
        problems.add(at("on"), f"rule {rid}: `on` must name one or more phases", f"phases: {', '.join(sorted(PHASES))}")
        phases = []
    for p in phases:
        if p not in PHASES:
            close = difflib.get_close_matches(p, sorted(PHASES), n=1)
            problems.add(at("on"), f"rule {rid}: unknown phase {p!r}", f"did you mean {close[0]!r}?" if close else f"phases: {', '.join(sorted(PHASES))}")
    effect = item.get("effect")
    if effect not in EFFECTS:
        problems.add(at("effect"), f"rule {rid}: effect {effect!r} is not one of {', '.join(EFFECTS)}", "pick one of the five effects")
    when = item.get("when")
    if when is not None and not isinstance(when, str | bool):
        problems.add(at("when"), f"rule {rid}: `when` must be a CEL expression", 'e.g. when: tool.name == "shell"')
        when = None
    if isinstance(when, bool):
        when = "true" if when else "false"
    if isinstance(when, str):
        text_line = doc.value_lines.get(("policies", i, "when"))
        _check_when(doc, Where(doc.file, text_line) if text_line else at("when"), rid, when, ev, problems)
    message = item.get("message")
    priority = item.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.add(at("priority"), f"rule {rid}: priority must be a whole number", "lower runs first; default 0")
        priority = 0
    elif abs(priority) > _MAX_INT:
        problems.add(at("priority"), f"rule {rid}: priority {priority} is too large",
                     f"use a whole number from -{_MAX_INT:,} to {_MAX_INT:,}; lower runs first")
        priority = 0
    approvers, timeout_s, on_timeout = _approval_fields(item, at, rid, effect, problems)
    detectors, paths = _redact_fields(item, at, rid, effect, problems)
    if len(problems.items) > before:
        return None
    return Rule(rid, tuple(phases), when, effect, None if message is None else str(message), priority,
                approvers, timeout_s, on_timeout, detectors, paths, at(), at("detectors") if "detectors" in item else None)


def _check_when(doc: _Located, where: Where, rid: str, when: str, ev: Evaluator, problems: _Problems) -> None:
    try:
        ev.check(when)
    except CelCompileError as exc:
        p = exc.problem
        hints = {
            "syntax": "check the CEL syntax (quotes, parentheses, && / ||)",
            "unknown-name": "variables: agent, workflow, execution, step, tool, llm, usage, labels, now (docs/governance.md)",
            "type": "compare like with like: strings with strings, numbers with numbers",
            "not-boolean": "a condition must be true or false, e.g. tool.name == \"shell\"",
            "size": "the expression is nested too deeply or is too long for CEL: use fewer nested parentheses, "
                    "lists or chained operators, or split it into several rules",
            "number": "CEL integers are 64-bit: at most 9223372036854775807",
        }
        line = Where(where.file, where.line + p.line - 1)
        problems.add(line, f"rule {rid}: {p.kind} error in `when` at column {p.column}: {p.message}", hints.get(p.kind, ""))


def _approval_fields(item: dict[str, Any], at: Any, rid: str, effect: Any, problems: _Problems) -> tuple[tuple[str, ...], int | None, str]:
    approvers = item.get("approvers", [])
    if isinstance(approvers, str):
        approvers = [approvers]
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
        problems.add(at("approvers"), f"rule {rid}: approvers must be a list of names or groups", "e.g. approvers: [finance]")
        approvers = []
    timeout_s = None
    if "timeout" in item:
        timeout_s = parse_duration(item["timeout"])
        if timeout_s is None or timeout_s == 0:
            _bad_value(problems, at("timeout"), f"rule {rid}: timeout", "timeout", item["timeout"],
                       f"rule {rid}: bad duration {item['timeout']!r}", "use 30s, 10m, 2h or 1d")
    on_timeout = item.get("on_timeout", "reject")
    if on_timeout not in ("reject", "approve"):
        problems.add(at("on_timeout"), f"rule {rid}: on_timeout must be reject or approve, not {on_timeout!r}", "reject halts the execution when nobody decides in time")
    if effect == "require_approval":
        cannot_wait = [p for p in (item.get("on") if isinstance(item.get("on"), list) else [item.get("on")]) if p not in _CAN_WAIT]
        if cannot_wait:
            problems.add(at("on"), f"rule {rid}: require_approval can only hold an action before it runs, not at {', '.join(map(str, cannot_wait))}",
                         f"use it on {', '.join(_CAN_WAIT)}")
        if not approvers:
            problems.add(at(), f"rule {rid}: require_approval needs approvers", "e.g. approvers: [finance]")
        timeout_s = timeout_s or 1800
    elif "approvers" in item or "timeout" in item or "on_timeout" in item:
        problems.add(at(), f"rule {rid}: approvers/timeout/on_timeout only apply to require_approval", "remove them or change the effect")
    return tuple(approvers), timeout_s, str(on_timeout)


def _redact_fields(item: dict[str, Any], at: Any, rid: str, effect: Any, problems: _Problems) -> tuple[tuple[str, ...], tuple[str, ...]]:
    detectors = item.get("detectors", [])
    paths = item.get("paths", [])
    for key, value in (("detectors", detectors), ("paths", paths)):
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            problems.add(at(key), f"rule {rid}: {key} must be a list of names", f"e.g. {key}: [email, phone]" if key == "detectors" else "e.g. paths: [customer.email] (relative to the value: a tool's arguments by parameter name)")
    if effect != "redact" and ("detectors" in item or "paths" in item):
        problems.add(at(), f"rule {rid}: detectors/paths only apply to redact", "remove them or use effect: redact")
    if effect == "redact" and not detectors:
        problems.add(at(), f"rule {rid}: redact needs detectors", "e.g. detectors: [email, phone, payment_card]")
    if isinstance(paths, list):
        from ._detectors import parse_path

        for p in paths:
            try:
                parse_path(str(p))
            except ValueError as exc:
                problems.add(at("paths"), f"rule {rid}: bad path {p!r}: {exc}", "dotted keys with * wildcards, relative to the value, e.g. customer.email or messages.*.content")
    ok = lambda v: tuple(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else ()  # noqa: E731
    return ok(detectors), ok(paths)


def _budgets(doc: _Located, raw: Any, problems: _Problems) -> tuple[dict[str, int], dict[str, int], list[WindowBudget]]:
    limits: dict[str, int] = {}
    per_tool: dict[str, int] = {}
    windows: list[WindowBudget] = []
    if raw is None:
        return limits, per_tool, windows
    if not isinstance(raw, dict):
        problems.add(doc.at("budgets"), "budgets must be a mapping with `execution` and/or `windows`", "see docs/governance.md")
        return limits, per_tool, windows
    _unknown_keys(raw, ("execution", "windows"), lambda k: doc.at("budgets", k), "budgets", problems)
    ex = raw.get("execution") or {}
    if not isinstance(ex, dict):
        problems.add(doc.at("budgets", "execution"), "budgets.execution must be a mapping", "e.g. cost_usd: 2.00")
        ex = {}
    _unknown_keys(ex, _EXEC_BUDGET_KEYS, lambda k: doc.at("budgets", "execution", k), "budgets.execution", problems)
    for key, value in ex.items():
        where = doc.at("budgets", "execution", key)
        if key == "per_tool":
            if not isinstance(value, dict):
                problems.add(where, "per_tool must map tool names to call counts", "e.g. per_tool: {issue_refund: 3}")
                continue
            for tool, n in value.items():
                if _count(n) is None:
                    _bad_value(problems, doc.at("budgets", "execution", key, tool), f"per_tool {tool}:", "count", n,
                               f"per_tool {tool}: {n!r} is not a whole number ≥ 0", "e.g. issue_refund: 3")
                else:
                    per_tool[str(tool)] = n
        elif key in _EXEC_BUDGET_KEYS:
            parsed = _limit(key, value)
            if parsed is None:
                _bad_value(problems, where, f"budget {key}:", key, value,
                           f"budget {key}: bad {'amount' if key == 'cost_usd' else 'duration' if key == 'duration' else 'count'} {value!r}",
                           {"cost_usd": "a dollar amount like 2.00 or \"$2.00\"", "duration": "use 30s, 10m, 2h or 1d"}.get(key, "a whole number ≥ 0"))
            else:
                limits["duration_ms" if key == "duration" else "cost_micros" if key == "cost_usd" else key] = parsed
    windows = list(_windows(doc, raw.get("windows"), problems))
    return limits, per_tool, windows


def _limit(key: str, value: Any) -> int | None:
    if key == "cost_usd":
        return parse_usd(value)
    if key == "duration":
        seconds = parse_duration(value)
        return None if seconds is None else seconds * 1000
    return _count(value)


def _windows(doc: _Located, raw: Any, problems: _Problems) -> Iterator[WindowBudget]:
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.add(doc.at("budgets", "windows"), "budgets.windows must be a list", "start each with `- id: ...`")
        return
    seen: set[str] = set()
    for i, w in enumerate(raw):
        at = lambda *k, i=i: doc.at("budgets", "windows", i, *k)  # noqa: E731
        if not isinstance(w, dict):
            problems.add(at(), "a window budget must be a mapping", "see docs/governance.md")
            continue
        before = len(problems.items)
        _unknown_keys(w, _WINDOW_KEYS, at, "a window budget", problems)
        wid = w.get("id")
        if not isinstance(wid, str) or not _ID.match(wid) or wid in seen:
            problems.add(at("id"), f"window budget id {wid!r} is missing, not a simple name, or repeated", "give each window its own id")
        seen.add(str(wid))
        if w.get("scope") not in WINDOW_SCOPES:
            problems.add(at("scope"), f"window {wid}: scope must be one of {', '.join(WINDOW_SCOPES)}", "e.g. scope: workflow")
        if w.get("period") not in WINDOW_PERIODS:
            problems.add(at("period"), f"window {wid}: period must be one of {', '.join(WINDOW_PERIODS)}", "e.g. period: day")
        match = w.get("match") or {}
        if not isinstance(match, dict) or not set(match) <= {"agent", "workflow"}:
            problems.add(at("match"), f"window {wid}: match may name an agent and/or a workflow", "e.g. match: {workflow: support}")
            match = {}
        limits = {}
        for metric in BUDGET_METRICS:
            if metric in w:
                parsed = _limit(metric, w[metric])
                if parsed is None:
                    _bad_value(problems, at(metric), f"window {wid}: {metric}", metric, w[metric],
                               f"window {wid}: bad {metric} {w[metric]!r}", "a dollar amount for cost_usd, a whole number otherwise")
                else:
                    limits["cost_micros" if metric == "cost_usd" else metric] = parsed
        if not any(metric in w for metric in BUDGET_METRICS):
            problems.add(at(), f"window {wid}: no limit given", f"set one of: {', '.join(BUDGET_METRICS)}")
        if len(problems.items) == before:
            yield WindowBudget(wid, w["scope"], {str(k): str(v) for k, v in match.items()}, w["period"], limits, at())


def _detectors(doc: _Located, raw: Any, problems: _Problems) -> tuple[bool, dict[str, str]]:
    if raw is None:
        return True, {}
    if not isinstance(raw, dict):
        problems.add(doc.at("detectors"), "detectors must be a mapping", "e.g. detectors: {secrets: true, custom: {order_id: 'ORD-[0-9]{6}'}}")
        return True, {}
    _unknown_keys(raw, ("secrets", "custom"), lambda k: doc.at("detectors", k), "detectors", problems)
    secrets = raw.get("secrets", True)
    if not isinstance(secrets, bool):
        problems.add(doc.at("detectors", "secrets"), "detectors.secrets must be true or false", "secret detection is on by default")
        secrets = True
    custom = raw.get("custom") or {}
    out: dict[str, str] = {}
    if not isinstance(custom, dict):
        problems.add(doc.at("detectors", "custom"), "detectors.custom must map names to regular expressions", "e.g. order_id: 'ORD-[0-9]{6}'")
        return secrets, out
    from ._detectors import DetectorError, custom_detector

    for name, regex in custom.items():
        try:
            custom_detector(str(name), regex)
        except DetectorError as exc:
            problems.add(doc.at("detectors", "custom", name), exc.message, exc.hint)
            continue
        out[str(name)] = regex
    return secrets, out


# -- the whole ---------------------------------------------------------------------------------


def load_spec(target: str | os.PathLike[str], *, evaluator: Evaluator | None = None) -> Spec:
    """Read and validate a governance file or folder.

    Raises:
        GovernanceFileError: listing every problem found, each with file, line and hint.
    """
    ev = evaluator or default_evaluator()
    problems = _Problems()
    rules: list[Rule] = []
    limits: dict[str, int] = {}
    per_tool: dict[str, int] = {}
    windows: list[WindowBudget] = []
    secrets, custom, pricing, tests = True, {}, {}, []
    pricing_where: Where | None = None
    pricing_seen: dict[str, Where] = {}
    seen: dict[str, Where] = {}
    files = _files(target)
    for path in files:
        try:
            doc = _Located(str(path), path.read_text(encoding="utf-8"))
        except _Refused as exc:
            problems.add(Where(str(path), exc.line), exc.message, exc.hint)
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.add(Where(str(path), mark.line + 1 if mark else 1), f"not valid YAML: {getattr(exc, 'problem', exc)}", "check indentation and quoting")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            if path.is_symlink() and not path.exists():
                problems.add(Where(str(path), 1), f"{path.name} is a broken symbolic link (to {os.readlink(path)})",
                             "point it at a governance file, or remove it")
            else:
                problems.add(Where(str(path), 1), f"cannot read the file: {exc}", "")
            continue
        for key, line, first in doc.duplicates:
            problems.add(Where(doc.file, line), f"duplicate key {key!r} (first at line {first})",
                         "a key may appear once in a mapping: keep one and remove the other")
        data = doc.data
        if data is None:
            problems.add(doc.at(), "the governance file is empty",
                         "a governance file starts with `version: 1`; to govern with no rules on purpose, "
                         "write a file holding just `version: 1`")
            continue
        if not isinstance(data, dict):
            problems.add(doc.at(), "a governance file must be a mapping at the top", "start with `version: 1`")
            continue
        _unknown_keys(data, _TOP_KEYS, lambda k, d=doc: d.at(k), "the governance file", problems)
        _check_version(doc, data.get("version", 1), problems)
        rules.extend(_rules(doc, data.get("policies"), ev, problems, seen))
        lim, pt, win = _budgets(doc, data.get("budgets"), problems)
        for name, value in lim.items():
            if name in limits:
                problems.add(doc.at("budgets", "execution"), f"budget {name} is set in more than one file", "set each budget once")
            limits[name] = value
        per_tool.update(pt)
        for w in win:
            if any(other.id == w.id for other in windows):
                problems.add(w.where or doc.at("budgets"), f"window budget id {w.id!r} is used in more than one file", "give each window its own id")
        windows.extend(win)
        if "detectors" in data:
            given, more = _detectors(doc, data["detectors"], problems)
            if isinstance(data["detectors"], dict) and "secrets" in data["detectors"]:
                secrets = given
            custom.update(more)
        if isinstance(data.get("pricing"), dict):
            _check_pricing(doc, data["pricing"], problems, pricing_seen)
            pricing.update(data["pricing"])
            pricing_where = doc.at("pricing")
        elif data.get("pricing") is not None:
            problems.add(doc.at("pricing"), "pricing must map model names to prices", "see docs/governance.md")
        tests.extend(_tests(doc, data.get("tests"), problems))
    _check_detector_names(rules, custom, problems)
    if pricing and not any("pricing" in m for _, m, _ in problems.items):
        try:
            from ._prices import default_table, with_overrides

            with_overrides(default_table(), pricing)
        except (ValueError, TypeError) as exc:
            problems.add(pricing_where or Where(str(files[-1]), 1), f"pricing: {exc}", "name each model once")
    if problems.items:
        ordered = sorted(problems.items, key=lambda p: (p[0].file, p[0].line))
        raise GovernanceFileError.from_problems(ordered)
    return Spec(tuple(rules), limits, per_tool, tuple(windows), secrets, custom, pricing, tuple(tests),
                tuple(str(p) for p in files))


def _check_version(doc: _Located, version: Any, problems: _Problems) -> None:
    if version == 1 and not isinstance(version, bool):
        return
    if isinstance(version, str) and version.strip() == "1":
        problems.add(doc.at("version"), "version must be the number 1, not the string '1'", "write version: 1, without quotes")
    else:
        problems.add(doc.at("version"), f"version {version!r} is not supported", "this Execord reads version: 1")


def _check_pricing(doc: _Located, pricing: dict[str, Any], problems: _Problems,
                   seen: dict[str, Where] | None = None) -> None:
    from ._prices import default_table, with_overrides

    seen = {} if seen is None else seen
    for model, prices in pricing.items():
        key = str(model).lower()
        if key in seen:
            problems.add(doc.at("pricing", model), f"pricing: {model!r} names the same model as the entry at {seen[key]}",
                         "model names match without regard to case: name each model once")
            continue
        seen[key] = doc.at("pricing", model)
        try:
            with_overrides(default_table(), {model: prices})
        except (ValueError, TypeError) as exc:
            problems.add(doc.at("pricing", model), f"pricing {model}: {exc}",
                         "keys: input_per_mtok_usd, output_per_mtok_usd (USD per million tokens)")


def _check_detector_names(rules: list[Rule], custom: dict[str, str], problems: _Problems) -> None:
    from ._detectors import BUILTIN

    known = sorted(set(BUILTIN) | set(custom))
    for rule in rules:
        for name in rule.detectors:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                problems.add(rule.detectors_where or rule.where or Where("?", 1), f"rule {rule.id}: unknown detector {name!r}",
                             f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}")


def _tests(doc: _Located, raw: Any, problems: _Problems) -> Iterator[dict[str, Any]]:
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.add(doc.at("tests"), "tests must be a list of cases", "each: name, phase, context, expect")
        return
    for i, case in enumerate(raw):
        at = lambda *k, i=i: doc.at("tests", i, *k)  # noqa: E731
        if not isinstance(case, dict):
            problems.add(at(), "a test case must be a mapping", "each: name, phase, context, expect")
            continue
        _unknown_keys(case, _TEST_KEYS, at, "a test case", problems)
        expect = case.get("expect")
        if not isinstance(case.get("context", {}), dict):
            problems.add(at("context"), f"test {case.get('name')!r}: context must be a mapping of variables", "e.g. context: {tool: {name: shell}}")
            continue
        context = case.get("context") or {}
        flat = next((v.name for v in VARIABLES if v.fields is not None and context.get(v.name) is not None
                     and not isinstance(context[v.name], dict)), None)
        if flat:
            problems.add(at("context", flat), f"test {case.get('name')!r}: context.{flat} must be a mapping of its fields",
                         f"e.g. context: {{{flat}: {{...}}}}; docs/governance.md lists the fields under Variables")
            continue
        if isinstance(expect, dict):
            _unknown_keys(expect, ("decision", "rule"), lambda k, at=at: at("expect", k), "expect", problems)
        if case.get("phase") not in PHASES:
            problems.add(at("phase"), f"test {case.get('name')!r}: phase {case.get('phase')!r} is unknown", f"phases: {', '.join(sorted(PHASES))}")
        elif not isinstance(expect, dict) or expect.get("decision") not in EFFECTS:
            problems.add(at("expect"), f"test {case.get('name')!r}: expect.decision must be one of {', '.join(EFFECTS)}", "e.g. expect: {decision: deny, rule: no-shell}")
        else:
            yield {"name": str(case.get("name") or f"case {i + 1}"), "phase": case["phase"],
                   "context": case.get("context") or {}, "expect": expect, "where": str(at())}
