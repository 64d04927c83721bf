"""Proofs as plans over stored perfect subtrees (RFC 9162 §2.1.3 and §2.1.4).

A log stores the hash of every *perfect* subtree: the 2**level leaves starting at
``index * 2**level`` (level 0 holds the leaf hashes). Every node an RFC 6962 proof names is
either such a subtree or a subtree on the right edge of the tree, which is the right fold of
at most log2(n) perfect subtrees. A proof is therefore planned first, as lists of
``(level, index)`` keys, then resolved with one lookup of at most 2·log2(n) stored hashes, so
a proof in a log of millions of leaves costs one indexed read, not a recomputation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

Key = tuple[int, int]  # (level, index): the perfect subtree of 2**level leaves at index * 2**level
Plan = list[list[Key]]  # one entry per proof hash: the perfect subtrees whose right fold it is

_sha256 = hashlib.sha256


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2): RFC 6962's split point."""
    return 1 << ((n - 1).bit_length() - 1)


def range_keys(lo: int, hi: int) -> list[Key]:
    """The perfect subtrees that make up the leaves [lo, hi), largest first.

    Only ranges a proof can name are asked for: ``lo`` is a multiple of a power of two at
    least ``hi - lo``, so each piece starts aligned to its own size.
    """
    keys = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        keys.append((level, lo >> level))
        lo += 1 << level
    return keys


def inclusion_plan(index: int, size: int) -> Plan:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, bottom-up, as plans."""
    out: list[list[Key]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append(range_keys(lo + k, hi))
            hi = lo + k
        else:
            out.append(range_keys(lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_plan(old: int, new: int) -> Plan:
    """PROOF(old, D[0:new]) of RFC 9162 §2.1.4.1 (empty when old is 0 or old == new)."""
    if old <= 0 or old >= new:
        return []
    out: list[list[Key]] = []
    lo, hi, m, whole = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                out.append(range_keys(lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append(range_keys(lo + k, hi))
            hi = lo + k
        else:
            out.append(range_keys(lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    out.reverse()
    return out


def root_plan(size: int) -> list[Key]:
    """The perfect subtrees whose right fold is the root of the first ``size`` leaves."""
    return range_keys(0, size)


def fold(hashes: list[bytes]) -> bytes:
    """The hash of a right-edge subtree from its perfect pieces, largest first."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def resolve(plan: Plan, lookup: Callable[[Iterable[Key]], Mapping[Key, bytes]]) -> list[bytes]:
    """Turn a plan into proof hashes with one ``lookup`` of every key it names."""
    wanted = {k for keys in plan for k in keys}
    got = lookup(wanted) if wanted else {}
    missing = wanted - got.keys()
    if missing:
        raise LookupError(f"the log has no stored subtree for {sorted(missing)[:3]}")
    return [fold([got[k] for k in keys]) for keys in plan]


def levels(leaf_hashes: list[bytes]) -> dict[Key, bytes]:
    """Every perfect subtree of an in-memory list of leaf hashes."""
    out: dict[Key, bytes] = {(0, i): h for i, h in enumerate(leaf_hashes)}
    level, row = 0, leaf_hashes
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        out.update(((level, i), h) for i, h in enumerate(row))
    return out


def append_keys(index: int) -> list[tuple[Key, Key, Key]]:
    """The perfect subtrees completed by the leaf at ``index``: (new, left child, right child).

    Appending leaf ``index`` completes the subtree of level L+1 whenever its level-L
    ancestor is a right child, i.e. once for each trailing 1 bit of ``index``.
    """
    out = []
    level, i = 0, index
    while i & 1:
        out.append(((level + 1, i >> 1), (level, i - 1), (level, i)))
        level, i = level + 1, i >> 1
    return out
