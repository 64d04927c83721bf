"""`Policy.evaluate` (DESIGN §5, issue #3 points 2, 3 and 5) as tables: rules, phase and
context in; the decision and the first violated constraint out.

Order is fixed: deny > require_approval > redact > warn > allow, ties by (priority, id); an
expression that errors is a deny (fail closed); rules pinned to a tool or model are not looked
at for another one; budgets are checked against the projected usage before an action.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from execord.governance import Decision, Policy, Rule, Spec, Usage, WindowBudget, fill
from execord.governance._cel import CelExprEvaluator, CommonCelEvaluator

NOW = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)


def rule(rid: str, when: str | None, effect: str, *, on: tuple[str, ...] = ("tool.request",),
         priority: int = 0) -> Rule:
    extra: dict[str, Any] = {}
    if effect == "require_approval":
        extra = {"approvers": ("finance",), "timeout_s": 60}
    if effect == "redact":
        extra = {"detectors": ("email",)}
    return Rule(rid, on, when, effect, message=f"{rid} says so", priority=priority, **extra)


def ctx(**parts: Any) -> dict[str, Any]:
    out = fill(parts)
    out["now"] = NOW
    return out


def evaluate(rules: tuple[Rule, ...], phase: str, context: Mapping[str, Any], **kw: Any) -> Decision:
    return Policy(Spec(rules=rules)).evaluate(phase, context, **kw)


def first(d: Decision) -> str | None:
    return d.deciding[1] if d.deciding else None


SHELL = {"tool": {"name": "shell", "args": {"cmd": "ls"}}}
REFUND = {"tool": {"name": "issue_refund", "args": {"amount": 5000, "currency": "EUR"}}}

# (id, rules, phase, context, decision, first violated id)
CASES: list[tuple[str, tuple[Rule, ...], str, dict[str, Any], str, str | None]] = [
    ("no-rules", (), "tool.request", SHELL, "allow", None),
    ("deny-matches", (rule("no-shell", 'tool.name == "shell"', "deny"),), "tool.request", SHELL, "deny", "no-shell"),
    ("deny-does-not-match", (rule("no-shell", 'tool.name == "shell"', "deny"),), "tool.request", REFUND, "allow", None),
    ("no-when-always-matches", (rule("all", None, "warn"),), "tool.request", SHELL, "warn", "all"),
    ("allow-rule-decides-nothing", (rule("ok", "true", "allow"),), "tool.request", SHELL, "allow", None),
    ("warn-over-allow", (rule("a", "true", "allow"), rule("w", "true", "warn")), "tool.request", SHELL, "warn", "w"),
    ("redact-over-warn", (rule("a-warn", "true", "warn"), rule("z-redact", "true", "redact")),
     "tool.request", SHELL, "redact", "z-redact"),
    ("approval-over-redact", (rule("a-redact", "true", "redact"), rule("z-approve", "true", "require_approval")),
     "tool.request", SHELL, "require_approval", "z-approve"),
    ("deny-over-approval", (rule("a-approve", "true", "require_approval"), rule("z-deny", "true", "deny")),
     "tool.request", SHELL, "deny", "z-deny"),
    ("deny-over-everything", (rule("w", "true", "warn"), rule("r", "true", "redact"), rule("q", "true", "require_approval"),
                              rule("d", "true", "deny"), rule("a", "true", "allow")), "tool.request", SHELL, "deny", "d"),
    ("unmatched-deny-does-not-count", (rule("d", "false", "deny"), rule("w", "true", "warn")),
     "tool.request", SHELL, "warn", "w"),
    ("ties-by-id", (rule("b-deny", "true", "deny"), rule("a-deny", "true", "deny")), "tool.request", SHELL, "deny", "a-deny"),
    ("priority-before-id", (rule("a-deny", "true", "deny"), rule("z-deny", "true", "deny", priority=-1)),
     "tool.request", SHELL, "deny", "z-deny"),
    ("priority-among-approvals", (rule("a", "true", "require_approval", priority=5),
                                  rule("b", "true", "require_approval", priority=2)), "tool.request", SHELL,
     "require_approval", "b"),
    ("priority-among-warnings", (rule("a", "true", "warn", priority=1), rule("b", "true", "warn")),
     "tool.request", SHELL, "warn", "b"),
    ("other-phase-not-looked-at", (rule("d", "true", "deny", on=("tool.response",)),), "tool.request", SHELL,
     "allow", None),
    ("several-phases", (rule("d", "true", "deny", on=("llm.request", "tool.request")),), "tool.request", SHELL,
     "deny", "d"),
    ("roles", (rule("no-shell", 'tool.name == "shell" && !("ops" in agent.roles)', "deny"),), "tool.request",
     {**SHELL, "agent": {"name": "bot", "roles": ["support"]}}, "deny", "no-shell"),
    ("roles-ops", (rule("no-shell", 'tool.name == "shell" && !("ops" in agent.roles)', "deny"),), "tool.request",
     {**SHELL, "agent": {"name": "bot", "roles": ["ops"]}}, "allow", None),
    ("args", (rule("big", 'tool.name == "issue_refund" && tool.args.amount > 1000', "require_approval"),),
     "tool.request", REFUND, "require_approval", "big"),
    ("args-small", (rule("big", 'tool.name == "issue_refund" && tool.args.amount > 1000', "require_approval"),),
     "tool.request", {"tool": {"name": "issue_refund", "args": {"amount": 10}}}, "allow", None),
    ("labels-guarded", (rule("prod", '"env" in labels && labels.env == "prod"', "deny", on=("admission",)),),
     "admission", {"labels": {"env": "prod"}}, "deny", "prod"),
    ("labels-guarded-absent", (rule("prod", '"env" in labels && labels.env == "prod"', "deny", on=("admission",)),),
     "admission", {"labels": {}}, "allow", None),
    ("usage", (rule("long", "usage.tool_calls >= 3", "warn", on=("step.request",)),), "step.request",
     {"usage": {"tool_calls": 3}}, "warn", "long"),
    ("now", (rule("weekday", "now.getDayOfWeek() == 2", "warn", on=("admission",)),), "admission", {}, "warn", "weekday"),
    ("llm-model", (rule("no-big-model", 'llm.model == "gpt-4o" && llm.max_tokens > 1000', "deny",
                        on=("llm.request",)),), "llm.request", {"llm": {"model": "gpt-4o", "max_tokens": 4000}},
     "deny", "no-big-model"),
    # An expression that errors (here: a missing key) denies, whatever its effect.
    ("error-fails-closed", (rule("needs-amount", "tool.args.amount > 1000", "warn"),), "tool.request", SHELL,
     "deny", "needs-amount"),
    ("error-and-other-rules", (rule("b-needs-amount", "tool.args.amount > 1000", "allow"), rule("a-warn", "true", "warn"),
                               rule("c-deny", 'tool.name == "other"', "deny")), "tool.request", SHELL,
     "deny", "b-needs-amount"),
    ("error-ranks-like-a-deny", (rule("b-needs-amount", "tool.args.amount > 1000", "warn"),
                                 rule("a-deny", "true", "deny")), "tool.request", SHELL, "deny", "a-deny"),
    ("guarded-no-error", (rule("needs-amount", '"amount" in tool.args && tool.args.amount > 1000', "deny"),),
     "tool.request", SHELL, "allow", None),
]


@pytest.mark.parametrize(("rules", "phase", "context", "decision", "violated"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_decision_and_first_violated(rules: tuple[Rule, ...], phase: str, context: dict[str, Any], decision: str,
                                     violated: str | None) -> None:
    d = evaluate(rules, phase, ctx(**context))
    assert (d.decision, first(d)) == (decision, violated)
    assert d.phase == phase
    if violated is not None:
        kind, ident = d.deciding  # type: ignore[misc]
        assert kind == "rule" and ident == violated
        assert d.message() in (f"{violated} says so", f"rule {violated}: {d.decision}") or "fail closed" in d.message()
    if decision == "require_approval":
        assert d.approval is not None and d.approval.id == violated
    else:
        assert d.approval is None


def test_every_rule_looked_at_is_listed_with_its_outcome() -> None:
    rules = (rule("b-warn", "true", "warn"), rule("a-deny", "false", "deny"), rule("c-redact", "true", "redact"),
             rule("elsewhere", "true", "deny", on=("llm.request",)))
    d = evaluate(rules, "tool.request", ctx(**SHELL))
    assert d.rules == [
        {"id": "a-deny", "effect": "deny", "matched": False, "message": None},  # a message only when it matched
        {"id": "b-warn", "effect": "warn", "matched": True, "message": "b-warn says so"},
        {"id": "c-redact", "effect": "redact", "matched": True, "message": "c-redact says so"},
    ]
    assert [r.id for r in d.redact_rules] == ["c-redact"]
    assert d.budgets == []


def test_an_erroring_rule_is_recorded_as_a_fail_closed_deny_and_the_others_still_run() -> None:
    rules = (rule("a-uses-amount", "tool.args.amount > 1000", "warn"), rule("b-shell", 'tool.name == "shell"', "warn"),
             rule("c-never", "false", "deny"), rule("d-mask", None, "redact"))
    d = evaluate(rules, "tool.request", ctx(**SHELL))
    assert (d.decision, d.deciding) == ("deny", ("rule", "a-uses-amount"))
    erred, *others = d.rules
    assert erred["id"] == "a-uses-amount" and erred["effect"] == "deny" and erred["matched"] is True
    assert "fail closed" in erred["message"] and "amount" in erred["message"]
    assert [(r["id"], r["effect"], r["matched"]) for r in others] == [
        ("b-shell", "warn", True), ("c-never", "deny", False), ("d-mask", "redact", True)]
    # The same rules with the key present: no error, no deny.
    ok = evaluate(rules, "tool.request", ctx(tool={"name": "shell", "args": {"amount": 5}}))
    assert ok.decision == "redact"
    assert (ok.rules[0]["id"], ok.rules[0]["effect"], ok.rules[0]["matched"]) == ("a-uses-amount", "warn", False)


# -- rules pinned to a tool or a model --------------------------------------------------------

PINNED = (
    rule("p-and", 'tool.name == "issue_refund" && tool.args.amount > 1000', "deny"),
    rule("p-paren", '(tool.name == "issue_refund") && tool.args.amount > 1', "warn"),
    rule("p-alone", 'tool.name == "issue_refund"', "warn"),
    rule("u-not-equal", 'tool.name != "issue_refund"', "warn"),
    rule("u-or", 'tool.name == "issue_refund" || tool.name == "shell"', "warn"),
    rule("u-other-first", 'usage.tool_calls > 100 && tool.name == "issue_refund"', "deny"),
    rule("u-always", None, "warn"),
)


@pytest.mark.parametrize(("tool", "looked_at"), [
    ("issue_refund", ["p-alone", "p-and", "p-paren", "u-always", "u-not-equal", "u-or", "u-other-first"]),
    ("shell", ["u-always", "u-not-equal", "u-or", "u-other-first"]),
    ("lookup_order", ["u-always", "u-not-equal", "u-or", "u-other-first"]),
])
def test_pinned_rules_are_not_looked_at_for_another_tool(tool: str, looked_at: list[str]) -> None:
    d = evaluate(PINNED, "tool.request", ctx(tool={"name": tool, "args": {"amount": 5000}}))
    assert [r["id"] for r in d.rules] == looked_at


def test_pinned_llm_rules() -> None:
    rules = (rule("big-model", 'llm.model == "gpt-4o" && llm.max_tokens > 10', "deny", on=("llm.request",)),
             rule("any-model", "llm.max_tokens > 10", "warn", on=("llm.request",)))
    other = evaluate(rules, "llm.request", ctx(llm={"model": "gpt-4o-mini", "max_tokens": 100}))
    assert [r["id"] for r in other.rules] == ["any-model"] and other.decision == "warn"
    same = evaluate(rules, "llm.request", ctx(llm={"model": "gpt-4o", "max_tokens": 100}))
    assert [r["id"] for r in same.rules] == ["any-model", "big-model"] and same.decision == "deny"


def test_a_rule_whose_pin_is_only_one_side_of_an_or_is_looked_at_for_every_tool() -> None:
    rules = (rule("refunds-or-busy", 'tool.name == "issue_refund" && tool.args.amount > 1000 || usage.tool_calls >= 5',
                  "deny"),)
    d = evaluate(rules, "tool.request", ctx(tool={"name": "shell"}, usage={"tool_calls": 7}))
    assert (d.decision, first(d)) == ("deny", "refunds-or-busy")


# -- budgets ----------------------------------------------------------------------------------


def budget_policy(**spec: Any) -> Policy:
    return Policy(Spec(**spec))


TOOL_PROJECTION = {"tool_calls": 1, "steps": 1}

# (id, spec, phase, usage, projection, tool, windows used, decision, budget id, {id: (used, projected)})
BUDGETS: list[tuple[str, dict[str, Any], str, Usage, dict[str, int], str | None, dict[str, Any] | None, str,
                    str | None, dict[str, tuple[int, int]]]] = [
    ("50th-tool-call-allowed", {"execution_budgets": {"tool_calls": 50}}, "tool.request", Usage(tool_calls=49),
     TOOL_PROJECTION, "lookup", None, "allow", None, {"execution.tool_calls": (49, 50)}),
    ("51st-tool-call-denied", {"execution_budgets": {"tool_calls": 50}}, "tool.request", Usage(tool_calls=50),
     TOOL_PROJECTION, "lookup", None, "deny", "execution.tool_calls", {"execution.tool_calls": (50, 51)}),
    # Counts were checked with the projection before the action; only what lands with the
    # answer (tokens, cost, time) is checked again after it.
    ("counts-not-rechecked-after", {"execution_budgets": {"tool_calls": 50, "cost_micros": 100}}, "tool.response",
     Usage(tool_calls=51, cost_micros=5), {}, "lookup", None, "allow", None, {"execution.cost_usd": (5, 5)}),
    ("cost-landed-over", {"execution_budgets": {"tool_calls": 50, "cost_micros": 100}}, "llm.response",
     Usage(tool_calls=1, cost_micros=101), {}, None, None, "deny", "execution.cost_usd",
     {"execution.cost_usd": (101, 101)}),
    ("per-tool-third-allowed", {"per_tool": {"issue_refund": 3}}, "tool.request",
     Usage(tool_calls=9, per_tool={"issue_refund": 2}), TOOL_PROJECTION, "issue_refund", None, "allow", None,
     {"execution.per_tool.issue_refund": (2, 3)}),
    ("per-tool-fourth-denied", {"per_tool": {"issue_refund": 3}}, "tool.request",
     Usage(tool_calls=3, per_tool={"issue_refund": 3}), TOOL_PROJECTION, "issue_refund", None, "deny",
     "execution.per_tool.issue_refund", {"execution.per_tool.issue_refund": (3, 4)}),
    ("per-tool-other-tool-unlimited", {"per_tool": {"issue_refund": 3}}, "tool.request",
     Usage(per_tool={"issue_refund": 3}), TOOL_PROJECTION, "lookup", None, "allow", None, {}),
    ("cost-exactly-at-limit", {"execution_budgets": {"cost_micros": 2_000_000}}, "llm.request",
     Usage(cost_micros=1_999_000), {"cost_micros": 1_000, "llm_calls": 1}, None, None, "allow", None,
     {"execution.cost_usd": (1_999_000, 2_000_000)}),
    ("cost-one-micro-over", {"execution_budgets": {"cost_micros": 2_000_000}}, "llm.request",
     Usage(cost_micros=1_999_000), {"cost_micros": 1_001, "llm_calls": 1}, None, None, "deny", "execution.cost_usd",
     {"execution.cost_usd": (1_999_000, 2_000_001)}),
    ("total-tokens-projected", {"execution_budgets": {"total_tokens": 1000}}, "llm.request",
     Usage(input_tokens=600, output_tokens=300), {"output_tokens": 100}, None, None, "allow", None,
     {"execution.total_tokens": (900, 1000)}),
    ("total-tokens-projected-over", {"execution_budgets": {"total_tokens": 1000}}, "llm.request",
     Usage(input_tokens=600, output_tokens=300), {"output_tokens": 101}, None, None, "deny", "execution.total_tokens",
     {"execution.total_tokens": (900, 1001)}),
    ("total-tokens-actual-over", {"execution_budgets": {"total_tokens": 1000}}, "llm.response",
     Usage(input_tokens=700, output_tokens=301), {}, None, None, "deny", "execution.total_tokens",
     {"execution.total_tokens": (1001, 1001)}),
    ("steps", {"execution_budgets": {"steps": 2}}, "step.request", Usage(steps=2), {"steps": 1}, None, None,
     "deny", "execution.steps", {"execution.steps": (2, 3)}),
    ("duration", {"execution_budgets": {"duration_ms": 600_000}}, "step.request", Usage(duration_ms=600_001), {},
     None, None, "deny", "execution.duration", {"execution.duration": (600_001, 600_001)}),
    ("first-exceeded-in-file-order", {"execution_budgets": {"steps": 1, "tool_calls": 1}}, "tool.request",
     Usage(steps=1, tool_calls=1), TOOL_PROJECTION, "lookup", None, "deny", "execution.steps",
     {"execution.steps": (1, 2), "execution.tool_calls": (1, 2)}),
    ("window-within", {"windows": (WindowBudget("daily", "workflow", {}, "day", {"cost_micros": 100}),)},
     "llm.response", Usage(cost_micros=10), {}, None, {"daily": {"cost_micros": 90}}, "allow", None,
     {"daily": (100, 100)}),
    ("window-over", {"windows": (WindowBudget("daily", "workflow", {}, "day", {"cost_micros": 100}),)},
     "llm.response", Usage(cost_micros=11), {}, None, {"daily": {"cost_micros": 90}}, "deny", "daily",
     {"daily": (101, 101)}),
    ("window-at-admission", {"windows": (WindowBudget("hourly", "agent", {}, "hour", {"llm_calls": 40}),)},
     "admission", Usage(), {}, None, {"hourly": {"llm_calls": 41}}, "deny", "hourly", {"hourly": (41, 41)}),
    ("window-not-loaded", {"windows": (WindowBudget("daily", "workflow", {}, "day", {"cost_micros": 100}),)},
     "llm.request", Usage(cost_micros=1000), {"cost_micros": 1}, None, None, "allow", None, {}),
]


@pytest.mark.parametrize(("spec", "phase", "usage", "projection", "tool", "windows", "decision", "budget", "seen"),
                         [pytest.param(*b[1:], id=b[0]) for b in BUDGETS])
def test_budgets(spec: dict[str, Any], phase: str, usage: Usage, projection: dict[str, int], tool: str | None,
                 windows: dict[str, Any] | None, decision: str, budget: str | None,
                 seen: dict[str, tuple[int, int]]) -> None:
    d = budget_policy(**spec).evaluate(phase, ctx(usage=usage.as_context()), usage=usage, projection=projection,
                                       tool=tool, windows_used=windows)
    assert d.decision == decision
    assert d.deciding == (("budget", budget) if budget else None)
    assert {b["id"]: (b["used"], b["projected"]) for b in d.budgets} == seen
    for b in d.budgets:
        assert b["ok"] is (b["projected"] <= b["limit"])
    if budget is not None:
        assert d.message().startswith(f"budget {budget} exceeded: ")


def test_a_denying_rule_ranks_before_an_exceeded_budget_and_a_budget_before_an_approval() -> None:
    over = Usage(tool_calls=50)
    spec = Spec(rules=(rule("ask", "true", "require_approval"),), execution_budgets={"tool_calls": 50})
    d = Policy(spec).evaluate("tool.request", ctx(**SHELL), usage=over, projection=TOOL_PROJECTION)
    assert (d.decision, d.deciding) == ("deny", ("budget", "execution.tool_calls"))
    spec = Spec(rules=(rule("no-shell", 'tool.name == "shell"', "deny"),), execution_budgets={"tool_calls": 50})
    d = Policy(spec).evaluate("tool.request", ctx(**SHELL), usage=over, projection=TOOL_PROJECTION)
    assert (d.decision, d.deciding) == ("deny", ("rule", "no-shell"))


def _same(a: Decision, b: Decision) -> bool:
    return (a.decision, a.deciding, a.rules, a.budgets, a.approval, a.redact_rules) == (
        b.decision, b.deciding, b.rules, b.budgets, b.approval, b.redact_rules)


def test_determinism_same_inputs_same_decision() -> None:
    spec = Spec(rules=(
        rule("no-shell", 'tool.name == "shell" && !("ops" in agent.roles)', "deny"),
        rule("big", 'tool.name == "issue_refund" && tool.args.amount > 1000', "require_approval"),
        rule("needs-amount", "tool.args.amount > 1", "warn", priority=3),
        rule("mask", None, "redact", on=("tool.request", "admission")),
        rule("late", "usage.tool_calls > 1", "warn", on=("admission", "tool.request")),
    ), execution_budgets={"tool_calls": 3, "cost_micros": 10}, per_tool={"issue_refund": 1})
    usage = Usage(tool_calls=3, cost_micros=10, per_tool={"issue_refund": 1})
    for phase, context, tool in [("tool.request", SHELL, "shell"), ("tool.request", REFUND, "issue_refund"),
                                 ("admission", {}, None)]:
        once = Policy(spec).evaluate(phase, ctx(**context), usage=usage, projection=TOOL_PROJECTION, tool=tool)
        assert once.decision == "deny"
        policy = Policy(spec)
        again = [policy.evaluate(phase, ctx(**context), usage=usage, projection=TOOL_PROJECTION, tool=tool)
                 for _ in range(3)]
        assert all(_same(once, d) for d in again)


# -- the fallback engine ----------------------------------------------------------------------


def _outcome(d: Decision) -> tuple[Any, ...]:
    return (d.decision, d.deciding, [(r["id"], r["effect"], r["matched"]) for r in d.rules])


@pytest.mark.parametrize(("rules", "phase", "context"), [pytest.param(*c[1:4], id=c[0]) for c in CASES])
def test_the_fallback_engine_decides_the_same(rules: tuple[Rule, ...], phase: str, context: dict[str, Any]) -> None:
    try:
        fallback = CommonCelEvaluator()
    except ImportError:
        pytest.skip("common-expression-language is not installed")
    spec = Spec(rules=rules)
    main = Policy(spec, evaluator=CelExprEvaluator()).evaluate(phase, ctx(**context))
    other = Policy(spec, evaluator=fallback).evaluate(phase, ctx(**context))
    assert other.decision == main.decision and _outcome(other) == _outcome(main)
