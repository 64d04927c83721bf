"""How busy the rest of the machine was while a benchmark ran: printed next to each figure,
since a 2-core machine shared with other work gives other figures."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path


def machine_busy_s() -> float:
    """CPU seconds every process of this machine has used (all cores; idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Others:
    """How many cores the rest of the machine used while a block ran."""

    def __enter__(self) -> Others:
        self.t0, self.m0, self.o0 = time.perf_counter(), machine_busy_s(), own_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        self.cores = max(0.0, (machine_busy_s() - self.m0) - (own_cpu_s() - self.o0)) / max(wall, 1e-9)
