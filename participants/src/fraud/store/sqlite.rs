//! [`FraudStore`] on SQLite: the tables of `migrations/sqlite/fraud/` (`fraud_*`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{DecisionRow, FraudStore, FraudTx};
use crate::kit::sqlite::{self, sqlite_idempotency_tx, timestamp};
use crate::kit::store::StoreError;

/// Applies the fraud tables' SQLite migrations.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlite::run_migrator(pool, "fraud", sqlx::migrate!("../migrations/sqlite/fraud")).await
}

/// [`FraudStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteFraudStore {
    pool: SqlitePool,
}

impl SqliteFraudStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// One call's SQLite transaction.
#[derive(Debug)]
pub struct SqliteFraudTx {
    tx: Transaction<'static, Sqlite>,
}

sqlite_idempotency_tx!(SqliteFraudTx, "fraud_idempotency_keys");

#[async_trait]
impl FraudStore for SqliteFraudStore {
    async fn begin(&self, _locks: &[&str]) -> Result<Box<dyn FraudTx>, StoreError> {
        Ok(Box::new(SqliteFraudTx { tx: sqlite::begin(&self.pool).await? }))
    }

    async fn decisions_for_order(&self, order_id: &str) -> Result<Vec<DecisionRow>, StoreError> {
        sqlx::query(
            "SELECT decision_id, order_id, customer_id, amount_cents, currency, decision, score, reasons, \
             idempotency_key FROM fraud_decisions WHERE order_id = ?1 ORDER BY created_at, decision_id",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            let decision_id: String = row.try_get("decision_id")?;
            let reasons: String = row.try_get("reasons")?;
            let reasons = serde_json::from_str(&reasons).map_err(|err| StoreError::Corrupt {
                what: format!("reasons of decision {decision_id}"),
                detail: err.to_string(),
            })?;
            Ok(DecisionRow {
                decision_id,
                order_id: row.try_get("order_id")?,
                customer_id: row.try_get("customer_id")?,
                amount_cents: row.try_get("amount_cents")?,
                currency: row.try_get("currency")?,
                decision: row.try_get("decision")?,
                score: row.try_get("score")?,
                reasons,
                idempotency_key: row.try_get("idempotency_key")?,
            })
        })
        .collect()
    }
}

#[async_trait]
impl FraudTx for SqliteFraudTx {
    async fn insert_decision(&mut self, d: &DecisionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let reasons = serde_json::Value::from(d.reasons.clone()).to_string();
        sqlx::query(
            "INSERT INTO fraud_decisions (decision_id, order_id, customer_id, amount_cents, currency, decision, \
             score, reasons, idempotency_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&d.decision_id)
        .bind(&d.order_id)
        .bind(&d.customer_id)
        .bind(d.amount_cents)
        .bind(&d.currency)
        .bind(&d.decision)
        .bind(d.score)
        .bind(reasons)
        .bind(&d.idempotency_key)
        .bind(timestamp(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
