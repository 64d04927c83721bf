"""Checking a stored chain and its seal, one event at a time (pure: no I/O).

`ChainVerifier` is fed the stored rows of one execution in seq order, exactly as stored
(the canonical bytes and the hash), and reports the first problem it meets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ._merkle import EMPTY_ROOT, node_hash

_PREV_KEY = b'"prev_hash":"'
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one execution's record.

    Attributes:
        execution_id: the execution.
        seq: the first event that fails, or None when the seal (not an event) is wrong.
        message: what is wrong, in words.
    """

    execution_id: str
    seq: int | None
    message: str


class ChainVerifier:
    """Re-hash one execution's stored events and check them against its seal.

    Each `add` checks, for event ``seq``: it follows the previous seq with no gap; its body
    names the previous event's hash as ``prev_hash``; and ``SHA-256(prev ‖ body)`` equals
    the stored hash (DESIGN §4). `check_seal` then recomputes ``events_root`` (RFC 6962
    over the event hashes) and compares it, the last hash and the event count with the seal.
    """

    __slots__ = ("execution_id", "_prev", "_next_seq", "_stack", "count", "problem")

    def __init__(self, execution_id: str):
        self.execution_id = execution_id
        self._prev = _sha256(execution_id.encode()).digest()
        self._next_seq = 0
        # Compact Merkle range: (height, hash) pairs, merged as leaves arrive (O(log n) memory).
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0
        self.problem: Problem | None = None

    def _fail(self, seq: int | None, message: str) -> bool:
        if self.problem is None:
            self.problem = Problem(self.execution_id, seq, message)
        return False

    def add(self, seq: int, stored_hash: bytes, body: bytes) -> bool:
        """Check the next stored event; False (and `problem` set) at the first failure."""
        if self.problem is not None:
            return False
        if seq != self._next_seq:
            return self._fail(seq, f"seq {seq} where {self._next_seq} was expected (gap or reorder)")
        # In canonical JSON the top-level keys are sorted and every key after "prev_hash"
        # (seq, step_id, ts, type, v) holds ids, numbers or our own type names, so the last
        # occurrence of the key is the top-level one.
        at = body.rfind(_PREV_KEY)
        prev_hex = self._prev.hex().encode()
        start = at + len(_PREV_KEY)
        if at < 0 or body[start : start + 64] != prev_hex:
            return self._fail(seq, "prev_hash does not name the previous event's hash")
        calculated = _sha256(self._prev + body).digest()
        if calculated != stored_hash:
            return self._fail(
                seq, f"hash mismatch: stored {stored_hash.hex()}, recomputed {calculated.hex()}"
            )
        self._prev = calculated
        self._next_seq += 1
        self.count += 1
        self._push(_sha256(b"\x00" + calculated).digest())
        return True

    def _push(self, leaf: bytes) -> None:
        stack = self._stack
        height, node = 0, leaf
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))

    @property
    def last_hash(self) -> bytes:
        """The hash of the last event added (the genesis hash before any)."""
        return self._prev

    def root(self) -> bytes:
        """The RFC 6962 root over the hashes added so far."""
        if not self._stack:
            return EMPTY_ROOT
        # Fold right to left: the smaller (right) subtrees join the larger ones on their left.
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node

    def check_seal(self, *, event_count: int, events_root: bytes, last_hash: bytes) -> bool:
        """Compare the recomputed record with a seal; False (and `problem` set) on mismatch."""
        if self.problem is not None:
            return False
        if event_count != self.count:
            return self._fail(None, f"seal counts {event_count} events, {self.count} are stored")
        if last_hash != self._prev:
            return self._fail(self.count - 1, "seal's last_hash is not the last event's hash")
        calculated = self.root()
        if calculated != events_root:
            return self._fail(
                None,
                f"events_root mismatch: seal {events_root.hex()}, recomputed {calculated.hex()}",
            )
        return True
