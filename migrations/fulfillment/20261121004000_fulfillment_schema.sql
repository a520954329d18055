-- Fulfillment participant: its idempotency records and shipments, in its own schema.
-- Plain types and CHECK constraints only, so the same tables port to SQLite.
CREATE SCHEMA IF NOT EXISTS fulfillment;

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE fulfillment.idempotency_keys (
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

CREATE TABLE fulfillment.shipments (
    shipment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    -- The CreateShipment key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    line1 TEXT NOT NULL,
    city TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    country TEXT NOT NULL,
    -- JSON array of {"sku", "quantity"} (portable; no array type needed).
    items TEXT NOT NULL,
    cancelled BOOLEAN NOT NULL DEFAULT FALSE,
    -- The key of the call that cancelled it, for the audit trail.
    cancelled_by TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    cancelled_at TIMESTAMPTZ
);
CREATE INDEX shipments_order_id ON fulfillment.shipments (order_id);
