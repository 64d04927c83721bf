"""The MCP integration, with the real `mcp` client talking to a real `MCPServer` in this process.

What a user relies on: after `execord.init()`, every tool call through an MCP client is one
governed tool step named after the tool, with the server's name recorded; a denied call never
reaches the server; a redacted argument is what the server receives; a failing tool is a
failed step; switched off, nothing is recorded and nothing changes.

The server runs in-process over the mcp package's own transports: `Client(server)` (the
2026-era direct dispatcher), `Client(server, mode="legacy")` (JSON-RPC messages over memory
streams, with the initialize handshake), and a bare `ClientSession` over `InMemoryTransport`.
The example test runs a stdio server in a child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import mcp
import pytest
from _helpers import AGENT, Ticker, approval_events, only
from mcp.client._memory import InMemoryTransport
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError

import execord
from execord.integrations import _base
from execord.integrations.mcp import MCPToolError
from execord.store import blob_value, steps_from_events

ROOT = Path(__file__).resolve().parent.parent
SERVER = "orders-server"


class Orders:
    """An MCP server with a few tools, and what each tool received (server side)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        srv = MCPServer(SERVER, version="1.2.3")
        self.server = srv

        @srv.tool()
        async def lookup_order(order_id: str) -> dict[str, Any]:
            self.received.append(("lookup_order", {"order_id": order_id}))
            await asyncio.sleep(0.05)
            return {"order_id": order_id, "status": "shipped"}

        @srv.tool()
        def delete_account(account_id: str) -> str:
            self.received.append(("delete_account", {"account_id": account_id}))
            return f"deleted {account_id}"

        @srv.tool()
        def send_note(to: str, body: str) -> dict[str, Any]:
            """Echoes what it received, so a test can see what crossed the wire."""
            self.received.append(("send_note", {"to": to, "body": body}))
            return {"to": to, "body": body}

        @srv.tool()
        def customer_contact(order_id: str) -> dict[str, Any]:
            self.received.append(("customer_contact", {"order_id": order_id}))
            return {"order_id": order_id, "email": "jane.doe@example.com"}

        @srv.tool()
        def refund(order_id: str) -> str:
            self.received.append(("refund", {"order_id": order_id}))
            raise ToolError(f"order {order_id} cannot be refunded: already refunded")

        @srv.tool()
        async def slow() -> str:
            self.received.append(("slow", {}))
            await asyncio.sleep(5)
            return "late"

    def names(self) -> list[str]:
        return [name for name, _ in self.received]


Connect = Callable[[Orders], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def via_client(orders: Orders) -> AsyncIterator[Any]:
    async with mcp.Client(orders.server) as client:
        yield client


@asynccontextmanager
async def via_legacy_client(orders: Orders) -> AsyncIterator[Any]:
    async with mcp.Client(orders.server, mode="legacy") as client:
        yield client


@asynccontextmanager
async def via_session(orders: Orders) -> AsyncIterator[Any]:
    async with InMemoryTransport(orders.server) as (read, write), mcp.ClientSession(read, write) as session:
        await session.initialize()
        yield session


CONNECTIONS = {"client": via_client, "legacy-client": via_legacy_client, "session": via_session}


@pytest.fixture
def orders() -> Orders:
    return Orders()


@pytest.fixture(params=list(CONNECTIONS))
def connect(request: pytest.FixtureRequest) -> Connect:
    return CONNECTIONS[request.param]


def tool_steps(ex: execord.Execord, run_id: str) -> list[dict[str, Any]]:
    ex.flush()
    return [s for s in steps_from_events(ex.store.events(run_id)) if s["kind"] == "tool"]


def the_step(ex: execord.Execord, run_id: str) -> dict[str, Any]:
    steps = tool_steps(ex, run_id)
    assert len(steps) == 1, steps
    return steps[0]


def started(ex: execord.Execord, run_id: str, step: dict[str, Any]) -> dict[str, Any]:
    return next(e.attrs for e in ex.store.events(run_id) if e.type == "step.started" and e.step_id == step["step_id"])


# -- one call, one step ---------------------------------------------------------------------------


async def test_a_tool_call_is_one_tool_step_with_the_server_s_name(engine: execord.Execord, orders: Orders,
                                                                   connect: Connect) -> None:
    async with connect(orders) as client, execord.execution("support") as run:
        result = await client.call_tool("lookup_order", {"order_id": "A-1001"})
    assert result.structured_content == {"order_id": "A-1001", "status": "shipped"}  # the caller's result
    assert isinstance(result, mcp.types.CallToolResult) and not result.is_error
    assert orders.received == [("lookup_order", {"order_id": "A-1001"})]
    step = the_step(engine, run.id)  # one step, though a Client calls its session inside it
    assert (step["name"], step["status"], step["parent_step_id"]) == ("lookup_order", "ok", None)
    attrs = started(engine, run.id, step)
    assert (attrs["integration"], attrs["mcp_server"], attrs["mcp_server_version"]) == ("mcp", SERVER, "1.2.3")
    assert blob_value(engine.store, step["input"]) == {"order_id": "A-1001"}
    output = blob_value(engine.store, step["output"])
    assert output["structuredContent"] == {"order_id": "A-1001", "status": "shipped"}
    assert output["isError"] is False
    assert json.loads(output["content"][0]["text"]) == {"order_id": "A-1001", "status": "shipped"}
    assert step["latency_ms"] >= 50  # the tool sleeps 50 ms
    summary = engine.store.get_execution(run.id)
    assert (summary["status"], summary["totals"]["tool_calls"]) == ("succeeded", 1)


async def test_each_call_is_a_step_in_order(engine: execord.Execord, orders: Orders) -> None:
    async with via_client(orders) as client, execord.execution("support") as run:
        await client.call_tool("lookup_order", {"order_id": "A-1"})
        await client.call_tool("send_note", {"to": "ops", "body": "A-1 shipped"})
        await client.session.call_tool("lookup_order", {"order_id": "A-2"})
    assert [s["name"] for s in tool_steps(engine, run.id)] == ["lookup_order", "send_note", "lookup_order"]
    assert engine.store.get_execution(run.id)["totals"]["tool_calls"] == 3


async def test_concurrent_calls_are_separate_steps(engine: execord.Execord, orders: Orders, connect: Connect) -> None:
    async with connect(orders) as client, execord.execution("support") as run:
        results = await asyncio.gather(*(client.call_tool("lookup_order", {"order_id": f"A-{i}"}) for i in range(3)))
    assert [r.structured_content["order_id"] for r in results] == ["A-0", "A-1", "A-2"]
    steps = tool_steps(engine, run.id)
    assert sorted(blob_value(engine.store, s["input"])["order_id"] for s in steps) == ["A-0", "A-1", "A-2"]
    assert all(s["status"] == "ok" and s["parent_step_id"] is None for s in steps)
    # Each step's output is its own call's result, not a sibling's.
    for s in steps:
        assert blob_value(engine.store, s["output"])["structuredContent"]["order_id"] == \
            blob_value(engine.store, s["input"])["order_id"]


async def test_a_call_outside_any_execution_is_an_execution_of_its_own(engine: execord.Execord,
                                                                       orders: Orders) -> None:
    async with via_client(orders) as client:
        await client.call_tool("lookup_order", {"order_id": "A-1001"})
    engine.flush()
    run = only(engine.store)
    assert (run["workflow"], run["status"], run["totals"]["tool_calls"]) == ("lookup_order", "succeeded", 1)


async def test_calls_inside_a_tool_nest_under_it(engine: execord.Execord, orders: Orders) -> None:
    async with via_client(orders) as client:

        @execord.tool
        async def check_order(order_id: str) -> str:
            result = await client.call_tool("lookup_order", {"order_id": order_id})
            return str(result.structured_content["status"])

        @execord.workflow(name="support")
        async def support() -> str:
            return await check_order("A-1001")

        assert await support() == "shipped"
    engine.flush()
    run = only(engine.store)
    steps = steps_from_events(engine.store.events(run["id"]))
    outer = next(s for s in steps if s["name"] == "check_order")
    inner = next(s for s in steps if s["name"] == "lookup_order")
    assert inner["parent_step_id"] == outer["step_id"]


async def test_a_call_inside_another_integration_s_tool_step_is_that_step(governed: Any, orders: Orders) -> None:
    """An agent framework's tool that wraps an MCP tool: one step (the framework's), and what
    the server receives is masked by that step's decision."""
    ex = governed("""
        policies:
          - id: mask-email
            on: [tool.request]
            effect: redact
            detectors: [email]
    """)
    args = {"to": "jane.doe@example.com", "body": "hello"}
    async with via_client(orders) as client, execord.execution("support") as run:
        outer = _base.begin("tool", "framework.send_note", args, integration="framework")
        assert outer is not None
        with outer.running():
            await client.call_tool("send_note", args)
        outer.ok("sent")
    assert orders.received == [("send_note", {"to": "[REDACTED:email]", "body": "hello"})]
    assert [s["name"] for s in tool_steps(ex, run.id)] == ["framework.send_note"]


# -- governance -----------------------------------------------------------------------------------


async def test_a_denied_call_never_reaches_the_server(governed: Any, orders: Orders, connect: Connect) -> None:
    ex = governed("""
        policies:
          - id: no-account-deletion
            on: [tool.request]
            when: tool.name == "delete_account"
            effect: deny
            message: Agents may not delete accounts.
    """)
    async with connect(orders) as client, execord.execution("support") as run:
        await client.call_tool("lookup_order", {"order_id": "A-1001"})  # allowed
        with pytest.raises(execord.Halted) as halted:
            await client.call_tool("delete_account", {"account_id": "acct-7"})
        # The workflow caught it, but the execution is halted: nothing more is sent.
        with pytest.raises(execord.Halted):
            await client.call_tool("lookup_order", {"order_id": "A-1002"})
    assert (halted.value.rule_id, halted.value.phase) == ("no-account-deletion", "tool.request")
    assert orders.names() == ["lookup_order"]  # the server's delete_account never ran
    steps = tool_steps(ex, run.id)
    assert [(s["name"], s["status"]) for s in steps] == [("lookup_order", "ok"), ("delete_account", "blocked")]
    summary = ex.store.get_execution(run.id)
    assert (summary["status"], summary["halt"]["rule_id"], summary["failure_class"]) == (
        "halted", "no-account-deletion", "policy_block")


async def test_rules_see_the_tool_s_arguments(governed: Any, orders: Orders) -> None:
    governed("""
        policies:
          - id: no-bulk-orders
            on: [tool.request]
            when: tool.name == "lookup_order" && tool.args.order_id.startsWith("BULK-")
            effect: deny
    """)
    async with via_client(orders) as client:
        async with execord.execution("support"):
            await client.call_tool("lookup_order", {"order_id": "A-1"})
        with pytest.raises(execord.Halted, match="no-bulk-orders"):
            async with execord.execution("support"):
                await client.call_tool("lookup_order", {"order_id": "BULK-9"})
    assert orders.received == [("lookup_order", {"order_id": "A-1"})]


async def test_a_redacted_argument_is_what_the_server_receives(governed: Any, orders: Orders,
                                                               connect: Connect) -> None:
    ex = governed("""
        policies:
          - id: mask-email
            on: [tool.request]
            effect: redact
            detectors: [email]
    """)
    async with connect(orders) as client, execord.execution("support") as run:
        result = await client.call_tool("send_note", {"to": "jane.doe@example.com", "body": "Your order shipped"})
    assert orders.received == [("send_note", {"to": "[REDACTED:email]", "body": "Your order shipped"})]
    assert result.structured_content == {"to": "[REDACTED:email]", "body": "Your order shipped"}
    step = the_step(ex, run.id)
    assert blob_value(ex.store, step["input"])["to"] == "[REDACTED:email]"
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


async def test_a_redacted_result_is_what_the_caller_gets_back(governed: Any, orders: Orders) -> None:
    ex = governed("""
        policies:
          - id: mask-email
            on: [tool.response]
            effect: redact
            detectors: [email]
    """)
    async with via_client(orders) as client, execord.execution("support") as run:
        result = await client.call_tool("customer_contact", {"order_id": "A-1001"})
    assert isinstance(result, mcp.types.CallToolResult)
    assert result.structured_content == {"order_id": "A-1001", "email": "[REDACTED:email]"}
    assert "jane.doe" not in result.content[0].text
    assert "[REDACTED:email]" in result.content[0].text
    step = the_step(ex, run.id)
    assert blob_value(ex.store, step["output"])["structuredContent"]["email"] == "[REDACTED:email]"
    ex.flush()
    assert b"jane.doe@example.com" not in Path(ex.db_path).read_bytes()


async def test_a_denied_result_halts_after_the_call(governed: Any, orders: Orders) -> None:
    ex = governed("""
        policies:
          - id: no-contact-data
            on: [tool.response]
            when: tool.name == "customer_contact" && tool.result.structuredContent.email != ""
            effect: deny
    """)
    async with via_client(orders) as client:
        with pytest.raises(execord.Halted) as halted:
            async with execord.execution("support") as run:
                await client.call_tool("customer_contact", {"order_id": "A-1001"})
    assert (halted.value.rule_id, halted.value.phase) == ("no-contact-data", "tool.response")
    assert orders.names() == ["customer_contact"]  # it ran; its result was withheld
    assert the_step(ex, run.id)["status"] == "blocked"


async def test_a_per_tool_budget_counts_mcp_calls(governed: Any, orders: Orders) -> None:
    ex = governed("""
        budgets:
          execution:
            per_tool: {lookup_order: 2}
    """)
    async with via_client(orders) as client:
        with pytest.raises(execord.Halted) as halted:
            async with execord.execution("support") as run:
                for i in range(3):
                    await client.call_tool("lookup_order", {"order_id": f"A-{i}"})
    assert halted.value.reason == "budget"
    assert len(orders.received) == 2
    assert [s["status"] for s in tool_steps(ex, run.id)] == ["ok", "ok", "blocked"]


@pytest.mark.parametrize("verdict", ["approve", "reject"])
async def test_a_call_awaits_approval_without_blocking_the_loop(governed: Any, store: Any, db_path: str,
                                                                orders: Orders, verdict: str) -> None:
    governed("""
        policies:
          - id: deletions-need-approval
            on: [tool.request]
            when: tool.name == "delete_account"
            effect: require_approval
            approvers: [ops]
            timeout: 5m
            on_timeout: reject
    """)
    tick = Ticker()
    async with via_client(orders) as client:

        @execord.workflow(name="cleanup")
        async def cleanup() -> str:
            try:
                result = await client.call_tool("delete_account", {"account_id": "acct-7"})
                return str(result.content[0].text)
            finally:
                tick.done.set()

        outcome, _, (at_request, at_decision) = await asyncio.gather(
            cleanup(), tick.run(), tick.review(db_path, verdict), return_exceptions=True)
    assert at_request > 5 and at_decision > at_request
    run = only(store)
    _, decided = approval_events(store, run["id"])
    if verdict == "approve":
        assert outcome == "deleted acct-7"
        assert orders.received == [("delete_account", {"account_id": "acct-7"})]
        assert (decided.attrs["decision"], run["status"]) == ("approved", "succeeded")
    else:
        assert isinstance(outcome, execord.Halted) and outcome.reason == "approval_rejected"
        assert orders.received == []  # rejected: the server never got the call
        assert (decided.attrs["decision"], run["status"]) == ("rejected", "halted")


# -- errors ---------------------------------------------------------------------------------------


async def test_an_error_result_is_a_failed_step_and_returned_as_is(engine: execord.Execord, orders: Orders,
                                                                   connect: Connect) -> None:
    async with connect(orders) as client, execord.execution("support") as run:
        result = await client.call_tool("refund", {"order_id": "A-1001"})
        unknown = await client.call_tool("no_such_tool", {})
    assert result.is_error and "already refunded" in result.content[0].text  # the library's result, untouched
    assert unknown.is_error
    refund, missing = tool_steps(engine, run.id)
    assert (refund["name"], refund["status"], refund["output"]) == ("refund", "error", None)
    # The error is the result's text, as the server wrote it.
    assert refund["error"] == {"type": "execord.integrations.mcp.MCPToolError", "message": result.content[0].text}
    assert refund["error"]["message"].endswith("order A-1001 cannot be refunded: already refunded")
    assert (missing["name"], missing["status"]) == ("no_such_tool", "error")
    assert "no_such_tool" in missing["error"]["message"]
    # The workflow did not raise: the execution succeeded, with two failed steps in it.
    assert engine.store.get_execution(run.id)["status"] == "succeeded"


async def test_a_call_that_raises_is_a_failed_step_and_a_connector_failure(engine: execord.Execord,
                                                                          orders: Orders, connect: Connect) -> None:
    async with connect(orders) as client:
        with pytest.raises(MCPError) as raised:
            async with execord.execution("support") as run:
                await client.call_tool("slow", {}, read_timeout_seconds=0.2)
    step = the_step(engine, run.id)
    assert (step["name"], step["status"]) == ("slow", "error")
    assert step["error"]["type"] == "mcp.shared.exceptions.MCPError"
    assert step["error"]["message"] == str(raised.value)
    summary = engine.store.get_execution(run.id)
    assert (summary["status"], summary["failure_class"]) == ("failed", "connector_failure")


def test_the_error_of_an_error_result_names_the_tool_when_it_has_no_text() -> None:
    assert str(MCPToolError("refund", "")) == "the MCP tool 'refund' returned an error result with no text"
    assert (MCPToolError("refund", "nope").tool, str(MCPToolError("refund", "nope"))) == ("refund", "nope")


# -- switching it on and off ----------------------------------------------------------------------


async def test_switched_off_nothing_is_recorded(db_path: str, orders: Orders) -> None:
    ex = execord.init(agent=AGENT, db=db_path, integrations="none")
    assert not hasattr(mcp.ClientSession.call_tool, "__execord_original__")
    assert not hasattr(mcp.Client.call_tool, "__execord_original__")
    async with via_client(orders) as client, execord.execution("support") as run:
        result = await client.call_tool("send_note", {"to": "jane.doe@example.com", "body": "hi"})
    assert result.structured_content == {"to": "jane.doe@example.com", "body": "hi"}
    assert tool_steps(ex, run.id) == [] and orders.names() == ["send_note"]


async def test_auto_minus_mcp_switches_only_mcp_off(db_path: str, orders: Orders) -> None:
    ex = execord.init(agent=AGENT, db=db_path, integrations="auto,-mcp")
    assert "mcp" not in execord.integrations.active()
    async with via_client(orders) as client, execord.execution("support") as run:
        await client.call_tool("lookup_order", {"order_id": "A-1"})
    assert tool_steps(ex, run.id) == []


async def test_disabled_records_nothing_and_the_call_still_runs(db_path: str, orders: Orders) -> None:
    execord.init(agent=AGENT, db=db_path, disabled=True)
    async with via_client(orders) as client:
        result = await client.call_tool("lookup_order", {"order_id": "A-1"})
    assert result.structured_content["status"] == "shipped"
    assert not Path(db_path).exists()


def test_instrument_is_idempotent_and_uninstrument_puts_the_methods_back(db_path: str) -> None:
    from mcp.client.client import Client
    from mcp.client.session import ClientSession

    from execord.integrations import mcp as integration

    original = ClientSession.__dict__["call_tool"]
    execord.init(agent=AGENT, db=db_path)
    patched = ClientSession.__dict__["call_tool"]
    assert patched is not original and patched.__execord_original__ is original
    integration.instrument(mcp)
    assert ClientSession.__dict__["call_tool"] is patched  # not wrapped twice
    assert "mcp" in execord.integrations.active()
    execord.integrations.uninstrument()
    assert ClientSession.__dict__["call_tool"] is original
    assert not hasattr(Client.call_tool, "__execord_original__")


def test_init_does_not_import_mcp_and_patches_it_when_imported(tmp_path: Path) -> None:
    code = """
import sys
import execord
execord.init(agent="a")
assert "mcp" not in sys.modules
import mcp
print("patched" if hasattr(mcp.ClientSession.call_tool, "__execord_original__") else "not patched")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "patched", r.stderr


# -- the example ----------------------------------------------------------------------------------


def test_the_example_runs_offline_and_records_its_tool_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "mcp_agent.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    from execord.store import open_store

    store = open_store(str(tmp_path / ".execord" / "execord.db"))
    try:
        run = only(store)
        assert (run["workflow"], run["status"]) == ("handle_ticket", "halted")
        assert run["halt"]["rule_id"] == "no-account-deletion"
        steps = steps_from_events(store.events(run["id"]))
        assert [(s["kind"], s["name"], s["status"]) for s in steps] == [
            ("tool", "lookup_order", "ok"), ("tool", "notify_customer", "ok"), ("tool", "delete_account", "blocked")]
        notified = blob_value(store, steps[1]["input"])
        assert notified["email"] == "[REDACTED:email]"
        server = {e.attrs["mcp_server"] for e in store.events(run["id"]) if e.type == "step.started"}
        assert server == {"acme-orders"}
        assert run["id"] in r.stdout
        assert "jane.doe@example.com" not in (tmp_path / ".execord" / "execord.db").read_bytes().decode("latin-1")
    finally:
        store.close()
