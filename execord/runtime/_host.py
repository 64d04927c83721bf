"""Who is running: host and process identity, and whether a recorded process still lives."""

from __future__ import annotations

import os
import socket
from functools import lru_cache


@lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's host name."""
    return socket.gethostname()


def proc_start(pid: int) -> str | None:
    """The start time of a process (clock ticks after boot, from /proc), or None if unknown.

    Recorded beside the pid so a reused pid is not mistaken for the original process.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """True when process ``pid`` exists and (if known) started at ``start``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to someone else
    if start is None:
        return True
    now = proc_start(pid)
    if now is None:
        return True
    if now != start:
        return False
    # A zombie has exited; its parent simply has not collected it yet.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
    except OSError:
        return False
