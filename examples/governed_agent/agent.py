"""A small customer-support agent under governance (see README.md for the walk-through).

Each scenario is one ticket, handled by the same workflow: a model plans the actions, then
the agent calls its tools. The governance file beside this script (execord.yaml) decides
what happens:

    deny      the plan restarts a service with a shell command: denied (rule no-shell)
    redact    the customer writes their e-mail, phone and card number: masked everywhere
    approve   a $250 refund: waits until someone runs `execord approvals approve ID`
    budget    five orders to look up, three allowed per execution: halted at the fourth
    all       the four, one after the other (the default)

    python agent.py [deny|redact|approve|budget|all] [--db PATH] [--roles support,ops]

The record goes to --db, else $EXECORD_DB, else .execord/execord.db beside this script.
The model and the tools are fakes: nothing leaves the machine, no API key is needed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import threading
from typing import Any

import execord

HERE = os.path.dirname(os.path.abspath(__file__))
GOVERNANCE = os.path.join(HERE, "execord.yaml")
LOCAL_DB = os.path.join(HERE, ".execord", "execord.db")

SCENARIOS = ("deny", "redact", "approve", "budget")

TICKETS: dict[str, dict[str, str]] = {
    "deny": {
        "id": "T-101", "customer": "C-881",
        "text": "The export page times out for everyone on our team. Can you restart the export worker?",
    },
    "redact": {
        "id": "T-102", "customer": "jane.doe@example.com",
        "text": "I was charged twice for order A-1001 on my card 4111 1111 1111 1111. "
                "Please refund the duplicate and call me on +1 415 555 2671 or mail jane.doe@example.com.",
    },
    "approve": {
        "id": "T-103", "customer": "C-907",
        "text": "Order A-1002 arrived broken (photos attached). Please refund the $250.",
    },
    "budget": {
        "id": "T-104", "customer": "C-112",
        "text": "Where are my orders A-1003, A-1004, A-1005, A-1006 and A-1007?",
    },
}

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {"status": "delivered", "total": 59.9, "charges": 2},
    "A-1002": {"status": "delivered", "total": 310.0, "charges": 1},
    "A-1003": {"status": "shipped", "total": 18.5, "charges": 1},
    "A-1004": {"status": "processing", "total": 42.0, "charges": 1},
    "A-1005": {"status": "shipped", "total": 7.25, "charges": 1},
    "A-1006": {"status": "delivered", "total": 99.0, "charges": 1},
    "A-1007": {"status": "processing", "total": 12.0, "charges": 1},
}


# -- the tools: each call is a governed step ----------------------------------------------


@execord.tool
def lookup_order(order_id: str) -> dict[str, Any]:
    """Read an order from the (fake) order system."""
    return {"order_id": order_id, **ORDERS[order_id]}


@execord.tool
def run_shell(command: str) -> str:
    """Run a shell command on the support host (a fake: it only says what it would run)."""
    print(f"    shell: would run {command!r}")
    return f"ran: {command}"


@execord.tool
def save_crm_note(customer: str, note: str) -> dict[str, Any]:
    """Store a note about the customer in the (fake) CRM; it prints exactly what it was given."""
    print(f"    crm received: customer={customer!r}")
    print(f"                  note={note!r}")
    return {"note_id": "N-5531", "customer": customer, "note": note}


@execord.tool
def issue_refund(order_id: str, amount: float, order_total: float) -> dict[str, Any]:
    """Send a refund to the (fake) payment provider."""
    print(f"    payments: refunded ${amount:.2f} on order {order_id}")
    return {"refund_id": f"R-{order_id[2:]}", "order_id": order_id, "amount": amount}


TOOLS = {f.__name__: f for f in (lookup_order, run_shell, save_crm_note, issue_refund)}


# -- the "model": a deterministic planner recorded as an LLM step --------------------------

SYSTEM = "You are a support agent. Answer with the tool calls that resolve the ticket, then a reply."


def fake_model(ticket: dict[str, str]) -> dict[str, Any]:
    """What a model would plan for these tickets (no network, no key, always the same)."""
    text = ticket["text"]
    orders = re.findall(r"A-\d{4}", text)
    if "restart" in text:
        return {"actions": [{"tool": "run_shell", "args": {"command": "systemctl restart export-worker"}}],
                "reply": "We restarted the export worker; please try again."}
    if "charged twice" in text:
        total = ORDERS[orders[0]]["total"]
        return {"actions": [
            {"tool": "lookup_order", "args": {"order_id": orders[0]}},
            {"tool": "save_crm_note", "args": {"customer": ticket["customer"], "note": text}},
            {"tool": "issue_refund", "args": {"order_id": orders[0], "amount": total, "order_total": total}},
        ], "reply": f"We refunded the duplicate charge on order {orders[0]}."}
    if "refund" in text:
        amount = float(re.search(r"\$(\d+(?:\.\d+)?)", text).group(1))  # type: ignore[union-attr]
        return {"actions": [
            {"tool": "lookup_order", "args": {"order_id": orders[0]}},
            {"tool": "issue_refund", "args": {"order_id": orders[0], "amount": amount,
                                              "order_total": ORDERS[orders[0]]["total"]}},
        ], "reply": f"We refunded ${amount:.2f} on order {orders[0]}."}
    return {"actions": [{"tool": "lookup_order", "args": {"order_id": o}} for o in orders],
            "reply": "Here is where each of your orders is."}


def plan(ticket: dict[str, str]) -> dict[str, Any]:
    """Ask the model for a plan: one `llm` step, governed at llm.request and llm.response."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket["text"]}]
    with execord.step("plan", kind="llm", provider="openai", model="gpt-4o-mini",
                      input={"messages": messages}, params={"max_tokens": 400, "temperature": 0}) as s:
        answer = fake_model(ticket)
        if s is not None:
            s.record_usage(input_tokens=90 + len(ticket["text"]) // 4, output_tokens=40 + 25 * len(answer["actions"]))
            s.set_output(answer)
    return answer


# -- the workflow: every call is one execution -------------------------------------------

RUN: dict[str, str] = {}


@execord.workflow(name="support")
def handle_ticket(ticket: dict[str, str]) -> dict[str, Any]:
    """Plan, then act; governance may mask, hold or stop any step."""
    here = execord.current()
    if here is not None:
        RUN["id"] = here.id
    answer = plan(ticket)
    done = []
    for action in answer["actions"]:
        TOOLS[action["tool"]](**action["args"])
        done.append(action["tool"])
    return {"ticket": ticket["id"], "actions": done, "reply": answer["reply"]}


# -- running it --------------------------------------------------------------------------


def db_flag(db: str) -> str:
    """`--db PATH` for the printed commands, or nothing when the CLI's default is this file."""
    if os.path.abspath(db) == os.path.abspath(os.path.join(".execord", "execord.db")):
        return ""
    rel = os.path.relpath(db)
    return f" --db {shlex.quote(db if rel.startswith('..') else rel)}"


def watch_approvals(db: str, stop: threading.Event) -> None:
    """Print the command that approves what this execution waits for (the agent is blocked)."""
    from execord.store import open_store

    shown: set[str] = set()
    store = None
    try:
        while not stop.wait(0.2):
            eid = RUN.get("id")
            if eid is None:
                continue
            store = store or open_store(db, create=False)
            for a in store.list_approvals(status="pending", execution_id=eid):
                if a["id"] in shown:
                    continue
                shown.add(a["id"])
                action = a["action"] or {}
                print(f"    waiting for approval {a['id']} (rule {a['rule_id']}, approvers {', '.join(a['approvers'])}):\n"
                      f"      {action.get('name')}({action.get('input')})\n"
                      f"    approve it from a second terminal:\n"
                      f"      execord approvals approve {a['id']} --comment \"photos checked\"{db_flag(db)}\n"
                      f"    or reject it:  execord approvals reject {a['id']}{db_flag(db)}", flush=True)
    finally:
        if store is not None:
            store.close()


def run(scenario: str, db: str) -> str:
    """Handle one scenario's ticket; print what happened and how to look at it."""
    print(f"[{scenario}] ticket {TICKETS[scenario]['id']}", flush=True)
    RUN.clear()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_approvals, args=(db, stop), daemon=True)
    watcher.start()
    try:
        result = handle_ticket(TICKETS[scenario])
        outcome = f"succeeded: {result['reply']}"
    except execord.Halted as h:
        outcome = f"halted ({h.reason}: {h.rule_id or h.budget_id}) at {h.phase}"
    finally:
        stop.set()
        watcher.join()
    eid = RUN["id"]
    print(f"[{scenario}] execution {eid} {outcome}")
    print(f"    execord executions get {eid}{db_flag(db)}")
    print(f"    execord executions timeline {eid}{db_flag(db)}", flush=True)
    return eid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A support agent under governance: deny, redact, approve, budget.")
    ap.add_argument("scenario", nargs="?", default="all", choices=(*SCENARIOS, "all"))
    ap.add_argument("--db", default=os.environ.get("EXECORD_DB") or LOCAL_DB,
                    help="the SQLite record (default: $EXECORD_DB, else .execord/execord.db beside this script)")
    ap.add_argument("--roles", default="support", help="the agent's roles, comma-separated (try support,ops)")
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
    execord.init(agent="support-bot", db=args.db, roles=[r for r in args.roles.split(",") if r],
                 governance=GOVERNANCE)
    try:
        for scenario in SCENARIOS if args.scenario == "all" else (args.scenario,):
            run(scenario, args.db)
            print()
    finally:
        execord.shutdown()
    print(f"all executions:  execord executions list{db_flag(args.db)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
