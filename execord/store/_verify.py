"""Verify every record in a store: re-hash each stored event and check each seal."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..record import ChainVerifier, Problem
from ._protocol import Store


@dataclass
class VerifyReport:
    """What `verify_store` found.

    Attributes:
        executions: executions checked.
        events: events re-hashed.
        sealed: executions whose seal was checked.
        problems: the first problem of each execution that failed.
    """

    executions: int = 0
    events: int = 0
    sealed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems


def verify_store(store: Store) -> VerifyReport:
    """Re-hash every stored event and check every seal (DESIGN §4).

    Reads each event's stored canonical bytes, never a re-serialization, so a changed byte
    anywhere fails at exactly its execution and seq.
    """
    report = VerifyReport()
    seals = store.all_seals()
    seen: set[str] = set()
    current: ChainVerifier | None = None

    def finish(v: ChainVerifier) -> None:
        seal = seals.get(v.execution_id)
        if seal is not None and v.problem is None:
            _status, count, root, last = seal
            v.check_seal(event_count=count, events_root=root, last_hash=last)
            report.sealed += 1
        if v.problem is not None:
            report.problems.append(v.problem)
        report.executions += 1
        report.events += v.count

    for execution_id, seq, hash_, body in store.iter_chain_rows():
        if current is None or execution_id != current.execution_id:
            if current is not None:
                finish(current)
            current = ChainVerifier(execution_id)
            seen.add(execution_id)
        current.add(seq, hash_, body)
    if current is not None:
        finish(current)
    for execution_id in seals.keys() - seen:
        report.problems.append(Problem(execution_id, None, "sealed but no events are stored"))
    return report
