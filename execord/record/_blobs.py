"""Content blobs (DESIGN §3): large or sensitive values stored apart, addressed by digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

BLOB_TYPES = frozenset({"json", "text"})


@dataclass(frozen=True, slots=True)
class Blob:
    """The bytes of one value and their address.

    Attributes:
        digest: ``"sha256:<hex>"`` of ``data``.
        size: ``len(data)``.
        type: ``"json"`` (canonical JSON bytes) or ``"text"`` (UTF-8).
        data: the bytes, or None once erased.
    """

    digest: str
    size: int
    type: str
    data: bytes | None

    def ref(self) -> dict[str, Any]:
        """The ``{"$blob", "size", "type"}`` reference an event holds in place of the value."""
        return {"$blob": self.digest, "size": self.size, "type": self.type}


def make_blob(data: bytes, kind: str = "json") -> Blob:
    """Address ``data`` by its SHA-256.

    >>> make_blob(b"{}").digest[:15]
    'sha256:44136fa3'
    """
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), kind, data)
