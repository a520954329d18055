-- Fulfillment participant on SQLite: the tables of migrations/fulfillment/, with the service
-- name as a table prefix (SQLite has no schemas), so several services may share one file.
-- STRICT tables and the same CHECK constraints as on PostgreSQL.

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE fulfillment_idempotency_keys (
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

CREATE TABLE fulfillment_shipments (
    shipment_id TEXT NOT NULL PRIMARY KEY,
    order_id TEXT NOT NULL,
    -- The CreateShipment key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    line1 TEXT NOT NULL,
    city TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    country TEXT NOT NULL,
    -- JSON array of {"sku", "quantity"}.
    items TEXT NOT NULL,
    -- A boolean: 0 or 1.
    cancelled INTEGER NOT NULL DEFAULT 0 CHECK (cancelled IN (0, 1)),
    -- The key of the call that cancelled it, for the audit trail.
    cancelled_by TEXT,
    created_at TEXT NOT NULL,
    cancelled_at TEXT
) STRICT;
CREATE INDEX fulfillment_shipments_order_id ON fulfillment_shipments (order_id);
