"""The ledger key's statement that a blob was erased (DESIGN §3, right to erasure).

An erasure entry says which blob's bytes were deleted, when, by whom and why. The ledger key
signs it as a C2SP signed note whose text is the log's origin, the line
``execord-erasure-v1`` and the entry as one line of canonical JSON (RFC 8785), with the
ledger's size when it was signed. A verifier that trusts the key can then tell an erased blob from one left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..record import CanonicalizationError, canonical_json
from ._note import NoteError, Verifier

__all__ = ["ERASURE_FIELDS", "ERASURE_LINE", "check_erasure", "erasure_body"]

ERASURE_LINE = "execord-erasure-v1"
ERASURE_FIELDS = ("digest", "size", "type", "reason", "erased_by", "erased_at", "tree_size")


def erasure_body(origin: str, entry: Mapping[str, Any]) -> str:
    """The text the ledger key signs for an erasure: the log's origin, a line naming the
    statement, and the entry's fields as one line of canonical JSON (RFC 8785)."""
    fields = {k: entry.get(k) for k in ERASURE_FIELDS}
    return f"{origin}\n{ERASURE_LINE}\n{canonical_json(fields).decode()}\n"


def check_erasure(entry: Mapping[str, Any], verifier: Verifier | None = None) -> str | None:
    """What is wrong with an erasure entry (its signature, or a field changed after signing),
    or None. Without ``verifier`` the key the entry names is used (integrity, not who)."""
    digest = str(entry.get("digest"))[:80]
    note = entry.get("note")
    if not isinstance(note, str) or not note:
        return (f"the erasure of blob {digest} is not signed, so it cannot be told from a blob left out "
                "(the operator signs it with `execord blobs sign-erasures --key ledger.key`)")
    try:
        verifier = verifier or Verifier.parse(str(entry.get("verifier_key")))
        body = verifier.open(note, "erasure")
    except NoteError as exc:
        return f"the erasure of blob {digest} does not verify: {exc}"
    try:
        expected = erasure_body(verifier.name, entry)
    except (CanonicalizationError, RecursionError, TypeError, ValueError):
        expected = None  # not JSON an honest entry holds: it cannot be what was signed
    if body != expected:
        return (f"the erasure of blob {digest} was changed after it was signed (its reason, who, when, size, "
                "type or ledger size is not what the ledger key signed)")
    return None
