"""The web viewer in a real browser: Debian's Chromium driven by Playwright, against a real
server over a real SQLite file, with real SDK processes recording through it.

Screenshots of the list, a detail page, the approvals queue and the overview are taken on
every run, into a temporary folder; ``EXECORD_SCREENSHOTS=docs/img python -m pytest
tests/test_ui.py`` writes them where docs/viewer.md shows them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _server import ADMIN_KEY, live_server, sdk_env

from execord.ledger._note import Signer

CHROMIUM = os.environ.get("EXECORD_TEST_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():  # .ci/run installs it; say so rather than skip silently
    raise RuntimeError(f"the viewer tests need Chromium at {CHROMIUM}: apt-get install chromium")

pytestmark = pytest.mark.slow
IMG = Path(os.environ.get("EXECORD_SCREENSHOTS") or tempfile.mkdtemp(prefix="execord-ui-shots-"))

GOVERNANCE = """
version: 1
policies:
  - id: no-shell
    on: [tool.request]
    when: tool.name == "shell"
    effect: deny
    message: Agents may not run shell commands.
  - id: refunds-need-approval
    on: [tool.request]
    when: tool.name == "issue_refund"
    effect: require_approval
    approvers: [finance]
    timeout: 10m
    message: Refunds need someone from finance.
  - id: mask-emails
    on: [tool.request, tool.response]
    effect: redact
    detectors: [email]
"""

# `agent.py MODE [GATE]`: prints `EID <id>` once its execution has started.
#   seed: a triage run (an email redacted), a run halted by no-shell, a failing run
#   stepwise: one step, then waits for GATE to exist before a second step
#   refund: asks for a refund, which waits for approval; prints DONE when it ran
#   loop: slow steps for up to a minute; prints CANCELLED when an operator cancels it
AGENT = '''
import os, sys, time
import execord

mode = sys.argv[1]
gate = sys.argv[2] if len(sys.argv) > 2 else ""
execord.init(agent="ui-bot", heartbeat_s=1)


@execord.tool
def lookup_order(order: str, email: str) -> dict:
    return {"order": order, "state": "shipped", "contact": email}


@execord.tool
def shell(cmd: str) -> str:
    return "should never run"


@execord.tool
def issue_refund(amount: int) -> str:
    return "refunded"


@execord.tool
def tick(i: int) -> int:
    time.sleep(0.1)
    return i


def started() -> None:
    print("EID", execord.current().id, flush=True)


@execord.workflow(name="support-triage")
def triage() -> str:
    started()
    with execord.step("classify", kind="llm", provider="openai", model="gpt-4o-mini",
                      input={"messages": [{"role": "user", "content": "where is my order?"}]}) as s:
        s.set_output({"label": "shipping"})
        s.record_usage(input_tokens=120, output_tokens=8)
    lookup_order("A-1001", "ana@example.com")
    return "done"


@execord.workflow(name="ops-cleanup")
def cleanup() -> None:
    started()
    shell("rm -rf /tmp/cache")


@execord.workflow(name="nightly-digest")
def digest() -> None:
    started()
    raise ValueError("no template named digest-v2")


@execord.workflow(name="stepwise")
def stepwise() -> None:
    started()
    lookup_order("A-2002", "bo@example.com")
    while not os.path.exists(gate):
        time.sleep(0.05)
    with execord.step("second_step", input={"n": 2}):
        time.sleep(0.05)


@execord.workflow(name="refund")
def refund() -> None:
    started()
    issue_refund(50)
    print("DONE", flush=True)


@execord.workflow(name="runaway")
def runaway() -> None:
    started()
    for i in range(600):
        tick(i)


if mode == "seed":
    triage()
    for fn in (cleanup, digest):
        try:
            fn()
        except (execord.Halted, ValueError):
            pass
elif mode == "stepwise":
    stepwise()
elif mode == "refund":
    refund()
elif mode == "loop":
    try:
        runaway()
    except execord.Cancelled:
        print("CANCELLED", flush=True)
print("FLUSHED", execord.flush(30), flush=True)
'''


class Agent:
    """An SDK process recording through the server."""

    def __init__(self, site: Site, mode: str, gate: Path | None = None, key: str | None = None):
        env = sdk_env(site.live.url, key or site.ingest, site.tmp / f"spool-{mode}-{time.monotonic_ns()}")
        self.out = site.tmp / f"{mode}-{time.monotonic_ns()}.out"
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, str(site.script), mode, str(gate or "")], cwd=site.tmp,
                                         env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait(self, word: str, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [ln.split(None, 1)[1] if " " in ln else "" for ln in self.text().splitlines() if ln.startswith(word)]
            if hits:
                return hits
            if self.proc.poll() is not None and not any(ln.startswith(word) for ln in self.text().splitlines()):
                raise AssertionError(f"the agent exited {self.proc.returncode} before {word}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"the agent did not print {word}:\n{self.text()}")

    def finish(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Site:
    """The server, its keys, the seeded executions and the browser."""

    def __init__(self, live: Any, tmp: Path, browser: Any):
        self.live = live
        self.tmp = tmp
        self.browser = browser
        self.script = tmp / "agent.py"
        self.script.write_text(AGENT)
        r = live.admin.post("/api/v1/governance/apply", json={"source": GOVERNANCE})
        assert r.status_code == 200, r.text
        self.ingest = live.key("ingest", name="agents")
        self.reader = live.key("read", name="auditor")
        self.operator = live.key("read", "approve", "operate", name="oncall")
        self.seeded: list[str] = []

    def page(self, key: str | None = None) -> Any:
        """A new browser context (its own cookies), signed in with ``key`` (None: not signed in)."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        if key is not None:
            page.goto(self.live.url + "/ui/signin")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/ui/executions"))
        return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("ui")
    signer = Signer.generate("execord.test/ui")
    with live_server(str(tmp / "execord.db"), ledger_signer=signer, checkpoint_every=1,
                     checkpoint_interval_s=0.5, reap_interval_s=0.5) as live, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        s = Site(live, tmp, browser)
        seed = Agent(s, "seed")
        assert seed.finish() == 0, seed.text()
        s.seeded = seed.wait("EID")
        other = live.key("ingest", project="other", name="other-agents")
        foreign = Agent(s, "seed", key=other)
        assert foreign.finish() == 0, foreign.text()
        s.foreign = foreign.wait("EID")  # type: ignore[attr-defined]
        try:
            yield s
        finally:
            browser.close()


def _summary(site: Site, eid: str) -> dict[str, Any]:
    return dict(site.live.admin.get(f"/api/v1/executions/{eid}").json()["execution"])


def test_sign_in_list_and_filter_by_status_and_workflow(site: Site) -> None:
    page = site.page(site.reader)
    table = page.locator("#executions tbody")
    for eid in site.seeded:
        assert table.locator(f"a[href='/ui/executions/{eid}']").inner_text() == eid[:13]
    assert page.get_by_text("auditor").is_visible() and page.locator(".who strong").inner_text() == "default"
    page.get_by_label("Status", exact=True).select_option("halted")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=halted"))
    rows = table.locator("tr")
    assert rows.count() == 1 and "ops-cleanup" in rows.first.inner_text()
    assert "policy: rule no-shell" in rows.first.inner_text()
    # The filters live in the URL: a shared link opens the same list.
    shared = page.url
    page.goto(site.live.url + "/ui/executions")
    page.goto(shared)
    assert page.get_by_label("Status", exact=True).input_value() == "halted" and table.locator("tr").count() == 1
    page.goto(site.live.url + "/ui/executions?workflow=support-triage")
    assert table.locator("tr").count() == 1 and "support-triage" in table.inner_text()
    page.goto(site.live.url + "/ui/executions?since=banana")
    assert "since" in page.locator("#filter-error").inner_text()
    IMG.mkdir(parents=True, exist_ok=True)
    page.goto(site.live.url + "/ui/executions")
    page.screenshot(path=str(IMG / "viewer-list.png"), full_page=True)
    page.context.close()


def test_detail_shows_summary_timeline_decisions_redactions_and_verification(site: Site) -> None:
    triage, halted, failed = site.seeded
    page = site.page(site.reader)
    page.locator(f"a[href='/ui/executions/{halted}']").click()
    page.wait_for_url(f"**/ui/executions/{halted}")
    assert "rule no-shell" in page.locator("#why").inner_text()
    decisions = page.locator("#decisions").inner_text()
    assert "no-shell" in decisions and "Agents may not run shell commands." in decisions and "deny" in decisions
    page.goto(site.live.url + f"/ui/executions/{triage}")
    assert page.locator(".wf-row").count() == 3  # axis + classify + lookup_order
    bar = page.locator(".wf-track[aria-label^='llm classify']")
    assert "ok" in bar.get_attribute("aria-label")
    assert page.locator("rect.k-llm").count() == 1 and page.locator("rect.k-tool").count() == 1
    step = page.locator("details.step", has_text="lookup_order")
    step.locator("summary").click()  # open the step
    assert step.locator("mark.redacted", has_text="[REDACTED:email]").first.is_visible()
    assert "ana@example.com" not in page.content()
    badge = page.locator("#verification")
    badge.get_by_text("in the signed ledger").wait_for()  # the checkpointer signs within a second
    assert "chain verified" in badge.inner_text() and "seal matches" in badge.inner_text()
    page.screenshot(path=str(IMG / "viewer-detail.png"), full_page=True)
    page.goto(site.live.url + f"/ui/executions/{failed}")
    assert "ValueError: no template named digest-v2" in page.locator("#why").inner_text()
    page.context.close()


def test_a_step_appears_while_a_real_sdk_process_runs(site: Site) -> None:
    gate = site.tmp / "gate-stepwise"
    agent = Agent(site, "stepwise", gate)
    try:
        (eid,) = agent.wait("EID")
        page = site.page(site.reader)
        deadline = time.monotonic() + 20
        while "lookup_order" not in site.live.admin.get(f"/api/v1/executions/{eid}/steps").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        page.goto(site.live.url + f"/ui/executions/{eid}")
        assert page.locator("#live").get_attribute("data-stream")
        page.evaluate("window.__same_page = true")
        assert page.locator(".wf-name", has_text="second_step").count() == 0
        gate.touch()
        page.locator(".wf-name", has_text="second_step").wait_for()
        page.locator("#live[data-status='succeeded']").wait_for()
        assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        assert "execution.ended" in page.locator("#live-status").inner_text()
        assert agent.finish() == 0
        page.context.close()
    finally:
        agent.kill()


def test_approve_a_pending_approval_and_the_execution_resumes(site: Site) -> None:
    agent = Agent(site, "refund")
    try:
        (eid,) = agent.wait("EID")
        page = site.page(site.operator)
        page.get_by_role("link", name="Approvals").click()
        card = page.locator("article.approval", has=page.locator(f"a[href='/ui/executions/{eid}']"))
        for _ in range(100):
            if card.count():
                break
            time.sleep(0.1)
            page.reload()
        assert "refunds-need-approval" in card.inner_text() and "issue_refund" in card.inner_text()
        page.screenshot(path=str(IMG / "viewer-approvals.png"), full_page=True)
        card.get_by_label("Comment").fill("verified with the customer")
        card.get_by_role("button", name="Approve").click()
        page.locator(".flash", has_text="Approval approved").wait_for()
        agent.wait("DONE")
        assert agent.finish() == 0
        page.goto(site.live.url + f"/ui/executions/{eid}")
        page.locator("#live[data-status='succeeded']").wait_for()
        approvals = page.locator("#approvals").inner_text()
        assert "approved" in approvals and "key:oncall: verified with the customer" in approvals
        assert _summary(site, eid)["status"] == "succeeded"
        page.context.close()
    finally:
        agent.kill()


def test_cancel_a_running_execution_with_confirmation(site: Site) -> None:
    agent = Agent(site, "loop")
    try:
        (eid,) = agent.wait("EID")
        page = site.page(site.operator)
        page.goto(site.live.url + f"/ui/executions/{eid}")
        page.get_by_text("Cancel execution…").click()
        page.get_by_label("Why (kept in the record)").fill("runaway loop")
        page.get_by_role("button", name="Cancel execution").click()
        # Not confirmed: the form is not sent and nothing is cancelled.
        confirm = page.get_by_label(re.compile("Yes, cancel it"))
        assert confirm.evaluate("el => el.validity.valueMissing") is True
        time.sleep(0.3)
        assert site.live.store.get_cancel(eid) is None and page.url.endswith(eid)
        # The form is still open with the reason typed in: a live refresh never swaps it out.
        assert page.get_by_label("Why (kept in the record)").input_value() == "runaway loop"
        confirm.check()
        page.get_by_role("button", name="Cancel execution").click()
        page.locator(".flash", has_text="Cancel requested").wait_for()
        agent.wait("CANCELLED")
        page.locator("#live[data-status='cancelled']").wait_for()
        assert "cancelled by key:oncall: runaway loop" in page.locator("#why").inner_text()
        assert agent.finish() == 0
        page.context.close()
    finally:
        agent.kill()


def test_download_exports_and_the_bundle_verifies(site: Site) -> None:
    triage = site.seeded[0]
    page = site.page(site.reader)
    page.goto(site.live.url + f"/ui/executions/{triage}")
    with page.expect_download() as d:
        page.get_by_role("link", name="Export JSON").click()
    path = site.tmp / "export.json"
    d.value.save_as(path)
    assert f'"id": "{triage}"' in path.read_text()
    with page.expect_download() as d:
        page.get_by_role("link", name="Export bundle").click()
    bundle = site.tmp / "bundle.zip"
    d.value.save_as(bundle)
    run = subprocess.run([sys.executable, "-m", "execord", "verify", str(bundle)], capture_output=True, text=True,
                         cwd=site.tmp, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    with page.expect_download() as d:
        page.get_by_role("link", name="HTML report").click()
    report = site.tmp / "report.html"
    d.value.save_as(report)
    assert triage in report.read_text() and "verified" in report.read_text()
    page.context.close()


def test_governance_history_and_diff(site: Site) -> None:
    second = GOVERNANCE.replace("Agents may not run shell commands.", "No shell, ever.")
    r = site.live.admin.post("/api/v1/governance/apply", json={"source": second})
    assert r.status_code == 200, r.text
    new = r.json()["version_id"]
    page = site.page(site.reader)
    page.get_by_role("link", name="Governance").click()
    assert page.locator("#active-version").inner_text() == new
    assert page.locator("#history tbody tr").count() == 2
    page.locator("#history").get_by_role("link", name="diff").first.click()
    diff = page.locator("#diff")
    assert diff.locator(".d-add", has_text="No shell, ever.").count() == 1
    assert diff.locator(".d-del", has_text="Agents may not run shell commands.").count() == 1
    page.context.close()


def test_overview_draws_status_cost_and_blocking_rules(site: Site) -> None:
    page = site.page(site.reader)
    page.get_by_role("link", name="Overview").click()
    chart = page.locator("svg.chart[aria-labelledby='sb-t sb-d']")
    assert chart.locator("rect.s-halted").count() >= 1 and chart.locator("rect.s-succeeded").count() >= 1
    assert "no-shell" in page.locator("#blocking-rules").inner_text()
    models = page.locator("#by-model").inner_text()
    assert "gpt-4o-mini" in models and "openai" in models
    assert "support-triage" in page.locator("#by-workflow").inner_text()
    page.screenshot(path=str(IMG / "viewer-overview.png"), full_page=True)
    page.context.close()


def test_keyboard_labels_and_no_horizontal_scroll_at_1280(site: Site) -> None:
    page = site.page(site.reader)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for path in ["/ui/executions", f"/ui/executions/{site.seeded[0]}", f"/ui/executions/{site.seeded[1]}",
                 "/ui/approvals", "/ui/governance", "/ui/overview"]:
        page.goto(site.live.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{path} scrolls sideways: {width}px"
        unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.name)""")
        assert unlabelled == [], f"{path}: inputs without a label: {unlabelled}"
        assert page.locator("h1").count() == 1 and page.locator("main#main").count() == 1
    # Reach an execution from the list with the keyboard alone.
    page.goto(site.live.url + "/ui/executions")
    page.locator("#executions a").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/executions/[0-9a-f-]{36}$"))
    page.context.close()


def test_another_projects_execution_is_invisible(site: Site) -> None:
    page = site.page(site.reader)
    for eid in site.foreign:  # type: ignore[attr-defined]
        assert page.locator(f"a[href='/ui/executions/{eid}']").count() == 0
        response = page.goto(site.live.url + f"/ui/executions/{eid}")
        assert response.status == 404 and "no execution" in page.locator(".error").inner_text()
        assert page.goto(site.live.url + f"/ui/executions/{eid}/export.json").status == 404
    page.context.close()


def test_nothing_without_sign_in(site: Site) -> None:
    page = site.page(None)
    page.goto(site.live.url + f"/ui/executions/{site.seeded[0]}")
    assert "/ui/signin" in page.url and page.get_by_label("API key").is_visible()
    page.get_by_label("API key").fill("ek_000000000000_not-a-real-key-at-all-000")
    page.get_by_role("button", name="Sign in").click()
    assert "unknown or revoked" in page.locator("#signin-error").inner_text()
    page.get_by_label("API key").fill(site.reader)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/ui/executions/{site.seeded[0]}")  # back where the link pointed
    cookie = next(c for c in page.context.cookies() if c["name"] == "execord_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN_KEY not in cookie["value"]
    assert site.reader not in cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/signin")
    page.goto(site.live.url + "/ui/overview")
    assert "/ui/signin" in page.url
    page.context.close()
