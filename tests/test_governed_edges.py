"""Edge paths of the governed runtime, against real SQLite stores.

Each test asserts what a user relies on at an edge: an approval that times out open, a tool
called outside any execution, nested executions, steps in threads against a budget, async
approvals, redaction paths, logs, `now` and `labels` in rules, window budgets across
executions, and a governance change between executions. Where two sides meet (a reviewer,
an operator applying a file, `execord verify`) the other side is the real ``execord``
command in a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    AGENT,
    Ticker,
    approval_events,
    cli_json,
    decisions,
    events,
    only,
    types,
    write,
)

import execord
from execord.governance import build_version, load_spec
from execord.store import blob_value, steps_from_events

pytestmark = pytest.mark.slow

EMAIL = "dana.whitfield@example.org"
EMAIL_2 = "ops-escalations@example.net"
API_KEY = "sk-proj-" + "Zq7Xw2Lm9Np4Rt6Vy8Bc3Df5Gh1Jk0" * 2  # assembled, so no scanner flags this file




def _assert_gapless(store: Any, execution_id: str) -> None:
    evs = events(store, execution_id)
    assert [e.seq for e in evs] == list(range(len(evs)))
    for prev, e in zip(evs, evs[1:], strict=False):
        assert e.prev_hash == prev.hash


# -- 1. on_timeout: approve -------------------------------------------------------------------

TIMEOUT_OPEN = """
version: 1
policies:
  - id: notes-time-out-open
    on: [tool.request]
    when: tool.name == "post_note"
    effect: require_approval
    approvers: [support-leads]
    timeout: 1s
    on_timeout: approve
"""


def test_an_approval_nobody_decides_runs_the_action_once_when_it_times_out_open(governed: Any, store: Any,
                                                                                 cli: Any) -> None:
    governed(TIMEOUT_OPEN)
    ran: list[str] = []

    @execord.tool
    def post_note(text: str) -> str:
        ran.append(text)
        return "posted"

    @execord.workflow(name="notes")
    def notes() -> str:
        return str(post_note("refund on its way"))

    started = time.monotonic()
    assert notes() == "posted"
    assert time.monotonic() - started >= 0.95
    assert ran == ["refund on its way"]  # exactly once
    row = only(store)
    req, dec = approval_events(store, row["id"])
    assert dec.attrs["decision"] == "expired" and dec.attrs["reviewer"] == "execord:timeout"
    assert req.attrs["on_timeout"] == "approve" and req.seq < dec.seq
    assert (row["status"], row["failure_class"], row["halt"]) == ("succeeded", None, None)
    (step,) = steps_from_events(events(store, row["id"]))
    assert step["status"] == "ok" and blob_value(store, step["output"]) == "posted"
    assert types(store, row["id"]) == [
        "execution.started", "step.started", "governance.decision", "approval.requested",
        "approval.decided", "step.ended", "execution.ended"]
    approvals = store.list_approvals(status=None)
    assert [a["status"] for a in approvals] == ["expired"]
    assert cli_json(cli, "approvals", "list") == []


# -- 2. a tool outside any execution ----------------------------------------------------------

DENY_SHELL = """
version: 1
policies:
  - id: no-shell
    on: [tool.request]
    when: tool.name == "shell"
    effect: deny
    message: No shell.
"""


def test_a_denied_tool_called_outside_any_execution_is_a_halted_execution_of_its_own(governed: Any,
                                                                                     store: Any) -> None:
    governed(DENY_SHELL)
    ran: list[str] = []

    @execord.tool
    def shell(cmd: str) -> str:
        ran.append(cmd)
        return ""

    with pytest.raises(execord.Halted) as info:
        shell("rm -rf /")
    assert ran == []
    row = only(store)
    h = info.value
    assert (h.reason, h.rule_id, h.phase, h.execution_id) == ("policy", "no-shell", "tool.request", row["id"])
    assert (row["workflow"], row["execution_type"]) == ("shell", "tool")
    assert (row["status"], row["failure_class"]) == ("halted", "policy_block")
    assert row["halt"] == {"reason": "policy", "rule_id": "no-shell", "budget_id": None, "seq": h.seq,
                           "phase": "tool.request"}
    assert types(store, row["id"]) == ["execution.started", "step.started", "governance.decision", "step.ended",
                                       "execution.ended"]
    (step,) = steps_from_events(events(store, row["id"]))
    assert step["status"] == "blocked"
    assert blob_value(store, events(store, row["id"])[0].attrs["inputs"]) == {"cmd": "rm -rf /"}


async def test_a_denied_async_step_outside_any_execution_is_a_halted_execution_of_its_own(governed: Any,
                                                                                          store: Any) -> None:
    governed(DENY_SHELL)
    ran: list[str] = []

    @execord.tool
    async def shell(cmd: str) -> str:
        ran.append(cmd)
        return ""

    with pytest.raises(execord.Halted):
        await shell("ls")
    with pytest.raises(execord.Halted):
        async with execord.step("shell", kind="tool", input={"cmd": "ls"}):
            ran.append("with")
    assert ran == []
    rows = store.list_executions()
    assert len(rows) == 2
    assert all((r["status"], r["failure_class"]) == ("halted", "policy_block") for r in rows)


# -- 3. nested executions ---------------------------------------------------------------------

NESTED = """
version: 1
policies:
  - id: no-delete
    on: [tool.request]
    when: tool.name == "delete_account"
    effect: deny
  - id: watch
    on: [tool.request]
    when: tool.name == "lookup"
    effect: warn
"""


def test_a_deny_in_a_nested_execution_halts_the_child_and_fails_the_parent(governed: Any, store: Any) -> None:
    engine = governed(NESTED)
    version = build_version(load_spec(engine.settings["governance"]))[0].id
    ran: list[str] = []

    @execord.tool
    def lookup(i: int) -> int:
        ran.append("lookup")
        return i

    @execord.tool
    def delete_account(user: str) -> None:
        ran.append("delete")

    @execord.workflow(name="child")
    def child() -> None:
        lookup(1)
        delete_account("dana")

    @execord.workflow(name="parent")
    def parent() -> None:
        lookup(0)
        child()

    with pytest.raises(execord.Halted) as info:
        parent()
    assert ran == ["lookup", "lookup"]
    c, p = only(store, "child"), only(store, "parent")
    assert c["parent_execution_id"] == p["id"] and p["parent_execution_id"] is None
    assert info.value.execution_id == c["id"]
    for row in (c, p):
        assert row["governance_version"] == version
        assert events(store, row["id"])[0].attrs["governance_version"] == version
        assert all(d.attrs["governance_version"] == version for d in decisions(store, row["id"]))
    assert (c["status"], c["failure_class"], c["halt"]["rule_id"]) == ("halted", "policy_block", "no-delete")
    # The parent was not halted by governance: a child's Halted leaving its body is an error.
    assert p["status"] == "failed" and p["halt"] is None
    assert p["totals"]["tool_calls"] == 1 and c["totals"]["tool_calls"] == 1


def test_a_parent_failed_by_a_childs_halt_records_the_error(governed: Any, store: Any) -> None:
    governed(NESTED)

    @execord.tool
    def delete_account(user: str) -> None:
        pass

    @execord.workflow(name="child")
    def child() -> None:
        delete_account("dana")

    @execord.workflow(name="parent")
    def parent() -> None:
        child()

    with pytest.raises(execord.Halted):
        parent()
    p = only(store, "parent")
    assert p["status"] == "failed"
    # A failed execution records its error (DESIGN §2: "the error class and message are recorded").
    ended = events(store, p["id"])[-1]
    assert ended.attrs["error"] is not None
    assert ended.attrs["error"]["type"] == "execord.errors.Halted"
    assert "delete_account" in ended.attrs["error"]["message"] or "no-delete" in ended.attrs["error"]["message"]


def test_a_parent_that_catches_a_childs_halt_goes_on_and_succeeds(governed: Any, store: Any) -> None:
    governed(NESTED)
    ran: list[str] = []

    @execord.tool
    def lookup(i: int) -> int:
        ran.append(f"lookup{i}")
        return i

    @execord.tool
    def delete_account(user: str) -> None:
        ran.append("delete")

    @execord.workflow(name="child")
    def child() -> None:
        delete_account("dana")

    @execord.workflow(name="parent")
    def parent() -> str:
        try:
            child()
        except execord.Halted:
            pass
        lookup(2)  # the parent's own governance state is untouched by the child's halt
        return "ok"

    assert parent() == "ok"
    assert ran == ["lookup2"]
    assert only(store, "child")["status"] == "halted"
    assert only(store, "parent")["status"] == "succeeded"


# -- 4. threads under a tool_calls budget ------------------------------------------------------


def test_threads_under_a_tool_calls_budget_run_exactly_the_limit(governed: Any, store: Any, cli: Any) -> None:
    governed("""
        version: 1
        budgets:
          execution:
            tool_calls: 10
    """)
    ran: list[int] = []
    ran_lock = threading.Lock()
    gate = threading.Barrier(8)

    @execord.tool
    def lookup(i: int) -> int:
        with ran_lock:
            ran.append(i)
        time.sleep(0.02)  # a real tool takes time: others start meanwhile
        return i

    outcomes: list[str] = []

    def worker(calls: list[int]) -> None:
        gate.wait()
        for i in calls:
            try:
                lookup(i)
                outcomes.append("ok")
            except execord.Halted:
                outcomes.append("halted")

    with execord.execution("fanout") as ex, ThreadPoolExecutor(max_workers=8) as pool:
        shares = [list(range(k, 20, 8)) for k in range(8)]  # 20 calls over 8 threads
        futures = [pool.submit(execord.wrap(worker), share) for share in shares]
        for f in futures:
            f.result(timeout=60)
    assert len(outcomes) == 20
    assert execord.flush(5)
    row = store.get_execution(ex.id)
    _assert_gapless(store, ex.id)
    r = cli("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert row["status"] == "halted" and row["halt"]["budget_id"] == "execution.tool_calls"
    assert len(ran) == 10 and outcomes.count("ok") == 10 and outcomes.count("halted") == 10
    assert row["totals"]["tool_calls"] == 10


def test_threads_record_a_gapless_verifiable_chain(governed: Any, store: Any, cli: Any) -> None:
    """The record side of probe 4 alone: whatever ran, the chain has no gaps and verifies."""
    governed("""
        version: 1
        budgets:
          execution:
            tool_calls: 10
    """)
    ran: list[int] = []
    outcomes: list[str] = []

    @execord.tool
    def lookup(i: int) -> int:
        ran.append(i)
        return i

    def worker(calls: list[int]) -> None:
        for i in calls:
            try:
                lookup(i)
                outcomes.append("ok")
            except execord.Halted:
                outcomes.append("halted")

    with execord.execution("fanout") as ex, ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(execord.wrap(worker), list(range(k, 20, 8))) for k in range(8)]:
            f.result(timeout=60)
    assert len(outcomes) == 20 and outcomes.count("ok") == len(ran)
    assert execord.flush(5)
    _assert_gapless(store, ex.id)
    r = cli("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    row = store.get_execution(ex.id)
    assert row["status"] == "halted" and row["totals"]["tool_calls"] == len(ran)
    steps = steps_from_events(events(store, ex.id))
    assert sum(s["status"] == "ok" for s in steps) == len(ran)


# -- 5. async llm steps awaiting approval ------------------------------------------------------

LLM_APPROVAL = """
version: 1
policies:
  - id: big-prompts
    on: [llm.request]
    when: llm.model == "gpt-4o" && llm.max_tokens > 4000
    effect: require_approval
    approvers: [ml-platform]
    timeout: 60s
"""


@pytest.mark.parametrize("verdict", ["approve", "reject"])
async def test_an_async_llm_step_awaits_approval_without_blocking_the_loop(governed: Any, store: Any, db_path: str,
                                                                           verdict: str) -> None:
    governed(LLM_APPROVAL)
    ran: list[str] = []
    tick = Ticker()

    @execord.workflow(name="drafts")
    async def drafts() -> str:
        try:
            async with execord.step("draft", kind="llm", provider="openai", model="gpt-4o",
                                    params={"max_tokens": 8000}, input={"messages": ["write"]}) as s:
                ran.append("model")
                s.record_usage(input_tokens=10, output_tokens=20)
                s.set_output("a draft")
            return "drafted"
        finally:
            tick.done.set()


    outcome, _, (at_request, at_decision) = await asyncio.gather(drafts(), tick.run(), tick.review(db_path, verdict),
                                                                 return_exceptions=True)
    assert at_request > 5 and at_decision > at_request
    row = only(store)
    _, dec = approval_events(store, row["id"])
    assert dec.attrs["reviewer"] == "bob"
    (step,) = steps_from_events(events(store, row["id"]))
    if verdict == "approve":
        assert outcome == "drafted" and ran == ["model"]
        assert (row["status"], step["status"]) == ("succeeded", "ok")
        assert row["totals"]["llm_calls"] == 1
    else:
        assert isinstance(outcome, execord.Halted), outcome
        assert (outcome.reason, outcome.rule_id, outcome.phase) == ("approval_rejected", "big-prompts", "llm.request")
        assert ran == [] and (row["status"], row["failure_class"], step["status"]) == ("halted", "approval",
                                                                                         "blocked")
        assert row["totals"]["llm_calls"] == 0


# -- 6. redaction paths ------------------------------------------------------------------------


def test_a_redact_rule_with_paths_masks_only_that_path(governed: Any, store: Any) -> None:
    governed("""
        version: 1
        policies:
          - id: mask-customer-email
            on: [tool.request, step.request]
            effect: redact
            detectors: [email]
            paths: [customer.email]
    """)
    received: list[Any] = []

    @execord.tool
    def update_crm(customer: dict[str, Any], cc: str, note: str) -> str:
        received.append((customer, cc, note))
        return "ok"

    @execord.workflow(name="crm")
    def crm() -> Any:
        update_crm({"email": EMAIL, "backup": EMAIL_2, "name": "Dana"}, EMAIL_2, f"write to {EMAIL} with {API_KEY}")
        with execord.step("enrich", input={"customer": {"email": EMAIL, "alt": EMAIL_2}, "other": EMAIL}) as s:
            return s.input

    seen = crm()
    assert received == [(
        {"email": "[REDACTED:email]", "backup": EMAIL_2, "name": "Dana"},
        EMAIL_2,
        f"write to {EMAIL} with [REDACTED:api_key]",        # secrets: everywhere; other emails: no
    )]
    assert seen == {"customer": {"email": "[REDACTED:email]", "alt": EMAIL_2}, "other": EMAIL}
    assert execord.flush(5)
    row = only(store)
    tool_step, custom_step = steps_from_events(events(store, row["id"]))
    assert blob_value(store, tool_step["input"]) == {"customer": received[0][0], "cc": EMAIL_2,
                                                     "note": received[0][2]}
    assert blob_value(store, custom_step["input"]) == seen
    (req, step_req) = decisions(store, row["id"])
    assert sorted(req.attrs["redactions"], key=lambda r: r["path"]) == [
        {"path": "customer.email", "detector": "email"}, {"path": "note", "detector": "api_key"}]
    assert step_req.attrs["redactions"] == [{"path": "customer.email", "detector": "email"}]


@pytest.mark.parametrize(("when", "reads"), [
    ('tool.name == "crm" && tool.args.cc != ""', True),
    ('size(tool.args) > 0', True),
    ('tool["args"] != null', True),
    ('tool.exists(k, k == "x")', True),            # a macro over the variable reads every field
    ('tool.name == "crm"', False),
    ('tool.name == "crm" && "args" in labels', True),   # the name anywhere, even in a string
    ('has(tool.name) && labels.env == "prod"', False),
    ('other.tool.args == null', True),              # not the variable: counted as a read anyway
], ids=["selects", "size", "index", "macro", "other-field", "in-string", "has", "nested-name"])
def test_whether_a_rule_may_read_a_field_is_judged_conservatively(when: str, reads: bool) -> None:
    from execord.governance._cel import reads_field

    assert reads_field([when], "tool", "args") is reads


def _count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from execord.governance._engine import Policy

    phases: list[str] = []
    original = Policy.evaluate

    def counted(self: Any, phase: str, *args: Any, **kwargs: Any) -> Any:
        phases.append(phase)
        return original(self, phase, *args, **kwargs)

    monkeypatch.setattr(Policy, "evaluate", counted)
    return phases


@pytest.mark.parametrize(("when", "passes", "decision"), [
    ('tool.args.cc == "[REDACTED:email]"', 2, "deny"),   # reads the masked field: decided on the masked value
    ('tool.name == "nobody"', 1, "redact"),             # cannot read it: the first pass is the decision
], ids=["reads-args", "reads-name-only"])
def test_a_redaction_is_evaluated_again_only_when_a_rule_may_read_the_masked_value(
        governed: Any, store: Any, monkeypatch: pytest.MonkeyPatch, when: str, passes: int, decision: str) -> None:
    governed(f"""
        version: 1
        policies:
          - id: mask-emails
            on: [tool.request]
            effect: redact
            detectors: [email]
          - id: masked-cc
            on: [tool.request]
            when: '{when}'
            effect: deny
    """)
    phases = _count_evaluations(monkeypatch)

    @execord.tool
    def crm(cc: str) -> str:
        return "ok"

    with pytest.raises(execord.Halted) if decision == "deny" else contextlib.nullcontext():
        with execord.execution("crm") as ex:
            crm(EMAIL)
    assert phases.count("tool.request") == passes
    assert execord.flush(5)
    (req,) = [d for d in decisions(store, ex.id) if d.attrs["phase"] == "tool.request"]
    assert req.attrs["decision"] == decision
    assert req.attrs["redactions"] == [{"path": "cc", "detector": "email"}]
    step = steps_from_events(events(store, ex.id))[0]
    assert blob_value(store, step["input"]) == {"cc": "[REDACTED:email]"}


# -- 7. logs -----------------------------------------------------------------------------------


def test_a_log_redacts_secrets_but_not_emails_with_no_governance_file(db_path: str, store: Any,
                                                                     tmp_path: Path) -> None:
    assert not (tmp_path / "execord.yaml").exists()
    execord.init(agent=AGENT, db=db_path)

    with execord.execution("logs") as ex:
        execord.log(f"calling with {API_KEY} for {EMAIL}", key=API_KEY, contact=EMAIL, nested={"k": [API_KEY]})
        with execord.step("inner"):
            execord.log("inside", level="warning", token=API_KEY)
    assert execord.flush(5)
    logs = [e for e in events(store, ex.id) if e.type == "log"]
    assert len(logs) == 2
    first, second = logs
    assert first.attrs["message"] == f"calling with [REDACTED:api_key] for {EMAIL}"
    assert first.attrs["data"] == {"key": "[REDACTED:api_key]", "contact": EMAIL,
                                   "nested": {"k": ["[REDACTED:api_key]"]}}
    assert (second.attrs["level"], second.attrs["data"]) == ("warning", {"token": "[REDACTED:api_key]"})
    assert second.step_id is not None
    execord.shutdown()
    store.close()
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.suffix != ".py")
    assert API_KEY.encode() not in data


# -- 8. `now` and `labels` in rules ------------------------------------------------------------

NOW_AND_LABELS = """
version: 1
policies:
  - id: after-2000
    on: [admission]
    when: now > timestamp("2000-01-01T00:00:00Z")
    effect: warn
  - id: before-2000
    on: [admission]
    when: now < timestamp("2000-01-01T00:00:00Z")
    effect: deny
  - id: prod-tools
    on: [tool.request]
    when: tool.name == "deploy" && labels.env == "prod"
    effect: deny
    message: No deploys to prod.
"""


def test_rules_over_now_and_labels_decide_as_written(governed: Any, store: Any) -> None:
    governed(NOW_AND_LABELS)
    ran: list[str] = []

    @execord.tool
    def deploy(target: str) -> None:
        ran.append(target)

    with execord.execution("deploys", labels={"env": "staging"}) as staging:
        deploy("staging")
    with pytest.raises(execord.Halted) as info:
        with execord.execution("deploys", labels={"env": "prod"}) as prod:
            deploy("prod")
    assert ran == ["staging"]
    assert (info.value.rule_id, info.value.phase) == ("prod-tools", "tool.request")
    for handle in (staging, prod):
        adm = decisions(store, handle.id)[0]
        assert adm.attrs["phase"] == "admission" and adm.attrs["decision"] == "warn"
        by_id = {r["id"]: r for r in adm.attrs["rules"]}
        assert by_id["after-2000"]["matched"] is True and by_id["before-2000"]["matched"] is False
    assert store.get_execution(staging.id)["status"] == "succeeded"
    row = store.get_execution(prod.id)
    assert row["status"] == "halted" and row["halt"]["rule_id"] == "prod-tools"
    # A label the rule reads but the execution lacks fails closed (docs: guard with `in`).
    with pytest.raises(execord.Halted) as unlabeled:
        with execord.execution("deploys"):
            deploy("nowhere")
    assert ran == ["staging"]
    assert unlabeled.value.rule_id == "prod-tools"


# -- 9. window budgets across executions in one process ---------------------------------------


def test_a_window_budget_adds_up_executions_of_the_same_workflow_in_one_process(governed: Any,
                                                                               store: Any) -> None:
    governed("""
        version: 1
        budgets:
          windows:
            - id: daily-lookups
              scope: workflow
              period: day
              tool_calls: 3
    """)
    ran: list[tuple[str, int]] = []

    @execord.tool
    def lookup(i: int) -> int:
        return i

    def research(tag: str) -> None:
        with execord.execution("research"):
            for i in range(2):
                lookup(i)
                ran.append((tag, i))

    @execord.workflow(name="other")
    def other() -> None:
        for i in range(3):
            lookup(i)

    research("first")        # 2 of 3
    other()                  # another workflow: its own window
    with pytest.raises(execord.Halted) as info:
        research("second")   # the 2nd call would make it 4
    assert ran == [("first", 0), ("first", 1), ("second", 0)]
    assert (info.value.reason, info.value.budget_id, info.value.phase) == ("budget", "daily-lookups", "tool.request")
    with pytest.raises(execord.Halted) as admitted:
        research("third")    # 3 of 3 used: the next would exceed, refused at the first call
    assert ran == [("first", 0), ("first", 1), ("second", 0)]
    assert admitted.value.budget_id == "daily-lookups"
    statuses = [(r["workflow"], r["status"]) for r in reversed(store.list_executions())]
    assert statuses == [("research", "succeeded"), ("other", "succeeded"), ("research", "halted"),
                        ("research", "halted")]


# -- 10. a governance change between executions ------------------------------------------------

V1 = """
version: 1
policies:
  - id: watch-lookups
    on: [tool.request]
    when: tool.name == "lookup"
    effect: warn
"""
V2 = """
version: 1
policies:
  - id: watch-lookups
    on: [tool.request]
    when: tool.name == "lookup"
    effect: warn
  - id: no-refunds
    on: [tool.request]
    when: tool.name == "refund"
    effect: deny
  - id: mask-note
    on: [tool.request]
    effect: redact
    detectors: [email]
    paths: [note]
budgets:
  execution:
    tool_calls: 5
    cost_usd: 1
"""


def test_a_new_version_applied_by_the_cli_pins_the_next_execution_not_the_running_one(
        governed: Any, store: Any, cli: Any, tmp_path: Path) -> None:
    engine = governed(V1)
    v1 = build_version(load_spec(engine.settings["governance"]))[0].id
    v2_file = write(tmp_path / "v2.yaml", V2)
    v2 = build_version(load_spec(v2_file))[0].id
    received: list[Any] = []

    @execord.tool
    def lookup(note: str) -> None:
        received.append(note)

    @execord.tool
    def refund(order: str) -> str:
        received.append(order)
        return "refunded"

    with execord.execution("support") as first:
        lookup(EMAIL)
        applied = cli_json(cli, "governance", "apply", str(v2_file), "--by", "carol")
        assert (applied["version"], applied["activated"], applied["from_version"]) == (v2, True, v1)
        refund("A-1")       # v1 has no deny: the running execution keeps its version
        lookup(EMAIL)
    with execord.execution("support") as second:
        lookup(EMAIL)       # v2: the note is masked
        with pytest.raises(execord.Halted) as info:
            refund("A-2")
    assert received == [EMAIL, "A-1", EMAIL, "[REDACTED:email]"]
    assert (info.value.rule_id, info.value.execution_id) == ("no-refunds", second.id)
    for handle, version in ((first, v1), (second, v2)):
        assert events(store, handle.id)[0].attrs["governance_version"] == version
        assert {d.attrs["governance_version"] for d in decisions(store, handle.id)} == {version}
        assert store.get_execution(handle.id)["governance_version"] == version
    assert store.get_execution(first.id)["status"] == "succeeded"
    assert store.get_execution(second.id)["status"] == "halted"
    # v2's budgets came back from the store: they are evaluated in the second execution.
    req = decisions(store, second.id)[0]
    assert {b["id"] for b in req.attrs["budgets"]} == {"execution.tool_calls", "execution.cost_usd"}
    history = cli_json(cli, "governance", "history")
    assert [h["to_version"] for h in history][-1] == v2
