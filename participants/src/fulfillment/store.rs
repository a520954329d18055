//! The fulfillment service's storage: every SQL statement it runs, behind
//! [`FulfillmentStore`] and [`FulfillmentTx`] so that another backend (SQLite) can implement
//! the same seam.

pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::kit::idempotency::{self, CallKey, IdempotencyTx, pg_idempotency_tx};
use crate::kit::store::{StoreError, advisory_lock_id, begin_locked, run_migrator};

pub use sqlite::SqliteFulfillmentStore;

/// Separates this service's advisory locks from other components' in the shared database.
const LOCK_SEED: i64 = 0x5347_0004;

/// A shipment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShipment {
    pub shipment_id: String,
    pub order_id: String,
    /// The CreateShipment key that creates it.
    pub idempotency_key: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    /// JSON array of `{"sku", "quantity"}`.
    pub items_json: String,
}

/// A stored shipment, as much as the service needs to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRow {
    pub shipment_id: String,
    pub order_id: String,
    pub idempotency_key: String,
    pub cancelled: bool,
}

/// Fulfillment storage outside any call's transaction.
#[async_trait]
pub trait FulfillmentStore: Send + Sync + fmt::Debug + 'static {
    /// Starts the transaction of one business call.
    ///
    /// `locks`: the idempotency keys to lock first, for the whole transaction
    /// ([`CallKey::lock_keys`](crate::kit::idempotency::CallKey::lock_keys)); none for
    /// maintenance work.
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn FulfillmentTx>, StoreError>;
    /// Create `shipment` and store `response` as the key's answer, in one step, when the key
    /// was never seen; `false` (nothing done) when it was, and the caller takes the locked path
    /// that replays or refuses. One round trip on PostgreSQL instead of five; the default does
    /// the same in one ordinary transaction.
    async fn create_shipment_once(
        &self,
        call: &CallKey,
        shipment: &NewShipment,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(&call.lock_keys()).await?;
        if idempotency::key_seen(&mut *tx, call).await? {
            return Ok(false);
        }
        tx.insert_shipment(shipment, now).await?;
        idempotency::commit_ok_answer(tx, call, response, now).await
    }
    /// The order's shipments, oldest first.
    async fn shipments_for_order(&self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError>;
}

/// Fulfillment storage inside one call's transaction. The `_for_update` reads lock the rows
/// they return until the end of it.
#[async_trait]
pub trait FulfillmentTx: IdempotencyTx {
    async fn insert_shipment(&mut self, shipment: &NewShipment, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// The shipment created under a CreateShipment idempotency key.
    async fn shipment_by_key_for_update(&mut self, key: &str) -> Result<Option<ShipmentRow>, StoreError>;
    async fn shipment_for_update(&mut self, shipment_id: &str) -> Result<Option<ShipmentRow>, StoreError>;
    /// The order's shipments not cancelled yet, oldest first.
    async fn open_shipments_for_update(&mut self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError>;
    async fn cancel_shipment(
        &mut self,
        shipment_id: &str,
        cancelled_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Applies the fulfillment schema's PostgreSQL migrations (SQLite: [`sqlite::migrate`]).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    run_migrator(pool, "fulfillment", sqlx::migrate!("../migrations/fulfillment")).await
}

/// [`FulfillmentStore`] on PostgreSQL (schema `fulfillment`).
#[derive(Debug, Clone)]
pub struct PgFulfillmentStore {
    pool: PgPool,
}

impl PgFulfillmentStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One call's PostgreSQL transaction.
#[derive(Debug)]
pub struct PgFulfillmentTx {
    tx: Transaction<'static, Postgres>,
}

pg_idempotency_tx!(PgFulfillmentTx, "fulfillment");

#[async_trait]
impl FulfillmentStore for PgFulfillmentStore {
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn FulfillmentTx>, StoreError> {
        Ok(Box::new(PgFulfillmentTx { tx: begin_locked(&self.pool, LOCK_SEED, locks).await? }))
    }

    async fn create_shipment_once(
        &self,
        call: &CallKey,
        s: &NewShipment,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement, so one implicit transaction: the key's lock (as every call on the key
        // takes it), the answer inserted unless the key has a row (ON CONFLICT also waits for a
        // transaction still inserting one), and the shipment only if the answer went in.
        let claimed = sqlx::query_scalar!(
            r#"
            WITH key_lock AS (SELECT pg_advisory_xact_lock($1)),
            claim AS (
                INSERT INTO fulfillment.idempotency_keys
                    (idempotency_key, method, request_hash, outcome, response, created_at)
                SELECT $2, $3, $4, 'ok', $5, $6 FROM key_lock
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING idempotency_key
            ),
            shipment AS (
                INSERT INTO fulfillment.shipments (shipment_id, order_id, idempotency_key, line1,
                    city, postal_code, country, items, cancelled, created_at)
                SELECT $7, $8, claim.idempotency_key, $9, $10, $11, $12, $13, FALSE, $6 FROM claim
            )
            SELECT count(*) AS "claimed!" FROM claim
            "#,
            advisory_lock_id(LOCK_SEED, &call.key),
            call.key,
            call.method,
            call.request_hash,
            response,
            now,
            s.shipment_id,
            s.order_id,
            s.line1,
            s.city,
            s.postal_code,
            s.country,
            s.items_json
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(claimed > 0)
    }

    async fn shipments_for_order(&self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError> {
        Ok(sqlx::query_as!(
            ShipmentRow,
            "SELECT shipment_id, order_id, idempotency_key, cancelled FROM fulfillment.shipments \
             WHERE order_id = $1 ORDER BY created_at, shipment_id",
            order_id
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[async_trait]
impl FulfillmentTx for PgFulfillmentTx {
    async fn insert_shipment(&mut self, s: &NewShipment, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO fulfillment.shipments (shipment_id, order_id, idempotency_key, line1, \
             city, postal_code, country, items, cancelled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9)",
            s.shipment_id,
            s.order_id,
            s.idempotency_key,
            s.line1,
            s.city,
            s.postal_code,
            s.country,
            s.items_json,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn shipment_by_key_for_update(&mut self, key: &str) -> Result<Option<ShipmentRow>, StoreError> {
        Ok(sqlx::query_as!(
            ShipmentRow,
            "SELECT shipment_id, order_id, idempotency_key, cancelled FROM fulfillment.shipments \
             WHERE idempotency_key = $1 FOR UPDATE",
            key
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn shipment_for_update(&mut self, shipment_id: &str) -> Result<Option<ShipmentRow>, StoreError> {
        Ok(sqlx::query_as!(
            ShipmentRow,
            "SELECT shipment_id, order_id, idempotency_key, cancelled FROM fulfillment.shipments \
             WHERE shipment_id = $1 FOR UPDATE",
            shipment_id
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn open_shipments_for_update(&mut self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError> {
        Ok(sqlx::query_as!(
            ShipmentRow,
            "SELECT shipment_id, order_id, idempotency_key, cancelled FROM fulfillment.shipments \
             WHERE order_id = $1 AND NOT cancelled ORDER BY created_at, shipment_id FOR UPDATE",
            order_id
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn cancel_shipment(
        &mut self,
        shipment_id: &str,
        cancelled_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE fulfillment.shipments SET cancelled = TRUE, cancelled_by = $2, \
             cancelled_at = $3 WHERE shipment_id = $1",
            shipment_id,
            cancelled_by,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
