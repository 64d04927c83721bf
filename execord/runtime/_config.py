"""Settings: each declared once with its environment variable, type and default.

A value comes from the argument to `execord.init()` first, then the environment, then the
default (the logfire way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One setting: its name, environment variable, type, default and meaning."""

    name: str
    env: str
    kind: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("agent", "EXECORD_AGENT", str, None, "The agent's name, recorded on every execution (default: the script's name)."),
    Setting("agent_version", "EXECORD_AGENT_VERSION", str, None, "The agent's version."),
    Setting("roles", "EXECORD_AGENT_ROLES", list, (), "The agent's roles, comma-separated (governance rules can test them)."),
    Setting("db", "EXECORD_DB", str, None, "The SQLite file of the embedded store (default ./.execord/execord.db)."),
    Setting("governance", "EXECORD_GOVERNANCE", str, None, "A governance file or folder (default ./execord.yaml when present, else the version active in the store)."),
    Setting("disabled", "EXECORD_DISABLED", bool, False, "1/true: record nothing; decorated functions run as if undecorated."),
    Setting("on_record_error", "EXECORD_ON_RECORD_ERROR", str, "halt", "halt: a step that cannot be recorded does not run (RecordError). continue: it runs and a warning is logged."),
    Setting("durability", "EXECORD_DURABILITY", str, "batched", "batched: request events are committed before the action, completion events within flush_interval_ms. strict: every event is committed as it happens."),
    Setting("flush_interval_ms", "EXECORD_FLUSH_INTERVAL_MS", int, 100, "How long completion events may wait in memory before they are committed (batched durability)."),
    Setting("lease_s", "EXECORD_LEASE_S", int, 30, "How long an execution stays alive without a heartbeat before another process may seal it interrupted."),
    Setting("busy_timeout_ms", "EXECORD_BUSY_TIMEOUT_MS", int, 5000, "How long a write waits for another process's lock before it fails."),
    Setting("capture", "EXECORD_CAPTURE", bool, True, "Record the inputs and outputs of workflows and steps (as blobs)."),
    Setting("max_value_bytes", "EXECORD_MAX_VALUE_BYTES", int, 1_048_576, "Captured values larger than this are stored truncated, with a marker."),
    Setting("url", "EXECORD_URL", str, None, "Server mode: the Execord server to record through (e.g. http://execord:8080); needs api_key."),
    Setting("api_key", "EXECORD_API_KEY", str, None, "Server mode: the API key (ingest scope) this agent records with."),
    Setting("spool_dir", "EXECORD_SPOOL_DIR", str, None, "Server mode: where events are spooled before they are shipped (default ~/.execord/spool/<server+key digest>)."),
    Setting("spool_max_bytes", "EXECORD_SPOOL_MAX_BYTES", int, 256 * 1024 * 1024, "Server mode: the most unshipped bytes the spool holds; past it, governed actions stop with RecordError."),
    Setting("spool_fsync", "EXECORD_SPOOL_FSYNC", str, "always", "Server mode: always: each request event is fsynced to the spool before the action runs (survives a power loss). interval: written before the action (survives a crash of the process, like the embedded store) and fsynced every flush_interval_ms."),
    Setting("heartbeat_s", "EXECORD_HEARTBEAT_S", int, 2, "Seconds between heartbeats (at most a third of lease_s): how soon a cancel reaches the agent."),
    Setting("integrations", "EXECORD_INTEGRATIONS", list, ("auto",), "Which installed LLM clients and agent frameworks init() instruments: auto (all), none, or names, comma-separated; -name switches one off (auto,-langchain)."),
    Setting("flush_at_exit_s", "EXECORD_FLUSH_AT_EXIT_S", int, 5, "Server mode: how long the process waits at exit for the spool to reach the server."),
)
_BY_NAME = {s.name: s for s in SETTINGS}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(setting: Setting, raw: str) -> Any:
    if setting.kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{setting.env}={raw!r} is not a boolean: use 1/0, true/false, yes/no")
    if setting.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{setting.env}={raw!r} is not a whole number") from None
    if setting.kind is list:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw


def resolve(overrides: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value: argument, then environment, then default; validated."""
    env = os.environ if environ is None else environ
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(_BY_NAME)}"
        )
    values: dict[str, Any] = {}
    for s in SETTINGS:
        if overrides.get(s.name) is not None:
            values[s.name] = overrides[s.name]
        elif env.get(s.env) is not None:
            values[s.name] = _parse(s, env[s.env])
        else:
            values[s.name] = s.default
    _validate(values)
    return values


def _validate(v: dict[str, Any]) -> None:
    if v["on_record_error"] not in ("halt", "continue"):
        raise ConfigError(f"on_record_error must be 'halt' or 'continue', not {v['on_record_error']!r}")
    if v["durability"] not in ("batched", "strict"):
        raise ConfigError(f"durability must be 'batched' or 'strict', not {v['durability']!r}")
    if v["spool_fsync"] not in ("always", "interval"):
        raise ConfigError(f"spool_fsync must be 'always' or 'interval', not {v['spool_fsync']!r}")
    if v["url"] == "":
        v["url"] = None  # explicitly local (url=""), whatever EXECORD_URL says
    if v["url"] and not v["api_key"]:
        raise ConfigError("EXECORD_URL is set but EXECORD_API_KEY is not: server mode needs a key with the ingest "
                          "scope (execord keys create --scopes ingest)")
    for name, low in (("lease_s", 1), ("flush_interval_ms", 1), ("busy_timeout_ms", 0), ("max_value_bytes", 64),
                      ("spool_max_bytes", 4096), ("heartbeat_s", 1), ("flush_at_exit_s", 0)):
        if not isinstance(v[name], int) or v[name] < low:
            raise ConfigError(f"{name} must be a whole number ≥ {low}, not {v[name]!r}")
    if isinstance(v["roles"], str):
        v["roles"] = tuple(p.strip() for p in v["roles"].split(",") if p.strip())
    v["roles"] = tuple(v["roles"])
    if isinstance(v["integrations"], str):
        v["integrations"] = tuple(p.strip() for p in v["integrations"].split(","))
    v["integrations"] = tuple(v["integrations"]) or ("none",)
    from ..integrations import chosen

    chosen(v["integrations"])  # an unknown name is a ConfigError now, not at the first call
