"""The `Store` protocol: the few methods every backend implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..record import Blob, Event
from ._projection import Tip
from ._query import ExecutionFilter


class Store(Protocol):
    """Where executions, their events, blobs and seals are kept.

    Append-only: there is no method that changes or deletes an event, a blob's digest or a
    seal. Every write is one transaction.
    """

    backend: str

    def append(self, events: Sequence[Event], blobs: Sequence[Blob] = (), *,
               project: str | None = None) -> list[Event]:
        """Write events and blobs in one transaction; return the new ones; see `SQLStore.append`."""

    def heartbeat(self, leases: dict[str, int], progress: dict[str, dict[str, int]] | None = None,
                  ) -> dict[str, dict[str, Any]]:
        """Extend leases and refresh running totals; return pending cancel requests."""

    def tip(self, execution_id: str) -> Tip | None:
        """The last stored event of an execution."""

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        """One execution's summary."""

    def list_executions(self, flt: ExecutionFilter | None = None) -> list[dict[str, Any]]:
        """Summaries, newest first."""

    def resolve_id(self, prefix: str) -> str:
        """The full id for a unique prefix."""

    def events(self, execution_id: str, *, after_seq: int = -1, limit: int | None = None) -> list[Event]:
        """Stored events after a seq."""

    def get_blob(self, digest: str, *, project: str | None = None) -> Blob | None:
        """A blob by digest (with ``project``: only one an execution of that project refers to)."""

    def get_seal(self, execution_id: str) -> dict[str, Any] | None:
        """The seal of a terminal execution."""

    def unsealed(self) -> list[dict[str, Any]]:
        """Executions not yet sealed, for the reaper."""

    def iter_chain_rows(self, batch: int = 20000) -> Iterator[tuple[str, int, bytes, bytes]]:
        """Every event as (execution_id, seq, hash, body), by execution then seq."""

    def all_seals(self) -> dict[str, tuple[str, int, bytes, bytes]]:
        """Every seal."""

    def close(self) -> None:
        """Release the connection."""
