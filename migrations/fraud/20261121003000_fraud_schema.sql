-- Fraud participant: its idempotency records and every decision it made, in its own schema.
-- Plain types and CHECK constraints only, so the same tables port to SQLite.
CREATE SCHEMA IF NOT EXISTS fraud;

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE fraud.idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    -- Full gRPC method the key was first used with (for a tombstone: the forward method).
    method TEXT NOT NULL,
    -- SHA-256 (hex) of method and request bytes; NULL for a tombstone.
    request_hash TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'tombstone')),
    -- outcome 'ok': the encoded protobuf response.
    response BYTEA,
    -- outcome 'refused': the gRPC code, ErrorInfo reason, status message, ErrorInfo metadata (JSON object).
    error_code INTEGER,
    error_reason TEXT,
    error_message TEXT,
    error_metadata TEXT,
    -- outcome 'tombstone': the compensation key that left it.
    compensated_by TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    CHECK ((outcome = 'ok') = (response IS NOT NULL)),
    CHECK ((outcome = 'refused') = (error_reason IS NOT NULL)),
    CHECK ((outcome = 'tombstone') = (request_hash IS NULL))
);

-- Every decision, approvals and rejections alike.
CREATE TABLE fraud.decisions (
    decision_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('APPROVE', 'REJECT')),
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    -- JSON array of strings (portable; no array type needed).
    reasons TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX decisions_order_id ON fraud.decisions (order_id);
