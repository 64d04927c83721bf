"""A support agent calling the tools of an MCP server, recorded and governed by Execord.

    python examples/mcp_agent.py

The MCP server ("acme-orders") is this same file, started as a child process that speaks MCP
over stdio (`python examples/mcp_agent.py --serve`), so the example runs offline. Its tools
look orders up, notify customers and delete accounts. The agent's governance (written to a
temporary file here; in a project it is ./execord.yaml):

    no-account-deletion   tool.request, tool.name == "delete_account"  →  deny
    mask-contact-data     tool.request, the email detector              →  redact

so the ticket below looks the order up, notifies the customer with their e-mail address
masked before it leaves the agent (the server prints what it received), and is halted at
the account deletion, which the server never receives. Then look at what was recorded:

    execord executions list
    execord executions steps <id>
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

import mcp

import execord

GOVERNANCE = """\
version: 1
policies:
  - id: no-account-deletion
    on: [tool.request]
    when: tool.name == "delete_account"
    effect: deny
    message: Agents may not delete customer accounts.
  - id: mask-contact-data
    on: [tool.request]
    effect: redact
    detectors: [email]
"""


# -- the agent ------------------------------------------------------------------------------------


@execord.workflow  # each ticket is one execution; every MCP tool call in it is a governed step
async def handle_ticket(client: mcp.Client, ticket: dict[str, str]) -> str:
    order = await client.call_tool("lookup_order", {"order_id": ticket["order_id"]})
    status = order.structured_content["status"] if order.structured_content else "unknown"
    await client.call_tool("notify_customer", {
        "email": ticket["email"], "message": f"Your order {ticket['order_id']} is {status}."})
    # The customer also asked to close their account: governance denies it, and this raises Halted.
    await client.call_tool("delete_account", {"account_id": ticket["account_id"]})
    return "done"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        policy = os.path.join(tmp, "execord.yaml")
        with open(policy, "w", encoding="utf-8") as f:
            f.write(GOVERNANCE)
        recorder = execord.init(agent="support-bot", governance=policy)  # records to ./.execord/execord.db

        server = mcp.StdioServerParameters(command=sys.executable, args=[os.path.abspath(__file__), "--serve"],
                                           env=dict(os.environ))
        ticket = {"order_id": "A-1001", "email": "jane.doe@example.com", "account_id": "acct-7"}
        async with mcp.Client(server) as client:
            try:
                await handle_ticket(client, ticket)
            except execord.Halted as halted:
                print(f"halted by {halted.rule_id} at {halted.phase}")

        execord.flush()
        run = recorder.store.list_executions()[0]
        print(f"recorded execution {run['id']}: {run['status']}, {run['totals']['tool_calls']} tool calls")


# -- the MCP server (the child process) -----------------------------------------------------------


def serve() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("acme-orders", version="1.0.0", log_level="WARNING")

    @server.tool()
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look an order up by its id."""
        return {"order_id": order_id, "status": "shipped", "carrier": "DHL"}

    @server.tool()
    def notify_customer(email: str, message: str) -> str:
        """Send the customer a message."""
        print(f"[acme-orders] notify_customer received email={email!r}", file=sys.stderr)
        return f"sent to {email}"

    @server.tool()
    def delete_account(account_id: str) -> str:
        """Delete a customer account (the agent is not allowed to)."""
        print(f"[acme-orders] delete_account received {account_id!r}", file=sys.stderr)
        return f"deleted {account_id}"

    server.run("stdio")


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
    else:
        asyncio.run(main())
