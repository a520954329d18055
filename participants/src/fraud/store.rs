//! The fraud service's storage: every SQL statement it runs, behind [`FraudStore`] and
//! [`FraudTx`] so that another backend (SQLite) can implement the same seam.

pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::kit::idempotency::{IdempotencyTx, pg_idempotency_tx};
use crate::kit::store::{StoreError, begin_locked, run_migrator};

pub use sqlite::SqliteFraudStore;

/// Separates this service's advisory locks from other components' in the shared database.
const LOCK_SEED: i64 = 0x5347_0003;

/// One stored decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub decision_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub currency: String,
    /// `APPROVE` or `REJECT`.
    pub decision: String,
    /// 0 (safe) to 100.
    pub score: i32,
    pub reasons: Vec<String>,
    /// The Check key that produced it.
    pub idempotency_key: String,
}

/// Fraud storage outside any call's transaction.
#[async_trait]
pub trait FraudStore: Send + Sync + fmt::Debug + 'static {
    /// Starts the transaction of one business call.
    ///
    /// `locks`: the idempotency keys to lock first, for the whole transaction
    /// ([`CallKey::lock_keys`](crate::kit::idempotency::CallKey::lock_keys)); none for
    /// maintenance work.
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn FraudTx>, StoreError>;
    /// The order's decisions, oldest first.
    async fn decisions_for_order(&self, order_id: &str) -> Result<Vec<DecisionRow>, StoreError>;
}

/// Fraud storage inside one call's transaction.
#[async_trait]
pub trait FraudTx: IdempotencyTx {
    async fn insert_decision(&mut self, decision: &DecisionRow, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Applies the fraud schema's PostgreSQL migrations (SQLite: [`sqlite::migrate`]).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    run_migrator(pool, "fraud", sqlx::migrate!("../migrations/fraud")).await
}

/// [`FraudStore`] on PostgreSQL (schema `fraud`).
#[derive(Debug, Clone)]
pub struct PgFraudStore {
    pool: PgPool,
}

impl PgFraudStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One call's PostgreSQL transaction.
#[derive(Debug)]
pub struct PgFraudTx {
    tx: Transaction<'static, Postgres>,
}

pg_idempotency_tx!(PgFraudTx, "fraud");

#[async_trait]
impl FraudStore for PgFraudStore {
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn FraudTx>, StoreError> {
        Ok(Box::new(PgFraudTx { tx: begin_locked(&self.pool, LOCK_SEED, locks).await? }))
    }

    async fn decisions_for_order(&self, order_id: &str) -> Result<Vec<DecisionRow>, StoreError> {
        sqlx::query!(
            "SELECT decision_id, order_id, customer_id, amount_cents, currency, decision, score, \
             reasons, idempotency_key FROM fraud.decisions WHERE order_id = $1 \
             ORDER BY created_at, decision_id",
            order_id
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            // Reasons are a JSON array of strings (portable to SQLite; no array type).
            let reasons = serde_json::from_str(&row.reasons).map_err(|err| StoreError::Corrupt {
                what: format!("reasons of decision {}", row.decision_id),
                detail: err.to_string(),
            })?;
            Ok(DecisionRow {
                decision_id: row.decision_id,
                order_id: row.order_id,
                customer_id: row.customer_id,
                amount_cents: row.amount_cents,
                currency: row.currency,
                decision: row.decision,
                score: row.score,
                reasons,
                idempotency_key: row.idempotency_key,
            })
        })
        .collect()
    }
}

#[async_trait]
impl FraudTx for PgFraudTx {
    async fn insert_decision(&mut self, d: &DecisionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let reasons = serde_json::Value::from(d.reasons.clone()).to_string();
        sqlx::query!(
            "INSERT INTO fraud.decisions (decision_id, order_id, customer_id, amount_cents, \
             currency, decision, score, reasons, idempotency_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            d.decision_id,
            d.order_id,
            d.customer_id,
            d.amount_cents,
            d.currency,
            d.decision,
            d.score,
            reasons,
            d.idempotency_key,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
