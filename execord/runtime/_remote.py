"""Server mode: the `Store` an agent (or the CLI) uses when ``EXECORD_URL`` is set.

Writes go to the local `Spool` first (append + fsync, before the governed action runs) and
a background shipper sends them to ``POST /api/v1/ingest`` in batches, retrying with backoff
while the server is away; ingest is idempotent on (execution_id, seq), so a batch sent twice
is harmless. Reads, admission, heartbeats and approvals are HTTP calls to the server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from .. import errors
from ..errors import ApiError, ConfigError, NotFound, ServerUnavailable, StoreUnavailable
from ..record import Blob, Event, canonical_json, parse_event
from ._host import hostname, proc_start
from ._spool import Spool, SpoolFull, orphans, read_ack, read_records, release_orphan, write_ack

log = logging.getLogger("execord")

_API = "/api/v1"
_MAX_BATCH_BYTES = 4 * 1024 * 1024
_BY_STATUS: dict[int, type[ApiError]] = {
    401: errors.Unauthorized, 403: errors.Forbidden, 409: errors.Conflict, 413: errors.PayloadTooLarge,
}


def default_spool_dir(url: str, api_key: str) -> Path:
    """``~/.execord/spool/<digest of server and key>``: shared by every process of this host
    that talks to the same server with the same key, so each ships the others' orphans."""
    digest = hashlib.sha256(f"{url}\n{api_key}".encode()).hexdigest()[:16]
    return Path.home() / ".execord" / "spool" / digest


class ApiClient:
    """HTTP to the server, with its errors turned into ours (the message is the problem's ``detail``)."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"EXECORD_URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        headers = {"User-Agent": "execord-python"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, *, json: Any = None, params: Any = None, content: bytes | None = None,
             timeout: float | None = None, raw: bool = False) -> Any:
        """One request; the decoded JSON answer (the body's bytes with ``raw``)."""
        kw: dict[str, Any] = {"params": params}
        if content is not None:
            kw["content"] = content
            kw["headers"] = {"Content-Type": "application/json"}
        elif json is not None:
            kw["json"] = json
        if timeout is not None:
            kw["timeout"] = timeout
        try:
            r = self.http.request(method, path if path.startswith("/") else f"{_API}/{path}", **kw)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"the Execord server at {self.url} cannot be reached: {exc}") from exc
        if r.status_code >= 400:
            raise self._error(r)
        if raw:
            return r.content
        return r.json() if r.content else None

    def _error(self, r: httpx.Response) -> ApiError | NotFound:
        try:
            body = r.json()
            detail = body.get("detail") or r.reason_phrase
        except ValueError:
            detail = r.text[:300] or r.reason_phrase
        if r.status_code == 404:
            return NotFound(str(detail))
        if r.status_code >= 500:
            return ServerUnavailable(f"the Execord server at {self.url} failed ({r.status_code}): {detail}")
        cls = _BY_STATUS.get(r.status_code, ApiError)
        return cls(str(detail), status=r.status_code) if cls is ApiError else cls(str(detail))

    def close(self) -> None:
        self.http.close()


def event_from_dict(d: dict[str, Any]) -> Event:
    """An event from its API JSON: the canonical bytes are recomputed exactly (JCS)."""
    h = bytes.fromhex(d["hash"])
    body = canonical_json({k: v for k, v in d.items() if k != "hash"})
    return parse_event(body, h)


class RemoteStore:
    """The `Store` of server mode.

    Args:
        url: the server (``EXECORD_URL``).
        api_key: the key (``EXECORD_API_KEY``).
        spool_dir: where this process spools events; None for a read-only client (the CLI).
        spool_max_bytes: the spool's bound.
        lease_s: the lease each heartbeat asks for.
    """

    backend = "remote"
    remote = True
    path = None

    def __init__(self, url: str, api_key: str | None, *, spool_dir: str | os.PathLike[str] | None = None,
                 spool_max_bytes: int = 256 * 1024 * 1024, lease_s: int = 30, spool_fsync: str = "always",
                 sync_interval_s: float = 0.1):
        self.api = ApiClient(url, api_key)
        self.url = self.target = self.api.url
        self.lease_s = lease_s
        self.fsync_always = spool_fsync == "always"
        self.sync_interval_s = sync_interval_s
        self.spool: Spool | None = None
        self._spool_dir = Path(spool_dir) if spool_dir is not None else None
        self._spool_max = spool_max_bytes
        self._shipper: threading.Thread | None = None
        self._stop = threading.Event()
        self._acked = threading.Condition()
        self._down_since: float | None = None
        self.rejected: list[dict[str, Any]] = []

    # -- writing: spool, then ship ---------------------------------------------------------------

    def _open_spool(self) -> Spool:
        if self.spool is None:
            if self._spool_dir is None:
                raise ConfigError("this Execord client is read-only (no spool); set EXECORD_SPOOL_DIR to record")
            pid = os.getpid()
            name = f"{hostname()}-{pid}-{(proc_start(pid) or '0').replace('.', '')}"
            self.spool = Spool(self._spool_dir, max_bytes=self._spool_max, name=name)
            self._shipper = threading.Thread(target=self._ship_loop, name="execord-ship", daemon=True)
            self._shipper.start()
        return self.spool

    def append(self, events: Sequence[Event], blobs: Sequence[Blob] = (), *, project: str | None = None) -> list[Event]:
        """Make ``events`` durable in the spool (fsynced); the shipper sends them on."""
        if not events and not blobs:
            return []
        ev = b",".join(b'{"body":%s,"hash":"%s"}' % (orjson.dumps(e.body.decode()), e.hash.hex().encode())
                       for e in events)
        bl = b",".join(orjson.dumps({"digest": b.digest, "type": b.type, "data": (b.data or b"").decode()})
                       for b in blobs)
        try:
            self._open_spool().append(ev + b"\n" + bl, sync=self.fsync_always)
        except SpoolFull as exc:
            raise StoreUnavailable(str(exc)) from exc
        except OSError as exc:
            raise StoreUnavailable(f"the spool cannot be written: {exc}") from exc
        return list(events)

    def _ship_loop(self) -> None:
        backoff = 0.05
        self._ship_orphans()
        spool = self.spool
        assert spool is not None
        while not self._stop.is_set():
            if not self.fsync_always:
                spool.sync()  # interval durability: at most one interval of appends unsynced
            if spool.pending() == 0:
                spool.changed.wait(self.sync_interval_s if not self.fsync_always else 0.5)
                spool.changed.clear()
                continue
            records = list(spool.records(_MAX_BATCH_BYTES))
            if not records:
                time.sleep(0.01)
                continue
            if self._ship(records):
                spool.ack(records[-1][0])
                with self._acked:
                    self._acked.notify_all()
                backoff = 0.05
            else:
                self._stop.wait(backoff + random.uniform(0, backoff / 2))
                backoff = min(backoff * 2, 5.0)

    def _ship(self, records: list[tuple[int, bytes]]) -> bool:
        """POST one batch; True when the server has it (stored, duplicate or rejected)."""
        evs, bls = [], []
        for _, payload in records:
            e, _, b = payload.partition(b"\n")
            if e:
                evs.append(e)
            if b:
                bls.append(b)
        body = b'{"events":[' + b",".join(evs) + b'],"blobs":[' + b",".join(bls) + b"]}"
        try:
            answer = self.api.call("POST", "ingest", content=body, timeout=60)
        except ServerUnavailable as exc:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("execord: %s; events stay in the spool %s and are sent when it is back",
                            exc, self.spool.path if self.spool else "")
            return False
        except (errors.Unauthorized, errors.Forbidden) as exc:
            log.error("execord: the server refuses this key (%s); events stay in the spool", exc)
            return False
        except errors.PayloadTooLarge:
            if len(records) > 1:
                half = len(records) // 2
                return self._ship(records[:half]) and self._ship(records[half:])
            log.error("execord dropped one spooled batch the server refuses as too large")
            return True
        except ApiError as exc:
            log.error("execord dropped a spooled batch the server cannot read: %s", exc)
            return True
        if self._down_since is not None:
            log.warning("execord: the server is back after %.0fs; sending the spool",
                        time.monotonic() - self._down_since)
            self._down_since = None
        for r in answer.get("rejected") or ():
            log.error("execord: the server refused events of execution %s: %s", r.get("execution_id"), r.get("detail"))
            self.rejected.append(r)
        return True

    def _ship_orphans(self) -> None:
        """Ship the spools of processes on this host that died, then remove them."""
        assert self._spool_dir is not None
        for path in orphans(self._spool_dir, self.spool.path if self.spool else None):
            offset = read_ack(path)
            while not self._stop.is_set():
                records = list(read_records(path, offset, _MAX_BATCH_BYTES))
                if not records:
                    release_orphan(path)
                    log.info("execord shipped the spool %s left by a process that died", path)
                    break
                if self._ship(records):
                    offset = records[-1][0]
                    write_ack(path, offset)
                else:
                    self._stop.wait(1.0)

    def wait_shipped(self, timeout: float | None) -> bool:
        """Wait until everything spooled has reached the server; True if it did in time."""
        spool = self.spool
        if spool is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._acked:
            while spool.pending() > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                spool.changed.set()
                self._acked.wait(0.05 if left is None else min(left, 0.05))
        return True

    def release_spool(self) -> None:
        """At a clean exit with nothing unshipped: remove this process's spool file."""
        spool = self.spool
        if spool is not None and spool.pending() == 0:
            self._stop.set()
            spool.close()
            release_orphan(spool.path)
            self.spool = None

    def close(self) -> None:
        """Stop shipping (what is unshipped stays in the spool for the next process)."""
        self.release_spool()
        self._stop.set()
        if self._shipper is not None:
            self._shipper.join(timeout=2)
        if self.spool is not None:
            self.spool.close()
        self.api.close()

    # -- the control plane ---------------------------------------------------------------------------

    def admit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Admission at the server: the pinned version, its decision, window usage."""
        answer = dict(self.api.call("POST", "executions/start", json=body, timeout=10))
        self._cache_put("active", {"version_id": answer.get("governance_version")})
        return answer

    # A small cache on disk, beside the spool: the last active version id and the documents
    # fetched, so that a process on this host can govern while the server is away.

    def _cache_path(self, name: str) -> Path | None:
        if self._spool_dir is None:
            return None
        return self._spool_dir / "cache" / f"{name.replace(':', '_')}.json"

    def _cache_put(self, name: str, value: Any) -> None:
        path = self._cache_path(name)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(value))
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("execord could not cache %s: %s", name, exc)

    def _cache_get(self, name: str) -> Any:
        path = self._cache_path(name)
        try:
            return orjson.loads(path.read_bytes()) if path is not None else None
        except (OSError, orjson.JSONDecodeError):
            return None

    def cached_active(self) -> str | None:
        """The governance version the server last pinned for this host's key ("" for none),
        or None when it never answered."""
        hit = self._cache_get("active")
        return None if hit is None else (hit.get("version_id") or "")

    def heartbeat(self, leases: dict[str, int], progress: dict[str, dict[str, int]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        """Extend leases; per execution, a pending cancel and fresh window usage."""
        if not leases:
            return {}
        body = {"executions": {eid: {"lease_s": self.lease_s, "totals": (progress or {}).get(eid)}
                               for eid in leases}}
        answer = self.api.call("POST", "heartbeat", json=body, timeout=10)
        out: dict[str, dict[str, Any]] = {}
        for eid, cancel in (answer.get("cancels") or {}).items():
            out.setdefault(eid, {})["cancel"] = cancel.get("cancel", cancel) if isinstance(cancel, dict) else cancel
        for eid, windows in (answer.get("windows") or {}).items():
            out.setdefault(eid, {})["windows"] = windows
        return out

    def active_governance(self, project: str | None = None) -> str | None:
        return self.api.call("GET", "governance/active").get("version_id")

    def get_governance_version(self, version_id: str) -> dict[str, Any]:
        try:
            row = dict(self.api.call("GET", f"governance/versions/{version_id}"))
        except ServerUnavailable:
            cached = self._cache_get(f"version-{version_id}")
            if cached is None:
                raise
            return dict(cached)
        self._cache_put(f"version-{version_id}", row)
        return row

    def list_governance_versions(self, project: str | None = None) -> list[dict[str, Any]]:
        return list(self.api.call("GET", "governance/versions")["items"])

    def governance_history(self, project: str | None = None) -> list[dict[str, Any]]:
        return list(self.api.call("GET", "governance/history")["items"])

    def apply_governance(self, path: str) -> dict[str, Any]:
        """Send a governance file to the server to validate, store and activate (admin)."""
        p = Path(path)
        if p.is_dir():
            raise ConfigError("a governance folder cannot be applied over the API yet: apply one file")
        return dict(self.api.call("POST", "governance/apply",
                                  json={"source": p.read_text(encoding="utf-8"), "filename": p.name}))

    def get_blob(self, digest: str, *, project: str | None = None) -> Blob | None:
        # The server answers for the key's own project whatever ``project`` says.
        try:
            b = self.api.call("GET", f"blobs/{digest}")
        except NotFound:
            return None
        except ServerUnavailable:
            b = self._cache_get(f"blob-{digest}")
            if b is None:
                raise
        else:
            if b.get("type") == "json" and b.get("size", 0) < 8 * 1024 * 1024:
                self._cache_put(f"blob-{digest}", b)  # price tables, for offline admission
        data = None if b["data"] is None else b["data"].encode()
        return Blob(b["digest"], b["size"], b["type"], data)

    # -- approvals ------------------------------------------------------------------------------------

    def get_approval(self, approval_id: str, *, project: str | None = None, wait: float = 0) -> dict[str, Any]:
        if len(approval_id) != 36:  # a prefix, as the CLI accepts
            hits = [r for r in self.list_approvals(status=None, limit=500) if r["id"].startswith(approval_id)]
            if len(hits) != 1:
                raise NotFound(f"approval prefix {approval_id!r} matches {len(hits)} approvals; give the full id")
            return hits[0]
        return dict(self.api.call("GET", f"approvals/{approval_id}", params={"wait": wait} if wait else None,
                                  timeout=wait + 15))

    def wait_approval(self, approval_id: str, timeout: float) -> dict[str, Any] | None:
        """Long-poll an approval; None while it is pending (or not yet shipped)."""
        try:
            row = self.get_approval(approval_id, wait=max(0.0, min(timeout, 10.0)))
        except (NotFound, ServerUnavailable):
            time.sleep(0.2)  # not shipped yet, or the server is away: ask again
            return None
        return row if row["status"] != "pending" else None

    def list_approvals(self, *, status: str | None = "pending", project: str | None = None,
                       execution_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params = {"status": status or "any", "limit": min(limit, 500)}
        if execution_id:
            params["execution_id"] = execution_id
        return list(self.api.call("GET", "approvals", params=params)["items"])

    def decide_approval(self, approval_id: str, decision: str, *, reviewer: str | None = None,
                        comment: str | None = None, now: int | None = None) -> dict[str, Any]:
        if decision == "expired":
            return dict(self.api.call("POST", f"approvals/{approval_id}/expire"))
        verb = {"approved": "approve", "rejected": "reject"}[decision]
        return dict(self.api.call("POST", f"approvals/{approval_id}/{verb}", json={"comment": comment}))

    # -- reading executions ------------------------------------------------------------------------

    def list_executions(self, flt: Any = None) -> list[dict[str, Any]]:
        from ..store import ExecutionFilter

        flt = flt or ExecutionFilter()
        params: dict[str, Any] = {k: v for k, v in (
            ("workflow", flt.workflow), ("agent", flt.agent), ("failure_class", flt.failure_class),
            ("execution_type", flt.execution_type), ("id_prefix", flt.id_prefix),
        ) if v is not None}
        if flt.statuses:
            params["status"] = flt.statuses
        if flt.since_us is not None:
            params["since"] = _iso(flt.since_us)
        if flt.until_us is not None:
            params["until"] = _iso(flt.until_us)
        if flt.labels:
            params["label"] = [f"{k}={v}" for k, v in flt.labels.items()]
        rows: list[dict[str, Any]] = []
        cursor = None
        while len(rows) < flt.limit:
            page = self.api.call("GET", "executions",
                                 params={**params, "limit": min(500, flt.limit - len(rows)),
                                         **({"cursor": cursor} if cursor else {})})
            rows.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return rows

    def get_execution(self, execution_id: str, *, project: str | None = None) -> dict[str, Any]:
        return dict(self.api.call("GET", f"executions/{execution_id}")["execution"])

    def resolve_id(self, prefix: str, *, project: str | None = None) -> str:
        from ..errors import AmbiguousId

        prefix = prefix.strip().lower()
        if not prefix or any(ch not in "0123456789abcdef-" for ch in prefix):
            raise NotFound(f"{prefix!r} is not an execution id (ids look like 01a2b3c4-…)")
        rows = self.api.call("GET", "executions", params={"id_prefix": prefix, "limit": 6})["items"]
        ids = sorted(r["id"] for r in rows)
        if not ids:
            raise NotFound(f"no execution id starts with {prefix!r}")
        if len(ids) > 1 and ids[0] != prefix:
            raise AmbiguousId(prefix, ids)
        return str(ids[0])

    def events(self, execution_id: str, *, after_seq: int = -1, limit: int | None = None) -> list[Event]:
        out: list[Event] = []
        while limit is None or len(out) < limit:
            n = 10_000 if limit is None else min(10_000, limit - len(out))
            page = self.api.call("GET", f"executions/{execution_id}/events", params={"after_seq": after_seq, "limit": n})
            items = [event_from_dict(d) for d in page["items"]]
            out.extend(items)
            if len(items) < n:
                break
            after_seq = items[-1].seq
        return out

    def get_seal(self, execution_id: str) -> dict[str, Any] | None:
        return self.api.call("GET", f"executions/{execution_id}/seal")

    def request_cancel(self, execution_id: str, *, by: str | None = None, reason: str | None,
                       project: str | None = None) -> dict[str, Any]:
        answer = self.api.call("POST", f"unified/executions/{execution_id}/cancel", json={"reason": reason})
        return dict(answer["cancel"])

    def unsealed(self) -> list[dict[str, Any]]:
        return []  # the server's reaper seals lapsed executions

    # -- keys -------------------------------------------------------------------------------------------

    def create_key(self, project: str, scopes: list[str] | str, *, name: str | None = None,
                   by: str | None = None) -> tuple[str, dict[str, Any]]:
        scope_list = scopes.split(",") if isinstance(scopes, str) else list(scopes)
        row = dict(self.api.call("POST", "keys", json={"project": project or None, "scopes": scope_list, "name": name}))
        return row.pop("key"), row

    def list_keys(self, project: str | None = None) -> list[dict[str, Any]]:
        return list(self.api.call("GET", "keys")["items"])

    def revoke_key(self, key_id: str, *, project: str | None = None) -> dict[str, Any]:
        return dict(self.api.call("POST", f"keys/{key_id}/revoke"))


def _iso(us: int) -> str:
    from ..record import format_ts

    return format_ts(us)
