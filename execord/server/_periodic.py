"""A daemon thread that runs one job every few seconds: the reaper's and the checkpointer's."""

from __future__ import annotations

import logging
import threading

from ..errors import ExecordError

log = logging.getLogger("execord.server")


class Periodic:
    """Calls `run_once` every ``interval`` seconds on a daemon thread until `stop`.

    A known failure (an `ExecordError`, such as the store being unavailable for a moment) is
    logged as a warning and the next round tries again; anything else is logged with its
    traceback, and the loop goes on.
    """

    name = "execord-periodic"

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> object:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except ExecordError as exc:
                log.warning("%s: %s", self.name, exc)
            except Exception:
                log.exception(self.name)
