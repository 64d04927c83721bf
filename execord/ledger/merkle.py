"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: roots, inclusion and consistency proofs.

Entries are the raw bytes of the leaves; ``leaf = SHA-256(0x00 ‖ entry)`` and
``node = SHA-256(0x01 ‖ left ‖ right)``, and the root of no entries is SHA-256 of nothing.
The proof generators raise `ValueError` on arguments outside the tree; the verifiers never
raise: malformed input of any kind (a hash of the wrong length, an index outside the tree,
sizes out of order, a proof with elements missing or extra) is simply ``False``.

>>> entries = [b"a", b"b", b"c"]
>>> proof = inclusion_proof(entries, 2)
>>> verify_inclusion(leaf_hash(b"c"), 2, 3, proof, root(entries))
True
>>> verify_consistency(2, 3, root(entries[:2]), root(entries), consistency_proof(entries, 2, 3))
True
>>> verify_inclusion(leaf_hash(b"c"), 3, 3, proof, root(entries))
False
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from . import _tree

__all__ = [
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
_node = _tree.node_hash
_EMPTY = _sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 ‖ entry)``: the hash of one leaf (RFC 6962 §2.1)."""
    return _sha256(b"\x00" + bytes(entry)).digest()


def _stored(entries: Sequence[bytes]) -> dict[_tree.Key, bytes]:
    return _tree.levels([leaf_hash(e) for e in entries])


def root(entries: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of ``entries`` (SHA-256 of the empty string for none)."""
    if not entries:
        return _EMPTY
    nodes = _stored(entries)
    return _tree.fold([nodes[k] for k in _tree.root_plan(len(entries))])


def inclusion_proof(entries: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``entries`` (RFC 9162 §2.1.3.1).

    Raises:
        ValueError: ``index`` is not a leaf of the tree.
    """
    if not 0 <= index < len(entries):
        raise ValueError(f"index {index} is outside a tree of {len(entries)} leaves")
    nodes = _stored(entries)
    return _tree.resolve(_tree.inclusion_plan(index, len(entries)), lambda keys: nodes)


def consistency_proof(entries: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """The proof that the first ``old_size`` entries are a prefix of the first ``new_size``.

    Empty when ``old_size`` is 0 or equal to ``new_size`` (RFC 9162 §2.1.4.1).

    Raises:
        ValueError: the sizes are not 0 ≤ old_size ≤ new_size ≤ len(entries).
    """
    if not 0 <= old_size <= new_size <= len(entries):
        raise ValueError(f"sizes {old_size} → {new_size} are not within a tree of {len(entries)} leaves")
    if old_size in (0, new_size):
        return []
    nodes = _stored(entries[:new_size])
    return _tree.resolve(_tree.consistency_plan(old_size, new_size), lambda keys: nodes)


def _hashes_ok(*values: object) -> bool:
    return all(isinstance(v, bytes | bytearray) and len(v) == 32 for v in values)


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2, with every malformed input answered ``False``.
    """
    try:
        if not (_is_size(index) and _is_size(size) and index < size and isinstance(proof, list | tuple)):
            return False
        if not _hashes_ok(leaf_hash, root, *proof):
            return False
        fn, sn, r = index, size - 1, bytes(leaf_hash)
        for p in proof:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = _node(bytes(p), r)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = _node(r, bytes(p))
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == bytes(root)
    except Exception:  # a verifier answers; it does not raise
        return False


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """Whether ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 §2.1.4.2. A tree of size 0 is a prefix of every tree, with an empty proof only;
    equal sizes need equal roots and an empty proof.
    """
    try:
        if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size
                and isinstance(proof, list | tuple) and _hashes_ok(old_root, new_root, *proof)):
            return False
        if old_size == 0:
            return not proof and bytes(old_root) == _EMPTY
        if old_size == new_size:
            return not proof and bytes(old_root) == bytes(new_root)
        if not proof:
            return False
        path = [bytes(p) for p in proof]
        if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
            path.insert(0, bytes(old_root))
        fn, sn = old_size - 1, new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = _node(c, fr)
                sr = _node(c, sr)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                sr = _node(sr, c)
            fn >>= 1
            sn >>= 1
        return fr == bytes(old_root) and sr == bytes(new_root) and sn == 0
    except Exception:
        return False
