//! [`PaymentStore`] on SQLite: the tables of `migrations/sqlite/payment/` (`payment_*`).
//! Every call's transaction holds the file's write lock (see [`crate::kit::sqlite`]), so the
//! `_for_update` reads need no row locks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{PaymentRow, PaymentStore, PaymentTx};
use crate::kit::sqlite::{self, sqlite_idempotency_tx, timestamp};
use crate::kit::store::StoreError;

const COLUMNS: &str = "payment_id, order_id, customer_id, amount_cents, refunded_cents, currency, idempotency_key";

/// Applies the payment tables' SQLite migrations.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlite::run_migrator(pool, "payment", sqlx::migrate!("../migrations/sqlite/payment")).await
}

/// [`PaymentStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqlitePaymentStore {
    pool: SqlitePool,
}

impl SqlitePaymentStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// One call's SQLite transaction.
#[derive(Debug)]
pub struct SqlitePaymentTx {
    tx: Transaction<'static, Sqlite>,
}

sqlite_idempotency_tx!(SqlitePaymentTx, "payment_idempotency_keys");

fn payment(row: &SqliteRow) -> Result<PaymentRow, StoreError> {
    Ok(PaymentRow {
        payment_id: row.try_get("payment_id")?,
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        amount_cents: row.try_get("amount_cents")?,
        refunded_cents: row.try_get("refunded_cents")?,
        currency: row.try_get("currency")?,
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

#[async_trait]
impl PaymentStore for SqlitePaymentStore {
    async fn begin(&self, _locks: &[&str]) -> Result<Box<dyn PaymentTx>, StoreError> {
        Ok(Box::new(SqlitePaymentTx { tx: sqlite::begin(&self.pool).await? }))
    }

    async fn payments_for_order(&self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payment_payments WHERE order_id = ?1 ORDER BY created_at, payment_id"
        ))
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(payment)
        .collect()
    }
}

#[async_trait]
impl PaymentTx for SqlitePaymentTx {
    async fn insert_payment(&mut self, p: &PaymentRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO payment_payments (payment_id, order_id, customer_id, amount_cents, refunded_cents, \
             currency, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&p.payment_id)
        .bind(&p.order_id)
        .bind(&p.customer_id)
        .bind(p.amount_cents)
        .bind(p.refunded_cents)
        .bind(&p.currency)
        .bind(&p.idempotency_key)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn payment_by_key_for_update(&mut self, key: &str) -> Result<Option<PaymentRow>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM payment_payments WHERE idempotency_key = ?1"))
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(payment)
            .transpose()
    }

    async fn payment_for_update(&mut self, payment_id: &str) -> Result<Option<PaymentRow>, StoreError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM payment_payments WHERE payment_id = ?1"))
            .bind(payment_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(payment)
            .transpose()
    }

    async fn order_payments_for_update(&mut self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payment_payments WHERE order_id = ?1 ORDER BY created_at, payment_id"
        ))
        .bind(order_id)
        .fetch_all(&mut *self.tx)
        .await?
        .iter()
        .map(payment)
        .collect()
    }

    async fn record_refund(
        &mut self,
        refund_id: &str,
        payment_id: &str,
        amount_cents: i64,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO payment_refunds (refund_id, payment_id, amount_cents, idempotency_key, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(refund_id)
        .bind(payment_id)
        .bind(amount_cents)
        .bind(key)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE payment_payments SET refunded_cents = refunded_cents + ?2 WHERE payment_id = ?1")
            .bind(payment_id)
            .bind(amount_cents)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
