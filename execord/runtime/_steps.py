"""Governed steps: the request phase before a step's body, the response phase after it.

Order of events for a governed tool call (DESIGN §3, §5)::

    step.started          input already redacted
    governance.decision   tool.request                 ← both committed before the body runs
    [approval.requested … approval.decided]            ← only for require_approval
    … the tool runs, with the redacted arguments …
    governance.decision   tool.response
    step.ended            output redacted; status ok, error or blocked

A deny at the request phase ends the step ``blocked`` without running it and raises
`execord.Halted`; once halted, every later governed action of the execution is refused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ApprovalError, Halted
from ..governance import Decision, Rule
from ..record import (
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    GOVERNANCE_DECISION,
    STEP_ENDED,
    STEP_STARTED,
    format_ts,
    now_us,
    uuid7,
)
from ._capture import jsonable, to_jsonable
from ._governed import action_digest, llm_variables, recorded_inputs

if TYPE_CHECKING:
    from ._handles import ExecutionHandle, StepHandle

_REQUEST = {"tool": "tool.request", "llm": "llm.request"}
# Where a phase's context holds the step's value: (kind, response phase) -> (variable, field).
_VALUE_FIELD = {("tool", False): ("tool", "args"), ("tool", True): ("tool", "result"),
                ("llm", False): ("llm", "messages"), ("llm", True): ("llm", "response")}
_RESPONSE = {"tool": "tool.response", "llm": "llm.response"}
APPROVAL_POLL_S = 0.2


@dataclass
class ApprovalWait:
    """An approval the execution is waiting for."""

    id: str
    rule: Rule
    phase: str
    step: StepHandle
    expires_us: int


def request_phase(kind: str) -> str:
    """The phase evaluated before a step of this kind runs."""
    return _REQUEST.get(kind, "step.request")


def response_phase(kind: str) -> str:
    """The phase evaluated after a step of this kind returns."""
    return _RESPONSE.get(kind, "step.response")


class GovernedSteps:
    """Mixed into `ExecutionHandle`: the step protocol with governance in it."""

    def refuse_if_halted(self: ExecutionHandle) -> None:
        """Once halted (or cancelled), every later governed action is refused."""
        self.refuse_if_cancelled()
        h = self.gov.halted
        if h is not None:
            raise Halted(f"execution {self.id} is halted ({h.reason}: {h.rule_id or h.budget_id}); no further actions run",
                         reason=h.reason, rule_id=h.rule_id, budget_id=h.budget_id, seq=h.seq, phase=h.phase,
                         execution_id=self.id)

    def _decision_event(self: ExecutionHandle, d: Decision, step_id: str | None, parent: str | None,
                        redactions: list[dict[str, str]], *, barrier: bool, ctx: dict[str, Any] | None = None,
                        inputs: dict[str, Any] | None = None) -> int:
        policy = self.gov.pinned.policy  # type: ignore[union-attr]
        attrs = {
            "phase": d.phase, "step_id": step_id, "decision": d.decision, "rules": d.rules, "budgets": d.budgets,
            "redactions": redactions, "governance_version": self.gov.version_id, "engine": policy.engine,
            "eval_us": d.eval_us,
        }
        if inputs is not None:
            attrs["inputs"] = inputs  # evaluated by the server (admission in server mode)
        elif ctx is not None:
            # What the record cannot otherwise tell about this evaluation (the rest: the
            # execution's start, the step's recorded input or output), so that `execord
            # governance simulate` can evaluate exactly what the rules saw.
            attrs["inputs"] = recorded_inputs(ctx, self.usage.per_tool, self.gov.windows_used)
        # Plain by construction (ids, ints, bools, messages; no floats); only the tool names
        # used as per-tool keys come from user code, so they are the one thing to check.
        plain = all(max(k, default="") <= "\uffff" for k in self.usage.per_tool)
        e = self._emit(GOVERNANCE_DECISION, attrs, step_id=step_id, parent_step_id=parent, barrier=barrier, plain=plain)
        return e.seq

    def _context_for(self: ExecutionHandle, kind: str, name: str, step_id: str, parent: str | None,
                     value: Any, extra: dict[str, Any] | None, *, response: bool) -> dict[str, Any]:
        step = {"id": step_id, "kind": kind, "name": name, "parent_step_id": parent or ""}
        if kind != "tool" and kind != "llm":
            return self.gov.context(step=step)  # the value is not a variable of these phases
        plain = jsonable(value)
        if kind == "tool":
            return self.gov.context(step=step, tool={"name": name, ("result" if response else "args"): plain})
        return self.gov.context(step=step, llm=llm_variables(extra or {}, plain, response=response))

    def _projection(self: ExecutionHandle, kind: str, extra: dict[str, Any] | None, ctx: dict[str, Any]) -> dict[str, int]:
        if kind == "tool":
            return {"tool_calls": 1, "steps": 1}
        if kind == "llm":
            max_tokens = ctx["llm"]["max_tokens"]
            out = {"llm_calls": 1, "steps": 1, "output_tokens": max_tokens}
            cost, _ = self._price(extra, 0, max_tokens)
            if cost:
                out["cost_micros"] = cost
            return out
        return {"steps": 1}

    def _price(self: ExecutionHandle, extra: dict[str, Any] | None, input_tokens: int, output_tokens: int,
               **more: int) -> tuple[int | None, str]:
        e = extra or {}
        if not e.get("model"):
            return None, "unknown"
        table = self.gov.pinned.prices if self.gov.pinned is not None else _default_prices()
        return table.price(provider=e.get("provider"), model=e["model"], input_tokens=input_tokens,
                           output_tokens=output_tokens, **more)

    def _decide(self: ExecutionHandle, phase: str, kind: str, name: str, step_id: str, parent: str | None,
                value: Any, extra: dict[str, Any] | None) -> tuple[Decision | None, dict[str, Any] | None,
                                                                  tuple[Any, list[dict[str, str]]]]:
        """Evaluate a phase on the value as it will be recorded.

        Returns the decision (None: nothing applied), the context the rules saw, and the
        value redacted as that decision (and the secret detectors) say, with its redactions:
        what `gov.redact(value, decision)` gives, computed once.

        Rules never see secrets. When a redact rule then masks part of the value, the rules
        are evaluated once more on the masked value, and that decision is the one recorded
        (with the first pass's redact rules), so everything a rule saw is in the record and
        `execord governance simulate` reproduces it exactly. That second pass is left out
        when no rule of the phase can read the value's variable (``llm.messages``,
        ``tool.args``…, see `Policy.reads`): it would decide the same.
        """
        gov = self.gov
        response = phase.endswith(".response")
        seen, seen_hits = gov.redact(value, None)
        ctx = self._context_for(kind, name, step_id, parent, seen, extra, response=response)
        tool = name if kind == "tool" else None
        projection = None if response else self._projection(kind, extra, ctx)
        decision = gov.evaluate(phase, ctx, projection=projection, tool=tool)
        if decision is None or not decision.redact_rules:
            return decision, ctx, (seen, seen_hits)
        masked, hits = gov.redact(value, decision)
        if not hits:
            return decision, ctx, (masked, hits)
        variable, field = _VALUE_FIELD.get((kind, response), (None, None))
        if variable is None or not gov.pinned.policy.reads(phase, ctx, variable, field):  # type: ignore[union-attr]
            # No rule can read the value (the redaction changed nothing else a rule sees):
            # evaluating again would give this very decision.
            return decision, ctx, (masked, hits)
        ctx = self._context_for(kind, name, step_id, parent, masked, extra, response=response)
        again = gov.evaluate(phase, ctx, projection=projection, tool=tool)
        if again is not None:
            again.redact_rules = decision.redact_rules  # the same rules: the same redaction
        return again or decision, ctx, (masked, hits)

    # -- before the body --------------------------------------------------------------------------

    def begin_step(self: ExecutionHandle, kind: str, name: str, input_value: Any, parent: str | None,
                   extra: dict[str, Any] | None = None) -> tuple[StepHandle, Any, ApprovalWait | None]:
        """Evaluate the request phase, write step.started (+ decision), deny or ask approval.

        Returns:
            (the step, the input the body must receive (redacted), an approval to wait for).

        Raises:
            Halted: the request was denied (the step is recorded as blocked) or the execution
                was already halted.
            RecordError: the request could not be recorded; the body must not run.
        """
        # Deciding and reserving the step's counts (calls, steps, per-tool) is one atomic act:
        # two threads cannot both pass a count budget with the last slot.
        with self._writer.lock:
            self.refuse_if_halted()
            step_id = uuid7()
            gov = self.gov
            decision = ctx = None
            if gov.active:
                decision, ctx, (redacted, redactions) = self._decide(request_phase(kind), kind, name, step_id,
                                                                     parent, input_value, extra)
            else:
                redacted, redactions = gov.redact(input_value, None)
            attrs_extra = dict(extra) if extra else {}
            if redactions and decision is None:
                attrs_extra["redactions"] = redactions
            step = self.start_step(kind, name, redacted, parent, step_id, attrs_extra or None, barrier=decision is None)
            step.input = redacted
            step.request_decision = decision
            if decision is None:
                self._reserve(step, +1)
                return step, redacted, None
            waits = decision.decision == "require_approval"
            seq = self._decision_event(decision, step_id, parent, redactions, barrier=not waits, ctx=ctx)
            if decision.decision == "deny":
                self.end_step(step, blocked=True)
                raise gov.halt(seq, decision, request_phase(kind), self.id)
            self._reserve(step, +1)
            if waits:
                return step, redacted, self._request_approval(step, decision, redacted)
            return step, redacted, None

    def _reserve(self: ExecutionHandle, step: StepHandle, n: int) -> None:
        """Count (n=+1) or give back (n=-1) a step's calls before or instead of running it."""
        u = self.usage
        u.steps += n
        if step.kind == "llm":
            u.llm_calls += n
        elif step.kind == "tool":
            u.tool_calls += n
            u.per_tool[step.name] = u.per_tool.get(step.name, 0) + n

    def _request_approval(self: ExecutionHandle, step: StepHandle, decision: Decision, payload: Any) -> ApprovalWait:
        rule = decision.approval
        assert rule is not None and rule.timeout_s is not None
        approval_id = uuid7()
        expires_us = now_us() + rule.timeout_s * 1_000_000
        action = {"execution_id": self.id, "step_id": step.id, "kind": step.kind, "name": step.name,
                  "input": to_jsonable(payload)}
        self._emit(APPROVAL_REQUESTED, {
            "approval_id": approval_id, "rule_id": rule.id, "step_id": step.id, "action_digest": action_digest(action),
            "approvers": list(rule.approvers), "expires_at": format_ts(expires_us), "message": rule.message,
            "on_timeout": rule.on_timeout, "action": action,
        }, step_id=step.id, parent_step_id=step.parent_step_id, barrier=True, final_status="awaiting_approval")
        return ApprovalWait(approval_id, rule, decision.phase, step, expires_us)

    # -- waiting for a reviewer ---------------------------------------------------------------------

    def _poll_approval(self: ExecutionHandle, wait: ApprovalWait) -> dict[str, Any] | None:
        if self.cancel_request is not None:
            # Cancelled while waiting: the approval is closed (nobody can approve an action
            # that will never run), the step is blocked, and the execution stops.
            self._close_approval_on_cancel(wait)
            self.refuse_if_cancelled()
        store = self._writer.store
        if getattr(store, "remote", False):
            # Server mode: long-poll the server, which also decides the expiry.
            left = max(0.0, (wait.expires_us - now_us()) / 1e6)
            row = store.wait_approval(wait.id, min(left + 0.5, self._writer.heartbeat_s))
            if row is None and now_us() >= wait.expires_us + 2_000_000:
                try:
                    return dict(store.decide_approval(wait.id, "expired"))
                except Exception:
                    return None
            return row
        row = store.get_approval(wait.id)
        if row["status"] != "pending":
            return row
        if now_us() >= wait.expires_us:
            try:
                return store.decide_approval(wait.id, "expired", reviewer="execord:timeout",
                                             comment=f"nobody decided within {wait.rule.timeout_s}s")
            except ApprovalError:
                return store.get_approval(wait.id)  # a reviewer decided at the last moment
        return None

    def _close_approval_on_cancel(self: ExecutionHandle, wait: ApprovalWait) -> None:
        c = self.cancel_request or {}
        comment = f"the execution was cancelled by {c.get('by')}" + (f": {c['reason']}" if c.get("reason") else "")
        try:
            row = self._writer.store.decide_approval(wait.id, "expired", reviewer="execord:cancel", comment=comment)
        except Exception:  # a reviewer decided at the same moment, or the server is away
            row = {"status": "expired", "reviewer": "execord:cancel", "comment": comment}
        self._emit(APPROVAL_DECIDED, {
            "approval_id": wait.id, "decision": "expired", "reviewer": row.get("reviewer"), "comment": row.get("comment"),
        }, step_id=wait.step.id, parent_step_id=wait.step.parent_step_id, barrier=True, final_status="running")
        with self._writer.lock:
            self._reserve(wait.step, -1)
        self.end_step(wait.step, blocked=True)

    def wait_approval(self: ExecutionHandle, wait: ApprovalWait) -> Any:
        """Block until the approval is decided or expires; then resolve it (sync)."""
        while (row := self._poll_approval(wait)) is None:
            time.sleep(min(APPROVAL_POLL_S, max(0.0, (wait.expires_us - now_us()) / 1e6) + 0.01))
        return self.resolve_approval(wait, row)

    async def wait_approval_async(self: ExecutionHandle, wait: ApprovalWait) -> Any:
        """Wait without blocking the event loop until the approval is decided; resolve it."""
        if getattr(self._writer.store, "remote", False):
            while (row := await asyncio.to_thread(self._poll_approval, wait)) is None:
                pass
            return self.resolve_approval(wait, row)
        while (row := self._poll_approval(wait)) is None:
            await asyncio.sleep(min(APPROVAL_POLL_S, max(0.0, (wait.expires_us - now_us()) / 1e6) + 0.01))
        return self.resolve_approval(wait, row)

    def resolve_approval(self: ExecutionHandle, wait: ApprovalWait, row: dict[str, Any]) -> None:
        """Record approval.decided; on anything but a go-ahead, block the step and halt."""
        decision = row["status"]
        e = self._emit(APPROVAL_DECIDED, {
            "approval_id": wait.id, "decision": decision, "reviewer": row["reviewer"], "comment": row["comment"],
        }, step_id=wait.step.id, parent_step_id=wait.step.parent_step_id, barrier=True, final_status="running")
        if decision == "approved" or (decision == "expired" and wait.rule.on_timeout == "approve"):
            return
        with self._writer.lock:
            self._reserve(wait.step, -1)  # the action never ran
        self.end_step(wait.step, blocked=True)
        reason = "approval_rejected" if decision == "rejected" else "approval_expired"
        exc = Halted(
            f"execord halted execution {self.id}: approval {wait.id} for rule {wait.rule.id} was {decision}"
            + (f" by {row['reviewer']}" if decision == "rejected" else ""),
            reason=reason, rule_id=wait.rule.id, seq=e.seq, phase=wait.phase, execution_id=self.id,
        )
        if self.gov.halted is None:
            self.gov.halted = exc
        raise exc

    # -- after the body -----------------------------------------------------------------------------

    def finish_step(self: ExecutionHandle, step: StepHandle, result: Any = None, *, extra: dict[str, Any] | None = None) -> Any:
        """Count the step, price it, evaluate the response phase and write step.ended.

        Returns:
            What the workflow receives: the (redacted) result.

        Raises:
            Halted: the response phase denied (the step is recorded as blocked).
        """
        output = step.output if step.has_output else result
        if step.kind == "llm" and step.usage is not None and step.cost_micros is None and step.price_source is None:
            u = step.usage
            cost, source = self._price(extra, u["input_tokens"], u["output_tokens"],
                                       cached_input_tokens=u["cached_input_tokens"],
                                       reasoning_tokens=u["reasoning_tokens"])
            step.cost_micros, step.price_source = cost, source
        self._count(step)
        gov = self.gov
        decision = ctx = None
        if gov.active:
            decision, ctx, (redacted, redactions) = self._decide(response_phase(step.kind), step.kind, step.name,
                                                                 step.id, step.parent_step_id, output, extra)
        else:
            redacted, redactions = gov.redact(output, None)
        if decision is not None:
            seq = self._decision_event(decision, step.id, step.parent_step_id, redactions, barrier=False, ctx=ctx)
            if decision.decision == "deny":
                self.end_step(step, blocked=True, counted=True)
                raise gov.halt(seq, decision, response_phase(step.kind), self.id)
        step.output, step.has_output = redacted, True
        self.end_step(step, counted=True, redactions=redactions if decision is None else None)
        return redacted


_PRICES: Any = None


def _default_prices() -> Any:
    global _PRICES
    if _PRICES is None:
        from ..governance._prices import default_table

        _PRICES = default_table()
    return _PRICES


__all__ = ["STEP_ENDED", "STEP_STARTED", "ApprovalWait", "GovernedSteps", "request_phase", "response_phase"]
