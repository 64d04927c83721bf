"""RFC 6962 §2.1 Merkle tree hashing (the same as RFC 9162 §2.1.1), SHA-256.

Only what the record needs: the leaf and node hashes and the Merkle Tree Hash (root).
Proofs live in `execord.ledger`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 ‖ entry)``: the hash of one leaf (RFC 6962 §2.1)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: an interior node (RFC 6962 §2.1)."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of already-hashed leaves.

    Pairs nodes level by level and carries an odd last node up unchanged. Because the left
    subtree of RFC 6962's split is always a complete tree of 2**k leaves, this equals the
    recursive MTH definition (cross-checked against it in the tests).
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(entries: Sequence[bytes]) -> bytes:
    """MTH over raw leaf entries (RFC 6962 §2.1); SHA-256 of b"" for no entries.

    >>> merkle_root([]).hex()[:16]
    'e3b0c44298fc1c14'
    >>> merkle_root([b""]).hex()[:16]
    '6e340b9cffb37a98'
    """
    return root_from_leaf_hashes([leaf_hash(e) for e in entries])


def events_root(event_hashes: Sequence[bytes]) -> bytes:
    """The seal's ``events_root``: the Merkle root over event hashes in seq order (DESIGN §4)."""
    return merkle_root(event_hashes)
