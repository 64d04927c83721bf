"""Decision latency of `Policy.evaluate` at tool.request with 50 rules, and cedarpy's on the same set.

benchmarks/policy_50.yaml holds 50 rules, all at tool.request, each pinning its tool with a
leading `tool.name == "…" &&`. Two cases, each timed call by call after a warm-up:

  (a) 2 rules apply: a call to issue_refund; the index pins the other 48 away.
      Target p50 ≤ 5 µs.
  (b) all 50 apply: the same 50 rules with their pins stripped (`tool.name == "x" && rest`
      becomes `rest`), so every call meets every rule, and arguments carrying every field any
      rule reads, so every condition is evaluated. Target p50 ≤ 25 µs.

In the same run, the peer: `cedarpy.is_authorized` on benchmarks/policy_50.cedar (the same
rules as 50 Cedar policies with the same ids, plus Cedar's `default-allow`), with the policy
set and the entities parsed once, on the same requests (benchmarks/policy_50_requests.json),
pins stripped the same way for (b). Also shown: cedarpy given the policies as text, which it
parses on every call. Before timing, both engines are checked to agree on which rules match,
for every tool of the file on two argument sets, and for (a) and (b).

    python benchmarks/policy_eval.py [--quick] [--iterations N]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from execord.governance import Policy, fill, load_spec

HERE = Path(__file__).resolve().parent
RULES = HERE / "policy_50.yaml"
CEDAR = HERE / "policy_50.cedar"
REQUESTS = HERE / "policy_50_requests.json"
PHASE = "tool.request"
_PIN = re.compile(r'^tool\.name == "[^"]+" && ')
_CEDAR_PIN = re.compile(r'resource == Tool::"[^"]+"')


# -- the two sides' inputs, from one description ---------------------------------------------


def execord_context(request: dict[str, Any], entities: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule variables for a Cedar request: agent from the principal, tool from the resource."""
    principal = next(e for e in entities if e["uid"] == request["principal"])
    c = request["context"]
    ctx = fill({
        "agent": principal["attrs"],
        "workflow": c["workflow"],
        "tool": {"name": request["resource"]["id"], "args": c["args"]},
        "labels": c["labels"],
        "usage": c["usage"],
    })
    ctx["now"] = dt.datetime.now(dt.UTC)
    return ctx


def unpinned_policy(policy: Policy) -> Policy:
    """The same rules with their leading `tool.name == "…" &&` removed: each applies to every call."""
    rules = tuple(dataclasses.replace(r, when=_PIN.sub("", r.when or "")) for r in policy.spec.rules)
    assert all(not _PIN.match(r.when or "") for r in rules)
    return Policy(dataclasses.replace(policy.spec, rules=rules))


def matched(policy: Policy, ctx: dict[str, Any]) -> tuple[set[str], Any]:
    d = policy.evaluate(PHASE, ctx)
    errors = [r for r in d.rules if "expression error" in (r.get("message") or "")]
    if errors:
        raise SystemExit(f"benchmark inputs are broken: rules erred: {errors}")
    return {r["id"] for r in d.rules if r["matched"]}, d


def cedar_matched(cedarpy: Any, request: dict[str, Any], policies: Any, entities: Any) -> tuple[set[str], Any]:
    """The ids of the satisfied policies (every policy a `permit`, so Cedar lists them all)."""
    result = cedarpy.is_authorized(request, policies, entities)
    if result.diagnostics.errors:
        raise SystemExit(f"benchmark inputs are broken: Cedar errors: {result.diagnostics.errors}")
    ids = result.diagnostics.id_annotations_by_reason
    return {ids.get(r, r) for r in result.diagnostics.reasons} - {"default-allow"}, result


def check_equivalent(cedarpy: Any, pinned: Policy, unpinned: Policy, cedar_text: str, doc: dict[str, Any]) -> int:
    """Both engines match the same rules: every tool, two argument sets, pinned and not."""
    all_permit = re.sub(r"^forbid", "permit", cedar_text, flags=re.M)
    sets = {
        "pinned": (pinned, cedarpy.PolicySet.from_str(all_permit)),
        "unpinned": (unpinned, cedarpy.PolicySet.from_str(_CEDAR_PIN.sub("resource", all_permit))),
    }
    entities = cedarpy.Entities.from_json_str(json.dumps(doc["entities"]))
    tools = sorted({m.group(1) for m in re.finditer(r'resource == Tool::"([^"]+)"', cedar_text)})
    base = doc["requests"]["all_rules"]
    requests = [dict(base, resource={"type": "Tool", "id": tool}, context=dict(base["context"], args=args))
                for tool in tools for args in doc["check_args"].values()]
    checked = 0
    for label, (policy, policy_set) in sets.items():
        # (a)'s request carries only a refund's arguments: every rule but the pinned ones would err
        extra = [doc["requests"]["two_rules"]] if label == "pinned" else [doc["requests"]["all_rules"]]
        for req in requests + extra:
            ours, _ = matched(policy, execord_context(req, doc["entities"]))
            theirs, _ = cedar_matched(cedarpy, req, policy_set, entities)
            if ours != theirs:
                raise SystemExit(f"execord and Cedar disagree ({label}, {req['resource']['id']}): "
                                 f"only execord {sorted(ours - theirs)}, only Cedar {sorted(theirs - ours)}")
            checked += 1
    return checked


# -- timing ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], iterations: int, warmup: int) -> tuple[float, float]:
    """(p50, p99) in µs over ``iterations`` calls timed one by one, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    gc.collect()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for i in range(iterations):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000
    return p50, p99


def line(label: str, figures: tuple[float, float], tail: str = "") -> str:
    p50, p99 = figures
    return f"  {label:<58} p50 {p50:8.2f} µs   p99 {p99:8.2f} µs{('   ' + tail) if tail else ''}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few iterations: a smoke test, not a measurement")
    ap.add_argument("--iterations", type=int, default=None, help="timed calls per case (default 50,000; --quick 500)")
    args = ap.parse_args()
    n = args.iterations or (500 if args.quick else 50_000)
    warmup = max(50, n // 10)
    n_text = max(50, n // 20)  # cedarpy parsing the policy text each call is slow

    from importlib.metadata import version

    import cedarpy

    doc = json.loads(REQUESTS.read_text())
    cedar_text = CEDAR.read_text()
    pinned = Policy(load_spec(RULES))
    unpinned = unpinned_policy(pinned)
    checked = check_equivalent(cedarpy, pinned, unpinned, cedar_text, doc)

    req_a, req_b = doc["requests"]["two_rules"], doc["requests"]["all_rules"]
    ctx_a = execord_context(req_a, doc["entities"])
    ctx_b = execord_context(req_b, doc["entities"])
    _, d_a = matched(pinned, ctx_a)
    _, d_b = matched(unpinned, ctx_b)
    assert len(d_a.rules) == 2 and len(d_b.rules) == 50, (len(d_a.rules), len(d_b.rules))

    ps_a = cedarpy.PolicySet.from_str(cedar_text)
    ps_b = cedarpy.PolicySet.from_str(_CEDAR_PIN.sub("resource", cedar_text))
    entities = cedarpy.Entities.from_json_str(json.dumps(doc["entities"]))
    r_a = cedarpy.is_authorized(req_a, ps_a, entities)
    r_b = cedarpy.is_authorized(req_b, ps_b, entities)

    ex_a = timed(lambda: pinned.evaluate(PHASE, ctx_a), n, warmup)
    ex_b = timed(lambda: unpinned.evaluate(PHASE, ctx_b), n, warmup)
    ce_a = timed(lambda: cedarpy.is_authorized(req_a, ps_a, entities), n, warmup)
    ce_b = timed(lambda: cedarpy.is_authorized(req_b, ps_b, entities), n, warmup)
    ce_text = timed(lambda: cedarpy.is_authorized(req_a, cedar_text, entities), n_text, max(10, n_text // 10))

    def hits(d: Any) -> int:
        return sum(r["matched"] for r in d.rules)

    print(f"policy_eval: {RULES.name}, 50 rules at {PHASE}; {n:,} timed calls per case after {warmup:,} warm-up calls"
          f"{' (--quick: not a measurement)' if args.quick else ''}")
    print(f"equivalence: execord and Cedar matched the same rules on all {checked} checked requests")
    print(f"execord Policy.evaluate ({pinned.engine}), python {sys.version.split()[0]}")
    print(line("(a) 2 rules apply (issue_refund; 48 pinned away)", ex_a,
               f"target p50 ≤ 5 µs: {'met' if ex_a[0] <= 5 else 'NOT met'}; {d_a.decision}, {hits(d_a)} matched"))
    print(line("(b) all 50 apply (pins stripped, every condition evaluated)", ex_b,
               f"target p50 ≤ 25 µs: {'met' if ex_b[0] <= 25 else 'NOT met'}; {d_b.decision}, {hits(d_b)} matched"))
    print(f"peer: cedarpy {version('cedarpy')} is_authorized, {CEDAR.name} (50 policies + default-allow), "
          f"PolicySet and Entities parsed once")
    print(line("(a) 2 policies apply (resource == Tool::\"issue_refund\")", ce_a, f"{r_a.decision.value}"))
    print(line("(b) all 50 apply (resource scopes stripped)", ce_b, f"{r_b.decision.value}"))
    print(line("(a) policies passed as text, parsed on every call", ce_text, f"{n_text:,} calls"))
    print(f"  cedarpy / execord at p50:  (a) {ce_a[0] / ex_a[0]:.2f}x   (b) {ce_b[0] / ex_b[0]:.2f}x")


if __name__ == "__main__":
    main()
