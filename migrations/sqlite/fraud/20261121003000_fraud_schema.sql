-- Fraud participant on SQLite: the tables of migrations/fraud/, with the service name as a
-- table prefix (SQLite has no schemas), so several services may share one file. STRICT
-- tables and the same CHECK constraints as on PostgreSQL.

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE fraud_idempotency_keys (
    idempotency_key TEXT NOT NULL PRIMARY KEY,
    -- Full gRPC method the key was first used with (for a tombstone: the forward method).
    method TEXT NOT NULL,
    -- SHA-256 (hex) of method and request bytes; NULL for a tombstone.
    request_hash TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'tombstone')),
    -- outcome 'ok': the encoded protobuf response.
    response BLOB,
    -- outcome 'refused': the gRPC code, ErrorInfo reason, status message, ErrorInfo metadata (JSON object).
    error_code INTEGER,
    error_reason TEXT,
    error_message TEXT,
    error_metadata TEXT,
    -- outcome 'tombstone': the compensation key that left it.
    compensated_by TEXT,
    -- Timestamps are RFC 3339 UTC text with six fractional digits: text order is time order.
    created_at TEXT NOT NULL,
    CHECK ((outcome = 'ok') = (response IS NOT NULL)),
    CHECK ((outcome = 'refused') = (error_reason IS NOT NULL)),
    CHECK ((outcome = 'tombstone') = (request_hash IS NULL))
) STRICT;

-- Every decision, approvals and rejections alike.
CREATE TABLE fraud_decisions (
    decision_id TEXT NOT NULL PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('APPROVE', 'REJECT')),
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    -- JSON array of strings.
    reasons TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX fraud_decisions_order_id ON fraud_decisions (order_id);
