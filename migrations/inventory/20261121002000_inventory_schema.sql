-- Inventory participant: its idempotency records, stock levels and reservations, in its own schema.
-- Plain types and CHECK constraints only, so the same tables port to SQLite.
CREATE SCHEMA IF NOT EXISTS inventory;

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE inventory.idempotency_keys (
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

-- Stock per SKU. available + reserved + committed is everything the warehouse holds; the
-- CHECKs make "stock never negative" the database's promise, not only the code's.
CREATE TABLE inventory.stock (
    sku TEXT PRIMARY KEY,
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    committed BIGINT NOT NULL DEFAULT 0 CHECK (committed >= 0),
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE inventory.reservations (
    reservation_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    -- The Reserve key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    -- HELD holds stock in `reserved`; COMMITTED in `committed`; RELEASED and EXPIRED hold nothing.
    status TEXT NOT NULL CHECK (status IN ('HELD', 'COMMITTED', 'RELEASED', 'EXPIRED')),
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ
);
CREATE INDEX reservations_order_id ON inventory.reservations (order_id);
-- The expiry sweep looks only at held reservations.
CREATE INDEX reservations_held_expiry ON inventory.reservations (expires_at) WHERE status = 'HELD';

CREATE TABLE inventory.reservation_items (
    reservation_id TEXT NOT NULL REFERENCES inventory.reservations (reservation_id),
    sku TEXT NOT NULL REFERENCES inventory.stock (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku)
);
