//! The inventory service's storage: every SQL statement it runs, behind [`InventoryStore`]
//! and [`InventoryTx`] so that another backend (SQLite) can implement the same seam.
//!
//! Lock order, to keep concurrent calls from deadlocking: idempotency keys first (sorted),
//! then reservation rows, then stock rows in SKU order.

pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::kit::idempotency::{self, CallKey, IdempotencyTx, pg_idempotency_tx};
use crate::kit::store::{StoreError, advisory_lock_id, begin_locked, run_migrator};

pub use sqlite::SqliteInventoryStore;

/// Separates this service's advisory locks from other components' in the shared database.
const LOCK_SEED: i64 = 0x5347_0002;

/// Stock of one SKU. All three counts are never negative (CHECK constraints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    pub sku: String,
    pub available: i64,
    pub reserved: i64,
    pub committed: i64,
}

/// Where a reservation's stock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Holds its items in `reserved` until `expires_at`.
    Held,
    /// Moved its items to `committed`.
    Committed,
    /// Gave its items back (a compensation or an explicit release).
    Released,
    /// Gave its items back because it outlived its TTL.
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "HELD",
            ReservationStatus::Committed => "COMMITTED",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Expired => "EXPIRED",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "HELD" => ReservationStatus::Held,
            "COMMITTED" => ReservationStatus::Committed,
            "RELEASED" => ReservationStatus::Released,
            "EXPIRED" => ReservationStatus::Expired,
            other => {
                return Err(StoreError::Corrupt {
                    what: "reservation".to_owned(),
                    detail: format!("unknown status {other:?}"),
                });
            }
        })
    }
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub reservation_id: String,
    pub order_id: String,
    /// The Reserve key that created it.
    pub idempotency_key: String,
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
}

/// Inventory storage outside any call's transaction.
#[async_trait]
pub trait InventoryStore: Send + Sync + fmt::Debug + 'static {
    /// Starts the transaction of one business call (or of one expiry).
    ///
    /// `locks`: the idempotency keys to lock first, for the whole transaction
    /// ([`CallKey::lock_keys`](crate::kit::idempotency::CallKey::lock_keys)); none for
    /// maintenance work.
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn InventoryTx>, StoreError>;
    /// Commit the held, unexpired reservation `reservation_id` (of `order_id`, when given) and
    /// store `response` as the key's answer, in one step, when the key was never seen; `false`
    /// (nothing done) otherwise, and the caller takes the locked path that replays, refuses or
    /// expires. One round trip on PostgreSQL instead of eight; the default does the same in one
    /// ordinary transaction.
    async fn commit_once(
        &self,
        call: &CallKey,
        reservation_id: &str,
        order_id: &str,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(&call.lock_keys()).await?;
        if idempotency::key_seen(&mut *tx, call).await? {
            return Ok(false);
        }
        match tx.reservation_for_update(reservation_id).await? {
            Some(r)
                if r.status == ReservationStatus::Held
                    && r.expires_at > now
                    && (order_id.is_empty() || r.order_id == order_id) => {}
            _ => return Ok(false),
        }
        for (sku, quantity) in tx.reservation_items(reservation_id).await? {
            tx.adjust_stock(&sku, 0, -quantity, quantity, now).await?;
        }
        tx.set_reservation_status(reservation_id, ReservationStatus::Committed, now).await?;
        idempotency::commit_ok_answer(tx, call, response, now).await
    }
    /// Reserve `items` (distinct SKUs) as `reservation` and store `response` as the key's
    /// answer, in one step, when the key was never seen and every SKU has the stock; `false`
    /// (nothing done) otherwise, and the caller takes the locked path that replays, refuses or
    /// sweeps expired reservations first. One round trip on PostgreSQL instead of seven; the
    /// default does the same in one ordinary transaction.
    async fn reserve_once(
        &self,
        call: &CallKey,
        reservation: &ReservationRow,
        items: &[(String, i64)],
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(&call.lock_keys()).await?;
        if idempotency::key_seen(&mut *tx, call).await? {
            return Ok(false);
        }
        for (sku, quantity) in items {
            match tx.stock_for_update(sku).await? {
                Some(level) if level.available >= *quantity => {}
                _ => return Ok(false),
            }
        }
        for (sku, quantity) in items {
            tx.adjust_stock(sku, -quantity, *quantity, 0, now).await?;
        }
        tx.insert_reservation(reservation, items, now).await?;
        idempotency::commit_ok_answer(tx, call, response, now).await
    }
    async fn stock(&self, sku: &str) -> Result<Option<StockRow>, StoreError>;
    /// Ids of held reservations whose expiry is at or before `now`, soonest first.
    async fn due_reservations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>, StoreError>;
    /// Creates a SKU with this much available stock unless it exists; true if created.
    async fn seed_sku(&self, sku: &str, available: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// Inventory storage inside one call's transaction: idempotency records and effects commit
/// together. The `_for_update` reads lock the rows they return until the end of it.
#[async_trait]
pub trait InventoryTx: IdempotencyTx {
    async fn stock_for_update(&mut self, sku: &str) -> Result<Option<StockRow>, StoreError>;
    /// Adds the deltas to a SKU's counts (the CHECKs refuse any count going negative).
    async fn adjust_stock(
        &mut self,
        sku: &str,
        available: i64,
        reserved: i64,
        committed: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Adds `quantity` to a SKU's available stock, creating the SKU if needed.
    async fn restock(&mut self, sku: &str, quantity: i64, now: DateTime<Utc>) -> Result<StockRow, StoreError>;
    async fn insert_reservation(
        &mut self,
        reservation: &ReservationRow,
        items: &[(String, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The reservation made under a Reserve idempotency key.
    async fn reservation_by_key_for_update(&mut self, key: &str) -> Result<Option<ReservationRow>, StoreError>;
    async fn reservation_for_update(&mut self, reservation_id: &str) -> Result<Option<ReservationRow>, StoreError>;
    /// The order's reservations in this status, oldest first.
    async fn order_reservations_for_update(
        &mut self,
        order_id: &str,
        status: ReservationStatus,
    ) -> Result<Vec<ReservationRow>, StoreError>;
    /// A reservation's items as (SKU, quantity), in SKU order.
    async fn reservation_items(&mut self, reservation_id: &str) -> Result<Vec<(String, i64)>, StoreError>;
    async fn set_reservation_status(
        &mut self,
        reservation_id: &str,
        status: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Applies the inventory schema's PostgreSQL migrations (SQLite: [`sqlite::migrate`]).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    run_migrator(pool, "inventory", sqlx::migrate!("../migrations/inventory")).await
}

/// [`InventoryStore`] on PostgreSQL (schema `inventory`).
#[derive(Debug, Clone)]
pub struct PgInventoryStore {
    pool: PgPool,
}

impl PgInventoryStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One call's PostgreSQL transaction.
#[derive(Debug)]
pub struct PgInventoryTx {
    tx: Transaction<'static, Postgres>,
}

pg_idempotency_tx!(PgInventoryTx, "inventory");

/// A reservation row as the queries return it.
struct RawReservation {
    reservation_id: String,
    order_id: String,
    idempotency_key: String,
    status: String,
    expires_at: DateTime<Utc>,
}

impl RawReservation {
    fn parse(self) -> Result<ReservationRow, StoreError> {
        Ok(ReservationRow {
            reservation_id: self.reservation_id,
            order_id: self.order_id,
            idempotency_key: self.idempotency_key,
            status: ReservationStatus::parse(&self.status)?,
            expires_at: self.expires_at,
        })
    }
}

#[async_trait]
impl InventoryStore for PgInventoryStore {
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn InventoryTx>, StoreError> {
        Ok(Box::new(PgInventoryTx { tx: begin_locked(&self.pool, LOCK_SEED, locks).await? }))
    }

    async fn commit_once(
        &self,
        call: &CallKey,
        reservation_id: &str,
        order_id: &str,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement, so one implicit transaction, taking locks in the service's order: the
        // key's advisory lock, the reservation row (FOR UPDATE re-checks the conditions on its
        // latest version), then its stock rows in SKU order. Only a held, unexpired reservation
        // gets the answer inserted (ON CONFLICT: not over a row the key already has), and only
        // if the answer went in do the stock and the reservation change.
        let claimed = sqlx::query_scalar!(
            r#"
            WITH key_lock AS (SELECT pg_advisory_xact_lock($1) AS locked),
            held AS (
                SELECT r.reservation_id
                FROM inventory.reservations r CROSS JOIN key_lock
                WHERE r.reservation_id = $7
                  AND r.status = 'HELD'
                  AND r.expires_at > $6
                  AND ($8 = '' OR r.order_id = $8)
                FOR UPDATE OF r
            ),
            items AS (
                SELECT ri.sku, ri.quantity
                FROM inventory.reservation_items ri JOIN held ON held.reservation_id = ri.reservation_id
            ),
            stock_rows AS (
                SELECT s.sku FROM inventory.stock s JOIN items i ON i.sku = s.sku
                ORDER BY s.sku
                FOR UPDATE OF s
            ),
            claim AS (
                INSERT INTO inventory.idempotency_keys
                    (idempotency_key, method, request_hash, outcome, response, created_at)
                SELECT $2, $3, $4, 'ok', $5, $6 FROM held
                WHERE (SELECT count(*) FROM stock_rows) = (SELECT count(*) FROM items)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING idempotency_key
            ),
            moved AS (
                UPDATE inventory.stock s
                SET reserved = s.reserved - i.quantity, committed = s.committed + i.quantity, updated_at = $6
                FROM items i, claim
                WHERE s.sku = i.sku
            ),
            closed AS (
                UPDATE inventory.reservations r
                SET status = 'COMMITTED', closed_at = $6
                FROM claim
                WHERE r.reservation_id = $7
            )
            SELECT count(*) AS "claimed!" FROM claim
            "#,
            advisory_lock_id(LOCK_SEED, &call.key),
            call.key,
            call.method,
            call.request_hash,
            response,
            now,
            reservation_id,
            order_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(claimed > 0)
    }

    async fn reserve_once(
        &self,
        call: &CallKey,
        r: &ReservationRow,
        items: &[(String, i64)],
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (skus, quantities): (Vec<&str>, Vec<i64>) = items.iter().map(|(sku, q)| (sku.as_str(), *q)).unzip();
        let wanted = i64::try_from(items.len()).unwrap_or(i64::MAX);
        // One statement, so one implicit transaction, taking locks in the service's order:
        // the key's advisory lock, then the stock rows in SKU order (FOR UPDATE returns their
        // latest values). Only if every SKU has the stock is the answer inserted (ON CONFLICT:
        // not over a row the key already has), and only if the answer went in are the stock
        // moved and the reservation written. The CHECK constraints stay the last guard.
        // The arrays go through scalar subqueries so that no plan knows their length: with
        // the bare parameters a custom plan saw one item where the generic plan guessed ten,
        // looked cheaper, and PostgreSQL re-planned this statement on every call (0.3 ms, the
        // most expensive part of a Reserve under load). With equal estimates the generic
        // plan wins after five calls, and `enable_seqscan=off` (backend.rs) keeps it on the
        // stock index.
        let claimed = sqlx::query_scalar!(
            r#"
            WITH key_lock AS (SELECT pg_advisory_xact_lock($1) AS locked),
            wanted AS (SELECT * FROM UNNEST((SELECT $7::text[]), (SELECT $8::int8[])) AS w(sku, quantity)),
            stock_rows AS (
                SELECT s.sku, s.available
                FROM inventory.stock s JOIN wanted w ON w.sku = s.sku CROSS JOIN key_lock
                ORDER BY s.sku
                FOR UPDATE OF s
            ),
            enough AS (
                SELECT 1 FROM stock_rows r JOIN wanted w ON w.sku = r.sku
                WHERE r.available >= w.quantity
                HAVING count(*) = $9
            ),
            claim AS (
                INSERT INTO inventory.idempotency_keys
                    (idempotency_key, method, request_hash, outcome, response, created_at)
                SELECT $2, $3, $4, 'ok', $5, $6 FROM enough
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING idempotency_key
            ),
            taken AS (
                UPDATE inventory.stock s
                SET available = s.available - w.quantity, reserved = s.reserved + w.quantity, updated_at = $6
                FROM wanted w, claim
                WHERE s.sku = w.sku
            ),
            reservation AS (
                INSERT INTO inventory.reservations (reservation_id, order_id, idempotency_key, status,
                    expires_at, created_at)
                SELECT $10, $11, claim.idempotency_key, $12, $13, $6 FROM claim
                RETURNING reservation_id
            ),
            reserved_items AS (
                INSERT INTO inventory.reservation_items (reservation_id, sku, quantity)
                SELECT reservation.reservation_id, w.sku, w.quantity FROM reservation, wanted w
            )
            SELECT count(*) AS "claimed!" FROM claim
            "#,
            advisory_lock_id(LOCK_SEED, &call.key),
            call.key,
            call.method,
            call.request_hash,
            response,
            now,
            &skus as &[&str],
            &quantities,
            wanted,
            r.reservation_id,
            r.order_id,
            r.status.as_str(),
            r.expires_at
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(claimed > 0)
    }

    async fn stock(&self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        Ok(sqlx::query_as!(
            StockRow,
            "SELECT sku, available, reserved, committed FROM inventory.stock WHERE sku = $1",
            sku
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn due_reservations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar!(
            "SELECT reservation_id FROM inventory.reservations \
             WHERE status = 'HELD' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
            now,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn seed_sku(&self, sku: &str, available: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "INSERT INTO inventory.stock (sku, available, reserved, committed, updated_at) \
             VALUES ($1, $2, 0, 0, $3) ON CONFLICT (sku) DO NOTHING",
            sku,
            available,
            now
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl InventoryTx for PgInventoryTx {
    async fn stock_for_update(&mut self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        Ok(sqlx::query_as!(
            StockRow,
            "SELECT sku, available, reserved, committed FROM inventory.stock \
             WHERE sku = $1 FOR UPDATE",
            sku
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn adjust_stock(
        &mut self,
        sku: &str,
        available: i64,
        reserved: i64,
        committed: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE inventory.stock SET available = available + $2, reserved = reserved + $3, \
             committed = committed + $4, updated_at = $5 WHERE sku = $1",
            sku,
            available,
            reserved,
            committed,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn restock(&mut self, sku: &str, quantity: i64, now: DateTime<Utc>) -> Result<StockRow, StoreError> {
        Ok(sqlx::query_as!(
            StockRow,
            "INSERT INTO inventory.stock (sku, available, reserved, committed, updated_at) \
             VALUES ($1, $2, 0, 0, $3) ON CONFLICT (sku) DO UPDATE \
             SET available = inventory.stock.available + EXCLUDED.available, \
                 updated_at = EXCLUDED.updated_at \
             RETURNING sku, available, reserved, committed",
            sku,
            quantity,
            now
        )
        .fetch_one(&mut *self.tx)
        .await?)
    }

    async fn insert_reservation(
        &mut self,
        r: &ReservationRow,
        items: &[(String, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (skus, quantities): (Vec<&str>, Vec<i64>) = items.iter().map(|(sku, q)| (sku.as_str(), *q)).unzip();
        // One statement for the reservation and its items (one round trip); the items' foreign
        // key is checked at the end of the statement, when the reservation row exists.
        sqlx::query!(
            "WITH reservation AS ( \
                 INSERT INTO inventory.reservations (reservation_id, order_id, idempotency_key, \
                 status, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 RETURNING reservation_id) \
             INSERT INTO inventory.reservation_items (reservation_id, sku, quantity) \
             SELECT reservation.reservation_id, i.sku, i.quantity \
             FROM reservation, UNNEST($7::text[], $8::int8[]) AS i(sku, quantity)",
            r.reservation_id,
            r.order_id,
            r.idempotency_key,
            r.status.as_str(),
            r.expires_at,
            now,
            &skus as &[&str],
            &quantities
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn reservation_by_key_for_update(&mut self, key: &str) -> Result<Option<ReservationRow>, StoreError> {
        sqlx::query_as!(
            RawReservation,
            "SELECT reservation_id, order_id, idempotency_key, status, expires_at \
             FROM inventory.reservations WHERE idempotency_key = $1 FOR UPDATE",
            key
        )
        .fetch_optional(&mut *self.tx)
        .await?
        .map(RawReservation::parse)
        .transpose()
    }

    async fn reservation_for_update(&mut self, reservation_id: &str) -> Result<Option<ReservationRow>, StoreError> {
        sqlx::query_as!(
            RawReservation,
            "SELECT reservation_id, order_id, idempotency_key, status, expires_at \
             FROM inventory.reservations WHERE reservation_id = $1 FOR UPDATE",
            reservation_id
        )
        .fetch_optional(&mut *self.tx)
        .await?
        .map(RawReservation::parse)
        .transpose()
    }

    async fn order_reservations_for_update(
        &mut self,
        order_id: &str,
        status: ReservationStatus,
    ) -> Result<Vec<ReservationRow>, StoreError> {
        sqlx::query_as!(
            RawReservation,
            "SELECT reservation_id, order_id, idempotency_key, status, expires_at \
             FROM inventory.reservations WHERE order_id = $1 AND status = $2 \
             ORDER BY created_at, reservation_id FOR UPDATE",
            order_id,
            status.as_str()
        )
        .fetch_all(&mut *self.tx)
        .await?
        .into_iter()
        .map(RawReservation::parse)
        .collect()
    }

    async fn reservation_items(&mut self, reservation_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query!(
            "SELECT sku, quantity FROM inventory.reservation_items \
             WHERE reservation_id = $1 ORDER BY sku",
            reservation_id
        )
        .fetch_all(&mut *self.tx)
        .await?
        .into_iter()
        .map(|row| (row.sku, row.quantity))
        .collect())
    }

    async fn set_reservation_status(
        &mut self,
        reservation_id: &str,
        status: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE inventory.reservations SET status = $2, closed_at = $3 \
             WHERE reservation_id = $1",
            reservation_id,
            status.as_str(),
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
