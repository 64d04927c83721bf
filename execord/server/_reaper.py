"""The server's reaper: seal as ``interrupted`` the executions whose lease lapsed (DESIGN §2).

Safe with several replicas: sealing is an append at the next seq, so when two replicas seal
the same execution one wins and the other's append is refused; the loser moves on. For one
lease after this server starts, an execution is left alone: its agent may have been
heartbeating into a server that was down.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import EventError, ExecordError
from ..record import now_us
from ..runtime import seal_interrupted
from ._periodic import Periodic

log = logging.getLogger("execord.server")


class Reaper(Periodic):
    """A daemon thread that looks for lapsed leases every ``interval`` seconds."""

    name = "execord-reaper"

    def __init__(self, store: Any, *, interval: float, on_sealed: Any = None):
        super().__init__(interval)
        self.store = store
        self.on_sealed = on_sealed
        self.started_us = now_us()

    def run_once(self) -> list[str]:
        return self.sweep()

    def sweep(self, now: int | None = None) -> list[str]:
        """Seal every lapsed execution once; return the ids this replica sealed."""
        now = now_us() if now is None else now
        sealed = []
        for row in self.store.lapsed(now):
            lease_us = int(row.get("lease_s") or 30) * 1_000_000
            if now - self.started_us < lease_us:
                continue  # give agents one lease to reach a server that just started
            reason = f"its lease lapsed (no heartbeat from {row.get('host')} pid {row.get('pid')})"
            try:
                if seal_interrupted(self.store, row["id"], reason):
                    sealed.append(row["id"])
                    if self.on_sealed is not None:
                        self.on_sealed(row["id"])
            except (EventError, ExecordError) as exc:
                log.info("execord reaper did not seal %s: %s", row["id"], exc)
        return sealed
