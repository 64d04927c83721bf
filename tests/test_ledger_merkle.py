"""execord.ledger.merkle against RFC 9162 written out literally, CT's vectors, and properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_merkle import CT_LEAVES, CT_ROOTS

from execord.ledger import _tree, merkle
from execord.ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), literally."""
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b), literally."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def test_the_public_functions_are_exactly_the_six_the_issue_names():
    assert sorted(merkle.__all__) == sorted([
        "leaf_hash", "root", "inclusion_proof", "verify_inclusion", "consistency_proof", "verify_consistency",
    ])


@pytest.mark.parametrize("n", range(9))
def test_certificate_transparency_roots(n):
    assert root(CT_LEAVES[:n]).hex() == CT_ROOTS[n]


# transparency-dev/merkle testonly: inclusion and consistency proofs over the CT leaves.
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_certificate_transparency_inclusion_proofs(index, size):
    proof = inclusion_proof(CT_LEAVES[:size], index)
    assert [p.hex() for p in proof] == CT_INCLUSION[(index, size)]
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, root(CT_LEAVES[:size]))


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_certificate_transparency_consistency_proofs(old, new):
    proof = consistency_proof(CT_LEAVES, old, new)
    assert [p.hex() for p in proof] == CT_CONSISTENCY[(old, new)]
    assert verify_consistency(old, new, root(CT_LEAVES[:old]), root(CT_LEAVES[:new]), proof)


def test_every_proof_up_to_64_leaves_matches_the_rfc_text():
    entries = [i.to_bytes(2, "big") for i in range(64)]
    for n in range(1, 65):
        d = entries[:n]
        assert root(d) == ref_mth(d)
        for m in range(n):
            assert inclusion_proof(d, m) == ref_path(m, d)
        for m in range(1, n):
            assert consistency_proof(d, m, n) == ref_subproof(m, d, True)


def test_generators_refuse_arguments_outside_the_tree():
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof([b"a"], 1)
    with pytest.raises(ValueError, match="not within"):
        consistency_proof([b"a", b"b"], 2, 1)
    with pytest.raises(ValueError, match="not within"):
        consistency_proof([b"a"], 0, 2)
    assert consistency_proof([b"a", b"b"], 0, 2) == [] == consistency_proof([b"a", b"b"], 2, 2)


def test_root_of_nothing_is_sha256_of_the_empty_string():
    assert root([]) == hashlib.sha256(b"").digest()


GOOD = [b"x"] * 5
R5 = root(GOOD)


@pytest.mark.parametrize("bad", [
    lambda: verify_inclusion(leaf_hash(b"x"), 5, 5, inclusion_proof(GOOD, 4), R5),  # index == size
    lambda: verify_inclusion(leaf_hash(b"x"), -1, 5, inclusion_proof(GOOD, 4), R5),
    lambda: verify_inclusion(leaf_hash(b"x")[:31], 4, 5, inclusion_proof(GOOD, 4), R5),  # short hash
    lambda: verify_inclusion(leaf_hash(b"x"), 4, 5, inclusion_proof(GOOD, 4), R5 + b"\x00"),
    lambda: verify_inclusion(leaf_hash(b"x"), 4, 5, [*inclusion_proof(GOOD, 4), R5], R5),  # extra element
    lambda: verify_inclusion(leaf_hash(b"x"), 4, 5, inclusion_proof(GOOD, 4)[:-1], R5),  # missing element
    lambda: verify_inclusion(leaf_hash(b"x"), 4, 5, [b"short"], R5),
    lambda: verify_inclusion(leaf_hash(b"x"), 4, 5, None, R5),  # type: ignore[arg-type]
    lambda: verify_inclusion("not bytes", 4, 5, [], R5),  # type: ignore[arg-type]
    lambda: verify_inclusion(leaf_hash(b"x"), True, 5, inclusion_proof(GOOD, 1), R5),
    lambda: verify_inclusion(leaf_hash(b"x"), 0, 0, [], hashlib.sha256(b"").digest()),
    lambda: verify_consistency(5, 3, R5, root(GOOD[:3]), []),  # sizes out of order
    lambda: verify_consistency(0, 5, hashlib.sha256(b"").digest(), R5, [R5]),  # empty old, non-empty proof
    lambda: verify_consistency(0, 5, R5, R5, []),  # empty old tree with a non-empty root
    lambda: verify_consistency(5, 5, R5, R5, [R5]),
    lambda: verify_consistency(5, 5, R5, root(GOOD[:4]), []),
    lambda: verify_consistency(3, 5, root(GOOD[:3]), R5, []),  # proof missing
    lambda: verify_consistency(3, 5, root(GOOD[:3]), R5, [*consistency_proof(GOOD, 3, 5), R5]),
    lambda: verify_consistency(3, 5, root(GOOD[:3]), R5, consistency_proof(GOOD, 3, 5)[:-1]),
    lambda: verify_consistency(3, 5, root(GOOD[:3])[:8], R5, consistency_proof(GOOD, 3, 5)),
    lambda: verify_consistency(-1, 5, root(GOOD[:3]), R5, []),
    lambda: verify_consistency(3, 5, root(GOOD[:3]), R5, "proof"),  # type: ignore[arg-type]
])
def test_verifiers_answer_false_and_never_raise_on_malformed_input(bad):
    assert bad() is False


def test_the_trivial_cases_verify():
    assert verify_consistency(0, 5, hashlib.sha256(b"").digest(), R5, [])
    assert verify_consistency(5, 5, R5, R5, [])
    assert verify_inclusion(leaf_hash(b"only"), 0, 1, [], root([b"only"]))


def _flips(b: bytes):
    for i in range(len(b) * 8):
        yield b[: i // 8] + bytes([b[i // 8] ^ (1 << (i % 8))]) + b[i // 8 + 1:]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 1000), data=st.data())
def test_random_trees_every_proof_verifies_and_every_bit_flip_fails(n, data):
    entries = [data.draw(st.binary(max_size=4), label="first") + i.to_bytes(2, "big") for i in range(n)]
    stored = _tree.levels([leaf_hash(e) for e in entries])
    r = root(entries)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(entries, index)
    lh = leaf_hash(entries[index])
    assert verify_inclusion(lh, index, n, proof, r)
    assert _tree.resolve(_tree.inclusion_plan(index, n), lambda keys: stored) == proof
    for k, p in enumerate(proof):
        for flipped in _flips(p):
            assert not verify_inclusion(lh, index, n, [*proof[:k], flipped, *proof[k + 1:]], r)
    for flipped in _flips(r):
        assert not verify_inclusion(lh, index, n, proof, flipped)
    for bit in range(max(n.bit_length(), 1) + 1):
        assert not verify_inclusion(lh, index ^ (1 << bit), n, proof, r)

    old = data.draw(st.integers(1, n), label="old")
    cproof = consistency_proof(entries, old, n)
    old_root = root(entries[:old])
    assert verify_consistency(old, n, old_root, r, cproof)
    if old < n:
        for k, p in enumerate(cproof):
            for flipped in _flips(p):
                assert not verify_consistency(old, n, old_root, r, [*cproof[:k], flipped, *cproof[k + 1:]])
        for flipped in _flips(old_root):
            assert not verify_consistency(old, n, flipped, r, cproof)
        for flipped in _flips(r):
            assert not verify_consistency(old, n, old_root, flipped, cproof)


def test_every_inclusion_and_consistency_proof_of_a_1000_leaf_tree_verifies():
    entries = [str(i).encode() for i in range(1000)]
    stored = _tree.levels([leaf_hash(e) for e in entries])
    roots = [_tree.fold([stored[k] for k in _tree.root_plan(m)]) if m else root([]) for m in range(1001)]
    assert roots[1000] == root(entries) == ref_mth(entries)
    for index in range(1000):
        proof = _tree.resolve(_tree.inclusion_plan(index, 1000), lambda keys: stored)
        assert verify_inclusion(leaf_hash(entries[index]), index, 1000, proof, roots[1000])
    for old in range(1, 1001):
        proof = _tree.resolve(_tree.consistency_plan(old, 1000), lambda keys: stored)
        assert verify_consistency(old, 1000, roots[old], roots[1000], proof)


def test_a_plan_reads_at_most_two_log_n_stored_subtrees():
    n = 1_000_003
    worst = max(len({k for ks in _tree.inclusion_plan(i, n) for k in ks}) for i in range(0, n, 9973))
    worst_c = max(len({k for ks in _tree.consistency_plan(m, n) for k in ks}) for m in range(1, n, 9973))
    assert worst <= 2 * n.bit_length() and worst_c <= 2 * n.bit_length()
