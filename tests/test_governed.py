"""Governance in the running agent (issue #3, points 3-9), against real SQLite stores.

Where two sides meet they are real processes: the reviewer who approves or rejects is the
``execord`` command in a child process, polling ``execord approvals list`` until the request
appears; ``execord governance apply`` and ``simulate`` run in child processes too. The agent
side runs in this process (in a thread when a sync workflow must wait for a reviewer).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    AGENT,
    Ticker,
    approval_events,
    assert_one_line_error,
    at_seq,
    cli_json,
    decisions,
    events,
    files_bytes,
    only,
    types,
    wait_for_pending,
    write,
)

import execord
from execord.governance import _engine as policy_engine
from execord.governance import build_version, load_spec
from execord.runtime._governed import action_digest
from execord.store import blob_value, steps_from_events

pytestmark = pytest.mark.slow

EMAIL = "dana.whitfield@example.org"
EMAIL_2 = "ops-escalations@example.net"
CARD = "4111 1111 1111 1111"
CARD_2 = "5500-0000-0000-0004"
API_KEY = "sk-proj-" + "Zq7Xw2Lm9Np4Rt6Vy8Bc3Df5Gh1Jk0" * 2  # assembled, so no scanner flags this file
BEARER = "Bearer " + "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJkYW5hIn0" + ".c2lnbmF0dXJlLXZhbHVl"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], Any]], Future[Any]]]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield lambda fn: pool.submit(fn)
    pool.shutdown(wait=True, cancel_futures=True)


# -- deny -------------------------------------------------------------------------------------

DENY = """
version: 1
policies:
  - id: no-shell
    on: [tool.request]
    when: tool.name == "shell" && !("ops" in agent.roles)
    effect: deny
    message: Only ops agents may run shell commands.
  - id: no-account-deletion
    on: [tool.request]
    when: tool.name == "delete_account"
    effect: deny
"""


def _assert_denied_record(store: Any, ran: list[Any], first: execord.Halted, later: list[execord.Halted]) -> None:
    row = only(store)
    assert ran == [("lookup", 1)]
    assert isinstance(first, execord.GovernanceError)
    assert (first.reason, first.rule_id, first.budget_id, first.phase) == ("policy", "no-shell", None, "tool.request")
    assert first.execution_id == row["id"]
    decision = at_seq(store, row["id"], first.seq)  # type: ignore[arg-type]
    assert decision.type == "governance.decision"
    assert (decision.attrs["decision"], decision.attrs["phase"]) == ("deny", "tool.request")
    assert {"id": "no-shell", "effect": "deny", "matched": True,
            "message": "Only ops agents may run shell commands."} in decision.attrs["rules"]
    # Every later action is refused with the first constraint, and records nothing.
    for h in later:
        assert (h.reason, h.rule_id, h.seq, h.phase) == ("policy", "no-shell", first.seq, "tool.request")
    assert types(store, row["id"]) == [
        "execution.started", "step.started", "step.ended",                      # lookup: no rule applies to it
        "step.started", "governance.decision", "step.ended",                    # shell: denied
        "execution.ended",
    ]
    shell = steps_from_events(events(store, row["id"]))[1]
    assert (shell["name"], shell["status"], shell["output"], shell["step_id"]) == (
        "shell", "blocked", None, decision.step_id)
    halt = {"reason": "policy", "rule_id": "no-shell", "budget_id": None, "seq": first.seq, "phase": "tool.request"}
    assert (row["status"], row["halt"], row["failure_class"]) == ("halted", halt, "policy_block")
    assert events(store, row["id"])[-1].attrs["halt"] == halt


def test_a_denied_tool_never_runs_and_every_later_action_is_refused(governed: Any, store: Any) -> None:
    governed(DENY)
    ran: list[Any] = []

    @execord.tool
    def lookup(order: int) -> str:
        ran.append(("lookup", order))
        return "shipped"

    @execord.tool
    def shell(cmd: str) -> str:
        ran.append(("shell", cmd))
        return ""

    @execord.tool
    def delete_account(user: str) -> None:
        ran.append(("delete_account", user))

    refused: list[execord.Halted] = []

    @execord.workflow(name="support")
    def support() -> str:
        lookup(1)
        with pytest.raises(execord.Halted) as first:
            shell("rm -rf /")
        for action in (lambda: delete_account("dana"), lambda: lookup(2)):
            with pytest.raises(execord.Halted) as later:
                action()
            refused.append(later.value)
        with pytest.raises(execord.Halted) as in_step:
            with execord.step("summarize"):
                ran.append(("summarize",))
        refused.append(in_step.value)
        refused.insert(0, first.value)
        return "carried on"

    assert support() == "carried on"
    _assert_denied_record(store, ran, refused[0], refused[1:])


async def test_a_denied_async_tool_never_runs_and_every_later_action_is_refused(governed: Any, store: Any) -> None:
    governed(DENY)
    ran: list[Any] = []

    @execord.tool
    async def lookup(order: int) -> str:
        ran.append(("lookup", order))
        return "shipped"

    @execord.tool
    async def shell(cmd: str) -> str:
        ran.append(("shell", cmd))
        return ""

    @execord.tool
    async def delete_account(user: str) -> None:
        ran.append(("delete_account", user))

    refused: list[execord.Halted] = []

    @execord.workflow(name="support")
    async def support() -> None:
        await lookup(1)
        try:
            await shell("rm -rf /")
        except execord.Halted as exc:
            refused.append(exc)
        for action in (lambda: delete_account("dana"), lambda: lookup(2)):
            with pytest.raises(execord.Halted) as later:
                await action()
            refused.append(later.value)
        async with execord.step("summarize"):
            ran.append(("summarize",))  # pragma: no cover - must not run

    # Not caught at the end: the Halted of the refused step leaves the workflow.
    with pytest.raises(execord.Halted) as out:
        await support()
    refused.append(out.value)
    _assert_denied_record(store, ran, refused[0], refused[1:])


def test_a_response_deny_withholds_what_the_tool_returned(governed: Any, store: Any, tmp_path: Path) -> None:
    governed("""
        version: 1
        policies:
          - id: no-bulk-export
            on: [tool.response]
            when: tool.name == "export_customers" && size(tool.result) > 2
            effect: deny
    """)
    calls: list[int] = []

    @execord.tool
    def export_customers(limit: int) -> list[str]:
        calls.append(limit)
        return [f"customer-{i}" for i in range(limit)]

    @execord.workflow
    def export() -> list[str]:
        small = export_customers(2)
        return small + export_customers(500)

    with pytest.raises(execord.Halted) as info:
        export()
    assert calls == [2, 500]  # it ran: a response phase judges what came back
    h = info.value
    assert (h.reason, h.rule_id, h.phase) == ("policy", "no-bulk-export", "tool.response")
    row = only(store)
    small, big = steps_from_events(events(store, row["id"]))
    assert small["status"] == "ok" and blob_value(store, small["output"]) == ["customer-0", "customer-1"]
    assert (big["status"], big["output"]) == ("blocked", None)
    d = at_seq(store, row["id"], h.seq)  # type: ignore[arg-type]
    assert (d.attrs["decision"], d.attrs["phase"], d.step_id) == ("deny", "tool.response", big["step_id"])
    assert row["status"] == "halted" and row["halt"]["phase"] == "tool.response"
    execord.shutdown()
    store.close()
    assert b"customer-499" not in files_bytes(tmp_path)


def test_an_erroring_expression_is_recorded_as_a_deny(governed: Any, store: Any) -> None:
    governed("""
        version: 1
        policies:
          - id: big-refunds-need-approval
            on: [tool.request]
            when: tool.name == "issue_refund" && tool.args.amount > 1000
            effect: require_approval
            approvers: [finance]
    """)
    ran = []

    @execord.tool
    def issue_refund(order: str, amount: int | None = None) -> None:
        ran.append(order)

    @execord.workflow
    def refund() -> None:
        issue_refund("A-1")  # no `amount`: the expression cannot be evaluated

    with pytest.raises(execord.Halted) as info:
        refund()
    assert ran == []
    h = info.value
    assert (h.reason, h.rule_id, h.phase) == ("policy", "big-refunds-need-approval", "tool.request")
    row = only(store)
    d = at_seq(store, row["id"], h.seq)  # type: ignore[arg-type]
    assert d.attrs["decision"] == "deny"
    (r,) = d.attrs["rules"]
    assert (r["id"], r["effect"], r["matched"]) == ("big-refunds-need-approval", "deny", True)
    assert "fail closed" in r["message"]
    assert row["status"] == "halted" and row["halt"]["rule_id"] == "big-refunds-need-approval"
    assert store.list_approvals(status=None) == []


# -- admission --------------------------------------------------------------------------------

ADMISSION = """
version: 1
policies:
  - id: no-night-batch
    on: [admission]
    when: workflow.name == "bulk-delete" || ("env" in labels && labels.env == "frozen")
    effect: deny
    message: Bulk deletion is not allowed.
"""


def _assert_admission_denied(store: Any, h: execord.Halted, body_ran: list[bool]) -> None:
    assert body_ran == []
    row = only(store)
    assert (h.reason, h.rule_id, h.seq, h.phase, h.execution_id) == ("policy", "no-night-batch", 1, "admission",
                                                                      row["id"])
    assert types(store, row["id"]) == ["execution.started", "governance.decision", "execution.ended"]
    assert row["status"] == "halted" and row["failure_class"] == "policy_block" and row["sealed"] is True
    assert row["totals"]["steps"] == 0 and steps_from_events(events(store, row["id"])) == []
    assert row["halt"] == {"reason": "policy", "rule_id": "no-night-batch", "budget_id": None, "seq": 1,
                           "phase": "admission"}


def test_admission_denial_is_a_halted_execution_with_zero_steps(governed: Any, store: Any) -> None:
    governed(ADMISSION)
    body_ran: list[bool] = []

    @execord.workflow(name="bulk-delete")
    def bulk_delete() -> None:
        body_ran.append(True)

    with pytest.raises(execord.Halted) as info:
        bulk_delete()
    _assert_admission_denied(store, info.value, body_ran)


async def test_async_admission_denial_is_a_halted_execution_with_zero_steps(governed: Any, store: Any) -> None:
    governed(ADMISSION)
    body_ran: list[bool] = []

    with pytest.raises(execord.Halted) as info:
        async with execord.execution("nightly", labels={"env": "frozen"}):
            body_ran.append(True)
    _assert_admission_denied(store, info.value, body_ran)


# -- redaction --------------------------------------------------------------------------------

REDACT = """
version: 1
policies:
  - id: mask-contact-data
    on: [admission, tool.request, tool.response]
    effect: redact
    detectors: [email, payment_card]
"""
RAW = (EMAIL, EMAIL_2, CARD, CARD_2, CARD.replace(" ", ""), CARD_2.replace("-", ""))


def _assert_redacted_record(store: Any, db_root: Path, received: list[dict[str, Any]], answer: Any) -> None:
    # What the tool received, and what the workflow got back.
    assert received == [{"email": "[REDACTED:email]", "card": "[REDACTED:payment_card]", "amount": 42}]
    assert answer == {"escalate_to": "[REDACTED:email]", "card_on_file": "[REDACTED:payment_card]", "tier": "gold"}
    row = only(store)
    evs = events(store, row["id"])
    assert blob_value(store, evs[0].attrs["inputs"]) == {"customer": "[REDACTED:email]"}
    charge, profile = steps_from_events(evs)
    assert blob_value(store, charge["input"]) == received[0]
    assert blob_value(store, profile["output"]) == answer
    by_phase = {(d.attrs["phase"], d.step_id): d.attrs for d in decisions(store, row["id"])}
    assert by_phase[("admission", None)]["redactions"] == [{"path": "customer", "detector": "email"}]
    request = by_phase[("tool.request", charge["step_id"])]
    assert request["decision"] == "redact"
    assert sorted(request["redactions"], key=lambda r: r["path"]) == [
        {"path": "card", "detector": "payment_card"}, {"path": "email", "detector": "email"}]
    response = by_phase[("tool.response", profile["step_id"])]
    assert sorted(response["redactions"], key=lambda r: r["path"]) == [
        {"path": "card_on_file", "detector": "payment_card"}, {"path": "escalate_to", "detector": "email"}]
    assert row["status"] == "succeeded"
    # The raw values are nowhere in the database files; the markers are (the scan works).
    execord.shutdown()
    store.close()
    data = files_bytes(db_root)
    assert b"[REDACTED:email]" in data and b"[REDACTED:payment_card]" in data
    for raw in RAW:
        assert raw.encode() not in data, raw


def test_redaction_what_the_tool_receives_and_what_is_stored(governed: Any, store: Any, tmp_path: Path) -> None:
    governed(REDACT)
    received: list[dict[str, Any]] = []

    @execord.tool
    def charge(email: str, card: str, amount: int) -> str:
        received.append({"email": email, "card": card, "amount": amount})
        return "charged"

    @execord.tool
    def customer_profile(customer_id: int) -> dict[str, str]:
        return {"escalate_to": EMAIL_2, "card_on_file": CARD_2, "tier": "gold"}

    @execord.workflow(name="billing")
    def billing(customer: str) -> str:
        charge(customer, CARD, 42)
        seen.append(customer_profile(7))
        return "done"

    seen: list[Any] = []
    assert billing(customer=EMAIL) == "done"
    assert execord.flush(5)
    _assert_redacted_record(store, tmp_path, received, seen[0])


async def test_async_redaction_what_the_tool_receives_and_what_is_stored(governed: Any, store: Any,
                                                                        tmp_path: Path) -> None:
    governed(REDACT)
    received: list[dict[str, Any]] = []

    @execord.tool
    async def charge(email: str, card: str, amount: int) -> str:
        received.append({"email": email, "card": card, "amount": amount})
        return "charged"

    @execord.tool
    async def customer_profile(customer_id: int) -> dict[str, str]:
        return {"escalate_to": EMAIL_2, "card_on_file": CARD_2, "tier": "gold"}

    seen: list[Any] = []

    @execord.workflow(name="billing")
    async def billing(customer: str) -> str:
        await charge(customer, CARD, 42)
        seen.append(await customer_profile(7))
        return "done"

    assert await billing(customer=EMAIL) == "done"
    assert execord.flush(5)
    _assert_redacted_record(store, tmp_path, received, seen[0])


def test_a_denied_actions_input_is_still_redacted_in_the_record(governed: Any, store: Any, tmp_path: Path) -> None:
    governed(REDACT + """
  - id: no-external-mail
    on: [tool.request]
    when: tool.name == "send_mail" && !tool.args.to.endsWith("@corp.example")
    effect: deny
""")

    @execord.tool
    def send_mail(to: str) -> None:
        pass  # pragma: no cover - denied

    @execord.workflow
    def notify() -> None:
        send_mail(EMAIL)

    with pytest.raises(execord.Halted):
        notify()
    execord.shutdown()
    store.close()
    assert EMAIL.encode() not in files_bytes(tmp_path)


def test_a_redact_rule_at_end_redacts_the_executions_output(governed: Any, store: Any, tmp_path: Path) -> None:
    governed("""
        version: 1
        policies:
          - id: mask-output
            on: [end]
            effect: redact
            detectors: [email]
    """)

    @execord.workflow
    def find_contact() -> dict[str, str]:
        return {"contact": EMAIL}

    find_contact()
    row = only(store)
    assert blob_value(store, events(store, row["id"])[-1].attrs["output"]) == {"contact": "[REDACTED:email]"}
    execord.shutdown()
    store.close()
    assert EMAIL.encode() not in files_bytes(tmp_path)


def test_secrets_are_redacted_with_no_governance_file(db_path: str, store: Any, tmp_path: Path) -> None:
    assert not (tmp_path / "execord.yaml").exists()
    execord.init(agent=AGENT, db=db_path)

    @execord.tool
    def call_api(url: str, api_key: str) -> dict[str, str]:
        return {"echo": f"used {api_key}"}

    @execord.workflow
    def integrate(headers: dict[str, str]) -> str:
        call_api("https://api.example.org/v1", API_KEY)
        return "ok"

    assert integrate({"Authorization": BEARER}) == "ok"
    assert execord.flush(5)
    row = only(store)
    assert row["governance_version"] is None
    evs = events(store, row["id"])
    assert [e.type for e in evs] == ["execution.started", "step.started", "step.ended", "execution.ended"]
    assert blob_value(store, evs[0].attrs["inputs"]) == {"headers": {"Authorization": "Bearer [REDACTED:bearer_token]"}}
    step = steps_from_events(evs)[0]
    assert blob_value(store, step["input"]) == {"url": "https://api.example.org/v1", "api_key": "[REDACTED:api_key]"}
    assert "[REDACTED:api_key]" in blob_value(store, step["output"])["echo"]
    execord.shutdown()
    store.close()
    data = files_bytes(tmp_path)
    assert b"[REDACTED:api_key]" in data
    assert API_KEY.encode() not in data and BEARER.split()[1].encode() not in data


# -- approvals, with the reviewer in another process ----------------------------------------

APPROVALS = """
version: 1
policies:
  - id: big-refunds-need-approval
    on: [tool.request]
    when: tool.name == "issue_refund" && tool.args.amount > 1000
    effect: require_approval
    approvers: [finance]
    timeout: 60s
    message: Refunds over 1000 need finance.
  - id: wires-time-out
    on: [tool.request]
    when: tool.name == "wire_transfer"
    effect: require_approval
    approvers: [treasury]
    timeout: 2s
    on_timeout: reject
  - id: notes-time-out-open
    on: [step.request]
    when: step.name == "post-note"
    effect: require_approval
    approvers: [support-leads]
    timeout: 1s
    on_timeout: approve
"""


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_approval_decided_by_a_reviewer_in_another_process(governed: Any, store: Any, cli: Any, in_thread: Any,
                                                           verdict: str) -> None:
    governed(APPROVALS)
    ran: list[int] = []

    @execord.tool
    def issue_refund(order: str, amount: int) -> str:
        ran.append(amount)
        return "refunded"

    @execord.workflow(name="refunds")
    def refunds() -> str:
        return str(issue_refund("A-7", 5000))

    future = in_thread(refunds)
    pending = wait_for_pending(cli)
    # While it waits: the execution is awaiting_approval, for the exact action recorded.
    row = only(store)
    assert (row["status"], row["failure_class"]) == ("awaiting_approval", "approval_pending")
    assert pending["execution_id"] == row["id"] and pending["rule_id"] == "big-refunds-need-approval"
    assert pending["approvers"] == ["finance"] and pending["message"] == "Refunds over 1000 need finance."
    assert pending["action"]["input"] == {"order": "A-7", "amount": 5000}
    assert pending["action_digest"] == action_digest(pending["action"])
    assert ran == [] and not future.done()

    r = cli("approvals", verdict, pending["id"][:13], "--reviewer", "alice", "--comment", "checked with the customer")
    assert r.returncode == 0, r.stderr
    if verdict == "approve":
        assert future.result(timeout=30) == "refunded"
        assert ran == [5000]
    else:
        with pytest.raises(execord.Halted) as info:
            future.result(timeout=30)
        assert ran == []
    row = only(store)
    req, dec = approval_events(store, row["id"])
    expected = "approved" if verdict == "approve" else "rejected"
    assert dec.attrs == {"approval_id": pending["id"], "decision": expected, "reviewer": "alice",
                         "comment": "checked with the customer"}
    assert req.attrs["action_digest"] == pending["action_digest"] and req.seq < dec.seq
    step = steps_from_events(events(store, row["id"]))[0]
    if verdict == "approve":
        assert (row["status"], row["failure_class"], step["status"]) == ("succeeded", None, "ok")
    else:
        h = info.value
        assert (h.reason, h.rule_id, h.seq, h.phase) == ("approval_rejected", "big-refunds-need-approval", dec.seq,
                                                         "tool.request")
        assert (row["status"], row["failure_class"], step["status"]) == ("halted", "approval", "blocked")
        assert row["halt"] == {"reason": "approval_rejected", "rule_id": "big-refunds-need-approval",
                               "budget_id": None, "seq": dec.seq, "phase": "tool.request"}
    # Deciding twice is a clear one-line error.
    again = cli("approvals", "approve", pending["id"])
    assert_one_line_error(again, pending["id"], f"already decided: {expected}")
    assert cli_json(cli, "approvals", "list") == []


@pytest.mark.parametrize(("rule", "on_timeout"), [("wires-time-out", "reject"), ("notes-time-out-open", "approve")])
def test_approval_timeout(governed: Any, store: Any, cli: Any, rule: str, on_timeout: str) -> None:
    governed(APPROVALS)
    ran: list[str] = []

    @execord.tool
    def wire_transfer(iban: str) -> None:
        ran.append("wire")

    @execord.workflow(name="payouts")
    def payouts() -> None:
        if rule == "wires-time-out":
            wire_transfer("DE89 3704")
        else:
            with execord.step("post-note", input={"text": "refund on its way"}):
                ran.append("note")

    started = time.monotonic()
    if on_timeout == "reject":
        with pytest.raises(execord.Halted) as info:
            payouts()
    else:
        payouts()
    waited = time.monotonic() - started
    row = only(store)
    req, dec = approval_events(store, row["id"])
    assert dec.attrs["decision"] == "expired" and dec.attrs["reviewer"] == "execord:timeout"
    assert waited >= (2 if rule == "wires-time-out" else 1) - 0.05
    if on_timeout == "reject":
        h = info.value
        assert (h.reason, h.rule_id, h.seq, h.phase) == ("approval_expired", rule, dec.seq, "tool.request")
        assert ran == [] and (row["status"], row["failure_class"]) == ("halted", "approval")
        assert row["halt"]["reason"] == "approval_expired"
    else:
        assert ran == ["note"] and row["status"] == "succeeded"
    # A reviewer who comes too late gets a clear one-line error.
    late = cli("approvals", "approve", req.attrs["approval_id"], "--comment", "sorry, was at lunch")
    assert_one_line_error(late, req.attrs["approval_id"], "expired")


@pytest.mark.parametrize("verdict", ["approve", "reject"])
async def test_async_tool_awaits_approval_while_other_tasks_run(governed: Any, store: Any, db_path: str,
                                                                verdict: str) -> None:
    governed(APPROVALS)
    ran: list[int] = []
    tick = Ticker()

    @execord.tool
    async def issue_refund(order: str, amount: int) -> str:
        ran.append(amount)
        return "refunded"

    @execord.workflow(name="refunds")
    async def refunds() -> str:
        try:
            return str(await issue_refund("A-8", 2500))
        finally:
            tick.done.set()


    results = await asyncio.gather(refunds(), tick.run(), tick.review(db_path, verdict), return_exceptions=True)
    outcome, _, (ticks_at_request, ticks_at_decision) = results
    # The event loop kept running while the tool waited: the ticker advanced throughout.
    assert ticks_at_request > 5 and ticks_at_decision > ticks_at_request
    row = only(store)
    _, dec = approval_events(store, row["id"])
    assert dec.attrs["reviewer"] == "bob"
    if verdict == "approve":
        assert outcome == "refunded" and ran == [2500] and row["status"] == "succeeded"
    else:
        assert isinstance(outcome, execord.Halted) and outcome.reason == "approval_rejected"
        assert ran == [] and (row["status"], row["failure_class"]) == ("halted", "approval")


# -- budgets ----------------------------------------------------------------------------------

# (id, budget lines under `execution:`, budget id, phase, lookups run, model calls made)
BUDGET_CASES = [
    ("tool-calls", "tool_calls: 3", "execution.tool_calls", "tool.request", 3, 3),
    ("per-tool", "per_tool: {lookup: 2}", "execution.per_tool.lookup", "tool.request", 2, 2),
    ("llm-calls", "llm_calls: 2", "execution.llm_calls", "llm.request", 3, 2),
    # 800 tokens a call, 300 more projected from max_tokens: the 4th request would reach 2700.
    ("total-tokens-projected", "total_tokens: 2500", "execution.total_tokens", "llm.request", 4, 3),
    # gpt-4o: 4250 micro-USD a call, 3000 more projected: the 3rd request would reach 11500.
    ("cost-projected", "cost_usd: 0.01", "execution.cost_usd", "llm.request", 3, 2),
    # Input tokens cannot be projected: the 3rd call lands at 1500 and is stopped after it.
    ("input-tokens-landed", "input_tokens: 1200", "execution.input_tokens", "llm.response", 3, 3),
]


@pytest.mark.parametrize(("limits", "budget_id", "phase", "lookups", "model_calls"),
                         [pytest.param(*c[1:], id=c[0]) for c in BUDGET_CASES])
def test_a_budget_halts_at_the_same_seq_in_identical_runs(governed: Any, store: Any, limits: str, budget_id: str,
                                                          phase: str, lookups: int, model_calls: int) -> None:
    governed(f"""
        version: 1
        budgets:
          execution:
            {limits}
    """)
    ran: list[str] = []

    @execord.tool
    def lookup(i: int) -> int:
        ran.append("lookup")
        return i

    @execord.workflow(name="research")
    def research() -> None:
        for i in range(6):
            lookup(i)
            with execord.step("draft", kind="llm", provider="openai", model="gpt-4o",
                              params={"max_tokens": 300}) as s:
                ran.append("model")
                s.record_usage(input_tokens=500, output_tokens=300)

    halts = []
    for _ in range(2):
        ran.clear()
        with pytest.raises(execord.Halted) as info:
            research()
        halts.append(info.value)
        assert (ran.count("lookup"), ran.count("model")) == (lookups, model_calls)
    rows = store.list_executions()
    assert len(rows) == 2
    a, b = halts
    assert (a.reason, a.budget_id, a.rule_id, a.phase) == ("budget", budget_id, None, phase)
    assert (b.reason, b.budget_id, b.seq, b.phase) == (a.reason, a.budget_id, a.seq, a.phase)
    assert types(store, rows[0]["id"]) == types(store, rows[1]["id"])
    for row in rows:
        assert row["halt"] == {"reason": "budget", "rule_id": None, "budget_id": budget_id, "seq": a.seq,
                               "phase": phase}
        d = at_seq(store, row["id"], a.seq)
        assert d.type == "governance.decision" and d.attrs["decision"] == "deny" and d.attrs["phase"] == phase
        assert [b["id"] for b in d.attrs["budgets"] if not b["ok"]] == [budget_id]
        assert row["failure_class"] == "policy_block"


def test_a_window_count_budget_stops_the_call_that_would_exceed_it(governed: Any, store: Any) -> None:
    governed("""
        version: 1
        budgets:
          windows:
            - id: daily-lookups
              scope: workflow
              period: day
              tool_calls: 2
    """)
    ran: list[int] = []

    @execord.tool
    def lookup(i: int) -> None:
        ran.append(i)

    @execord.workflow(name="research")
    def research() -> None:
        for i in range(5):
            lookup(i)

    with pytest.raises(execord.Halted):
        research()
    assert len(ran) == 2


def test_a_window_budget_is_checked_at_admission_across_executions(governed: Any, store: Any) -> None:
    governed("""
        version: 1
        budgets:
          windows:
            - id: daily-spend
              scope: workflow
              match: {workflow: research}
              period: day
              cost_usd: 0.006
    """)

    @execord.workflow(name="research")
    def research() -> None:
        with execord.step("draft", kind="llm", provider="openai", model="gpt-4o") as s:
            s.record_usage(input_tokens=500, output_tokens=300)  # 4250 micro-USD

    @execord.workflow(name="other")
    def other() -> None:
        with execord.step("draft", kind="llm", provider="openai", model="gpt-4o") as s:
            s.record_usage(input_tokens=500, output_tokens=300)

    research()  # 4250 of 6000 used
    other()     # another workflow: not in the window
    with pytest.raises(execord.Halted) as landed:
        research()  # lands at 8500: stopped after the call
    assert (landed.value.budget_id, landed.value.phase) == ("daily-spend", "llm.response")
    with pytest.raises(execord.Halted) as admitted:
        research()  # the window is spent: refused before it starts
    assert (admitted.value.budget_id, admitted.value.phase, admitted.value.seq) == ("daily-spend", "admission", 1)
    statuses = [r["status"] for r in reversed(store.list_executions())]
    assert statuses == ["succeeded", "succeeded", "halted", "halted"]


# -- versions ---------------------------------------------------------------------------------

PINNED = """
version: 1
policies:
  - id: watch-lookups
    on: [tool.request]
    when: tool.name == "lookup"
    effect: warn
    message: {message}
"""


def test_every_decision_names_the_version_pinned_at_the_start(governed: Any, store: Any, cli: Any,
                                                              tmp_path: Path) -> None:
    engine = governed(PINNED.format(message="v1"))
    v1 = build_version(load_spec(engine.settings["governance"]))[0].id
    v2_file = write(tmp_path / "v2.yaml", PINNED.format(message="v2"))
    v2 = build_version(load_spec(v2_file))[0].id
    assert v1 != v2

    @execord.tool
    def lookup(i: int) -> int:
        return i

    with execord.execution("support") as first:
        lookup(1)
        applied = cli_json(cli, "governance", "apply", str(v2_file), "--by", "carol")  # another process, mid-run
        assert (applied["version"], applied["activated"], applied["from_version"]) == (v2, True, v1)
        lookup(2)
    with execord.execution("support") as second:
        lookup(3)
    for handle, version, message in ((first, v1, "v1"), (second, v2, "v2")):
        evs = events(store, handle.id)
        assert evs[0].attrs["governance_version"] == version
        ds = decisions(store, handle.id)
        assert len(ds) == (2 if handle is first else 1)
        for d in ds:
            assert d.attrs["governance_version"] == version
            assert d.attrs["rules"][0]["message"] == message and d.attrs["decision"] == "warn"
        assert store.get_execution(handle.id)["governance_version"] == version
        assert store.get_seal(handle.id)["governance_version"] == version


def test_registering_the_same_file_twice_is_one_version_and_one_activation(db_path: str, tmp_path: Path,
                                                                           store: Any, cli: Any) -> None:
    path = write(tmp_path / "execord.yaml", DENY)
    version = build_version(load_spec(path))[0].id
    for _ in range(2):  # two agent processes' worth of recorders, then an operator
        engine = execord.Execord(agent=AGENT, db=db_path, governance=str(path))
        with engine.execution("support") as ex:
            pass
        engine.close()
        assert store.get_execution(ex.id)["governance_version"] == version
    applied = cli_json(cli, "governance", "apply", str(path))
    assert (applied["version"], applied["created"], applied["activated"]) == (version, False, False)
    history = cli_json(cli, "governance", "history")
    assert [(h["seq"], h["from_version"], h["to_version"]) for h in history] == [(1, None, version)]
    assert [v["id"] for v in store.list_governance_versions()] == [version]


# -- simulation -------------------------------------------------------------------------------

LENIENT = """
version: 1
policies:
  - id: huge-refunds
    on: [tool.request]
    when: tool.name == "issue_refund" && tool.args.amount > 100000
    effect: deny
  - id: watch-lookups
    on: [tool.request]
    when: tool.name == "lookup"
    effect: warn
budgets:
  execution:
    tool_calls: 10
"""
STRICTER = LENIENT.replace("tool.args.amount > 100000", "tool.args.amount > 1000")


def _refund_runs(amounts: list[int]) -> dict[int, str]:
    @execord.tool
    def lookup(order: str) -> str:
        return "delivered"

    @execord.tool
    def issue_refund(order: str, amount: int) -> str:
        return "refunded"

    ids = {}
    for amount in amounts:
        with execord.execution("refunds", inputs={"amount": amount}) as ex:
            lookup("A-1")
            issue_refund("A-1", amount)
        ids[amount] = ex.id
    return ids


def test_simulate_finds_the_executions_a_stricter_rule_would_have_stopped(governed: Any, store: Any, cli: Any,
                                                                         tmp_path: Path) -> None:
    governed(LENIENT)
    ids = _refund_runs([50, 5000, 20, 9000, 1000])
    assert execord.flush(5)
    stricter = write(tmp_path / "stricter.yaml", STRICTER)
    before = [(r["id"], r["status"], len(events(store, r["id"]))) for r in store.list_executions()]

    report = cli_json(cli, "governance", "simulate", str(stricter))
    assert report["executions"] == 5 and report["integrity_problems"] == []
    # admission, lookup and refund requests: three decisions per execution
    assert report["decisions"] == 15
    changed = {(c["execution_id"], c["phase"], c["step"], c["recorded"], c["candidate"], c["rule"])
               for c in report["changes"]}
    assert changed == {(ids[a], "tool.request", "issue_refund", "allow", "deny", "huge-refunds") for a in (5000, 9000)}
    for c in report["changes"]:
        d = at_seq(store, c["execution_id"], c["seq"])
        assert d.type == "governance.decision" and d.attrs["decision"] == "allow"
    # The same file reproduces every recorded decision, and nothing was written.
    same = cli_json(cli, "governance", "simulate", str(tmp_path / "governance.yaml"))
    assert same["changes"] == [] and same["integrity_problems"] == [] and same["decisions"] == 15
    assert [(r["id"], r["status"], len(events(store, r["id"]))) for r in store.list_executions()] == before


def test_simulate_reports_a_decision_its_own_version_does_not_reproduce(governed: Any, store: Any, cli: Any,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # An engine that lies once: the lookup of order "B-2" is recorded as `warn` where the
    # version says `allow`.
    governed(LENIENT.replace("effect: warn", "effect: allow"))
    real = policy_engine.Policy.evaluate

    def flipping(self: Any, phase: str, context: Any, **kw: Any) -> Any:
        d = real(self, phase, context, **kw)
        if phase == "tool.request" and (context["tool"]["args"] or {}).get("order") == "B-2":
            d.decision = "warn"
        return d

    monkeypatch.setattr(policy_engine.Policy, "evaluate", flipping)

    @execord.tool
    def lookup(order: str) -> str:
        return "delivered"

    for order in ("B-1", "B-2", "B-3"):
        with execord.execution("orders") as ex:
            lookup(order)
        if order == "B-2":
            flipped = ex.id
    assert execord.flush(5)
    r = cli("governance", "simulate", str(tmp_path / "governance.yaml"), "--format", "json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(p["execution_id"], p["phase"], p["recorded"], p["candidate"]) for p in report["integrity_problems"]] == [
        (flipped, "tool.request", "warn", "allow")]


def test_simulate_reproduces_a_projected_cost_budget_halt(governed: Any, store: Any, cli: Any, tmp_path: Path) -> None:
    governed("version: 1\nbudgets:\n  execution:\n    cost_usd: 0.01\n")

    @execord.workflow
    def drafts() -> None:
        for _ in range(5):
            with execord.step("draft", kind="llm", provider="openai", model="gpt-4o", params={"max_tokens": 300}) as s:
                s.record_usage(input_tokens=500, output_tokens=300)

    with pytest.raises(execord.Halted):
        drafts()
    assert execord.flush(5)
    report = cli_json(cli, "governance", "simulate", str(tmp_path / "governance.yaml"))
    assert report["integrity_problems"] == []


def test_simulate_reproduces_a_rule_that_reads_a_redacted_value(governed: Any, store: Any, cli: Any,
                                                                tmp_path: Path) -> None:
    governed(REDACT + """
  - id: watch-external-mail
    on: [tool.request]
    when: tool.name == "send_mail" && !tool.args.to.endsWith("@corp.example")
    effect: warn
""")

    @execord.tool
    def send_mail(to: str) -> None:
        pass

    @execord.workflow
    def notify() -> None:
        send_mail("dana@corp.example")  # internal: the rule does not match what it saw

    notify()
    assert execord.flush(5)
    report = cli_json(cli, "governance", "simulate", str(tmp_path / "governance.yaml"))
    assert report["integrity_problems"] == []
