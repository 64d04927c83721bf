"""The store's governance tables: versions, activations, approvals, window usage."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import ApprovalError, NotFound
from ..record import now_ts, now_us


class GovernanceTables:
    """Mixed into `SQLiteStore`: everything governance keeps in the database.

    Relies on the host's ``_read`` and its ``_write`` transaction helper.
    """

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:  # provided by the store
        raise NotImplementedError

    def _write(self, fn: Any) -> Any:  # provided by the store
        raise NotImplementedError

    # -- versions and activations ---------------------------------------------------------------

    def put_governance_version(self, version_id: str, digest: str, document: bytes, *, by: str | None = None) -> bool:
        """Store a version (a no-op when the same id is already stored); True if it was new."""

        def tx(c: Any) -> bool:
            cur = c.execute(
                "INSERT INTO governance_versions (id, digest, document, created_at, created_by) VALUES (?,?,?,?,?)"
                " ON CONFLICT (id) DO NOTHING",
                (version_id, digest, document, now_ts(), by),
            )
            return cur.rowcount == 1

        return bool(self._write(tx))

    def get_governance_version(self, version_id: str) -> dict[str, Any]:
        """A stored version: {id, digest, document, created_at, created_by}.

        Raises:
            NotFound: no such version (ids may be given as unique prefixes).
        """
        rows = self._read(
            "SELECT id, digest, document, created_at, created_by FROM governance_versions WHERE id >= ? AND id < ? LIMIT 2",
            (version_id, version_id + "\uffff"),
        )
        if not rows:
            raise NotFound(f"no governance version {version_id}; `execord governance history` lists them")
        if len(rows) > 1 and rows[0][0] != version_id:
            raise NotFound(f"governance version prefix {version_id!r} is ambiguous; give more characters")
        vid, digest, doc, at, by = rows[0]
        return {"id": vid, "digest": digest, "document": orjson.loads(doc), "created_at": at, "created_by": by}

    def list_governance_versions(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every stored version (or those ever activated in ``project``), oldest first, without documents."""
        if project is None:
            rows = self._read("SELECT id, digest, created_at, created_by FROM governance_versions ORDER BY created_at, id")
        else:
            rows = self._read(
                "SELECT id, digest, created_at, created_by FROM governance_versions WHERE id IN"
                " (SELECT to_version FROM governance_activations WHERE project = ?) ORDER BY created_at, id",
                (project,),
            )
        return [{"id": r[0], "digest": r[1], "created_at": r[2], "created_by": r[3]} for r in rows]

    def activate_governance(self, version_id: str, *, project: str = "default", by: str | None = None,
                            source: str | None = None) -> dict[str, Any]:
        """Move the project's active pointer to a stored version; keep the activation.

        Returns:
            The activation: {seq, from_version, to_version, activated_by, activated_at, source};
            ``changed`` is False (and nothing is written) when it was already active.
        """

        def tx(c: Any) -> dict[str, Any]:
            last = c.execute(
                "SELECT seq, to_version FROM governance_activations WHERE project = ? ORDER BY seq DESC LIMIT 1",
                (project,),
            ).fetchone()
            seq, current = (last[0], last[1]) if last else (0, None)
            row = {"seq": seq, "from_version": current, "to_version": version_id, "activated_by": by,
                   "activated_at": now_ts(), "source": source, "changed": current != version_id}
            if current != version_id:
                row["seq"] = seq + 1
                c.execute(
                    "INSERT INTO governance_activations (project, seq, from_version, to_version, activated_by,"
                    " activated_at, source) VALUES (?,?,?,?,?,?,?)",
                    (project, seq + 1, current, version_id, by, row["activated_at"], source),
                )
            return row

        return dict(self._write(tx))

    def active_governance(self, project: str = "default") -> str | None:
        """The id of the project's active version, or None if none was ever activated."""
        rows = self._read(
            "SELECT to_version FROM governance_activations WHERE project = ? ORDER BY seq DESC LIMIT 1", (project,)
        )
        return rows[0][0] if rows else None

    def governance_history(self, project: str = "default") -> list[dict[str, Any]]:
        """Every activation of the project, oldest first."""
        rows = self._read(
            "SELECT seq, from_version, to_version, activated_by, activated_at, source FROM governance_activations"
            " WHERE project = ? ORDER BY seq",
            (project,),
        )
        keys = ("seq", "from_version", "to_version", "activated_by", "activated_at", "source")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- approvals ------------------------------------------------------------------------------

    def get_approval(self, approval_id: str, *, project: str | None = None) -> dict[str, Any]:
        """One approval by id or unique prefix (of ``project``, when given).

        Raises:
            NotFound: no approval matches.
        """
        scope, params = ("", ()) if project is None else (" AND project = ?", (project,))
        rows = self._read(f"SELECT {_APPROVAL_COLS} FROM approvals WHERE id >= ? AND id < ?{scope} ORDER BY id LIMIT 2",
                          (approval_id, approval_id + "\uffff", *params))
        if not rows:
            raise NotFound(f"no approval {approval_id}; `execord approvals list` shows the pending ones")
        if len(rows) > 1 and rows[0][0] != approval_id:
            raise NotFound(f"approval prefix {approval_id!r} matches more than one; give more characters")
        return _approval(rows[0])

    def list_approvals(self, *, status: str | None = "pending", project: str = "default",
                       execution_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Approvals, oldest first; pending ones by default."""
        where, params = ["project = ?"], [project]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if execution_id is not None:
            where.append("execution_id = ?")
            params.append(execution_id)
        rows = self._read(
            f"SELECT {_APPROVAL_COLS} FROM approvals WHERE {' AND '.join(where)} ORDER BY requested_us, id LIMIT ?",
            (*params, limit),
        )
        return [_approval(r) for r in rows]

    def expire_if_due(self, row: dict[str, Any]) -> dict[str, Any]:
        """An approval row, decided ``expired`` first when it is pending past its expiry
        (whoever looks first decides it; a reviewer who won the race is kept)."""
        if row["status"] == "pending" and now_us() >= row["expires_us"]:
            try:
                return dict(self.decide_approval(row["id"], "expired", reviewer="execord:timeout",
                                                 comment="nobody decided before it expired"))
            except ApprovalError:
                return dict(self.get_approval(row["id"]))
        return row

    def decide_approval(self, approval_id: str, decision: str, *, reviewer: str, comment: str | None = None,
                        now: int | None = None) -> dict[str, Any]:
        """Decide a pending approval, exactly once.

        Args:
            approval_id: the approval (full id).
            decision: ``approved``, ``rejected``, or ``expired`` (by its timeout).
            reviewer: who decided (for ``expired``: the process that noticed).
            comment: why.
            now: the decision time in µs (default: now).

        Raises:
            ApprovalError: it was already decided, or it has expired (a reviewer came too late).
            NotFound: no such approval.
        """
        if decision not in ("approved", "rejected", "expired"):
            raise ValueError(f"decision must be approved, rejected or expired, not {decision!r}")
        at_us = now_us() if now is None else now

        def tx(c: Any) -> None:
            row = c.execute("SELECT status, expires_us FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            status, expires_us = row
            if status != "pending":
                raise ApprovalError(f"approval {approval_id} was already decided: {status}")
            if decision != "expired" and at_us >= expires_us:
                raise ApprovalError(f"approval {approval_id} has expired; it can no longer be decided")
            c.execute(
                "UPDATE approvals SET status = ?, decided_at = ?, reviewer = ?, comment = ? WHERE id = ? AND status = 'pending'",
                (decision, now_ts(), reviewer, comment, approval_id),
            )

        self._write(tx)
        return self.get_approval(approval_id)

    # -- window budgets -------------------------------------------------------------------------

    def window_usage(self, *, since_us: int, agent: str | None = None, workflow: str | None = None,
                     project: str = "default", exclude: str | None = None) -> dict[str, int]:
        """What executions started since ``since_us`` used (sealed totals, or running totals
        as of their last heartbeat), optionally for one agent and/or workflow."""
        where, params = ["project = ?", "started_us >= ?"], [project, since_us]
        if agent is not None:
            where.append("agent = ?")
            params.append(agent)
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if exclude is not None:
            where.append("id != ?")
            params.append(exclude)
        row = self._read(
            "SELECT count(*), coalesce(sum(cost_micros), 0), coalesce(sum(input_tokens), 0),"
            " coalesce(sum(output_tokens), 0), coalesce(sum(llm_calls), 0), coalesce(sum(tool_calls), 0),"
            f" coalesce(sum(steps), 0) FROM executions WHERE {' AND '.join(where)}",
            params,
        )[0]
        # int(): PostgreSQL's sum() of a bigint is a numeric (a Decimal in Python).
        n = [int(x) for x in row]
        return {"executions": n[0], "cost_micros": n[1], "input_tokens": n[2], "output_tokens": n[3],
                "total_tokens": n[2] + n[3], "llm_calls": n[4], "tool_calls": n[5], "steps": n[6]}


_APPROVAL_COLS = (
    "id, execution_id, step_id, rule_id, action_digest, approvers, message, action, status, requested_at,"
    " expires_at, on_timeout, decided_at, reviewer, comment, expires_us"
)


def _approval(r: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "execution_id", "step_id", "rule_id", "action_digest", "approvers", "message", "action", "status",
            "requested_at", "expires_at", "on_timeout", "decided_at", "reviewer", "comment", "expires_us")
    out = dict(zip(keys, r, strict=True))
    out["approvers"] = orjson.loads(out["approvers"])
    out["action"] = orjson.loads(out["action"]) if out["action"] else None
    return out
