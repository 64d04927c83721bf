"""``execord demo``: a simulated support agent, recorded for real, so there is data to look at.

Nothing here talks to a model: the "LLM" steps return canned answers and report the token
counts a real call of that size would. Costs are priced from a small demo table and marked
``price_source: "demo"``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import DbOption, FormatOption, check_format, console, print_json

if TYPE_CHECKING:
    import random

    from ..runtime import Execord

# micro-USD per million tokens (input, output): a demo table, not a price list.
_DEMO_PRICES = {"gpt-4o-mini": (150_000, 600_000), "claude-sonnet": (3_000_000, 15_000_000)}


class PaymentsTimeout(ConnectionError):
    """The simulated payments API did not answer."""


def _pause(rng: random.Random, low_ms: int, high_ms: int) -> None:
    time.sleep(rng.uniform(low_ms, high_ms) / 1000)


def build_agent(ex: Execord, rng: random.Random) -> dict[str, Any]:
    """The demo agent's tools and workflows, bound to one recorder."""
    import asyncio

    def llm(name: str, model: str, prompt: str, answer: str) -> str:
        with ex.step(name, kind="llm", provider="demo", model=model, input={"prompt": prompt},
                     params={"max_tokens": 256}) as s:
            _pause(rng, 20, 60)
            tokens_in, tokens_out = len(prompt.split()) * 3 + 120, len(answer.split()) * 3 + 10
            p_in, p_out = _DEMO_PRICES[model]
            s.record_usage(input_tokens=tokens_in, output_tokens=tokens_out,
                           cost_micros=(tokens_in * p_in + tokens_out * p_out) // 1_000_000,
                           price_source="demo")
            s.set_output({"text": answer})
            return answer

    @ex.tool
    def lookup_order(order_id: str) -> dict[str, Any]:
        _pause(rng, 5, 20)
        return {"order_id": order_id, "status": "shipped", "amount": 42.5, "carrier": "DHL"}

    @ex.step(kind="retrieval")
    def search_kb(query: str) -> list[str]:
        _pause(rng, 5, 25)
        return [f"kb/{query.split()[0].lower()}-policy.md", "kb/shipping-times.md"]

    @ex.tool
    def issue_refund(order_id: str, amount: float) -> dict[str, Any]:
        _pause(rng, 30, 60)
        raise PaymentsTimeout(f"payments API did not answer within 30s (order {order_id})")

    @ex.step(kind="agent")
    def draft_reply(ticket: str, facts: list[str]) -> str:
        ex.log("drafting reply", facts=len(facts))
        return llm("draft", "claude-sonnet", f"Reply to: {ticket}. Facts: {facts}", "Your order shipped yesterday with DHL.")

    @ex.workflow(name="support-triage", version="1.4.0")
    def support_triage(ticket: str, order_id: str) -> dict[str, Any]:
        intent = llm("classify", "gpt-4o-mini", f"Classify: {ticket}", "order_status")
        order = lookup_order(order_id)
        docs = search_kb(f"{intent} {order['status']}")
        return {"intent": intent, "reply": draft_reply(ticket, docs)}

    @ex.workflow(name="refund")
    def refund(order_id: str) -> dict[str, Any]:
        order = lookup_order(order_id)
        return issue_refund(order_id, order["amount"])

    @ex.tool
    async def fetch_source(url: str) -> dict[str, Any]:
        await asyncio.sleep(rng.uniform(0.01, 0.03))
        return {"url": url, "words": rng.randint(300, 1200)}

    @ex.workflow(name="research-report")
    async def research(topic: str) -> str:
        urls = [f"https://example.org/{topic}/{i}" for i in range(3)]
        sources = await asyncio.gather(*(fetch_source(u) for u in urls))
        words = sum(s["words"] for s in sources)
        return llm("summarize", "gpt-4o-mini", f"Summarize {len(sources)} sources on {topic}", f"{words} words read.")

    @ex.workflow(name="nightly-digest")
    def digest(day: str) -> None:
        ex.log("collecting tickets", day=day)
        tickets = lookup_order("digest-" + day)
        raise ValueError(f"no template named 'digest-v2' for {tickets['order_id']}")

    return {"support_triage": support_triage, "refund": refund, "research": research, "digest": digest}


def run_demo(db: str, *, seed: int = 7, local: bool = True) -> list[str]:
    """Run the demo agent into ``db`` (or, with ``local=False`` and ``EXECORD_URL`` set,
    through that server); return the ids of the executions it recorded."""
    import asyncio  # here, not at the top: every `execord` command imports this module
    import random

    from ..runtime import Execord

    ex = Execord(agent="demo-support-agent", agent_version="0.3.1", roles=["support"], db=db,
                 url="" if local else None)
    rng = random.Random(seed)
    agent = build_agent(ex, rng)
    ids: list[str] = []

    def note() -> None:
        rows = ex.store.list_executions()
        if rows:
            ids.append(rows[0]["id"])

    for ticket, order in (("Where is my order?", "A-1001"), ("My parcel is late", "A-1002"), ("Track order please", "A-1003")):
        agent["support_triage"](ticket, order)
        note()
    asyncio.run(agent["research"]("agent-governance"))
    note()
    for fn, arg in ((agent["refund"], "A-1002"), (agent["digest"], time.strftime("%Y-%m-%d"))):
        try:
            fn(arg)
        except Exception:
            pass  # the failure is what the demo shows
        note()
    ex.close()
    return ids


def demo(
    db: DbOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated agent's randomness.")] = 7,
    fmt: FormatOption = "table",
) -> None:
    """Run a simulated support agent (several workflows, tools, nested steps, two failures).

    Example: execord demo && execord executions list
    """
    import shlex

    from rich.markup import escape

    from ..store import DEFAULT_DB

    fmt = check_format(fmt)
    path = db or DEFAULT_DB
    url = None if db else os.environ.get("EXECORD_URL")  # an explicit --db stays local
    t0 = time.perf_counter()
    ids = run_demo(path, seed=seed, local=url is None)
    if fmt == "json":
        print_json({"db": url or path, "executions": ids})
        return
    console.print(f"recorded {len(ids)} executions {'through ' + url if url else 'into ' + path}"
                  f" in {time.perf_counter() - t0:.1f}s")
    # With another store than the default, the next commands must name it too.
    where = "" if url or path == DEFAULT_DB else f" --db {escape(shlex.quote(path))}"
    console.print(f"next: [bold]execord executions list{where}[/bold]  ·  "
                  f"[bold]execord executions get {ids[0][:13]}{where}[/bold]  ·  [bold]execord verify{where}[/bold]",
                  soft_wrap=True)
