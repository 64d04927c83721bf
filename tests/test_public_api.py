"""The public surface, pinned: any change to an ``__all__`` shows up here, in review.

Adding or removing a public name is a decision; make it by editing the list below in the
same change (STYLE.md, "Treat the export list as a test").
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC_API = {
    "execord": [
        "Cancelled", "ConfigError", "Execord", "ExecordError", "ExecutionHandle", "ExecutionSealed",
        "GovernanceError", "Halted", "RecordError", "StepHandle", "StoreError", "VerificationError", "__version__",
        "current", "execution", "flush", "in_execution", "init", "log", "shutdown", "step",
        "tool", "workflow", "wrap",
    ],
    "execord.record": [
        "APPROVAL_DECIDED", "APPROVAL_REQUESTED", "BLOB_TYPES", "Blob", "CANCEL_REQUESTED",
        "CanonicalizationError", "ChainError", "EMPTY_ROOT", "EVENT_TYPES", "EXECUTION_ENDED",
        "EXECUTION_STARTED", "Event", "EventError", "ExecordError", "ExecutionSealed",
        "FailureClass", "GOVERNANCE_DECISION", "HALT_REASONS", "IllegalTransition",
        "InvalidEvent", "LEDGER_ENTRY_KEYS", "LOG", "PHASES", "Problem", "REQUIRED_ATTRS", "SCHEMA_VERSION",
        "STEP_ENDED", "STEP_KINDS", "STEP_STARTED", "Seal", "SeqConflict", "Status",
        "TERMINAL", "TOTALS_KEYS", "blob_ref", "build_event", "canonical_json",
        "chain_from_bodies", "check_event", "check_transition", "event_hash", "events_root", "failure_class_for", "format_ts",
        "genesis_hash", "is_blob_ref", "is_event_ts", "is_terminal", "is_uuid", "leaf_hash", "ledger_entry", "make_blob",
        "merkle_root", "node_hash", "now_ts", "now_us", "parse_event", "parse_ts",
        "root_from_leaf_hashes", "ts_to_us", "uuid7", "validate_attrs", "verify_chain",
    ],
    "execord.governance": [
        "CelCompileError", "CelEvalError", "Decision", "EFFECTS", "EFFECT_RANK", "Evaluator", "Policy",
        "Rule", "Spec", "Usage", "VARIABLES", "Version", "WindowBudget", "blank_context", "build_version",
        "default_evaluator", "fill", "load_spec", "make_version", "parse_duration", "parse_usd",
        "spec_from_document", "version_document",
    ],
    "execord.store": [
        "DEFAULT_DB", "ExecutionFilter", "SCHEMA_VERSION", "SQLiteStore", "SUMMARY_KEYS",
        "Store", "Tip", "VerifyReport", "blob_value", "describe", "execution_detail", "export_record",
        "open_store", "relative_ms", "step_depths", "steps_from_events", "verify_store",
    ],
    "execord.runtime": [
        "Execord", "ExecutionHandle", "ExecutionScope", "SETTINGS", "Setting", "StepHandle",
        "StepSpec", "current_execution", "current_frame", "get_default", "reap", "resolve",
        "seal_interrupted", "set_default", "why_dead", "wrap",
    ],
    "execord.errors": [
        "AmbiguousId", "ApiError", "ApprovalError", "Cancelled", "ChainError", "ConfigError", "Conflict",
        "CorruptStore", "EventError", "ExecordError", "ExecutionSealed", "Forbidden", "GovernanceError",
        "GovernanceFileError", "Halted", "IllegalTransition", "InvalidEvent", "InvalidInput", "LedgerError", "NotFound", "PayloadTooLarge",
        "RecordError", "RootMismatch", "SchemaTooNew", "SeqConflict", "ServerUnavailable", "StoreError",
        "StoreUnavailable", "Unauthorized", "VerificationError",
    ],
    "execord.integrations": ["INTEGRATIONS", "active", "chosen", "installed", "instrument", "uninstrument"],
    "execord.server": ["BodyLimit", "Limits", "METRIC_NAMES", "Principal", "ServerSettings", "create_app"],
}


def test_the_pinned_lists_are_sorted_and_unique() -> None:
    for module, names in PUBLIC_API.items():
        assert names == sorted(set(names)), module


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_all_is_pinned(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert len(exported) == len(set(exported)), f"{module}.__all__ has duplicates"
    assert sorted(exported) == PUBLIC_API[module]


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_every_exported_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_the_sdk_and_the_error_tree_share_their_classes() -> None:
    import execord
    import execord.errors

    for name in ("ConfigError", "ExecordError", "ExecutionSealed", "RecordError", "StoreError", "VerificationError"):
        assert getattr(execord, name) is getattr(execord.errors, name)
    for name in execord.errors.__all__:
        assert issubclass(getattr(execord.errors, name), execord.errors.ExecordError), name
