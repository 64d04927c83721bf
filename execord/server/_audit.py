"""Re-evaluating an agent's decisions on the server (DESIGN §6).

Per-step decisions are made in the agent's process against the pinned governance version.
When the server stores an execution's ``execution.ended``, a worker thread evaluates every
``governance.decision`` of it again from the record alone (`check_execution`) and keeps the
result in ``decision_checks``; a decision the server would have made differently is a
mismatch, logged, counted (``execord_decision_checks_total{result="mismatch"}``) and shown in
the execution's unified status. Off the ingest path: a slow check never slows an agent.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from ..runtime._simulate import SimulationReport, check_execution

log = logging.getLogger("execord.server")


class DecisionAudit:
    """A queue of sealed executions to check, and the thread that checks them."""

    def __init__(self, store: Any, metrics: Any):
        self.store = store
        self.metrics = metrics
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=100_000)
        self._pinned: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._loop, name="execord-audit", daemon=True)
        self._thread.start()

    def submit(self, execution_id: str, governed: bool | None = None) -> None:
        """Check an execution that was just sealed (``governed``: it is known to hold
        decisions; None: not known, so its summary is read first)."""
        if governed is False:
            try:
                if not self.store.get_execution(execution_id)["governance_version"]:
                    return  # nothing to check: no version pinned, so no decision recorded
            except Exception:
                return
        try:
            self._queue.put_nowait(execution_id)
        except queue.Full:
            log.warning("execord: decision check queue full; %s not checked", execution_id)

    def stop(self) -> None:
        self._queue.put(None)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every submitted execution was checked (tests)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _loop(self) -> None:
        while True:
            eid = self._queue.get()
            try:
                if eid is None:
                    return
                self.check(eid)
            except Exception:
                log.exception("execord: decision check of %s failed", eid)
            finally:
                self._queue.task_done()

    def check(self, execution_id: str) -> dict[str, Any]:
        """Check one execution now; keep and return the result."""
        report = SimulationReport()
        check_execution(self.store, execution_id, None, report, self._pinned)
        mismatches = [{"seq": m.seq, "phase": m.phase, "step": m.step, "recorded": m.recorded,
                       "server": m.candidate, "rule": m.rule} for m in report.mismatches]
        if report.decisions:
            self.store.put_decision_check(execution_id, report.decisions, mismatches)
            self.metrics.decision_checks.labels("mismatch" if mismatches else "ok").inc()
        if mismatches:
            log.warning("execord: execution %s recorded %d decision(s) the server evaluates differently: %s",
                        execution_id, len(mismatches), mismatches)
        return {"decisions": report.decisions, "mismatches": mismatches}
