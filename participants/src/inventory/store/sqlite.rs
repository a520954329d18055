//! [`InventoryStore`] on SQLite: the tables of `migrations/sqlite/inventory/` (`inventory_*`).
//! Every call's transaction holds the file's write lock (see [`crate::kit::sqlite`]), so the
//! `_for_update` reads need no row locks and the lock order cannot be violated.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{InventoryStore, InventoryTx, ReservationRow, ReservationStatus, StockRow};
use crate::kit::sqlite::{self, parse_timestamp, sqlite_idempotency_tx, timestamp};
use crate::kit::store::StoreError;

const RESERVATION_COLUMNS: &str = "reservation_id, order_id, idempotency_key, status, expires_at";

/// Applies the inventory tables' SQLite migrations.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlite::run_migrator(pool, "inventory", sqlx::migrate!("../migrations/sqlite/inventory")).await
}

/// [`InventoryStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteInventoryStore {
    pool: SqlitePool,
}

impl SqliteInventoryStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// One call's SQLite transaction.
#[derive(Debug)]
pub struct SqliteInventoryTx {
    tx: Transaction<'static, Sqlite>,
}

sqlite_idempotency_tx!(SqliteInventoryTx, "inventory_idempotency_keys");

fn stock(row: &SqliteRow) -> Result<StockRow, StoreError> {
    Ok(StockRow {
        sku: row.try_get("sku")?,
        available: row.try_get("available")?,
        reserved: row.try_get("reserved")?,
        committed: row.try_get("committed")?,
    })
}

fn reservation(row: &SqliteRow) -> Result<ReservationRow, StoreError> {
    let reservation_id: String = row.try_get("reservation_id")?;
    let status: String = row.try_get("status")?;
    let expires_at: String = row.try_get("expires_at")?;
    Ok(ReservationRow {
        expires_at: parse_timestamp(&expires_at, &format!("expiry of reservation {reservation_id}"))?,
        order_id: row.try_get("order_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: ReservationStatus::parse(&status)?,
        reservation_id,
    })
}

#[async_trait]
impl InventoryStore for SqliteInventoryStore {
    async fn begin(&self, _locks: &[&str]) -> Result<Box<dyn InventoryTx>, StoreError> {
        Ok(Box::new(SqliteInventoryTx { tx: sqlite::begin(&self.pool).await? }))
    }

    async fn stock(&self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        sqlx::query("SELECT sku, available, reserved, committed FROM inventory_stock WHERE sku = ?1")
            .bind(sku)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(stock)
            .transpose()
    }

    async fn due_reservations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT reservation_id FROM inventory_reservations \
             WHERE status = 'HELD' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
        )
        .bind(timestamp(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn seed_sku(&self, sku: &str, available: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO inventory_stock (sku, available, reserved, committed, updated_at) \
             VALUES (?1, ?2, 0, 0, ?3) ON CONFLICT (sku) DO NOTHING",
        )
        .bind(sku)
        .bind(available)
        .bind(timestamp(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl InventoryTx for SqliteInventoryTx {
    async fn stock_for_update(&mut self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        sqlx::query("SELECT sku, available, reserved, committed FROM inventory_stock WHERE sku = ?1")
            .bind(sku)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(stock)
            .transpose()
    }

    async fn adjust_stock(
        &mut self,
        sku: &str,
        available: i64,
        reserved: i64,
        committed: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inventory_stock SET available = available + ?2, reserved = reserved + ?3, \
             committed = committed + ?4, updated_at = ?5 WHERE sku = ?1",
        )
        .bind(sku)
        .bind(available)
        .bind(reserved)
        .bind(committed)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn restock(&mut self, sku: &str, quantity: i64, now: DateTime<Utc>) -> Result<StockRow, StoreError> {
        let row = sqlx::query(
            "INSERT INTO inventory_stock (sku, available, reserved, committed, updated_at) \
             VALUES (?1, ?2, 0, 0, ?3) ON CONFLICT (sku) DO UPDATE \
             SET available = inventory_stock.available + excluded.available, updated_at = excluded.updated_at \
             RETURNING sku, available, reserved, committed",
        )
        .bind(sku)
        .bind(quantity)
        .bind(timestamp(now))
        .fetch_one(&mut *self.tx)
        .await?;
        stock(&row)
    }

    async fn insert_reservation(
        &mut self,
        r: &ReservationRow,
        items: &[(String, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO inventory_reservations (reservation_id, order_id, idempotency_key, status, expires_at, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&r.reservation_id)
        .bind(&r.order_id)
        .bind(&r.idempotency_key)
        .bind(r.status.as_str())
        .bind(timestamp(r.expires_at))
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        for (sku, quantity) in items {
            sqlx::query("INSERT INTO inventory_reservation_items (reservation_id, sku, quantity) VALUES (?1, ?2, ?3)")
                .bind(&r.reservation_id)
                .bind(sku)
                .bind(quantity)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn reservation_by_key_for_update(&mut self, key: &str) -> Result<Option<ReservationRow>, StoreError> {
        sqlx::query(&format!("SELECT {RESERVATION_COLUMNS} FROM inventory_reservations WHERE idempotency_key = ?1"))
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(reservation)
            .transpose()
    }

    async fn reservation_for_update(&mut self, reservation_id: &str) -> Result<Option<ReservationRow>, StoreError> {
        sqlx::query(&format!("SELECT {RESERVATION_COLUMNS} FROM inventory_reservations WHERE reservation_id = ?1"))
            .bind(reservation_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(reservation)
            .transpose()
    }

    async fn order_reservations_for_update(
        &mut self,
        order_id: &str,
        status: ReservationStatus,
    ) -> Result<Vec<ReservationRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM inventory_reservations WHERE order_id = ?1 AND status = ?2 \
             ORDER BY created_at, reservation_id"
        ))
        .bind(order_id)
        .bind(status.as_str())
        .fetch_all(&mut *self.tx)
        .await?
        .iter()
        .map(reservation)
        .collect()
    }

    async fn reservation_items(&mut self, reservation_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT sku, quantity FROM inventory_reservation_items WHERE reservation_id = ?1 ORDER BY sku",
        )
        .bind(reservation_id)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn set_reservation_status(
        &mut self,
        reservation_id: &str,
        status: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE inventory_reservations SET status = ?2, closed_at = ?3 WHERE reservation_id = ?1")
            .bind(reservation_id)
            .bind(status.as_str())
            .bind(timestamp(now))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
