"""Re-evaluating recorded decisions: `execord governance simulate` (issue #3, point 9).

Every ``governance.decision`` event is evaluated again from what the record holds: the
execution's start (agent, workflow, labels), the step's recorded input or output, and the
decision's own ``inputs`` (usage so far, per-tool counts, window usage, elapsed time,
``now``). Against a candidate policy this shows what would change; against the version the
execution pinned it must reproduce the recorded decision exactly, or the record (or the
engine) has an integrity problem. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..governance import Decision, Policy, Usage
from ..record import (
    EXECUTION_STARTED,
    GOVERNANCE_DECISION,
    STEP_ENDED,
    STEP_STARTED,
    Event,
    parse_ts,
)
from ..store import ExecutionFilter, blob_value
from ._governed import llm_variables, load_pinned
from ._steps import _default_prices


@dataclass
class Change:
    """One decision that a candidate would make differently."""

    execution_id: str
    seq: int
    phase: str
    step: str | None
    recorded: str
    candidate: str
    rule: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return self.__dict__.copy()


@dataclass
class SimulationReport:
    """What a simulation found."""

    executions: int = 0
    decisions: int = 0
    changes: list[Change] = field(default_factory=list)
    mismatches: list[Change] = field(default_factory=list)


def _static(started: Event) -> dict[str, Any]:
    a = started.attrs
    agent, workflow = a.get("agent") or {}, a.get("workflow") or {}
    return {
        "agent": {"name": agent.get("name") or "", "version": agent.get("version") or "", "roles": agent.get("roles") or []},
        "workflow": {"name": workflow.get("name") or "", "version": workflow.get("version") or ""},
        "execution": {"id": started.execution_id, "type": a.get("execution_type") or "workflow",
                      "parent_execution_id": a.get("parent_execution_id") or "", "duration_ms": 0},
        "labels": dict(a.get("labels") or {}),
    }


def _context(store: Any, static: dict[str, Any], decision: Event, steps: dict[str, dict[str, Event]],
             prices: Any) -> tuple[dict[str, Any], dict[str, int], str | None, Usage, dict[str, Any]]:
    a = decision.attrs
    inputs = a.get("inputs") or {}
    ctx = dict(static)
    ctx["execution"] = {**static["execution"], "duration_ms": inputs.get("duration_ms", 0)}
    ctx["step"] = {"id": "", "kind": "", "name": "", "parent_step_id": ""}
    ctx["tool"] = {"name": "", "args": None, "result": None}
    ctx["llm"] = {"provider": "", "model": "", "params": None, "max_tokens": 0, "messages": None, "response": None}
    u = inputs.get("usage") or {}
    usage = Usage(**{k: u.get(k, 0) for k in ("input_tokens", "output_tokens", "cost_micros", "llm_calls", "tool_calls",
                                              "steps", "duration_ms")}, per_tool=dict(inputs.get("per_tool") or {}))
    ctx["usage"] = usage.as_context()
    ctx["now"] = parse_ts(inputs["now"]) if inputs.get("now") else parse_ts(decision.ts)
    projection: dict[str, int] = {}
    tool = None
    phase = a["phase"]
    pair = steps.get(decision.step_id or "")
    if pair and "started" in pair:
        st = pair["started"].attrs
        ctx["step"] = {"id": decision.step_id, "kind": st["kind"], "name": st["name"],
                       "parent_step_id": pair["started"].parent_step_id or ""}
        response = phase.endswith(".response")
        value = blob_value(store, (pair["ended"].attrs.get("output") if response and "ended" in pair else st.get("input")))
        if st["kind"] == "tool":
            tool = st["name"]
            ctx["tool"] = {"name": st["name"], "args": None, "result": None, ("result" if response else "args"): value}
            projection = {} if response else {"tool_calls": 1, "steps": 1}
        elif st["kind"] == "llm":
            ctx["llm"] = {"messages": None, "response": None, **llm_variables(st, value, response=response)}
            max_tokens = ctx["llm"]["max_tokens"]
            projection = {} if response else {"llm_calls": 1, "steps": 1, "output_tokens": max_tokens}
            if not response and st.get("model"):
                # The same projection the runtime made: the price of max_tokens of output.
                cost, _ = prices.price(provider=st.get("provider"), model=st["model"], input_tokens=0,
                                       output_tokens=max_tokens)
                if cost:
                    projection["cost_micros"] = cost
        elif not response:
            projection = {"steps": 1}
    return ctx, projection, tool, usage, inputs.get("windows") or {}


def _evaluate(policy: Policy, phase: str, ctx: dict[str, Any], projection: dict[str, int], tool: str | None,
              usage: Usage, windows: dict[str, Any]) -> Decision:
    return policy.evaluate(phase, ctx, usage=usage, projection=projection, tool=tool, windows_used=windows)


def _same(recorded: dict[str, Any], d: Decision) -> bool:
    if recorded["decision"] != d.decision:
        return False
    rec_rules = {(r["id"], r["matched"]) for r in recorded.get("rules") or []}
    new_rules = {(r["id"], r["matched"]) for r in d.rules}
    rec_budgets = {(b["id"], b["ok"]) for b in recorded.get("budgets") or []}
    new_budgets = {(b["id"], b["ok"]) for b in d.budgets}
    return rec_rules == new_rules and rec_budgets == new_budgets


def simulate(store: Any, candidate: Policy | None, *, since_us: int | None = None, limit: int = 10_000) -> SimulationReport:
    """Evaluate every recorded decision again, under ``candidate`` and under its own version.

    Args:
        store: where the executions are.
        candidate: the policy to try; None to only check that each execution's own pinned
            version reproduces its recorded decisions.
        since_us: only executions started at or after this time.
        limit: at most this many executions (newest first).
    """
    report = SimulationReport()
    pinned: dict[str, Any] = {}
    for row in store.list_executions(ExecutionFilter(since_us=since_us, limit=limit)):
        check_execution(store, row["id"], candidate, report, pinned)
    return report


def check_execution(store: Any, execution_id: str, candidate: Policy | None, report: SimulationReport,
                    pinned: dict[str, Any]) -> None:
    """Evaluate one execution's recorded decisions again (see `simulate`), into ``report``.

    The server runs this on every execution it seals with decisions in it (DESIGN §6: the
    server re-evaluates the agent's decisions and flags any mismatch).
    """
    events = store.events(execution_id)
    if not events or events[0].type != EXECUTION_STARTED:
        return
    report.executions += 1
    static = _static(events[0])
    steps: dict[str, dict[str, Event]] = {}
    for e in events:
        if e.type in (STEP_STARTED, STEP_ENDED) and e.step_id:
            steps.setdefault(e.step_id, {})["started" if e.type == STEP_STARTED else "ended"] = e
    for e in events:
        if e.type != GOVERNANCE_DECISION:
            continue
        report.decisions += 1
        vid = e.attrs.get("governance_version")
        own_pinned = (pinned.get(vid) or pinned.setdefault(vid, load_pinned(store, vid))) if vid else None
        prices = own_pinned.prices if own_pinned is not None else _default_prices()
        ctx, projection, tool, usage, windows = _context(store, static, e, steps, prices)
        step_name = ctx["step"]["name"] or None
        if own_pinned is not None:
            own = own_pinned.policy
            again = _evaluate(own, e.attrs["phase"], ctx, projection, tool, usage, windows)
            if not _same(e.attrs, again):
                report.mismatches.append(Change(execution_id, e.seq, e.attrs["phase"], step_name, e.attrs["decision"],
                                                again.decision, again.deciding[1] if again.deciding else None))
        if candidate is not None:
            new = _evaluate(candidate, e.attrs["phase"], ctx, projection, tool, usage, windows)
            if new.decision != e.attrs["decision"]:
                report.changes.append(Change(execution_id, e.seq, e.attrs["phase"], step_name, e.attrs["decision"],
                                             new.decision, new.deciding[1] if new.deciding else None))
