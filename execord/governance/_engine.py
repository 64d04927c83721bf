"""Evaluating a governance version at a phase: the decision, and why (DESIGN §5).

Order is fixed: ``deny`` beats ``require_approval`` beats ``redact`` beats ``warn`` beats
``allow``. Among rules of the deciding effect the first by (priority, id) decides; an
exceeded budget is a deny that ranks after every denying rule. The same inputs and version
give the same decision and the same first violated constraint, every time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._cel import CelEvalError, Evaluator, Program, default_evaluator, reads_field
from ._file import Rule, Spec, WindowBudget

EFFECT_RANK = {"allow": 0, "warn": 1, "redact": 2, "require_approval": 3, "deny": 4}
_PIN = {
    "tool": re.compile(r'^\s*\(?\s*tool\.name\s*==\s*"([^"\\]+)"\s*\)?\s*(?:&&|$)'),
    "llm": re.compile(r'^\s*\(?\s*llm\.model\s*==\s*"([^"\\]+)"\s*\)?\s*(?:&&|$)'),
}
# metric -> what a governed action adds to it before it runs (the projection)
_LANDS = frozenset({"input_tokens", "output_tokens", "total_tokens", "cost_micros", "duration_ms"})
USAGE_KEYS = ("input_tokens", "output_tokens", "total_tokens", "cost_micros", "llm_calls", "tool_calls", "steps", "duration_ms")


def pinned_name(rule: Rule, kind: str) -> str | None:
    """The tool (or model) name a rule's expression pins with a leading ``== "…" &&``."""
    if rule.when is None or _top_level_or(rule.when):
        # `a && b || c` matches without a: only a pin that holds for the whole expression
        # may keep a rule away from other tools.
        return None
    m = _PIN[kind].match(rule.when)
    return m.group(1) if m else None


def _top_level_or(expr: str) -> bool:
    """True when ``||`` or ``?:`` appears outside every bracket and string literal."""
    depth, i, quote = 0, 0, ""
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (expr.startswith("||", i) or ch == "?"):
            return True
        i += 1
    return False


@dataclass
class Usage:
    """What an execution has used so far (the ``usage`` variable and the budgets' ``used``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    steps: int = 0
    duration_ms: int = 0
    per_tool: dict[str, int] = field(default_factory=dict)

    def as_context(self) -> dict[str, int]:
        """The ``usage`` variable."""
        return {
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens, "cost_micros": self.cost_micros,
            "llm_calls": self.llm_calls, "tool_calls": self.tool_calls, "steps": self.steps,
            "duration_ms": self.duration_ms,
        }


@dataclass(slots=True)
class Decision:
    """The outcome of evaluating one phase.

    Attributes:
        phase: where it was evaluated.
        decision: allow, warn, redact, require_approval or deny.
        rules: every rule looked at: {id, effect, matched, message}.
        budgets: every budget looked at: {id, metric, limit, used, projected, ok}.
        deciding: ("rule", id) or ("budget", id) for the first violated constraint, else None.
        approval: the rule asking for approval, when the decision is require_approval.
        redact_rules: the matched redact rules, in order.
        eval_us: how long the evaluation took.
    """

    phase: str
    decision: str
    rules: list[dict[str, Any]]
    budgets: list[dict[str, Any]]
    deciding: tuple[str, str] | None = None
    approval: Rule | None = None
    redact_rules: list[Rule] = field(default_factory=list)
    eval_us: int = 0
    redactions: list[dict[str, str]] = field(default_factory=list)

    def message(self) -> str:
        """Why, in words: the deciding rule's message or the budget that was exceeded."""
        if self.deciding is None:
            return self.decision
        kind, ident = self.deciding
        if kind == "budget":
            b = next(b for b in self.budgets if b["id"] == ident)
            return f"budget {ident} exceeded: {b['projected']} > {b['limit']}"
        r = next(r for r in self.rules if r["id"] == ident)
        return r.get("message") or f"rule {ident}: {r['effect']}"


class _Bucket:
    """The rules one (phase, pinned name) can meet, in (priority, id) order, and their program."""

    def __init__(self, rules: list[Rule], evaluator: Evaluator):
        self.rules = sorted(rules, key=lambda r: (r.priority, r.id))
        self.with_when = [r for r in self.rules if r.when is not None]
        self.program: Program | None = (
            evaluator.program([r.when for r in self.with_when]) if self.with_when else None  # type: ignore[misc]
        )
        self._reads: dict[tuple[str, str], bool] = {}

    def reads(self, variable: str, name: str) -> bool:
        """Whether some rule's ``when`` may read ``variable.name`` (see `reads_field`)."""
        key = (variable, name)
        found = self._reads.get(key)
        if found is None:
            found = self._reads[key] = reads_field([r.when for r in self.with_when], variable, name)  # type: ignore[misc]
        return found


class Policy:
    """A compiled governance version: rules indexed by phase and pinned name, and budgets.

    Expressions are compiled once here; `evaluate` only evaluates.
    """

    def __init__(self, spec: Spec, *, version_id: str | None = None, evaluator: Evaluator | None = None):
        self.spec = spec
        self.version_id = version_id
        self.evaluator = evaluator or default_evaluator()
        self.engine = self.evaluator.engine
        self._by_phase: dict[str, list[Rule]] = {}
        for rule in spec.rules:
            for phase in rule.on:
                self._by_phase.setdefault(phase, []).append(rule)
        self._buckets: dict[tuple[str, str | None], _Bucket] = {}

    @property
    def empty(self) -> bool:
        """True when there is nothing to evaluate at any phase (no rules, no budgets)."""
        return not self.spec.rules and not self.spec.execution_budgets and not self.spec.per_tool and not self.spec.windows

    def bucket(self, phase: str, name: str | None) -> _Bucket:
        """The rules (and program) for a phase and the tool or model name being called."""
        key = (phase, name)
        bucket = self._buckets.get(key)
        if bucket is None:
            kind = "tool" if phase.startswith("tool.") else "llm" if phase.startswith("llm.") else None
            rules = []
            for rule in self._by_phase.get(phase, []):
                pin = pinned_name(rule, kind) if kind else None
                if pin is None or pin == name:
                    rules.append(rule)
            bucket = self._buckets[key] = _Bucket(rules, self.evaluator)
        return bucket

    def reads(self, phase: str, context: Mapping[str, Any], variable: str, name: str) -> bool:
        """Whether a rule evaluated at ``phase`` with ``context`` may read ``variable.name``:
        when none can, a change to that field alone cannot change the decision."""
        return self.bucket(phase, _pin_value(phase, context)).reads(variable, name)

    def evaluate(self, phase: str, context: Mapping[str, Any], *, usage: Usage | None = None,
                 projection: Mapping[str, int] | None = None, tool: str | None = None,
                 windows_used: Mapping[str, Mapping[str, int]] | None = None) -> Decision:
        """Evaluate every rule and budget that applies at ``phase``.

        Args:
            phase: one of the phases of DESIGN §1.
            context: the rule variables (see `_context.fill`), every declared field present.
            usage: what the execution used before this action.
            projection: what this action is expected to add (request phases), by metric.
            tool: the tool being called, for per-tool budgets.
            windows_used: window budget id → usage so far in its window (admission, responses).
        """
        t0 = time.perf_counter_ns()
        name = _pin_value(phase, context)
        bucket = self.bucket(phase, name)
        rules, matched = self._rules(bucket, context)
        budgets = self._budgets(phase, usage or Usage(), projection or {}, tool, windows_used or {})
        decision = _combine(phase, rules, matched, budgets, bucket)
        decision.eval_us = (time.perf_counter_ns() - t0) // 1000
        return decision

    def _rules(self, bucket: _Bucket, context: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Every rule looked at, and the effect each matched rule contributes."""
        values: list[Any] = []
        if bucket.program is not None:
            try:
                values = bucket.program.run(context)
            except CelEvalError:
                values = bucket.program.run_each(context)  # type: ignore[attr-defined]
        out, matched = [], {}
        results = iter(values)
        for rule in bucket.rules:
            # bucket.with_when keeps bucket.rules' order, so results line up with the rules that have a `when`.
            value = True if rule.when is None else next(results)
            if isinstance(value, CelEvalError):
                # Fail closed: an expression that cannot be evaluated denies (DESIGN §5).
                out.append({"id": rule.id, "effect": "deny", "matched": True,
                            "message": f"expression error (fail closed): {value}"})
                matched[rule.id] = "deny"
            else:
                hit = value is True
                # A rule's message is in its governance version; a decision repeats it only
                # when the rule matched, which keeps every decision event small.
                out.append({"id": rule.id, "effect": rule.effect, "matched": hit, "message": rule.message if hit else None})
                if hit:
                    matched[rule.id] = rule.effect
        return out, matched

    def _budgets(self, phase: str, usage: Usage, projection: Mapping[str, int], tool: str | None,
                 windows_used: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
        spec = self.spec
        if not (spec.execution_budgets or spec.per_tool or spec.windows):
            return []
        used = usage.as_context()
        out = []
        # Counts (calls, steps) were checked with the projection before the action and
        # cannot change after it; only what lands with the answer is checked again.
        landing = phase.endswith(".response") or phase == "end"
        # Sorted, so a file loaded from disk and the same version read back from the store
        # check (and name the first exceeded budget) in the same order.
        for metric, limit in sorted(self.spec.execution_budgets.items()):
            if landing and metric not in _LANDS:
                continue
            now = used.get(metric, 0)
            projected = now + projection.get(metric, 0)
            if metric == "total_tokens":
                projected = now + projection.get("input_tokens", 0) + projection.get("output_tokens", 0)
            out.append({"id": f"execution.{_metric_name(metric)}", "metric": _metric_name(metric), "limit": limit,
                        "used": now, "projected": projected, "ok": projected <= limit})
        if tool is not None and tool in self.spec.per_tool and phase == "tool.request":
            limit = self.spec.per_tool[tool]
            now = usage.per_tool.get(tool, 0)
            projected = now + (1 if phase == "tool.request" else 0)
            out.append({"id": f"execution.per_tool.{tool}", "metric": f"tool_calls[{tool}]", "limit": limit,
                        "used": now, "projected": projected, "ok": projected <= limit})
        for w in sorted(self.spec.windows, key=lambda w: w.id):
            if w.id in windows_used:
                out.extend(_window_results(w, windows_used[w.id], used, projection, landing))
        return out


def _metric_name(metric: str) -> str:
    return {"cost_micros": "cost_usd", "duration_ms": "duration"}.get(metric, metric)


def _window_results(w: WindowBudget, before: Mapping[str, int], used: Mapping[str, int],
                    projection: Mapping[str, int], landing: bool = False) -> list[dict[str, Any]]:
    out = []
    for metric, limit in sorted(w.limits.items()):
        if landing and metric not in _LANDS:
            continue
        now = before.get(metric, 0) + used.get(metric, 0)
        projected = now + projection.get(metric, 0)
        out.append({"id": w.id, "metric": _metric_name(metric), "limit": limit, "used": now,
                    "projected": projected, "ok": projected <= limit})
    return out


def _pin_value(phase: str, context: Mapping[str, Any]) -> str | None:
    if phase.startswith("tool."):
        return (context.get("tool") or {}).get("name") or None
    if phase.startswith("llm."):
        return (context.get("llm") or {}).get("model") or None
    return None


def _combine(phase: str, rules: list[dict[str, Any]], matched: dict[str, str], budgets: list[dict[str, Any]],
             bucket: _Bucket) -> Decision:
    by_id = {r.id: r for r in bucket.rules}
    redacts = [by_id[rid] for rid, e in matched.items() if e == "redact" and rid in by_id]
    denying = [rid for rid, eff in matched.items() if eff == "deny"]  # already in (priority, id) order
    over = [b["id"] for b in budgets if not b["ok"]]
    # A denied action's input is still recorded, so it is still redacted.
    if denying:
        return Decision(phase, "deny", rules, budgets, ("rule", denying[0]), redact_rules=redacts)
    if over:
        return Decision(phase, "deny", rules, budgets, ("budget", over[0]), redact_rules=redacts)
    top = max((EFFECT_RANK[e] for e in matched.values()), default=0)
    effect = next(e for e, rank in EFFECT_RANK.items() if rank == top)
    first = next((rid for rid, e in matched.items() if e == effect), None)
    approval = by_id[first] if effect == "require_approval" and first else None
    deciding = ("rule", first) if first is not None and effect != "allow" else None
    return Decision(phase, effect, rules, budgets, deciding, approval, redacts)
