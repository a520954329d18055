-- Orchestrator schema: definitions, executions with their leases, history, timers and the
-- inbox of outside requests. See orchestrator/src/store/postgres.rs for the queries that
-- use it; every index below names the query it serves.
CREATE SCHEMA IF NOT EXISTS sagaflow;

-- Versions of a definition are immutable rows; executions pin one by id.
CREATE TABLE sagaflow.definitions (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    -- 1, 2, ... per name.
    version INTEGER NOT NULL CHECK (version >= 1),
    -- The JSON text exactly as registered.
    content TEXT NOT NULL,
    -- SHA-256 of content, lowercase hex.
    hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Also serves "latest version of a name" (ORDER BY version DESC LIMIT 1).
    UNIQUE (name, version)
);

-- One row per execution: the hot row that every transition updates.
--
-- fillfactor leaves room on each page so that a commit, which changes no indexed column
-- (status only at the start and the end, the lease only on claim/renew/release), is a HOT
-- update: no index is touched on the hot path however many completed rows the table holds.
CREATE TABLE sagaflow.executions (
    id UUID PRIMARY KEY,
    definition_id BIGINT NOT NULL REFERENCES sagaflow.definitions (id),
    -- Copied from the definition at creation: idempotency keys are unique per name (all
    -- versions share them), and listing by name needs no join.
    definition_name TEXT NOT NULL,
    definition_version INTEGER NOT NULL,
    -- Status::as_str() names.
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED',
        'COMPENSATING', 'COMPENSATED', 'COMPENSATION_STUCK', 'CANCELLED', 'TERMINATED')),
    input JSON NOT NULL,
    output JSON,
    error TEXT,
    cause TEXT,
    idempotency_key TEXT,
    -- SHA-256 of the start request: tells "the same start again" from "a different start
    -- under a used key".
    request_hash TEXT NOT NULL,
    -- The serialized interpreter state after the last committed event.
    snapshot JSON NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the status becomes terminal, cleared by a redrive.
    stopped_at TIMESTAMPTZ,
    -- Id of the last history event; a commit must continue exactly here.
    last_event_id BIGINT NOT NULL DEFAULT 0 CHECK (last_event_id >= 0),
    redrive_count INTEGER NOT NULL DEFAULT 0 CHECK (redrive_count >= 0),
    -- The lease: the replica that may write the execution, and until when (database clock).
    -- lease_epoch grows on every claim; a write names the epoch it holds and is refused once
    -- another claim has bumped it.
    owner TEXT,
    lease_epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    CHECK ((owner IS NULL) = (lease_expires_at IS NULL))
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);

-- Idempotent start: at most one execution per (definition name, key).
CREATE UNIQUE INDEX executions_idempotency_key
    ON sagaflow.executions (definition_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- claim(): only active executions are in it, so it stays as small as the work in flight
-- however many completed executions pile up. Keyed by lease expiry with "no lease" first,
-- so "lease free or expired" is one range scan, oldest first.
CREATE INDEX executions_claimable
    ON sagaflow.executions ((coalesce(lease_expires_at, '-infinity'::timestamptz)))
    WHERE status IN ('RUNNING', 'COMPENSATING');

-- list_executions(): newest first, unfiltered or by status or definition; keyset pagination
-- on (started_at, id). Id prefixes need no index of their own: a prefix is a range of the
-- primary key (uuid order is byte order, which is hex text order).
CREATE INDEX executions_started ON sagaflow.executions (started_at DESC, id DESC);
CREATE INDEX executions_status_started ON sagaflow.executions (status, started_at DESC, id DESC);
CREATE INDEX executions_definition_started
    ON sagaflow.executions (definition_name, started_at DESC, id DESC);

-- Append-only; the primary key serves both the commit's insert and history paging.
CREATE TABLE sagaflow.history (
    execution_id UUID NOT NULL REFERENCES sagaflow.executions (id) ON DELETE CASCADE,
    -- 1-based, contiguous per execution.
    id BIGINT NOT NULL CHECK (id >= 1),
    "timestamp" TIMESTAMPTZ NOT NULL,
    -- EventKind names (TaskScheduled, ...).
    type TEXT NOT NULL,
    state TEXT,
    details JSON,
    -- The outside event this entry recorded (a serialized interpreter Event), for replay.
    cause JSON,
    PRIMARY KEY (execution_id, id)
);

-- Durable timers (Wait states, retry backoff): deliver TimerFired { work_id } at due_at.
CREATE TABLE sagaflow.timers (
    execution_id UUID NOT NULL REFERENCES sagaflow.executions (id) ON DELETE CASCADE,
    work_id BIGINT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (execution_id, work_id)
);

-- Outside requests (cancel, terminate, repairs, redrive) waiting for the execution's owner;
-- a commit deletes the ones it consumed, so the table holds only pending requests.
CREATE TABLE sagaflow.inbox (
    id BIGSERIAL PRIMARY KEY,
    execution_id UUID NOT NULL REFERENCES sagaflow.executions (id) ON DELETE CASCADE,
    request JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX inbox_execution ON sagaflow.inbox (execution_id, id);

-- Every inbox row wakes the owners up: NOTIFY sagaflow_inbox, '<execution id>' (delivered
-- when the inserting transaction commits). A trigger rather than a second statement, so no
-- writer can forget it. The channel name is postgres::INBOX_CHANNEL in the Rust code.
CREATE FUNCTION sagaflow.inbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagaflow_inbox', NEW.execution_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER inbox_notify AFTER INSERT ON sagaflow.inbox
    FOR EACH ROW EXECUTE FUNCTION sagaflow.inbox_notify();

-- The commit statement's verdict (one statement, one round trip): transitions that were not
-- applied abort the whole statement, so nothing of the batch lands.
--   lost: the writer's lease is gone (SQLSTATE SF001, DETAIL = the execution id);
--   gap:  the writer holds the lease but its events do not continue the history
--         (SQLSTATE SF002, DETAIL = the execution id): an engine bug, never retried.
CREATE FUNCTION sagaflow.commit_verdict(lost UUID[], gap UUID[]) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(lost) > 0 THEN
        RAISE EXCEPTION 'lease on execution % lost to another replica', lost[1]
            USING ERRCODE = 'SF001', DETAIL = lost[1]::text;
    END IF;
    IF cardinality(gap) > 0 THEN
        RAISE EXCEPTION 'history of execution % does not continue where the transition starts', gap[1]
            USING ERRCODE = 'SF002', DETAIL = gap[1]::text;
    END IF;
    RETURN true;
END
$$;
