"""The SQLite schema, as an ordered list of migrations.

A database records its version in ``meta.schema_version``. Opening one applies every
migration above that version inside one transaction; a version above `SCHEMA_VERSION`
is refused (a newer Execord wrote it).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE executions (
    id                  TEXT PRIMARY KEY,
    project             TEXT NOT NULL DEFAULT 'default',
    agent               TEXT,
    agent_version       TEXT,
    workflow            TEXT,
    workflow_version    TEXT,
    execution_type      TEXT NOT NULL,
    parent_execution_id TEXT,
    status              TEXT NOT NULL,
    failure_class       TEXT,
    started_at          TEXT NOT NULL,
    started_us          INTEGER NOT NULL,
    ended_at            TEXT,
    duration_ms         INTEGER,
    steps               INTEGER NOT NULL DEFAULT 0,
    llm_calls           INTEGER NOT NULL DEFAULT 0,
    tool_calls          INTEGER NOT NULL DEFAULT 0,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    cost_micros         INTEGER,
    halt                TEXT,
    error               TEXT,
    cancel              TEXT,
    governance_version  TEXT,
    labels              TEXT NOT NULL DEFAULT '{}',
    host                TEXT,
    pid                 INTEGER,
    proc_start          TEXT,
    lease_s             INTEGER,
    lease_expires_us    INTEGER,
    sealed              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_start ON executions (project, started_us DESC, id DESC);
CREATE INDEX executions_by_status ON executions (project, status, started_us DESC);
CREATE INDEX executions_by_workflow ON executions (project, workflow, started_us DESC);
CREATE INDEX executions_by_agent ON executions (project, agent, started_us DESC);
CREATE INDEX executions_running ON executions (sealed) WHERE sealed = 0;

CREATE TABLE execution_labels (
    execution_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
) WITHOUT ROWID;
CREATE INDEX execution_labels_by_kv ON execution_labels (key, value);

-- body: the canonical bytes that were hashed (DESIGN §4); hash: its 32 raw bytes.
-- A rowid table, not WITHOUT ROWID: appends then touch one table page (SQLite's quick
-- balance) plus one small index page, which halves the pages a commit writes.
CREATE TABLE events (
    execution_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    step_id      TEXT,
    hash         BLOB NOT NULL,
    body         BLOB NOT NULL
);
CREATE UNIQUE INDEX events_by_execution ON events (execution_id, seq);

CREATE TABLE blobs (
    digest     TEXT NOT NULL,      -- 'sha256:<hex>' of data
    size       INTEGER NOT NULL,
    type       TEXT NOT NULL,      -- 'json' or 'text'
    data       BLOB                -- NULL once erased (right to erasure)
);
CREATE UNIQUE INDEX blobs_by_digest ON blobs (digest);

CREATE TABLE seals (
    execution_id       TEXT PRIMARY KEY,
    status             TEXT NOT NULL,
    event_count        INTEGER NOT NULL,
    events_root        BLOB NOT NULL,
    last_hash          BLOB NOT NULL,
    governance_version TEXT,
    sealed_at          TEXT NOT NULL
) WITHOUT ROWID;

-- Append-only, enforced by the database as well as by the Python API (issue #2).
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'execord: events are append-only (UPDATE refused)'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'execord: events are append-only (DELETE refused)'); END;
CREATE TRIGGER events_not_after_seal BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM seals WHERE execution_id = NEW.execution_id)
BEGIN SELECT RAISE(ABORT, 'execord: execution is sealed (INSERT refused)'); END;

CREATE TRIGGER seals_no_update BEFORE UPDATE ON seals
BEGIN SELECT RAISE(ABORT, 'execord: seals are immutable (UPDATE refused)'); END;
CREATE TRIGGER seals_no_delete BEFORE DELETE ON seals
BEGIN SELECT RAISE(ABORT, 'execord: seals are immutable (DELETE refused)'); END;

-- A blob's bytes may be erased (set to NULL); its digest, size and type never change.
CREATE TRIGGER blobs_no_rewrite BEFORE UPDATE ON blobs
WHEN NEW.digest IS NOT OLD.digest OR NEW.size IS NOT OLD.size OR NEW.type IS NOT OLD.type
  OR NEW.data IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'execord: blobs are content-addressed (only erasure allowed)'); END;
CREATE TRIGGER blobs_no_delete BEFORE DELETE ON blobs
BEGIN SELECT RAISE(ABORT, 'execord: blobs are never deleted (erase the bytes instead)'); END;

-- The summary row is a projection that may change until the execution is sealed.
CREATE TRIGGER executions_frozen_after_seal BEFORE UPDATE ON executions
WHEN OLD.sealed = 1
BEGIN SELECT RAISE(ABORT, 'execord: execution is sealed (UPDATE refused)'); END;
CREATE TRIGGER executions_no_delete BEFORE DELETE ON executions
BEGIN SELECT RAISE(ABORT, 'execord: executions are never deleted'); END;
CREATE TRIGGER execution_labels_no_update BEFORE UPDATE ON execution_labels
BEGIN SELECT RAISE(ABORT, 'execord: labels are fixed at start (UPDATE refused)'); END;
CREATE TRIGGER execution_labels_no_delete BEFORE DELETE ON execution_labels
BEGIN SELECT RAISE(ABORT, 'execord: labels are never deleted'); END;
""",
    ),
]

MIGRATIONS.append(
    (
        2,
        """
-- Governance versions are immutable and content-addressed (DESIGN §5).
CREATE TABLE governance_versions (
    id            TEXT PRIMARY KEY,          -- gv_<16 hex>
    digest        TEXT NOT NULL,             -- sha256:<64 hex> of document
    document      BLOB NOT NULL,             -- canonical JSON
    created_at    TEXT NOT NULL,
    created_by    TEXT
);
CREATE TRIGGER governance_versions_no_update BEFORE UPDATE ON governance_versions
BEGIN SELECT RAISE(ABORT, 'execord: governance versions are immutable (UPDATE refused)'); END;
CREATE TRIGGER governance_versions_no_delete BEFORE DELETE ON governance_versions
BEGIN SELECT RAISE(ABORT, 'execord: governance versions are immutable (DELETE refused)'); END;

-- Every activation is kept: who moved the active pointer, when, from and to.
CREATE TABLE governance_activations (
    project       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    from_version  TEXT,
    to_version    TEXT NOT NULL,
    activated_by  TEXT,
    activated_at  TEXT NOT NULL,
    source        TEXT,
    PRIMARY KEY (project, seq)
);
CREATE TRIGGER governance_activations_no_update BEFORE UPDATE ON governance_activations
BEGIN SELECT RAISE(ABORT, 'execord: activations are kept as they happened (UPDATE refused)'); END;
CREATE TRIGGER governance_activations_no_delete BEFORE DELETE ON governance_activations
BEGIN SELECT RAISE(ABORT, 'execord: activations are kept as they happened (DELETE refused)'); END;

-- An approval is requested by the execution's own process (approval.requested) and decided
-- once, by a reviewer or by its timeout; the decision is recorded in the chain by the
-- execution's process as approval.decided.
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    project       TEXT NOT NULL DEFAULT 'default',
    execution_id  TEXT NOT NULL,
    step_id       TEXT,
    rule_id       TEXT NOT NULL,
    action_digest TEXT NOT NULL,
    approvers     TEXT NOT NULL,             -- JSON list
    message       TEXT,
    action        TEXT,                      -- JSON: what is waiting (tool and arguments)
    status        TEXT NOT NULL,             -- pending, approved, rejected, expired
    requested_at  TEXT NOT NULL,
    requested_us  INTEGER NOT NULL,
    expires_at    TEXT NOT NULL,
    expires_us    INTEGER NOT NULL,
    on_timeout    TEXT NOT NULL DEFAULT 'reject',
    decided_at    TEXT,
    reviewer      TEXT,
    comment       TEXT
);
CREATE INDEX approvals_by_status ON approvals (project, status, requested_us);
CREATE INDEX approvals_by_execution ON approvals (execution_id);
CREATE TRIGGER approvals_decided_once BEFORE UPDATE ON approvals
WHEN OLD.status != 'pending' OR NEW.id IS NOT OLD.id OR NEW.action_digest IS NOT OLD.action_digest
  OR NEW.execution_id IS NOT OLD.execution_id
BEGIN SELECT RAISE(ABORT, 'execord: an approval is decided once (UPDATE refused)'); END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
BEGIN SELECT RAISE(ABORT, 'execord: approvals are never deleted'); END;
""",
    )
)

MIGRATIONS.append(
    (
        3,
        """
-- An operator's request to stop a running execution (DESIGN §2 cancelled). The execution's
-- own process reads it with its heartbeat and appends cancel.requested to its chain, so
-- every chain keeps exactly one writer.
CREATE TABLE cancels (
    execution_id  TEXT PRIMARY KEY,
    requested_by  TEXT NOT NULL,
    reason        TEXT,
    requested_at  TEXT NOT NULL,
    requested_us  INTEGER NOT NULL
);
CREATE TRIGGER cancels_no_update BEFORE UPDATE ON cancels
BEGIN SELECT RAISE(ABORT, 'execord: a cancel request is kept as made (UPDATE refused)'); END;
CREATE TRIGGER cancels_no_delete BEFORE DELETE ON cancels
BEGIN SELECT RAISE(ABORT, 'execord: cancel requests are never deleted'); END;

-- API keys of the server (DESIGN §7): only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,            -- the key's public prefix, e.g. ek_01a2b3c4
    project     TEXT NOT NULL,
    name        TEXT,
    scopes      TEXT NOT NULL,               -- comma-separated
    sha256      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT,
    revoked_at  TEXT
);
CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON api_keys
BEGIN SELECT RAISE(ABORT, 'execord: keys are revoked, never deleted'); END;
CREATE TRIGGER api_keys_revoke_only BEFORE UPDATE ON api_keys
WHEN NEW.id IS NOT OLD.id OR NEW.sha256 IS NOT OLD.sha256 OR NEW.project IS NOT OLD.project
  OR NEW.scopes IS NOT OLD.scopes OR OLD.revoked_at IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'execord: a key can only be revoked, once (UPDATE refused)'); END;
""",
    )
)

MIGRATIONS.append(
    (
        4,
        """
-- The server evaluates again, against the pinned version, every decision an agent recorded
-- (DESIGN §6), once the execution is sealed; a mismatch is kept here and shown by the API.
CREATE TABLE decision_checks (
    execution_id  TEXT PRIMARY KEY,
    checked_at    TEXT NOT NULL,
    decisions     INTEGER NOT NULL,
    mismatches    TEXT NOT NULL              -- JSON list of {seq, phase, step, recorded, server, rule}
);
CREATE TRIGGER decision_checks_no_update BEFORE UPDATE ON decision_checks
BEGIN SELECT RAISE(ABORT, 'execord: a decision check is kept as made (UPDATE refused)'); END;
""",
    )
)

MIGRATIONS.append(
    (
        5,
        """
-- Lists are ordered by (started_us, id) DESC: with id in the filtered indexes too, SQLite
-- walks the index of a rare status, workflow or agent instead of the whole time index
-- (docs/benchmarks.md, listing). PostgreSQL's indexes had it from the start.
DROP INDEX executions_by_status;
DROP INDEX executions_by_workflow;
DROP INDEX executions_by_agent;
CREATE INDEX executions_by_status ON executions (project, status, started_us DESC, id DESC);
CREATE INDEX executions_by_workflow ON executions (project, workflow, started_us DESC, id DESC);
CREATE INDEX executions_by_agent ON executions (project, agent, started_us DESC, id DESC);
""",
    )
)

def _no_replace(table: str, keys: tuple[str, ...], ignore: bool) -> str:
    """A trigger that stops ``REPLACE`` (and ``INSERT OR REPLACE``) from swapping a row.

    SQLite's REPLACE deletes the row in the way without firing its delete triggers, so the
    no-delete triggers alone do not keep a table append-only. Where the code inserts with
    ``ON CONFLICT DO NOTHING`` the second insert is ignored, as that clause would; elsewhere
    it is refused as a constraint error (which writers treat as losing a race).
    """
    cond = " AND ".join(f"{k} = NEW.{k}" for k in keys)
    action = "RAISE(IGNORE)" if ignore else f"RAISE(ABORT, 'execord: {table} rows are never replaced (INSERT refused)')"
    return (f"CREATE TRIGGER IF NOT EXISTS {table}_no_replace_{'_'.join(keys)} BEFORE INSERT ON {table}\n"
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {cond})\nBEGIN SELECT {action}; END;\n")


_NO_REPLACE = [
    ("events", ("execution_id", "seq"), False),
    ("seals", ("execution_id",), False),
    ("executions", ("id",), False),
    ("ledger", ("idx",), False),
    ("ledger", ("execution_id",), False),
    ("ledger_nodes", ("level", "idx"), False),
    ("erasures", ("digest",), False),
    ("blobs", ("digest",), True),
    ("checkpoints", ("tree_size", "key_id"), True),
    ("governance_versions", ("id",), True),
    ("decision_checks", ("execution_id",), True),
    ("cancels", ("execution_id",), True),
]

MIGRATIONS.append(
    (
        6,
        """
-- The ledger (DESIGN §1, §4): one leaf per sealed execution at a contiguous index, and the
-- hash of every perfect subtree of the Merkle log (level 0: the leaf hashes), so a proof
-- is one read. Existing seals are given leaves by `_ledger.backfill` in the same migration.
-- The record tables also refuse REPLACE (see `_no_replace`).
CREATE TABLE ledger (
    idx          INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL UNIQUE,
    entry        BLOB NOT NULL              -- canonical JSON of the seal (DESIGN §4)
);
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- Signed C2SP checkpoints, kept as signed.
CREATE TABLE checkpoints (
    tree_size    INTEGER NOT NULL,
    key_id       TEXT NOT NULL,
    root         BLOB NOT NULL,
    origin       TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    note         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tree_size, key_id)
);
-- Right to erasure: a blob's bytes are deleted and this entry says when, why and by whom.
CREATE TABLE erasures (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    erased_by  TEXT,
    erased_at  TEXT NOT NULL
);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'execord: the ledger is append-only (UPDATE refused)'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'execord: the ledger is append-only (DELETE refused)'); END;
CREATE TRIGGER ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'execord: the ledger is append-only (UPDATE refused)'); END;
CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'execord: the ledger is append-only (DELETE refused)'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'execord: checkpoints are kept as signed (UPDATE refused)'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'execord: checkpoints are kept as signed (DELETE refused)'); END;
CREATE TRIGGER erasures_no_update BEFORE UPDATE ON erasures
BEGIN SELECT RAISE(ABORT, 'execord: erasures are kept as made (UPDATE refused)'); END;
CREATE TRIGGER erasures_no_delete BEFORE DELETE ON erasures
BEGIN SELECT RAISE(ABORT, 'execord: erasures are kept as made (DELETE refused)'); END;
""" + "".join(_no_replace(t, keys, ignore) for t, keys, ignore in _NO_REPLACE),
    )
)

MIGRATIONS.append(
    (
        7,
        """
-- An erasure's signed statement: a C2SP signed note by a ledger key over the entry and the
-- ledger's size when it was signed, so an auditor can tell an erased blob from one left out
-- of a bundle (`execord.ledger._erasure`). Each key signs an erasure once: after a new
-- ledger key, `execord blobs sign-erasures` signs the erasures again with it, as it signs
-- those made before version 7.
CREATE TABLE erasure_notes (
    digest       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    tree_size    INTEGER NOT NULL,
    verifier_key TEXT NOT NULL,
    note         TEXT NOT NULL,
    PRIMARY KEY (digest, key_id)
);
CREATE TRIGGER erasure_notes_no_update BEFORE UPDATE ON erasure_notes
BEGIN SELECT RAISE(ABORT, 'execord: erasures are kept as signed (UPDATE refused)'); END;
CREATE TRIGGER erasure_notes_no_delete BEFORE DELETE ON erasure_notes
BEGIN SELECT RAISE(ABORT, 'execord: erasures are kept as signed (DELETE refused)'); END;
""" + _no_replace("erasure_notes", ("digest", "key_id"), False),
    )
)

MIGRATIONS.append(
    (
        8,
        """
-- Which executions refer to each blob (in an event's attrs, {"$blob": digest}). A key reads
-- a blob only when an execution of its project refers to it: a digest alone must not let one
-- project confirm what another recorded. Filled from the stored events, then by `append`.
CREATE TABLE IF NOT EXISTS blob_refs (
    digest       TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (digest, execution_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO blob_refs (digest, execution_id)
    SELECT DISTINCT t.value, e.execution_id
    FROM events e, json_tree(CAST(e.body AS TEXT)) t
    WHERE instr(CAST(e.body AS TEXT), '"$blob"') > 0 AND t.key = '$blob' AND t.type = 'text';
""",
    )
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
