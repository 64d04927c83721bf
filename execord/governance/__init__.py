"""Governance: the governance file, CEL rules, detectors, budgets, prices and versions.

`load_spec` reads and validates a file; `build_version` makes its immutable, content-addressed
version; `Policy` evaluates a version at a phase and returns a `Decision`.
"""

from __future__ import annotations

from typing import Any

from ._cel import CelCompileError, CelEvalError, Evaluator, default_evaluator
from ._context import VARIABLES, blank_context, fill
from ._engine import EFFECT_RANK, Decision, Policy, Usage
from ._file import EFFECTS, Rule, Spec, WindowBudget, load_spec, parse_duration, parse_usd
from ._version import Version, make_version, spec_from_document, version_document


def build_version(spec: Spec) -> tuple[Version, Any]:
    """The version a spec makes, and the price table it pins (genai-prices + overrides)."""
    from ._prices import default_table, with_overrides

    table = with_overrides(default_table(), spec.pricing) if spec.pricing else default_table()
    doc = version_document(spec, {"source": table.source, "digest": table.digest})
    return make_version(doc), table


__all__ = [
    "EFFECTS",
    "EFFECT_RANK",
    "VARIABLES",
    "CelCompileError",
    "CelEvalError",
    "Decision",
    "Evaluator",
    "Policy",
    "Rule",
    "Spec",
    "Usage",
    "Version",
    "WindowBudget",
    "blank_context",
    "build_version",
    "default_evaluator",
    "fill",
    "load_spec",
    "make_version",
    "parse_duration",
    "parse_usd",
    "spec_from_document",
    "version_document",
]
