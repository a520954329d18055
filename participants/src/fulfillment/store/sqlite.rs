//! [`FulfillmentStore`] on SQLite: the tables of `migrations/sqlite/fulfillment/`
//! (`fulfillment_*`). Every call's transaction holds the file's write lock (see
//! [`crate::kit::sqlite`]), so the `_for_update` reads need no row locks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{FulfillmentStore, FulfillmentTx, NewShipment, ShipmentRow};
use crate::kit::sqlite::{self, sqlite_idempotency_tx, timestamp};
use crate::kit::store::StoreError;

const COLUMNS: &str = "shipment_id, order_id, idempotency_key, cancelled";

/// Applies the fulfillment tables' SQLite migrations.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlite::run_migrator(pool, "fulfillment", sqlx::migrate!("../migrations/sqlite/fulfillment")).await
}

/// [`FulfillmentStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteFulfillmentStore {
    pool: SqlitePool,
}

impl SqliteFulfillmentStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// One call's SQLite transaction.
#[derive(Debug)]
pub struct SqliteFulfillmentTx {
    tx: Transaction<'static, Sqlite>,
}

sqlite_idempotency_tx!(SqliteFulfillmentTx, "fulfillment_idempotency_keys");

fn shipment(row: &SqliteRow) -> Result<ShipmentRow, StoreError> {
    Ok(ShipmentRow {
        shipment_id: row.try_get("shipment_id")?,
        order_id: row.try_get("order_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        cancelled: row.try_get("cancelled")?,
    })
}

#[async_trait]
impl FulfillmentStore for SqliteFulfillmentStore {
    async fn begin(&self, _locks: &[&str]) -> Result<Box<dyn FulfillmentTx>, StoreError> {
        Ok(Box::new(SqliteFulfillmentTx { tx: sqlite::begin(&self.pool).await? }))
    }

    async fn shipments_for_order(&self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM fulfillment_shipments WHERE order_id = ?1 ORDER BY created_at, shipment_id"
        ))
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(shipment)
        .collect()
    }
}

#[async_trait]
impl FulfillmentTx for SqliteFulfillmentTx {
    async fn insert_shipment(&mut self, s: &NewShipment, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO fulfillment_shipments (shipment_id, order_id, idempotency_key, line1, city, postal_code, \
             country, items, cancelled, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
        )
        .bind(&s.shipment_id)
        .bind(&s.order_id)
        .bind(&s.idempotency_key)
        .bind(&s.line1)
        .bind(&s.city)
        .bind(&s.postal_code)
        .bind(&s.country)
        .bind(&s.items_json)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn shipment_by_key_for_update(&mut self, key: &str) -> Result<Option<ShipmentRow>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM fulfillment_shipments WHERE idempotency_key = ?1"))
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(shipment)
            .transpose()
    }

    async fn shipment_for_update(&mut self, shipment_id: &str) -> Result<Option<ShipmentRow>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM fulfillment_shipments WHERE shipment_id = ?1"))
            .bind(shipment_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(shipment)
            .transpose()
    }

    async fn open_shipments_for_update(&mut self, order_id: &str) -> Result<Vec<ShipmentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM fulfillment_shipments WHERE order_id = ?1 AND NOT cancelled \
             ORDER BY created_at, shipment_id"
        ))
        .bind(order_id)
        .fetch_all(&mut *self.tx)
        .await?
        .iter()
        .map(shipment)
        .collect()
    }

    async fn cancel_shipment(
        &mut self,
        shipment_id: &str,
        cancelled_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE fulfillment_shipments SET cancelled = 1, cancelled_by = ?2, cancelled_at = ?3 \
             WHERE shipment_id = ?1",
        )
        .bind(shipment_id)
        .bind(cancelled_by)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
