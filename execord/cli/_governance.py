"""``execord governance …``: validate, test, apply, history, show, diff, simulate."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..governance import EFFECT_RANK, Policy, build_version, fill, load_spec
from ..store._query import parse_when
from ._common import (
    DbOption,
    FormatOption,
    check_format,
    console,
    err_console,
    print_json,
    store_from,
)

app = typer.Typer(help="Validate, test, apply, compare and simulate governance files.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="A governance file (execord.yaml) or a folder of YAML files.", show_default=False)]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


@app.command("validate")
def validate(file: FileArg, fmt: FormatOption = "table") -> None:
    """Check a governance file: every problem with its file, line and a hint.

    Example: execord governance validate execord.yaml
    """
    fmt = check_format(fmt)
    spec = load_spec(file)
    version, table = build_version(spec)
    summary = {
        "ok": True, "version": version.id, "digest": version.digest, "rules": len(spec.rules),
        "budgets": len(spec.execution_budgets) + len(spec.per_tool) + len(spec.windows),
        "tests": len(spec.tests), "prices": table.price_source, "files": list(spec.sources),
    }
    if fmt == "json":
        print_json(summary)
        return
    console.print(f"[green]ok[/green] {escape(str(file))}: {summary['rules']} rules, {summary['budgets']} budgets, "
                  f"{summary['tests']} tests; it would be version {version.id}")


def _case_result(policy: Policy, case: dict[str, Any]) -> dict[str, Any]:
    ctx = fill(case["context"])
    import datetime as dt

    ctx["now"] = dt.datetime.now(dt.UTC)
    d = policy.evaluate(case["phase"], ctx)
    expect = case["expect"]
    got_rule = d.deciding[1] if d.deciding else None
    ok = d.decision == expect["decision"] and ("rule" not in expect or expect["rule"] == got_rule)
    return {"name": case["name"], "where": case["where"], "ok": ok, "expected": expect,
            "got": {"decision": d.decision, "rule": got_rule}}


@app.command("test")
def test(file: FileArg, fmt: FormatOption = "table") -> None:
    """Run the test cases written beside the policies (`tests:`); exit 1 on any failure.

    Each case gives a phase and a context, and expects a decision (and optionally the rule
    that decides), like `opa test`.

    Example: execord governance test execord.yaml
    """
    fmt = check_format(fmt)
    spec = load_spec(file)
    if not spec.tests:
        raise ConfigError(f"{file} has no `tests:` cases; add some (docs/governance.md, 'Testing policies')")
    policy = Policy(spec)
    results = [_case_result(policy, case) for case in spec.tests]
    failed = [r for r in results if not r["ok"]]
    if fmt == "json":
        print_json({"passed": len(results) - len(failed), "failed": len(failed), "cases": results})
    else:
        for r in results:
            if r["ok"]:
                console.print(f"[green]PASS[/green] {escape(r['name'])}")
            else:
                err_console.print(f"[red]FAIL[/red] {escape(r['name'])} ({r['where']}): expected "
                                  f"{r['expected']}, got {r['got']}")
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command("apply")
def apply(
    file: FileArg,
    by: Annotated[str | None, typer.Option(help="Who is applying it (default: the OS user).")] = None,
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Make a governance file the active version (creating it, or reusing an identical one).

    Example: execord governance apply execord.yaml
    """
    fmt = check_format(fmt)
    from ..record import canonical_json, make_blob

    spec = load_spec(file)
    version, table = build_version(spec)
    store = store_from(db, create=True)
    if getattr(store, "remote", False):
        # Through the server (admin scope): it validates again, stores and activates.
        answer = store.apply_governance(file)
        created, act = answer["created"], answer["activation"]
    else:
        store.append([], [make_blob(canonical_json(table.document()), "json")])
        created = store.put_governance_version(version.id, version.digest, version.canonical, by=by or _user())
        act = store.activate_governance(version.id, by=by or _user(), source=os.path.abspath(file))
    result = {"version": version.id, "created": created, "activated": act["changed"],
              "from_version": act["from_version"] if act["changed"] else version.id,
              "activated_by": act["activated_by"] if act["changed"] else None}
    if fmt == "json":
        print_json(result)
    elif act["changed"]:
        was = f" (was {act['from_version']})" if act["from_version"] else ""
        console.print(f"activated {version.id}{was}{'' if created else ', an existing version'}")
    else:
        console.print(f"{version.id} is already active; nothing changed")


@app.command("history")
def history(db: DbOption = None, fmt: FormatOption = "table") -> None:
    """List every activation: when, who, from which version to which.

    Example: execord governance history
    """
    fmt = check_format(fmt)
    rows = store_from(db).governance_history()
    if fmt == "json":
        print_json(rows)
        return
    if not rows:
        console.print("no governance version was ever activated (`execord governance apply FILE`)")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("#", "ACTIVATED (UTC)", "BY", "FROM", "TO", "SOURCE"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["seq"]), r["activated_at"][:19].replace("T", " "), escape(r["activated_by"] or "-"),
                      r["from_version"] or "-", r["to_version"], escape(r["source"] or "-"))
    console.print(table)


def _looks_like_a_path(ref: str) -> bool:
    return "/" in ref or os.sep in ref or ref.endswith((".yaml", ".yml"))


def _version(store: Any, ref: str) -> tuple[str, dict[str, Any]]:
    """A version id (or prefix), or a governance file, as (label, document)."""
    if os.path.lexists(ref):
        version, _ = build_version(load_spec(ref))
        return f"{ref} ({version.id})", version.document
    if _looks_like_a_path(ref):
        raise ConfigError(f"no such file: {ref} (name a governance file or folder, or a version id: execord governance history)")
    v = store.get_governance_version(ref)
    return v["id"], v["document"]


@app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="A version id (gv_…, or a unique prefix); default: the active one.")] = "",
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Show a governance version: its rules, budgets, detectors and prices.

    Example: execord governance show gv_4f1c2a9d
    """
    fmt = check_format(fmt)
    if _looks_like_a_path(version):
        if not os.path.lexists(version):
            raise ConfigError(f"no such file: {version} (`governance show` takes a version id: execord governance history)")
        raise ConfigError(f"`governance show` shows a stored version (gv_...), not a file: check {version} with "
                          f"`execord governance validate {version}`, or compare it with `execord governance diff`")
    store = store_from(db)
    ref = version or store.active_governance()
    if not ref:
        raise ConfigError("no governance version is active; name one (execord governance history)")
    v = store.get_governance_version(ref)
    if fmt == "json":
        print_json(v)
        return
    doc = v["document"]
    active = store.active_governance()
    console.print(f"[bold]{v['id']}[/bold]{' (active)' if active == v['id'] else ''}  {v['digest']}  "
                  f"created {v['created_at'][:19]} by {escape(v['created_by'] or '-')}")
    table = Table(box=None, header_style="bold", pad_edge=False, title="rules", title_justify="left")
    for col in ("ID", "ON", "EFFECT", "WHEN", "MESSAGE"):
        table.add_column(col, overflow="fold")
    for r in doc["policies"]:
        table.add_row(escape(r["id"]), ", ".join(r["on"]), r["effect"], escape(r["when"] or "(always)"),
                      escape(r.get("message") or ""))
    console.print(table)
    budgets = doc["budgets"]
    names = {"cost_micros": "cost_usd", "duration_ms": "duration"}
    for k, v2 in {**budgets["execution"], **{f"per_tool.{t}": n for t, n in budgets["per_tool"].items()}}.items():
        shown = f"${v2 / 1_000_000:,.6f}".rstrip("0").rstrip(".") if k == "cost_micros" else f"{v2 // 1000}s" if k == "duration_ms" else v2
        console.print(f"budget execution.{names.get(k, k)}: {shown}")
    for w in budgets["windows"]:
        console.print(f"budget {w['id']}: {w['scope']} {w['match']} per {w['period']}: {w['limits']}")
    console.print(f"detectors: secrets {'on' if doc['detectors']['secrets'] else 'off'}, "
                  f"custom {sorted(doc['detectors']['custom']) or '-'}; prices: {doc['pricing']['source']}")


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed between two version documents, rule by rule and budget by budget."""
    out: list[dict[str, Any]] = []
    a = {r["id"]: r for r in old["policies"]}
    b = {r["id"]: r for r in new["policies"]}
    for rid in sorted(a.keys() | b.keys()):
        if rid not in a:
            out.append({"what": f"rule {rid}", "change": "added", "new": b[rid]})
        elif rid not in b:
            out.append({"what": f"rule {rid}", "change": "removed", "old": a[rid]})
        else:
            for key in sorted(a[rid].keys() | b[rid].keys()):
                if a[rid].get(key) != b[rid].get(key):
                    out.append({"what": f"rule {rid}.{key}", "change": "changed", "old": a[rid].get(key), "new": b[rid].get(key)})
    for section in ("budgets", "detectors", "pricing"):
        for key in sorted(old[section].keys() | new[section].keys()):
            if old[section].get(key) != new[section].get(key):
                out.append({"what": f"{section}.{key}", "change": "changed", "old": old[section].get(key), "new": new[section].get(key)})
    return out


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="A version id (or prefix), or a governance file.", show_default=False)],
    new: Annotated[str, typer.Argument(help="A version id (or prefix), or a governance file.", show_default=False)],
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Show what changed between two governance versions (or files).

    Example: execord governance diff gv_4f1c2a9d execord.yaml
    """
    fmt = check_format(fmt)
    store = store_from(db, create=True)
    (la, da), (lb, db_) = _version(store, old), _version(store, new)
    changes = diff_documents(da, db_)
    if fmt == "json":
        print_json({"old": la, "new": lb, "changes": changes})
        return
    console.print(f"--- {escape(la)}\n+++ {escape(lb)}")
    if not changes:
        console.print("no differences")
    for c in changes:
        if c["change"] == "added":
            console.print(f"[green]+ {escape(c['what'])}[/green]: {escape(str(c['new']))}")
        elif c["change"] == "removed":
            console.print(f"[red]- {escape(c['what'])}[/red]: {escape(str(c['old']))}")
        else:
            console.print(f"[yellow]~ {escape(c['what'])}[/yellow]: {escape(str(c['old']))} → {escape(str(c['new']))}")


@app.command("simulate")
def simulate_cmd(
    file: FileArg,
    since: Annotated[str, typer.Option(help="Executions started since: 15m, 2h, 7d or an ISO time.")] = "7d",
    db: DbOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Re-evaluate recorded decisions under a candidate file; nothing is written.

    Also re-evaluates each decision under the version it was made with: any difference is
    an integrity problem (exit 1).

    Example: execord governance simulate stricter.yaml --since 7d
    """
    from ..runtime._simulate import simulate

    fmt = check_format(fmt)
    spec = load_spec(file)
    report = simulate(store_from(db), Policy(spec), since_us=parse_when(since, option="--since"))
    if fmt == "json":
        print_json({"executions": report.executions, "decisions": report.decisions,
                    "changes": [c.as_dict() for c in report.changes],
                    "integrity_problems": [c.as_dict() for c in report.mismatches]})
    else:
        console.print(f"re-evaluated {report.decisions} decisions of {report.executions} executions")
        for c in report.changes:
            stricter = EFFECT_RANK[c.candidate] > EFFECT_RANK[c.recorded]
            colour = "red" if stricter else "green"
            console.print(f"[{colour}]{c.recorded} → {c.candidate}[/{colour}] {c.execution_id} seq {c.seq} "
                          f"{c.phase} {escape(c.step or '')} ({escape(c.rule or '-')})")
        for c in report.mismatches:
            err_console.print(f"[red]INTEGRITY[/red] {c.execution_id} seq {c.seq}: recorded {c.recorded}, "
                              f"its own version now says {c.candidate}")
        console.print(f"{len(report.changes)} decisions would change; {len(report.mismatches)} integrity problems")
    if report.mismatches:
        raise typer.Exit(1)
