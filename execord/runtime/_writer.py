"""The process's one writer: orders, batches and commits every event it records.

Two kinds of writes (docs/sdk.md, "Durability"):

- a **barrier** (``execution.started``, ``step.started``, ``execution.ended``): committed
  before the call returns, together with everything still pending, so a governed action
  never runs before its request event is durable (DESIGN §6);
- a **deferred** event (``step.ended``, ``log``): queued, then committed by the next barrier
  or by the flusher thread within ``flush_interval_ms``, whichever comes first.

With ``durability="strict"`` every event is a barrier. One SQLite commit costs about as
much as a whole OpenTelemetry span here, so batching completion events is what keeps the
per-step overhead within budget (docs/benchmarks.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import EventError, ExecordError, RecordError
from ..record import Blob, Event, now_us
from ..store import Store

if TYPE_CHECKING:
    from ._handles import ExecutionHandle

log = logging.getLogger("execord")

_KNOWN_BLOBS_MAX = 4096
_PENDING_MAX = 100_000


class Writer:
    """Owns the store connection, the pending queue and the background threads.

    ``lock`` orders everything: seq assignment, hashing and queueing happen under it, so the
    events of one execution always reach the store in seq order, whatever thread made them.
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        *,
        durability: str,
        flush_interval_ms: int,
        on_record_error: str,
        lease_s: int,
        heartbeat_s: float = 2.0,
        flush_at_exit_s: float = 5.0,
    ):
        self._open_store = open_store
        self._store: Store | None = None
        self.strict = durability == "strict"
        self.flush_interval = flush_interval_ms / 1000
        self.halt_on_error = on_record_error == "halt"
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.flush_at_exit_s = flush_at_exit_s
        self.lock = threading.RLock()
        self._pending: list[Event] = []
        self._pending_blobs: list[Blob] = []
        self._known_blobs: dict[str, None] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads_started = False
        self.live: dict[str, ExecutionHandle] = {}
        self._warned = False
        _WRITERS.add(self)

    # -- the store -----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened on first use."""
        if self._store is None:
            with self.lock:
                if self._store is None:
                    self._store = self._open_store()
        return self._store

    # -- writing -------------------------------------------------------------------------

    def barrier(self, events: Sequence[Event], blobs: Sequence[Blob]) -> bool:
        """Commit ``events`` and everything pending now. Caller holds ``lock``.

        Returns:
            True when they are durable; False when the store failed and
            ``on_record_error="continue"`` (they stay queued for a later retry).

        Raises:
            RecordError: the store failed and ``on_record_error="halt"``; ``events`` are
                dropped (the action they announce will not run), the pending queue is kept.
        """
        known = self._known_blobs
        all_events = self._pending + list(events) if self._pending else events
        fresh_blobs = [b for b in blobs if b.digest not in known] if blobs else []
        all_blobs = self._pending_blobs + fresh_blobs if self._pending_blobs else fresh_blobs
        try:
            self.store.append(all_events, all_blobs)
        except EventError as exc:
            # The store refused an event as breaking the record's rules. Never let one bad
            # queued event block every later commit: drop that execution's queue, retry once.
            if not self._drop_poisoned(exc):
                return self._failed(exc, events, blobs)
            return self.barrier(events, blobs)
        except ExecordError as exc:
            return self._failed(exc, events, blobs)
        if self._pending:
            self._pending.clear()
            self._pending_blobs.clear()
        if all_blobs:
            self._remember(all_blobs)
        return True

    def _drop_poisoned(self, exc: EventError) -> bool:
        bad = getattr(exc, "execution_id", None)
        kept = [e for e in self._pending if e.execution_id != bad]
        if bad is None or len(kept) == len(self._pending):
            return False
        log.error("execord dropped %d queued events of execution %s: %s",
                  len(self._pending) - len(kept), bad, exc)
        self._pending = kept
        return True

    def _failed(self, exc: ExecordError, events: Sequence[Event], blobs: Sequence[Blob]) -> bool:
        execution_id = events[0].execution_id if events else None
        if self.halt_on_error:
            raise RecordError(
                f"execord could not record the event, so the action did not run: {exc}",
                execution_id=execution_id,
            ) from exc
        if not self._warned:
            log.warning("execord could not record events (continuing, on_record_error=continue): %s", exc)
            self._warned = True
        self.defer(events, blobs)
        return False

    def defer(self, events: Sequence[Event], blobs: Sequence[Blob]) -> None:
        """Queue events for the next commit. Caller holds ``lock``."""
        if len(self._pending) >= _PENDING_MAX:
            log.error("execord dropped %d events: the store has been failing too long", len(events))
            return
        self._pending.extend(events)
        for b in blobs:
            if b.digest not in self._known_blobs:
                self._pending_blobs.append(b)
        if not self._threads_started:
            self._start_threads()
        if not self._dirty.is_set():
            self._dirty.set()

    def _remember(self, blobs: Sequence[Blob]) -> None:
        known = self._known_blobs
        for b in blobs:
            known[b.digest] = None
        if len(known) > _KNOWN_BLOBS_MAX:
            for digest in list(known)[: len(known) // 2]:
                del known[digest]

    def flush(self, timeout: float | None = None) -> bool:
        """Commit everything pending (in server mode: and ship it); True when nothing is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._flush_pending(deadline):
            return False
        wait_shipped = getattr(self._store, "wait_shipped", None)
        if wait_shipped is None:
            return True
        return bool(wait_shipped(None if deadline is None else max(0.0, deadline - time.monotonic())))

    def _flush_pending(self, deadline: float | None) -> bool:
        while True:
            with self.lock:
                if not self._pending:
                    return True
                try:
                    self.store.append(self._pending, self._pending_blobs)
                except EventError as exc:
                    # A refused event can never be written: drop its execution's queue (as a
                    # barrier does) so it cannot block every later flush.
                    if not self._drop_poisoned(exc):
                        log.error("execord dropped %d queued events the store refuses: %s", len(self._pending), exc)
                        self._pending.clear()
                        self._pending_blobs.clear()
                    continue
                except ExecordError as exc:
                    log.warning("execord flush failed: %s", exc)
                else:
                    self._remember(self._pending_blobs)
                    self._pending.clear()
                    self._pending_blobs.clear()
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # -- background ----------------------------------------------------------------------

    def _start_threads(self) -> None:
        self._threads_started = True
        threading.Thread(target=self._flush_loop, name="execord-flush", daemon=True).start()
        threading.Thread(target=self._heartbeat_loop, name="execord-heartbeat", daemon=True).start()

    def ensure_threads(self) -> None:
        """Start the flusher and heartbeat threads if they are not running."""
        with self.lock:
            if not self._threads_started:
                self._start_threads()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self.flush_interval):
                return
            self._dirty.clear()
            try:
                self.flush(timeout=0)
            except Exception:  # the flusher must never die; the next barrier retries
                log.exception("execord flusher")

    def _heartbeat_loop(self) -> None:
        interval = max(min(self.lease_s / 3, self.heartbeat_s), 0.2)
        failing = False
        while not self._stop.wait(interval):
            try:
                self.heartbeat()
            except Exception as exc:
                if not failing:  # once per outage, not every few seconds
                    log.warning("execord heartbeat failed (leases are not extended until it works again): %s", exc)
                failing = True
            else:
                if failing:
                    log.warning("execord heartbeat works again")
                failing = False

    def heartbeat(self) -> None:
        """Extend the lease of every live execution of this process."""
        with self.lock:
            if not self.live:
                return
            expires = now_us() + self.lease_s * 1_000_000
            leases = {eid: expires for eid in self.live}
            progress = {eid: h.totals_dict() for eid, h in self.live.items()}
        # Outside the lock: in server mode this is a network call.
        answer = self.store.heartbeat(leases, progress) or {}
        for eid, info in answer.items():
            handle = self.live.get(eid)
            if handle is not None:
                handle.on_heartbeat(info)

    def close(self) -> None:
        """Flush, stop the threads and close the store."""
        self._stop.set()
        self._dirty.set()
        try:
            self.flush(timeout=5)
        finally:
            with self.lock:
                if self._store is not None:
                    self._store.close()
                    self._store = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connection, queue and threads."""
        self.lock = threading.RLock()
        self._store = None
        self._pending = []
        self._pending_blobs = []
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads_started = False
        self.live = {}


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for w in list(_WRITERS):
        try:
            shipped = w.flush(timeout=w.flush_at_exit_s)
            release = getattr(w._store, "release_spool", None)
            if release is not None:
                if shipped:
                    release()  # nothing left to ship: the spool file goes
                else:
                    log.warning("execord: the server did not take every event before exit; they stay in the "
                                "spool and the next process on this host sends them")
        except Exception:
            pass


def _after_fork_in_child() -> None:
    for w in list(_WRITERS):
        w.after_fork()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
