"""The server's checkpointer: sign a checkpoint every N seals or T seconds (DESIGN §1).

Safe with several replicas: the same tree size signed by the same key is the same note
(Ed25519 is deterministic), and the store keeps it once.
"""

from __future__ import annotations

import time
from typing import Any

from ..ledger import _log
from ..ledger._note import Signer
from ._periodic import Periodic


class Checkpointer(Periodic):
    """A daemon thread that signs a checkpoint once ``every`` new leaves are in, or once
    ``interval_s`` has passed with any new leaf (it looks every ``poll_s``)."""

    name = "execord-checkpointer"

    def __init__(self, store: Any, signer: Signer, *, every: int, interval_s: float, poll_s: float = 1.0):
        super().__init__(min(poll_s, interval_s))
        self.store = store
        self.signer = signer
        self.every = every
        self.interval_s = interval_s
        self._last = time.monotonic()

    def run_once(self) -> dict[str, Any] | None:
        return self.tick()

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Sign a checkpoint if one is due; return it (or None)."""
        now = time.monotonic() if now is None else now
        size = self.store.ledger_size()
        latest = self.store.latest_checkpoint()
        signed = 0 if latest is None else latest["tree_size"]
        grown = size - signed
        if grown <= 0 or (grown < self.every and now - self._last < self.interval_s):
            return None
        self._last = now
        return _log.make_checkpoint(self.store, self.signer)
