"""Governance inside the agent's process: which version is pinned, and each phase evaluated.

`Governor` belongs to a recorder: it registers the governance file the agent was given (or
``./execord.yaml``) as a version, activates it, and compiles versions once. `Governed`
belongs to one execution: it pins the version active at the execution's start, evaluates
each phase, applies redactions before anything is written or sent, tracks usage for the
budgets, and remembers the first constraint that halted the execution.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import Halted
from ..governance import Decision, Policy, Usage, build_version, load_spec, spec_from_document
from ..governance._detectors import BUILTIN, SECRET_DETECTORS, custom_detector, redact
from ..record import canonical_json, make_blob, now_us

log = logging.getLogger("execord")

_SECRETS = [BUILTIN[name] for name in SECRET_DETECTORS]
_PERIOD_S = {"hour": 3600, "day": 86400}


@dataclass
class Pinned:
    """A compiled governance version, ready to evaluate."""

    version_id: str
    policy: Policy
    prices: Any
    detectors: dict[str, Any]
    secrets: list[Any]


class Governor:
    """Governance for one recorder.

    Args:
        source: the governance file or folder the agent was given, or None to use
            ``./execord.yaml`` when it exists, else whatever version the store has active.
        agent: who registers the file (recorded as the activation's author).
    """

    def __init__(self, source: str | None, agent: str):
        self.source = source
        self.agent = agent
        self._cache: dict[str, Pinned] = {}
        self._lock = threading.Lock()
        self._last_admitted: str | None = None  # "" once the server said: no governance

    def register(self, store: Any) -> str | None:
        """Load the agent's governance file, store its version and make it active.

        In server mode the server's active version governs: a ``./execord.yaml`` lying beside
        the agent is not applied, and an explicit ``governance=`` is applied through the
        server (which needs an admin key).
        """
        if getattr(store, "remote", False):
            if self.source is None:
                return None
            return str(store.apply_governance(self.source)["version_id"])
        path = self.source or ("execord.yaml" if os.path.exists("execord.yaml") else None)
        if path is None:
            return None
        spec = load_spec(path)
        version, table = build_version(spec)
        store.append([], [make_blob(canonical_json(table.document()), "json")])
        store.put_governance_version(version.id, version.digest, version.canonical, by=f"sdk:{self.agent}")
        store.activate_governance(version.id, by=f"sdk:{self.agent}", source=os.path.abspath(path))
        self._cache[version.id] = _compile(version.id, spec, table)
        return version.id

    def pin(self, store: Any) -> Pinned | None:
        """The version active now (None when the project never activated one)."""
        version_id = store.active_governance()
        if version_id is None:
            return None
        with self._lock:
            pinned = self._cache.get(version_id)
            if pinned is None:
                pinned = self._cache[version_id] = load_pinned(store, version_id)
        return pinned


    def pin_version(self, store: Any, version_id: str) -> Pinned:
        """A version by id, compiled once."""
        with self._lock:
            pinned = self._cache.get(version_id)
            if pinned is None:
                pinned = self._cache[version_id] = load_pinned(store, version_id)
        return pinned

    def admit(self, store: Any, request: dict[str, Any]) -> Admission:
        """Admission at the server (server mode), falling back to the last version this
        process was given when the server cannot be reached (evaluated here, with no window
        usage); with none known, the execution does not start (`RecordError`)."""
        from ..errors import RecordError, ServerUnavailable

        try:
            answer = store.admit(request)
        except ServerUnavailable as exc:
            vid = self._last_admitted if self._last_admitted is not None else store.cached_active()
            if vid is None:
                raise RecordError(
                    f"execord cannot start the execution: {exc}. Admission needs the server once; after that "
                    "a process governs with the version the server last pinned while it is away"
                ) from exc
            log.warning("execord: the server is unreachable; admission is evaluated here against %s: %s",
                        vid or "no governance", exc)
            try:
                return Admission(self.pin_version(store, vid) if vid else None, None)
            except ServerUnavailable as again:
                raise RecordError(f"execord cannot start the execution: {again}") from again
        vid = answer.get("governance_version")
        pinned = self.pin_version(store, vid) if vid else None
        self._last_admitted = vid or ""
        return Admission(pinned, answer)


@dataclass
class Admission:
    """What the server answered at admission: the pinned version, its decision, window usage."""

    pinned: Pinned | None
    answer: dict[str, Any] | None


def load_pinned(store: Any, version_id: str) -> Pinned:
    """Compile a stored version, with the exact price table it was made with."""
    from ..governance._prices import default_table, table_from_document
    from ..store import blob_value

    doc = store.get_governance_version(version_id)["document"]
    spec = spec_from_document(doc)
    digest = (doc.get("pricing") or {}).get("digest")
    table = default_table()
    if digest and digest != table.digest:
        stored = store.get_blob(digest)
        table = table_from_document(blob_value(store, stored.ref())) if stored is not None else table
    return _compile(version_id, spec, table)


def _compile(version_id: str, spec: Any, table: Any) -> Pinned:
    detectors = dict(BUILTIN)
    for name, regex in spec.custom_detectors.items():
        detectors[name] = custom_detector(name, regex)
    return Pinned(version_id, Policy(spec, version_id=version_id), table, detectors, _SECRETS if spec.secrets else [])


def default_secrets() -> list[Any]:
    """The detectors that run with no governance at all: secrets only."""
    return _SECRETS


# -- one execution ------------------------------------------------------------------------------


@dataclass
class Governed:
    """Governance state of one execution."""

    pinned: Pinned | None
    static: dict[str, Any]
    usage: Usage = field(default_factory=Usage)
    windows_used: dict[str, dict[str, int]] = field(default_factory=dict)
    halted: Halted | None = None
    started_us: int = field(default_factory=now_us)

    @property
    def version_id(self) -> str | None:
        """The pinned version's id."""
        return self.pinned.version_id if self.pinned else None

    @property
    def active(self) -> bool:
        """True when there is something to evaluate."""
        return self.pinned is not None and not self.pinned.policy.empty

    def secrets(self) -> list[Any]:
        """The always-on detectors for this execution."""
        return self.pinned.secrets if self.pinned is not None else _SECRETS

    def context(self, *, step: dict[str, Any] | None = None, tool: dict[str, Any] | None = None,
                llm: dict[str, Any] | None = None) -> dict[str, Any]:
        """The rule variables for one evaluation (every declared field present)."""
        duration = (now_us() - self.started_us) // 1000
        self.usage.duration_ms = duration
        ctx = dict(self.static)
        ctx["execution"] = {**self.static["execution"], "duration_ms": duration}
        ctx["step"] = {"id": "", "kind": "", "name": "", "parent_step_id": "", **(step or {})}
        ctx["tool"] = {"name": "", "args": None, "result": None, **(tool or {})}
        ctx["llm"] = {"provider": "", "model": "", "params": None, "max_tokens": 0, "messages": None,
                      "response": None, **(llm or {})}
        ctx["usage"] = self.usage.as_context()
        ctx["now"] = dt.datetime.now(dt.UTC)
        return ctx

    def evaluate(self, phase: str, ctx: dict[str, Any], *, projection: dict[str, int] | None = None,
                 tool: str | None = None) -> Decision | None:
        """Evaluate the pinned policy at a phase (``active`` must be true).

        Returns None when no rule and no budget applies there: nothing was decided, so
        nothing is recorded.
        """
        assert self.pinned is not None
        d = self.pinned.policy.evaluate(phase, ctx, usage=self.usage, projection=projection, tool=tool,
                                        windows_used=self.windows_used)
        return d if d.rules or d.budgets else None

    def redact(self, value: Any, decision: Decision | None) -> tuple[Any, list[dict[str, str]]]:
        """Apply the matched redact rules and the always-on secret detectors to ``value``."""
        found: list[dict[str, str]] = []
        if decision is not None and self.pinned is not None:
            for rule in decision.redact_rules:
                chosen = [self.pinned.detectors[d] for d in rule.detectors if d in self.pinned.detectors]
                value, hits = redact(value, chosen, list(rule.paths) or None)
                found.extend(hits)
        secrets = self.secrets()
        if secrets:
            value, hits = redact(value, secrets)
            found.extend(hits)
        return value, found

    def load_windows(self, store: Any, agent: str, workflow: str, execution_id: str, *,
                     project: str = "default") -> None:
        """What each window budget's executions used before this one (read at admission)."""
        if self.pinned is not None:
            self.windows_used.update(window_usage(self.pinned, store, agent, workflow, execution_id, project=project))

    def halt(self, decision_seq: int, decision: Decision, phase: str, execution_id: str) -> Halted:
        """The `Halted` a deny stands for; the first one is kept for the execution's end."""
        kind, ident = decision.deciding or ("rule", None)
        reason = "budget" if kind == "budget" else "policy"
        exc = Halted(
            f"execord halted execution {execution_id} at {phase}: {decision.message()}",
            reason=reason, rule_id=ident if kind == "rule" else None, budget_id=ident if kind == "budget" else None,
            seq=decision_seq, phase=phase, execution_id=execution_id,
        )
        if self.halted is None:
            self.halted = exc
        return exc


def window_usage(pinned: Pinned, store: Any, agent: str, workflow: str, execution_id: str, *,
                 project: str = "default") -> dict[str, dict[str, int]]:
    """What each window budget of ``pinned`` that applies to this run saw used by the other
    executions of its window (sealed totals, or running totals as of their last heartbeat)."""
    out = {}
    now = now_us()
    for w in pinned.policy.spec.windows:
        if any((k == "agent" and v != agent) or (k == "workflow" and v != workflow) for k, v in w.match.items()):
            continue
        since = _window_start(w.period, now)
        scope = {"agent": agent} if w.scope == "agent" else {"workflow": workflow} if w.scope == "workflow" else {}
        out[w.id] = store.window_usage(since_us=since, exclude=execution_id, project=project, **scope)
    return out


def exhausted_windows(pinned: Pinned, windows_used: dict[str, dict[str, int]],
                      own: dict[str, int]) -> list[dict[str, Any]]:
    """The window budgets that this execution's usage plus the others' has reached."""
    mine = dict(own, total_tokens=own.get("input_tokens", 0) + own.get("output_tokens", 0))
    out = []
    for w in pinned.policy.spec.windows:
        used = windows_used.get(w.id)
        if used is None:
            continue
        for metric, limit in sorted(w.limits.items()):
            total = used.get(metric, 0) + mine.get(metric, 0)
            if total >= limit:
                out.append({"budget_id": w.id, "metric": metric, "limit": limit, "used": total})
    return out


def static_context(*, agent: str, agent_version: str | None, roles: Any, workflow: str,
                   workflow_version: str | None, execution_id: str, execution_type: str,
                   parent_execution_id: str | None, labels: dict[str, str]) -> dict[str, Any]:
    """The rule variables fixed for a whole execution (DESIGN §5)."""
    return {
        "agent": {"name": agent, "version": agent_version or "", "roles": list(roles)},
        "workflow": {"name": workflow, "version": workflow_version or ""},
        "execution": {"id": execution_id, "type": execution_type,
                      "parent_execution_id": parent_execution_id or "", "duration_ms": 0},
        "labels": dict(labels),
    }


def decision_to_dict(d: Decision) -> dict[str, Any]:
    """A decision as JSON, for the server's admission answer."""
    return {"phase": d.phase, "decision": d.decision, "rules": d.rules, "budgets": d.budgets,
            "deciding": list(d.deciding) if d.deciding else None, "eval_us": d.eval_us,
            "redact_rules": [r.id for r in d.redact_rules]}


def decision_from_dict(pinned: Pinned, data: dict[str, Any]) -> Decision:
    """The `Decision` the server made, rebuilt against the same pinned version."""
    rules = {r.id: r for r in pinned.policy.spec.rules}
    deciding = data.get("deciding")
    return Decision(
        data["phase"], data["decision"], list(data.get("rules") or []), list(data.get("budgets") or []),
        (deciding[0], deciding[1]) if deciding else None,
        redact_rules=[rules[i] for i in data.get("redact_rules") or () if i in rules],
        eval_us=int(data.get("eval_us") or 0),
    )


def recorded_inputs(ctx: dict[str, Any], per_tool: dict[str, int], windows: dict[str, Any] | None) -> dict[str, Any]:
    """What a decision event records of its evaluation that the rest of the record cannot
    supply (usage, per-tool counts, windows, elapsed time, ``now``): see `simulate`."""
    return {"usage": ctx["usage"], "per_tool": dict(per_tool), "windows": windows or None,
            "duration_ms": ctx["execution"]["duration_ms"], "now": _wall_clock(ctx["now"])}


def _wall_clock(t: dt.datetime) -> str:
    """``t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")``; isoformat prints the same about ten times
    faster (strftime also parses its format), except that it zero-pads years before 1000."""
    if t.year < 1000:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _window_start(period: str, now: int) -> int:
    """The start of the current calendar window (UTC), in µs."""
    t = dt.datetime.fromtimestamp(now / 1e6, dt.UTC)
    if period == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
    elif period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp()) * 1_000_000


def llm_variables(step: dict[str, Any], value: Any, *, response: bool) -> dict[str, Any]:
    """The ``llm`` rule variables of an LLM step, from its ``provider``, ``model`` and
    ``params`` (a step.started's attrs) and the value the phase sees (DESIGN §5)."""
    params = step.get("params") or {}
    if not response and isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]  # an input of {"messages": [...], …}: the messages are the prompt
    limit = params.get("max_tokens") or params.get("max_completion_tokens") or params.get("max_output_tokens")
    return {"provider": step.get("provider") or "", "model": step.get("model") or "", "params": params,
            "max_tokens": limit if isinstance(limit, int) and not isinstance(limit, bool) else 0,
            ("response" if response else "messages"): value}


def action_digest(action: dict[str, Any]) -> str:
    """SHA-256 of the exact action awaiting approval (DESIGN §3), as ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(canonical_json(action)).hexdigest()
