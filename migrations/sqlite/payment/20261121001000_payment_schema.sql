-- Payment participant on SQLite: the tables of migrations/payment/, with the service name as
-- a table prefix (SQLite has no schemas), so several services may share one file. STRICT
-- tables and the same CHECK constraints as on PostgreSQL.

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE payment_idempotency_keys (
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

CREATE TABLE payment_payments (
    payment_id TEXT NOT NULL PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    -- Never more than charged: the refund path relies on this constraint as its last guard.
    refunded_cents INTEGER NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
    currency TEXT NOT NULL,
    -- The Charge key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX payment_payments_order_id ON payment_payments (order_id);

CREATE TABLE payment_refunds (
    refund_id TEXT NOT NULL PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payment_payments (payment_id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    -- The Refund key (one refund call may refund several payments of an order).
    idempotency_key TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX payment_refunds_payment_id ON payment_refunds (payment_id);
