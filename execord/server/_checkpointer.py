"""The server's checkpointer: sign a checkpoint every N seals or T seconds (DESIGN §1).

Safe with several replicas: the same tree size signed by the same key is the same note
(Ed25519 is deterministic), and the store keeps it once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import ExecordError
from ..ledger import _log
from ..ledger._note import Signer

log = logging.getLogger("execord.server")


class Checkpointer:
    """A daemon thread that signs a checkpoint once ``every`` new leaves are in, or once
    ``interval_s`` has passed with any new leaf."""

    def __init__(self, store: Any, signer: Signer, *, every: int, interval_s: float, poll_s: float = 1.0):
        self.store = store
        self.signer = signer
        self.every = every
        self.interval_s = interval_s
        self.poll_s = min(poll_s, interval_s)
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="execord-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except ExecordError as exc:
                log.warning("execord checkpointer: %s", exc)
            except Exception:
                log.exception("execord checkpointer")

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
