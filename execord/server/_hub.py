"""Waking streams when events land, on this replica or any other (DESIGN §6).

A stream waits on the hub for its execution. The ingest of this process wakes it directly;
on PostgreSQL a listener thread turns ``NOTIFY execord_events`` from every replica into the
same wake-up. Streams also re-read on a short timer, so a missed wake-up (an SQLite file
written by an embedded agent, a listener reconnecting) only delays, never loses, an event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger("execord.server")


class Hub:
    """Subscribers per execution id; `wake` is safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, execution_id: str) -> asyncio.Event:
        """An event set whenever something lands for ``execution_id`` (call in the loop)."""
        ev = asyncio.Event()
        with self._lock:
            self._subs.setdefault(execution_id, set()).add((asyncio.get_running_loop(), ev))
        return ev

    def unsubscribe(self, execution_id: str, ev: asyncio.Event) -> None:
        with self._lock:
            subs = self._subs.get(execution_id)
            if subs is None:
                return
            subs.difference_update({s for s in subs if s[1] is ev})
            if not subs:
                del self._subs[execution_id]

    def count(self) -> int:
        """How many streams are open."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def wake(self, execution_id: str) -> None:
        with self._lock:
            subs = list(self._subs.get(execution_id, ()))
        for loop, ev in subs:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass  # that loop has closed: its stream is gone

    # -- PostgreSQL LISTEN -----------------------------------------------------------------------

    def listen(self, store: Any) -> None:
        """Follow NOTIFYs of every replica (PostgreSQL only) in a daemon thread."""
        if getattr(store, "backend", None) != "postgres":
            return
        self._thread = threading.Thread(target=self._listen_loop, args=(store,), name="execord-listen", daemon=True)
        self._thread.start()

    def _listen_loop(self, store: Any) -> None:
        while not self._stop.is_set():
            conn = None
            try:
                conn = store.listen()
                while not self._stop.is_set():
                    for n in conn.notifies(timeout=1.0):
                        self.wake(n.payload.rpartition(":")[0])
            except Exception as exc:  # the database went away: reconnect after a pause
                log.warning("execord stream listener lost PostgreSQL (%s); reconnecting", exc)
                self._stop.wait(1.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def close(self) -> None:
        self._stop.set()
