-- Inventory participant on SQLite: the tables of migrations/inventory/, with the service name
-- as a table prefix (SQLite has no schemas), so several services may share one file. STRICT
-- tables and the same CHECK constraints as on PostgreSQL.

-- One row per idempotency key: the first answer given under it, or a tombstone left by a
-- compensation that ran before the forward call ever arrived.
CREATE TABLE inventory_idempotency_keys (
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

-- Stock per SKU. available + reserved + committed is everything the warehouse holds; the
-- CHECKs make "stock never negative" the database's promise, not only the code's.
CREATE TABLE inventory_stock (
    sku TEXT NOT NULL PRIMARY KEY,
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    committed INTEGER NOT NULL DEFAULT 0 CHECK (committed >= 0),
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE inventory_reservations (
    reservation_id TEXT NOT NULL PRIMARY KEY,
    order_id TEXT NOT NULL,
    -- The Reserve key that made it: a compensation finds "exactly that effect" through it.
    idempotency_key TEXT NOT NULL UNIQUE,
    -- HELD holds stock in `reserved`; COMMITTED in `committed`; RELEASED and EXPIRED hold nothing.
    status TEXT NOT NULL CHECK (status IN ('HELD', 'COMMITTED', 'RELEASED', 'EXPIRED')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    closed_at TEXT
) STRICT;
CREATE INDEX inventory_reservations_order_id ON inventory_reservations (order_id);
-- The expiry sweep looks only at held reservations.
CREATE INDEX inventory_reservations_held_expiry ON inventory_reservations (expires_at) WHERE status = 'HELD';

CREATE TABLE inventory_reservation_items (
    reservation_id TEXT NOT NULL REFERENCES inventory_reservations (reservation_id),
    sku TEXT NOT NULL REFERENCES inventory_stock (sku),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku)
) STRICT;
