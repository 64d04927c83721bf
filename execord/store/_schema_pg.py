"""The PostgreSQL schema: the same tables as SQLite's (`_schema`), with the same guarantees.

Append-only is enforced by triggers here too, and ids use the "C" collation so that prefix
ranges (``id >= p AND id < p'``) mean the same as in SQLite. A least-privilege application
role needs only the grants in `APP_GRANTS` (docs/deployment.md).
"""

from __future__ import annotations

_REFUSE = """
CREATE OR REPLACE FUNCTION execord_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'execord: % (% refused)', TG_ARGV[0], TG_OP USING ERRCODE = 'integrity_constraint_violation';
END $$;
"""


def _refuse(table: str, ops: str, why: str, when: str = "") -> str:
    cond = f" WHEN ({when})" if when else ""
    name = f"{table}_refuse_{ops.lower().replace(' or ', '_')}"
    return (f"CREATE TRIGGER {name} BEFORE {ops} ON {table} FOR EACH ROW{cond} "
            f"EXECUTE FUNCTION execord_refuse('{why}');\n"
            f"CREATE TRIGGER {table}_refuse_truncate BEFORE TRUNCATE ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION execord_refuse('{why}');\n") if "TRUNCATE" not in ops else ""


V1 = _REFUSE + """
CREATE TABLE executions (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    project             TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    agent               TEXT,
    agent_version       TEXT,
    workflow            TEXT,
    workflow_version    TEXT,
    execution_type      TEXT NOT NULL,
    parent_execution_id TEXT COLLATE "C",
    status              TEXT NOT NULL,
    failure_class       TEXT,
    started_at          TEXT NOT NULL,
    started_us          BIGINT NOT NULL,
    ended_at            TEXT,
    duration_ms         BIGINT,
    steps               BIGINT NOT NULL DEFAULT 0,
    llm_calls           BIGINT NOT NULL DEFAULT 0,
    tool_calls          BIGINT NOT NULL DEFAULT 0,
    input_tokens        BIGINT NOT NULL DEFAULT 0,
    output_tokens       BIGINT NOT NULL DEFAULT 0,
    cost_micros         BIGINT,
    halt                TEXT,
    error               TEXT,
    cancel              TEXT,
    governance_version  TEXT,
    labels              TEXT NOT NULL DEFAULT '{}',
    host                TEXT,
    pid                 BIGINT,
    proc_start          TEXT,
    lease_s             BIGINT,
    lease_expires_us    BIGINT,
    sealed              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_by_start ON executions (project, started_us DESC, id DESC);
CREATE INDEX executions_by_status ON executions (project, status, started_us DESC, id DESC);
CREATE INDEX executions_by_workflow ON executions (project, workflow, started_us DESC, id DESC);
CREATE INDEX executions_by_agent ON executions (project, agent, started_us DESC, id DESC);
CREATE INDEX executions_running ON executions (lease_expires_us) WHERE sealed = 0;

CREATE TABLE execution_labels (
    execution_id TEXT COLLATE "C" NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE INDEX execution_labels_by_kv ON execution_labels (key, value);

-- body: the canonical bytes that were hashed (DESIGN §4); hash: its 32 raw bytes.
CREATE TABLE events (
    execution_id TEXT COLLATE "C" NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    step_id      TEXT,
    hash         BYTEA NOT NULL,
    body         BYTEA NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE blobs (
    digest     TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT NOT NULL,
    type       TEXT NOT NULL,
    data       BYTEA
);

CREATE TABLE seals (
    execution_id       TEXT COLLATE "C" PRIMARY KEY,
    status             TEXT NOT NULL,
    event_count        INTEGER NOT NULL,
    events_root        BYTEA NOT NULL,
    last_hash          BYTEA NOT NULL,
    governance_version TEXT,
    sealed_at          TEXT NOT NULL
);

CREATE OR REPLACE FUNCTION execord_events_not_after_seal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM seals WHERE execution_id = NEW.execution_id) THEN
    RAISE EXCEPTION 'execord: execution is sealed (INSERT refused)' USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER events_not_after_seal BEFORE INSERT ON events FOR EACH ROW
EXECUTE FUNCTION execord_events_not_after_seal();
""" + _refuse("events", "UPDATE OR DELETE", "events are append-only") \
    + _refuse("seals", "UPDATE OR DELETE", "seals are immutable") \
    + _refuse("blobs", "DELETE", "blobs are never deleted (erase the bytes instead)") \
    + """
CREATE TRIGGER blobs_no_rewrite BEFORE UPDATE ON blobs FOR EACH ROW
WHEN (NEW.digest IS DISTINCT FROM OLD.digest OR NEW.size IS DISTINCT FROM OLD.size
      OR NEW.type IS DISTINCT FROM OLD.type OR NEW.data IS NOT NULL)
EXECUTE FUNCTION execord_refuse('blobs are content-addressed (only erasure allowed)');
CREATE TRIGGER executions_frozen_after_seal BEFORE UPDATE ON executions FOR EACH ROW
WHEN (OLD.sealed = 1) EXECUTE FUNCTION execord_refuse('execution is sealed');
""" + _refuse("executions", "DELETE", "executions are never deleted") \
    + _refuse("execution_labels", "UPDATE OR DELETE", "labels are fixed at start")

V2 = """
CREATE TABLE governance_versions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    digest        TEXT NOT NULL,
    document      BYTEA NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT
);
CREATE TABLE governance_activations (
    project       TEXT COLLATE "C" NOT NULL,
    seq           INTEGER NOT NULL,
    from_version  TEXT,
    to_version    TEXT NOT NULL,
    activated_by  TEXT,
    activated_at  TEXT NOT NULL,
    source        TEXT,
    PRIMARY KEY (project, seq)
);
CREATE TABLE approvals (
    id            TEXT COLLATE "C" PRIMARY KEY,
    project       TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    execution_id  TEXT COLLATE "C" NOT NULL,
    step_id       TEXT,
    rule_id       TEXT NOT NULL,
    action_digest TEXT NOT NULL,
    approvers     TEXT NOT NULL,
    message       TEXT,
    action        TEXT,
    status        TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    requested_us  BIGINT NOT NULL,
    expires_at    TEXT NOT NULL,
    expires_us    BIGINT NOT NULL,
    on_timeout    TEXT NOT NULL DEFAULT 'reject',
    decided_at    TEXT,
    reviewer      TEXT,
    comment       TEXT
);
CREATE INDEX approvals_by_status ON approvals (project, status, requested_us);
CREATE INDEX approvals_by_execution ON approvals (execution_id);
CREATE TRIGGER approvals_decided_once BEFORE UPDATE ON approvals FOR EACH ROW
WHEN (OLD.status <> 'pending' OR NEW.id IS DISTINCT FROM OLD.id
      OR NEW.action_digest IS DISTINCT FROM OLD.action_digest OR NEW.execution_id IS DISTINCT FROM OLD.execution_id)
EXECUTE FUNCTION execord_refuse('an approval is decided once');
""" + _refuse("governance_versions", "UPDATE OR DELETE", "governance versions are immutable") \
    + _refuse("governance_activations", "UPDATE OR DELETE", "activations are kept as they happened") \
    + _refuse("approvals", "DELETE", "approvals are never deleted")

V3 = """
CREATE TABLE cancels (
    execution_id  TEXT COLLATE "C" PRIMARY KEY,
    requested_by  TEXT NOT NULL,
    reason        TEXT,
    requested_at  TEXT NOT NULL,
    requested_us  BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project     TEXT COLLATE "C" NOT NULL,
    name        TEXT,
    scopes      TEXT NOT NULL,
    sha256      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT,
    revoked_at  TEXT
);
CREATE TRIGGER api_keys_revoke_only BEFORE UPDATE ON api_keys FOR EACH ROW
WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.sha256 IS DISTINCT FROM OLD.sha256
      OR NEW.project IS DISTINCT FROM OLD.project OR NEW.scopes IS DISTINCT FROM OLD.scopes
      OR OLD.revoked_at IS NOT NULL)
EXECUTE FUNCTION execord_refuse('a key can only be revoked, once');
""" + _refuse("cancels", "UPDATE OR DELETE", "a cancel request is kept as made") \
    + _refuse("api_keys", "DELETE", "keys are revoked, never deleted")

V4 = """
CREATE TABLE decision_checks (
    execution_id  TEXT COLLATE "C" PRIMARY KEY,
    checked_at    TEXT NOT NULL,
    decisions     INTEGER NOT NULL,
    mismatches    TEXT NOT NULL
);
""" + _refuse("decision_checks", "UPDATE OR DELETE", "a decision check is kept as made")

V6 = """
CREATE TABLE ledger (
    idx          BIGINT PRIMARY KEY,
    execution_id TEXT COLLATE "C" NOT NULL UNIQUE,
    entry        BYTEA NOT NULL
);
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE checkpoints (
    tree_size    BIGINT NOT NULL,
    key_id       TEXT NOT NULL,
    root         BYTEA NOT NULL,
    origin       TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    note         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tree_size, key_id)
);
CREATE TABLE erasures (
    digest     TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    erased_by  TEXT,
    erased_at  TEXT NOT NULL
);
""" + _refuse("ledger", "UPDATE OR DELETE", "the ledger is append-only") \
    + _refuse("ledger_nodes", "UPDATE OR DELETE", "the ledger is append-only") \
    + _refuse("checkpoints", "UPDATE OR DELETE", "checkpoints are kept as signed") \
    + _refuse("erasures", "UPDATE OR DELETE", "erasures are kept as made")

V7 = """
CREATE TABLE erasure_notes (
    digest       TEXT COLLATE "C" NOT NULL,
    key_id       TEXT NOT NULL,
    tree_size    BIGINT NOT NULL,
    verifier_key TEXT NOT NULL,
    note         TEXT NOT NULL,
    PRIMARY KEY (digest, key_id)
);
""" + _refuse("erasure_notes", "UPDATE OR DELETE", "erasures are kept as signed")

V8 = """
CREATE TABLE IF NOT EXISTS blob_refs (
    digest       TEXT COLLATE "C" NOT NULL,
    execution_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (digest, execution_id)
);
INSERT INTO blob_refs (digest, execution_id)
    SELECT DISTINCT r #>> '{}', e.execution_id
    FROM events e, LATERAL jsonb_path_query(convert_from(e.body, 'UTF8')::jsonb, 'strict $.**."$blob"') r
    WHERE position('"$blob"'::bytea IN e.body) > 0 AND jsonb_typeof(r) = 'string'
    ON CONFLICT DO NOTHING;
"""

# Version 5 changed only SQLite's list indexes; PostgreSQL's had the same shape from version 1.
PG_MIGRATIONS: list[tuple[int, str]] = [(1, V1), (2, V2), (3, V3), (4, V4), (5, "SELECT 1"), (6, V6), (7, V7),
                                        (8, V8)]

#: What a least-privilege application role needs (``execord serve`` as that role, after an
#: owner ran the migrations): read everything; insert facts; update only the projections
#: that change while an execution runs, an approval's decision and a key's revocation. The
#: server never erases (`execord blobs erase` runs as the owner, with the ledger key), so the
#: role can neither delete a blob's bytes nor write an erasure for the ledger key to sign.
APP_GRANTS = """
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
GRANT INSERT ON events, blobs, seals, executions, execution_labels, governance_versions,
  governance_activations, approvals, cancels, api_keys, decision_checks, ledger, ledger_nodes,
  checkpoints, blob_refs TO {role};
GRANT UPDATE ON executions, approvals, api_keys TO {role};
"""
