"""The ledger leaf of a sealed execution (DESIGN §4), pure.

The leaf is the canonical JSON of what the seal says, so anyone holding an execution's
events can rebuild it: the status and time of its ``execution.ended``, the number of
events, their Merkle root, the last hash and the governance version it ran under.
"""

from __future__ import annotations

from ._canonical import canonical_json

LEDGER_ENTRY_KEYS = (
    "event_count", "events_root", "execution_id", "governance_version", "last_hash", "sealed_at", "status",
)


def ledger_entry(*, execution_id: str, status: str, event_count: int, events_root: bytes, last_hash: bytes,
                 governance_version: str | None, sealed_at: str) -> bytes:
    """The bytes of one ledger leaf: RFC 8785 JSON, hashes as lowercase hex.

    >>> ledger_entry(execution_id="e", status="succeeded", event_count=2, events_root=b"\\x01" * 32,
    ...              last_hash=b"\\x02" * 32, governance_version=None, sealed_at="2026-01-01T00:00:00Z")[:40]
    b'{"event_count":2,"events_root":"01010101'
    """
    return canonical_json({
        "execution_id": execution_id,
        "status": status,
        "event_count": event_count,
        "events_root": events_root.hex(),
        "last_hash": last_hash.hex(),
        "governance_version": governance_version,
        "sealed_at": sealed_at,
    })
