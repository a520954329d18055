-- Orchestrator schema for SQLite, the embedded one-replica backend: the same tables and the
-- same rules as migrations/orchestrator (PostgreSQL), which stays the reference. See
-- orchestrator/src/store/sqlite.rs for the queries. Differences, and why:
--   * No schemas in SQLite: tables are prefixed `sagaflow_` instead of living in `sagaflow.`,
--     so the file can be shared with other components' tables.
--   * Times are INTEGER microseconds since the Unix epoch, UTC (PostgreSQL's precision):
--     they compare and sort as numbers, with no text format to get wrong. The store writes
--     them from one clock, the process's (in one process it is the database's clock too).
--   * Execution ids are 16-byte BLOBs (sqlx's encoding of a uuid): blobs compare byte by byte,
--     like PostgreSQL's uuid, so an id prefix is still a range of the primary key.
--   * JSON is TEXT checked with json_valid (PostgreSQL's JSON type also keeps the text).
--   * Tables are STRICT, so a value of the wrong type is refused, as PostgreSQL would.
--   * Ids of definitions and inbox rows are AUTOINCREMENT: like a sequence they are never
--     reused, even after the newest inbox row is consumed (an owner skips inbox ids it is
--     already handling, so a reused id could hide a new request).
--   * No partial index for claim() (see below).
--   * No NOTIFY trigger (one replica, in one process) and no commit_verdict function: the
--     store runs each write as one BEGIN IMMEDIATE transaction and judges a refused
--     transition in Rust.

-- Versions of a definition are immutable rows; executions pin one by id.
CREATE TABLE sagaflow_definitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- 1, 2, ... per name.
    version INTEGER NOT NULL CHECK (version >= 1),
    -- The JSON text exactly as registered.
    content TEXT NOT NULL,
    -- SHA-256 of content, lowercase hex.
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- Also serves "latest version of a name" (ORDER BY version DESC LIMIT 1).
    UNIQUE (name, version)
) STRICT;

-- One row per execution: the hot row that every transition updates.
CREATE TABLE sagaflow_executions (
    id BLOB PRIMARY KEY CHECK (length(id) = 16),
    definition_id INTEGER NOT NULL REFERENCES sagaflow_definitions (id),
    -- Copied from the definition at creation: idempotency keys are unique per name (all
    -- versions share them), and listing by name needs no join.
    definition_name TEXT NOT NULL,
    definition_version INTEGER NOT NULL,
    -- Status::as_str() names.
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED',
        'COMPENSATING', 'COMPENSATED', 'COMPENSATION_STUCK', 'CANCELLED', 'TERMINATED')),
    input TEXT NOT NULL CHECK (json_valid(input)),
    output TEXT CHECK (json_valid(output)),
    error TEXT,
    cause TEXT,
    idempotency_key TEXT,
    -- SHA-256 of the start request: tells "the same start again" from "a different start
    -- under a used key".
    request_hash TEXT NOT NULL,
    -- The serialized interpreter state after the last committed event.
    snapshot TEXT NOT NULL CHECK (json_valid(snapshot)),
    started_at INTEGER NOT NULL,
    -- Set when the status becomes terminal, cleared by a redrive.
    stopped_at INTEGER,
    -- Id of the last history event; a commit must continue exactly here.
    last_event_id INTEGER NOT NULL DEFAULT 0 CHECK (last_event_id >= 0),
    redrive_count INTEGER NOT NULL DEFAULT 0 CHECK (redrive_count >= 0),
    -- The lease: the owner that may write the execution, and until when. lease_epoch grows
    -- on every claim; a write names the epoch it holds and is refused once a claim bumped it.
    owner TEXT,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    CHECK ((owner IS NULL) = (lease_expires_at IS NULL))
) STRICT;

-- Idempotent start: at most one execution per (definition name, key).
CREATE UNIQUE INDEX sagaflow_executions_idempotency_key
    ON sagaflow_executions (definition_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- claim() has no index of its own (PostgreSQL's partial index on lease expiry): SQLite's
-- planner prefers the status index below, whose RUNNING and COMPENSATING ranges are the
-- active executions alone, and sorts those few by expiry. An expression index it would not
-- use would still be rewritten by every claim, renew and release.

-- list_executions(): newest first, unfiltered or by status or definition; keyset pagination
-- on (started_at, id). Id prefixes are a range of the primary key.
CREATE INDEX sagaflow_executions_started ON sagaflow_executions (started_at DESC, id DESC);
CREATE INDEX sagaflow_executions_status_started ON sagaflow_executions (status, started_at DESC, id DESC);
CREATE INDEX sagaflow_executions_definition_started
    ON sagaflow_executions (definition_name, started_at DESC, id DESC);

-- Append-only, clustered by its key (WITHOUT ROWID): one execution's events are adjacent,
-- for the commit's inserts and history paging alike.
CREATE TABLE sagaflow_history (
    execution_id BLOB NOT NULL REFERENCES sagaflow_executions (id) ON DELETE CASCADE,
    -- 1-based, contiguous per execution.
    id INTEGER NOT NULL CHECK (id >= 1),
    "timestamp" INTEGER NOT NULL,
    -- EventKind names (TaskScheduled, ...).
    type TEXT NOT NULL,
    state TEXT,
    details TEXT CHECK (json_valid(details)),
    -- The outside event this entry recorded (a serialized interpreter Event), for replay.
    cause TEXT CHECK (json_valid(cause)),
    PRIMARY KEY (execution_id, id)
) STRICT, WITHOUT ROWID;

-- Durable timers (Wait states, retry backoff): deliver TimerFired { work_id } at due_at.
CREATE TABLE sagaflow_timers (
    execution_id BLOB NOT NULL REFERENCES sagaflow_executions (id) ON DELETE CASCADE,
    work_id INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    PRIMARY KEY (execution_id, work_id)
) STRICT, WITHOUT ROWID;

-- Outside requests (cancel, terminate, repairs, redrive) waiting for the execution's owner;
-- a commit deletes the ones it consumed, so the table holds only pending requests.
CREATE TABLE sagaflow_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id BLOB NOT NULL REFERENCES sagaflow_executions (id) ON DELETE CASCADE,
    request TEXT NOT NULL CHECK (json_valid(request)),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sagaflow_inbox_execution ON sagaflow_inbox (execution_id, id);
