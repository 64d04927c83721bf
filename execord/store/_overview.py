"""Aggregates of one project over a time window: what the viewer's overview page draws.

Every query is scoped to a project and to executions started in ``[since_us, until_us)``.
The per-model figures and the blocking rules come from events, so they read at most the
``limit`` most recent executions of the window; `Overview.scanned` says how many that was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Overview:
    """What happened in one project in a window.

    Attributes:
        buckets: ``(bucket_start_us, status, count)``, one per bucket and status that occurs.
        by_workflow: per workflow: executions, input and output tokens, cost (µUSD, None if unknown).
        by_model: per (provider, model): LLM calls, input and output tokens, cost.
        blocking_rules: per rule id: how many decisions it denied (or halted for approval), with its message.
        scanned: how many executions the per-model and per-rule figures read.
    """

    buckets: list[tuple[int, str, int]] = field(default_factory=list)
    by_workflow: list[dict[str, Any]] = field(default_factory=list)
    by_model: list[dict[str, Any]] = field(default_factory=list)
    blocking_rules: list[dict[str, Any]] = field(default_factory=list)
    scanned: int = 0


_BLOCKING = {"deny", "require_approval"}


class OverviewQueries:
    """The overview's reads; a mixin of the SQL stores."""

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:  # provided by the store
        raise NotImplementedError

    def overview(self, project: str, *, since_us: int, until_us: int, bucket_us: int,
                 limit: int = 5000) -> Overview:
        """Counts per status per time bucket, usage by workflow and by model, and the rules
        that blocked most, for executions of ``project`` started in the window."""
        window = "project = ? AND started_us >= ? AND started_us < ?"
        params = (project, since_us, until_us)
        out = Overview()
        out.buckets = [(int(b) * bucket_us + since_us, s, int(n)) for b, s, n in self._read(
            f"SELECT (started_us - ?) / ?, status, count(*) FROM executions WHERE {window}"
            " GROUP BY 1, 2 ORDER BY 1, 2", (since_us, bucket_us, *params))]
        out.by_workflow = [
            {"workflow": w, "executions": int(n), "input_tokens": int(i or 0), "output_tokens": int(o or 0),
             "cost_micros": None if c is None else int(c)}
            for w, n, i, o, c in self._read(
                "SELECT workflow, count(*), sum(input_tokens), sum(output_tokens), sum(cost_micros)"
                f" FROM executions WHERE {window} GROUP BY workflow ORDER BY coalesce(sum(cost_micros), -1) DESC, count(*) DESC, workflow", params)
        ]
        ids = [r[0] for r in self._read(
            f"SELECT id FROM executions WHERE {window} ORDER BY started_us DESC, id DESC LIMIT ?", (*params, limit))]
        out.scanned = len(ids)
        out.by_model, out.blocking_rules = self._from_events(ids)
        return out

    def _from_events(self, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        models: dict[tuple[str, str], dict[str, Any]] = {}
        started: dict[tuple[str, str], tuple[str, str]] = {}
        rules: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                "SELECT execution_id, type, step_id, body FROM events WHERE execution_id IN (" + marks + ")"
                " AND type IN ('step.started', 'step.ended', 'governance.decision') ORDER BY execution_id, seq",
                chunk)
            for eid, kind, step_id, body in rows:
                attrs = orjson.loads(bytes(body))["attrs"]
                if kind == "step.started":
                    if attrs.get("kind") == "llm":
                        started[(eid, step_id)] = (str(attrs.get("provider") or "—"), str(attrs.get("model") or "—"))
                elif kind == "step.ended":
                    key = started.pop((eid, step_id), None)
                    if key is None:
                        continue
                    m = models.setdefault(key, {"provider": key[0], "model": key[1], "calls": 0, "input_tokens": 0,
                                                "output_tokens": 0, "cost_micros": None})
                    usage = attrs.get("usage") or {}
                    m["calls"] += 1
                    m["input_tokens"] += int(usage.get("input_tokens") or 0)
                    m["output_tokens"] += int(usage.get("output_tokens") or 0)
                    if isinstance(attrs.get("cost_micros"), int):
                        m["cost_micros"] = (m["cost_micros"] or 0) + attrs["cost_micros"]
                else:
                    for r in attrs.get("rules") or []:
                        if r.get("matched") and r.get("effect") in _BLOCKING:
                            rule = rules.setdefault(str(r.get("id")), {"rule_id": str(r.get("id")), "effect": r["effect"],
                                                                       "count": 0, "message": r.get("message")})
                            rule["count"] += 1
        by_model = sorted(models.values(), key=lambda m: (-(m["cost_micros"] or 0), -m["calls"], m["model"]))
        blocking = sorted(rules.values(), key=lambda r: (-r["count"], r["rule_id"]))
        return by_model, blocking
