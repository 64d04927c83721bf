"""Merkle roots against a slow reference written straight from RFC 6962 §2.1."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execord.record import (
    EMPTY_ROOT,
    build_event,
    events_root,
    genesis_hash,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_leaf_hashes,
)


def reference_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 §2.1 defines it.

    MTH({}) = SHA-256().
    MTH({d(0)}) = SHA-256(0x00 || d(0)).
    For n > 1, let k be the largest power of two smaller than n (k < n <= 2k):
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
    """
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    assert k < n <= 2 * k
    return hashlib.sha256(b"\x01" + reference_mth(entries[:k]) + reference_mth(entries[k:])).digest()


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def test_reference_split_points():
    # The split is the largest power of two *smaller than* n, not the midpoint: for n = 5 the
    # left subtree holds 4 leaves. Check the reference against a hand-built 5-leaf tree.
    d = _entries(5)
    lh = [hashlib.sha256(b"\x00" + e).digest() for e in d]
    h = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    assert reference_mth(d) == h(h(h(lh[0], lh[1]), h(lh[2], lh[3])), lh[4])
    d = _entries(3)
    lh = lh[:3]
    assert reference_mth(d) == h(h(lh[0], lh[1]), lh[2])


def test_every_size_from_0_to_300_matches_the_reference():
    entries = _entries(300)
    leaves = [leaf_hash(e) for e in entries]
    mismatches = []
    for n in range(301):
        want = reference_mth(entries[:n])
        got = (merkle_root(entries[:n]), root_from_leaf_hashes(leaves[:n]), events_root(entries[:n]))
        if got != (want, want, want):
            mismatches.append(n)
    assert mismatches == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=700))
def test_random_entries_match_the_reference(entries):
    want = reference_mth(entries)
    assert merkle_root(entries) == want
    assert root_from_leaf_hashes([leaf_hash(e) for e in entries]) == want


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000), st.data())
def test_changing_any_one_entry_changes_the_root(n, data):
    entries = _entries(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    root = merkle_root(entries)
    changed = list(entries)
    changed[i] += b"!"
    assert merkle_root(changed) != root
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
        swapped = list(entries)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        assert merkle_root(swapped) != root
    assert merkle_root(entries[:-1]) != root
    assert merkle_root(entries + [b""]) != root


def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle_root([]) == root_from_leaf_hashes([]) == events_root([]) == EMPTY_ROOT


def test_leaf_and_node_hashes_are_domain_separated():
    a, b = b"a" * 32, b"b" * 32
    assert leaf_hash(a) == hashlib.sha256(b"\x00" + a).digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    # A two-leaf tree is not the one-leaf tree of its concatenated leaf hashes.
    assert merkle_root([a, b]) != merkle_root([leaf_hash(a) + leaf_hash(b)])
    assert merkle_root([a]) == leaf_hash(a) != a


# Certificate Transparency's reference leaves and tree heads for sizes 0..8
# (the same values as transparency-dev/merkle testonly/constants.go).
CT_LEAVES = [bytes.fromhex(h) for h in [
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
]]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(9))
def test_certificate_transparency_roots(n):
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n]
    assert reference_mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]


def test_events_root_is_the_merkle_root_over_event_hashes_in_seq_order():
    exec_id = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
    prev, hashes = genesis_hash(exec_id), []
    for seq in range(5):
        ev = build_event(exec_id, seq, "log", f"2023-11-14T22:13:20.{seq:06d}Z",
                         {"level": "info", "message": str(seq), "data": None}, prev)
        hashes.append(ev.hash)
        prev = ev.hash
    assert events_root(hashes) == reference_mth(hashes)
    lh = [hashlib.sha256(b"\x00" + h).digest() for h in hashes]
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    assert events_root(hashes) == node(node(node(lh[0], lh[1]), node(lh[2], lh[3])), lh[4])
    assert events_root(hashes[::-1]) != events_root(hashes)
