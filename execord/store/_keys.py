"""API keys: bound to one project, with scopes; only the SHA-256 of a key is stored (DESIGN §7)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, NotFound
from ..record import now_ts

SCOPES = ("ingest", "read", "approve", "operate", "admin")
_KEY_COLS = "id, project, name, scopes, created_at, created_by, revoked_at"


@dataclass(frozen=True)
class Principal:
    """Who holds a key: its id, project, scopes and display name (an API caller, a viewer)."""

    key_id: str
    project: str
    scopes: frozenset[str]
    name: str

    def has(self, *scopes: str) -> bool:
        """True when the key holds any of ``scopes`` (or ``admin``)."""
        return "admin" in self.scopes or any(s in self.scopes for s in scopes)

    @property
    def who(self) -> str:
        """How the caller is recorded as reviewer, canceller or activator."""
        return f"key:{self.name}" if self.name and self.name != self.key_id else f"key:{self.key_id}"



class Recent:
    """Answers of key lookups for a few seconds (``None`` answers too), so a busy server does
    not read the key's row per request; a revocation is seen within ``ttl`` seconds."""

    def __init__(self, ttl: float, limit: int = 10_000):
        self.ttl = ttl
        self.limit = limit
        self._lock = threading.Lock()
        self._hits: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, fetch: Callable[[], Any]) -> Any:
        """The cached answer for ``key``, or ``fetch()`` (then cached)."""
        now = time.monotonic()
        with self._lock:
            hit = self._hits.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        found = fetch()
        with self._lock:
            if len(self._hits) > self.limit:
                self._hits.clear()
            self._hits[key] = (now, found)
        return found

    def forget(self) -> None:
        """Drop every cached answer."""
        with self._lock:
            self._hits.clear()


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"read,approve"`` → ``["read", "approve"]``, every scope checked."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = [s.strip() for s in items if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ConfigError(
            f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}" if unknown
            else f"a key needs at least one scope: {', '.join(SCOPES)}"
        )
    return sorted(set(scopes), key=SCOPES.index)


class KeyTables:
    """Mixed into the SQL stores: create, find, list and revoke API keys."""

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:  # provided by the store
        raise NotImplementedError

    def _write(self, fn: Any) -> Any:  # provided by the store
        raise NotImplementedError

    def create_key(self, project: str, scopes: list[str] | str, *, name: str | None = None,
                   by: str | None = None) -> tuple[str, dict[str, Any]]:
        """Make a key; returns (the key itself, shown only now, and its stored row)."""
        if not project or len(project) > 64 or not all(ch.isalnum() or ch in "-_." for ch in project):
            raise ConfigError(f"project {project!r} must be 1-64 letters, digits, '-', '_' or '.'")
        chosen = parse_scopes(scopes)
        key_id = "ek_" + secrets.token_hex(6)
        key = f"{key_id}_{secrets.token_urlsafe(32)}"
        self._write(lambda c: c.execute(
            "INSERT INTO api_keys (id, project, name, scopes, sha256, created_at, created_by) VALUES (?,?,?,?,?,?,?)",
            (key_id, project, name, ",".join(chosen), key_digest(key), now_ts(), by),
        ))
        return key, self.get_key(key_id)

    def ensure_key(self, key: str, project: str, scopes: list[str], *, name: str | None = None) -> dict[str, Any]:
        """Store a key given from outside (``EXECORD_ADMIN_KEY``) unless it is already known.

        Several replicas may start at once with the same key: the first insert wins, the
        rest find it there.
        """
        key_id = key[: key.find("_", 3)]
        digest = key_digest(key)
        rows = self._read("SELECT sha256 FROM api_keys WHERE id = ?", (key_id,))
        if rows and not hmac.compare_digest(rows[0][0], digest):
            raise ConfigError(f"a different key with id {key_id} is already stored; choose another key")
        if not rows:
            self._write(lambda c: c.execute(
                "INSERT INTO api_keys (id, project, name, scopes, sha256, created_at, created_by)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (key_id, project, name, ",".join(parse_scopes(scopes)), digest, now_ts(), "EXECORD_ADMIN_KEY"),
            ))
        return self.get_key(key_id)

    def get_key(self, key_id: str) -> dict[str, Any]:
        """A key's row (never the key).

        Raises:
            NotFound: no such key.
        """
        rows = self._read(f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFound(f"no API key {key_id}; `execord keys list` shows them")
        return _key_row(rows[0])

    def authenticate(self, key: str) -> dict[str, Any] | None:
        """The row of a valid, unrevoked key, or None. The digest is compared in constant time."""
        key_id = key[: key.find("_", 3)] if key.startswith("ek_") else ""
        if not key_id:
            return None
        rows = self._read(f"SELECT {_KEY_COLS}, sha256 FROM api_keys WHERE id = ?", (key_id,))
        if not rows or not hmac.compare_digest(rows[0][-1], key_digest(key)):
            return None
        row = _key_row(rows[0][:-1])
        return None if row["revoked_at"] else row

    def list_keys(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every key (of one project), oldest first."""
        if project is None:
            rows = self._read(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created_at, id")
        else:
            rows = self._read(f"SELECT {_KEY_COLS} FROM api_keys WHERE project = ? ORDER BY created_at, id", (project,))
        return [_key_row(r) for r in rows]

    def revoke_key(self, key_id: str, *, project: str | None = None) -> dict[str, Any]:
        """Revoke a key (idempotent: revoking twice keeps the first time).

        Raises:
            NotFound: no such key (in ``project``, when given).
        """
        row = self.get_key(key_id)
        if project is not None and row["project"] != project:
            raise NotFound(f"no API key {key_id}; `execord keys list` shows them")
        if row["revoked_at"] is None:
            self._write(lambda c: c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now_ts(), key_id)))
        return self.get_key(key_id)

    def count_keys(self) -> int:
        """How many keys were ever made (revoked ones included)."""
        return int(self._read("SELECT count(*) FROM api_keys")[0][0])


def _key_row(r: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "project", "name", "scopes", "created_at", "created_by", "revoked_at")
    out = dict(zip(keys, r, strict=True))
    out["scopes"] = out["scopes"].split(",") if out["scopes"] else []
    return out
