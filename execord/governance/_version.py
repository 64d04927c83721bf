"""Governance versions: immutable, content-addressed bundles (DESIGN §1, §5).

A version's document is the canonical JSON of everything that decides: the rules, the
budgets, the detector settings and the price table's identity (source and digest; the
snapshot itself is stored beside the version). Tests and file names are left out: they do
not change a decision. Id: ``gv_`` + the first 16 hex of the SHA-256 of that document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..record import canonical_json
from ._file import Spec


@dataclass(frozen=True)
class Version:
    """One governance version.

    Attributes:
        id: ``gv_<16 hex>``.
        digest: ``sha256:<64 hex>`` of ``document``'s canonical bytes.
        document: what the version is made of (JSON).
    """

    id: str
    digest: str
    document: dict[str, Any]

    @property
    def canonical(self) -> bytes:
        """The bytes the digest covers."""
        return canonical_json(self.document)


def version_document(spec: Spec, pricing: dict[str, Any]) -> dict[str, Any]:
    """The canonical content of a version made from ``spec``.

    Args:
        spec: the validated governance file.
        pricing: the price table's identity: {source, digest}; the file's overrides are added.
    """
    return {
        "version": 1,
        "policies": [r.document() for r in sorted(spec.rules, key=lambda r: r.id)],
        "budgets": {
            "execution": dict(sorted(spec.execution_budgets.items())),
            "per_tool": dict(sorted(spec.per_tool.items())),
            "windows": [
                {"id": w.id, "scope": w.scope, "match": w.match, "period": w.period, "limits": dict(sorted(w.limits.items()))}
                for w in sorted(spec.windows, key=lambda w: w.id)
            ],
        },
        "detectors": {"secrets": spec.secrets, "custom": dict(sorted(spec.custom_detectors.items()))},
        "pricing": {**pricing, "overrides": spec.pricing},
    }


def make_version(document: dict[str, Any]) -> Version:
    """Address a version document by its SHA-256.

    >>> v = make_version({"version": 1})
    >>> v.id, v.digest[:15]
    ('gv_2430f1a2ad2982d0', 'sha256:2430f1a')
    """
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    return Version(f"gv_{digest[:16]}", f"sha256:{digest}", document)


def spec_from_document(document: dict[str, Any]) -> Spec:
    """Rebuild the `Spec` a stored version was made from (tests and file names aside)."""
    from ._file import Rule, WindowBudget

    rules = tuple(
        Rule(
            id=r["id"], on=tuple(r["on"]), when=r.get("when"), effect=r["effect"], message=r.get("message"),
            priority=r.get("priority", 0), approvers=tuple(r.get("approvers", ())), timeout_s=r.get("timeout_s"),
            on_timeout=r.get("on_timeout", "reject"), detectors=tuple(r.get("detectors", ())),
            paths=tuple(r.get("paths", ())),
        )
        for r in document.get("policies", [])
    )
    budgets = document.get("budgets", {})
    windows = tuple(
        WindowBudget(w["id"], w["scope"], dict(w["match"]), w["period"], dict(w["limits"]))
        for w in budgets.get("windows", [])
    )
    detectors = document.get("detectors", {})
    return Spec(
        rules=rules, execution_budgets=dict(budgets.get("execution", {})), per_tool=dict(budgets.get("per_tool", {})),
        windows=windows, secrets=detectors.get("secrets", True), custom_detectors=dict(detectors.get("custom", {})),
        pricing=dict((document.get("pricing") or {}).get("overrides", {})),
    )
