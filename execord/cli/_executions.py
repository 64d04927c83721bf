"""``execord executions …``: find, inspect, follow, replay and export executions."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from .._format import fmt_cost, fmt_duration
from ..errors import ConfigError
from ..record import EXECUTION_ENDED, TERMINAL, Event
from ..store import (
    ExecutionFilter,
    blob_value,
    describe,
    execution_detail,
    export_record,
    relative_ms,
    step_depths,
    steps_from_events,
)
from ..store._query import parse_labels, parse_when
from ._common import (
    DbOption,
    ForceOption,
    FormatOption,
    check_format,
    check_output,
    console,
    fmt_time,
    is_tty,
    print_json,
    status_text,
    store_from,
    write_atomic,
)

app = typer.Typer(help="Find, inspect, follow, replay and export executions.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="An execution id, or a unique prefix of one.", show_default=False)]
_STATUSES = ("running", "awaiting_approval", "succeeded", "failed", "halted", "cancelled", "interrupted")
_FAILURE_CLASSES = (
    "policy_block", "approval", "approval_pending", "provider_failure", "connector_failure",
    "logic_error", "cancelled", "interrupted",
)


def _reason(s: dict[str, Any]) -> str:
    if s.get("halt"):
        h = s["halt"]
        return f"{h.get('reason')}: {h.get('rule_id') or h.get('budget_id') or ''}".rstrip(": ")
    if s.get("cancel"):
        return f"cancelled by {s['cancel'].get('by')}: {s['cancel'].get('reason') or ''}".rstrip(": ")
    if s.get("error"):
        e = s["error"]
        return f"{e.get('type')}: {e.get('message')}"[:80]
    return ""


@app.command("list")
def list_executions(
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="Only this status (repeatable).")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    failure_class: Annotated[str | None, typer.Option("--failure-class", help="Only this failure class.")] = None,
    execution_type: Annotated[str | None, typer.Option("--type", help="Only this execution type.")] = None,
    since: Annotated[str | None, typer.Option(help="Started at or after: 15m, 2h, 7d or an ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Started before: 15m, 2h, 7d or an ISO time.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value (repeatable; all must match).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 50,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """List executions, newest first.

    Example: execord executions list --status failed --since 2h --label env=prod
    """
    fmt = check_format(fmt)
    for s in status or []:
        if s not in _STATUSES:
            raise ConfigError(f"--status {s!r} is not a status; use one of: {', '.join(_STATUSES)}")
    if failure_class is not None and failure_class not in _FAILURE_CLASSES:
        raise ConfigError(f"--failure-class {failure_class!r} is unknown; use one of: {', '.join(_FAILURE_CLASSES)}")
    flt = ExecutionFilter(
        statuses=status or None, workflow=workflow, agent=agent, failure_class=failure_class,
        execution_type=execution_type,
        since_us=parse_when(since, option="--since") if since else None,
        until_us=parse_when(until, option="--until") if until else None,
        labels=parse_labels(label), limit=limit,
    )
    rows = store_from(db).list_executions(flt)
    if fmt == "json":
        print_json(rows)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ID", "WORKFLOW", "AGENT", "STATUS", "FAILURE", "STARTED (UTC)", "DURATION", "STEPS", "TOKENS", "COST", "REASON"):
        table.add_column(col, no_wrap=col != "REASON", overflow="fold", min_width=36 if col == "ID" else None)
    for s in rows:
        t = s["totals"]
        table.add_row(
            s["id"], escape(s["workflow"] or "-"), escape(s["agent"] or "-"), status_text(s["status"]),
            s["failure_class"] or "", fmt_time(s["started_at"]), fmt_duration(s["duration_ms"]),
            str(t["steps"]), str(t["input_tokens"] + t["output_tokens"]), fmt_cost(t["cost_micros"]),
            escape(_reason(s)),
        )
    if not rows:
        console.print("no executions match (try without filters, or run `execord demo`)")
        return
    console.print(table)


def _resolve(db: str | None, execution_id: str) -> tuple[Any, str]:
    store = store_from(db)
    return store, store.resolve_id(execution_id)


@app.command("get")
def get(execution_id: IdArg, db: DbOption = None, fmt: FormatOption = "table") -> None:
    """Show one execution: its summary and its steps.

    Example: execord executions get 01a2b3 --format json
    """
    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    detail = execution_detail(store, eid)
    if fmt == "json":
        print_json(detail)
        return
    s = detail["execution"]
    t = s["totals"]
    fields = [
        ("id", s["id"]), ("workflow", s["workflow"]), ("agent", s["agent"]),
        ("status", status_text(s["status"])), ("failure class", s["failure_class"] or "-"),
        ("started", s["started_at"]), ("ended", s["ended_at"] or "-"),
        ("duration", fmt_duration(s["duration_ms"])),
        ("steps", f"{t['steps']} ({t['llm_calls']} llm, {t['tool_calls']} tool)"),
        ("tokens", f"{t['input_tokens']} in / {t['output_tokens']} out"),
        ("cost", fmt_cost(t["cost_micros"])),
        ("governance", s["governance_version"] or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in s["labels"].items()) or "-"),
        ("parent", s["parent_execution_id"] or "-"),
        ("events", str(detail["event_count"])), ("sealed", "yes" if s["sealed"] else "no"),
    ]
    if _reason(s):
        fields.append(("reason", _reason(s)))
    grid = Table.grid(padding=(0, 2))
    for k, v in fields:
        grid.add_row(f"[bold]{k}[/bold]", v if k == "status" else escape(str(v)))
    console.print(grid)
    if detail["steps"]:
        console.print()
        console.print(_steps_table(detail["steps"]))


def _steps_table(steps: list[dict[str, Any]]) -> Table:
    depth = step_depths(steps)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("STEP", "KIND", "STATUS", "LATENCY", "TOKENS", "COST", "ERROR"):
        table.add_column(col, overflow="fold")
    for st in steps:
        usage = st["usage"] or {}
        tokens = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
        err = st["error"] or {}
        table.add_row(
            "  " * depth[st["step_id"]] + escape(str(st["name"])), st["kind"], st["status"] or "(open)",
            "-" if st["latency_ms"] is None else f"{st['latency_ms']:.1f}ms",
            str(tokens) if usage else "-", fmt_cost(st["cost_micros"]),
            escape(f"{err.get('type')}: {err.get('message')}") if err else "",
        )
    return table


@app.command("steps")
def steps(execution_id: IdArg, db: DbOption = None, fmt: FormatOption = "table") -> None:
    """List the steps of an execution, nested.

    Example: execord executions steps 01a2b3
    """
    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    result = steps_from_events(store.events(eid))
    if fmt == "json":
        print_json(result)
    elif result:
        console.print(_steps_table(result))
    else:
        console.print("this execution has no steps")


def _timeline_table(events: list[Event]) -> Table:
    rel = relative_ms(events)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("SEQ", "+TIME", "TYPE", "WHAT"):
        table.add_column(col, overflow="fold")
    for e, ms in zip(events, rel, strict=True):
        table.add_row(str(e.seq), f"+{ms:.1f}ms", e.type, escape(describe(e)))
    return table


@app.command("timeline")
def timeline(execution_id: IdArg, db: DbOption = None, fmt: FormatOption = "table") -> None:
    """Show every event of an execution, with times relative to its start.

    Example: execord executions timeline 01a2b3 --format json
    """
    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    events = store.events(eid)
    if fmt == "json":
        print_json([e.to_dict() for e in events])
    else:
        console.print(_timeline_table(events))


@app.command("watch")
def watch(
    execution_id: IdArg,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.5,
    timeout: Annotated[float | None, typer.Option(min=0, help="Give up after this many seconds (exit 1).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Follow a live execution, printing each event as it lands, until it is terminal.

    Example: execord executions watch 01a2b3
    """
    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    last, t0, start = -1, None, time.monotonic()
    from ..record import ts_to_us

    while True:
        for e in store.events(eid, after_seq=last):
            last = e.seq
            if fmt == "json":
                sys.stdout.write(orjson.dumps(e.to_dict()).decode() + "\n")
                sys.stdout.flush()
            else:
                t0 = ts_to_us(e.ts) if t0 is None else t0
                console.print(f"{e.seq:>4}  +{(ts_to_us(e.ts) - t0) / 1000:>9.1f}ms  {e.type:<20} {escape(describe(e))}")
            if e.type == EXECUTION_ENDED:
                return
        status = store.get_execution(eid)["status"]
        if status in TERMINAL and not store.events(eid, after_seq=last):
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise ConfigError(f"execution {eid} is still {status} after {timeout:g}s")
        time.sleep(interval)


def _show_values(store: Any, e: Event) -> list[str]:
    lines = []
    for key in ("inputs", "input", "output"):
        ref = e.attrs.get(key)
        if ref is None:
            continue
        value = blob_value(store, ref)
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        if len(text) > 2000:
            text = text[:2000] + " …"
        lines.append(f"  {key}: {text}")
    if e.type == "governance.decision":
        for r in e.attrs.get("rules") or []:
            lines.append(f"  rule {r['id']}: {r['effect']} matched={r['matched']} {r.get('message') or ''}")
        for b in e.attrs.get("budgets") or []:
            lines.append(f"  budget {b['id']}: {b['projected']} of {b['limit']} "
                         f"({'ok' if b['ok'] else 'exceeded'}; {b['used']} before this action)")
    if e.type == EXECUTION_ENDED:
        lines.append(f"  totals: {orjson.dumps(e.attrs['totals']).decode()}")
    return lines


@app.command("replay")
def replay(
    execution_id: IdArg,
    interactive: Annotated[bool, typer.Option("--interactive/--no-interactive", help="Wait for Enter between events (q quits).")] = True,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Step through a recorded execution event by event, with inputs, outputs and decisions.

    Example: execord executions replay 01a2b3 --no-interactive
    """
    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    events = store.events(eid)
    if fmt == "json":
        print_json([
            {**e.to_dict(), "values": {k: blob_value(store, e.attrs[k]) for k in ("inputs", "input", "output") if e.attrs.get(k)}}
            for e in events
        ])
        return
    interactive = interactive and is_tty()
    rel = relative_ms(events)
    for i, (e, ms) in enumerate(zip(events, rel, strict=True)):
        console.print(f"[bold]{e.seq:>4}[/bold]  +{ms:.1f}ms  [bold]{e.type}[/bold]  {escape(describe(e))}")
        for line in _show_values(store, e):
            console.print(line, markup=False)
        if interactive and i < len(events) - 1:
            answer = input("[Enter: next, q: quit] ")
            if answer.strip().lower() in ("q", "quit"):
                return


@app.command("export")
def export(
    execution_ids: Annotated[list[str], typer.Argument(help="Execution ids (or unique prefixes); several only "
                                                            "with --bundle.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Write a verifiable bundle (.zip) of the sealed "
                                                                 "executions to this file.")] = None,
    key: Annotated[Path | None, typer.Option("--key", "-k", envvar="EXECORD_LEDGER_KEY", show_default=False,
                                             help="The ledger key, to sign a fresh checkpoint when none covers "
                                                  "the executions yet (env EXECORD_LEDGER_KEY).")] = None,
    force: ForceOption = False,
    db: DbOption = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="json (the record; the default) or html (a "
                                                                   "report for an audit package).",
                                            case_sensitive=False, show_default=False)] = None,
) -> None:
    """Export executions: one as JSON or an HTML report, or several as a verifiable bundle.

    Example: execord executions export 01a2b3 -o incident-4312.json
    """
    if bundle is not None and output is not None:
        raise ConfigError("--bundle and --output both name the file to write: give --bundle FILE.zip for a "
                          "verifiable bundle, or -o FILE for a JSON or HTML export of one execution")
    if bundle is not None and fmt is not None:
        raise ConfigError(f"--format {fmt} does not apply to a bundle (a zip that `execord verify` checks): leave "
                          "--format out, or drop --bundle for a JSON or HTML export of one execution")
    fmt = (fmt or "json").lower()
    if fmt not in ("json", "html"):
        raise ConfigError(f"unknown --format {fmt!r} for an export: use json or html (or --bundle FILE.zip)")
    store = store_from(db)
    ids = list(dict.fromkeys(store.resolve_id(x) for x in execution_ids))  # one execution named twice is one
    if bundle is not None:
        check_output(bundle, force=force, store=store)
        _export_bundle(store, ids, bundle, key, force)
        return
    if len(ids) > 1:
        raise ConfigError("a JSON or HTML export holds one execution: give one id, or --bundle FILE.zip for several")
    eid = ids[0]
    if output is not None:
        check_output(output, force=force, store=store)
    if fmt == "html":
        if getattr(store, "remote", False):
            data = store.api.call("GET", f"executions/{eid}/report", raw=True)
        else:
            from ..ledger._report import report_html

            data = report_html(store, eid).encode()
    else:
        data = orjson.dumps(export_record(store, eid), option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        sys.stdout.buffer.write(data)
        return
    write_atomic(output, data, replace=force)
    console.print(f"wrote {output} ({len(data)} bytes)", markup=False)


def _export_bundle(store: Any, ids: list[str], path: Path, key: Path | None, force: bool) -> None:
    if getattr(store, "remote", False):
        data = store.api.call("POST", "bundles", json={"execution_ids": ids}, raw=True, timeout=600)
        write_atomic(path, data, replace=force)
    else:
        from ..ledger import _log
        from ..ledger._bundle import write_bundle

        signer = _log.read_signer(key) if key else None
        write_atomic(path, lambda fh: write_bundle(store, ids, fh, signer=signer), replace=force)
    console.print(f"wrote {path}: {len(ids)} executions; verify with `execord verify {path} --key ledger.pub`",
                  markup=False)


@app.command("cancel")
def cancel(
    execution_id: IdArg,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the execution).")] = None,
    by: Annotated[str | None, typer.Option(help="Who asks (default: the OS user; the API key's name on a server).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Ask a running execution to stop at its next governed action (it ends cancelled).

    Example: execord executions cancel 01a2b3 --reason "looping on the refund tool"
    """
    from ._governance import _user

    fmt = check_format(fmt)
    store, eid = _resolve(db, execution_id)
    row = store.request_cancel(eid, by=by or f"cli:{_user()}", reason=reason)
    if fmt == "json":
        print_json({"execution_id": eid, "cancel": row})
    else:
        console.print(f"cancel requested for {eid} by {escape(str(row.get('by')))}; it stops at its next governed action")

