-- Payment participant: its idempotency records, charges and refunds, in its own schema.
-- Plain types and CHECK constraints only, so the same tables port to SQLite.
CREATE SCHEMA IF NOT EXISTS payment;

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE payment.idempotency_keys (
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

CREATE TABLE payment.payments (
    payment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    -- Never more than charged: the refund path relies on this constraint as its last guard.
    refunded_cents BIGINT NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
    currency TEXT NOT NULL,
    -- The Charge key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX payments_order_id ON payment.payments (order_id);

CREATE TABLE payment.refunds (
    refund_id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payment.payments (payment_id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    -- The Refund key (one refund call may refund several payments of an order).
    idempotency_key TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX refunds_payment_id ON payment.refunds (payment_id);
