//! The payment service's storage: every SQL statement it runs, behind [`PaymentStore`] and
//! [`PaymentTx`] so that another backend (SQLite) can implement the same seam.

pub mod sqlite;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::kit::idempotency::{self, CallKey, IdempotencyTx, pg_idempotency_tx};
use crate::kit::store::{StoreError, advisory_lock_id, begin_locked, run_migrator};

pub use sqlite::SqlitePaymentStore;

/// Separates this service's advisory locks from other components' in the shared database.
const LOCK_SEED: i64 = 0x5347_0001;

/// One charge and how much of it was refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub payment_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    /// Never above `amount_cents` (a CHECK constraint guards it too).
    pub refunded_cents: i64,
    pub currency: String,
    /// The Charge key that created it.
    pub idempotency_key: String,
}

/// Payment storage outside any call's transaction.
#[async_trait]
pub trait PaymentStore: Send + Sync + fmt::Debug + 'static {
    /// Starts the transaction of one business call.
    ///
    /// `locks`: the idempotency keys to lock first, for the whole transaction
    /// ([`CallKey::lock_keys`](crate::kit::idempotency::CallKey::lock_keys)); none for
    /// maintenance work.
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn PaymentTx>, StoreError>;
    /// Charge `payment` and store `response` as the key's answer, in one step, when the key
    /// was never seen; `false` (nothing done) when it was, and the caller takes the locked path
    /// that replays or refuses. Saves the demo's most frequent call four round trips on
    /// PostgreSQL; the default does the same in one ordinary transaction.
    async fn charge_once(
        &self,
        call: &CallKey,
        payment: &PaymentRow,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(&call.lock_keys()).await?;
        if idempotency::key_seen(&mut *tx, call).await? {
            return Ok(false);
        }
        tx.insert_payment(payment, now).await?;
        idempotency::commit_ok_answer(tx, call, response, now).await
    }
    /// The order's charges, oldest first.
    async fn payments_for_order(&self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError>;
}

/// Payment storage inside one call's transaction: idempotency records and effects commit
/// together. The `_for_update` reads lock the rows they return until the end of it.
#[async_trait]
pub trait PaymentTx: IdempotencyTx {
    async fn insert_payment(&mut self, payment: &PaymentRow, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// The charge made under a Charge idempotency key.
    async fn payment_by_key_for_update(&mut self, key: &str) -> Result<Option<PaymentRow>, StoreError>;
    async fn payment_for_update(&mut self, payment_id: &str) -> Result<Option<PaymentRow>, StoreError>;
    /// The order's charges, oldest first.
    async fn order_payments_for_update(&mut self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError>;
    /// Records a refund of `amount_cents` (> 0, at most what is left) against a charge.
    async fn record_refund(
        &mut self,
        refund_id: &str,
        payment_id: &str,
        amount_cents: i64,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Applies the payment schema's PostgreSQL migrations (SQLite: [`sqlite::migrate`]).
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    run_migrator(pool, "payment", sqlx::migrate!("../migrations/payment")).await
}

/// [`PaymentStore`] on PostgreSQL (schema `payment`).
#[derive(Debug, Clone)]
pub struct PgPaymentStore {
    pool: PgPool,
}

impl PgPaymentStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One call's PostgreSQL transaction.
#[derive(Debug)]
pub struct PgPaymentTx {
    tx: Transaction<'static, Postgres>,
}

pg_idempotency_tx!(PgPaymentTx, "payment");

#[async_trait]
impl PaymentStore for PgPaymentStore {
    async fn begin(&self, locks: &[&str]) -> Result<Box<dyn PaymentTx>, StoreError> {
        Ok(Box::new(PgPaymentTx { tx: begin_locked(&self.pool, LOCK_SEED, locks).await? }))
    }

    async fn charge_once(
        &self,
        call: &CallKey,
        p: &PaymentRow,
        response: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement, so one implicit transaction: the key's lock (as every call on the key
        // takes it), the answer inserted unless the key has a row (ON CONFLICT also waits for a
        // transaction still inserting one), and the charge only if the answer went in.
        let claimed = sqlx::query_scalar!(
            r#"
            WITH key_lock AS (SELECT pg_advisory_xact_lock($1)),
            claim AS (
                INSERT INTO payment.idempotency_keys
                    (idempotency_key, method, request_hash, outcome, response, created_at)
                SELECT $2, $3, $4, 'ok', $5, $6 FROM key_lock
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING idempotency_key
            ),
            charge AS (
                INSERT INTO payment.payments (payment_id, order_id, customer_id, amount_cents,
                    refunded_cents, currency, idempotency_key, created_at)
                SELECT $7, $8, $9, $10, $11, $12, claim.idempotency_key, $6 FROM claim
            )
            SELECT count(*) AS "claimed!" FROM claim
            "#,
            advisory_lock_id(LOCK_SEED, &call.key),
            call.key,
            call.method,
            call.request_hash,
            response,
            now,
            p.payment_id,
            p.order_id,
            p.customer_id,
            p.amount_cents,
            p.refunded_cents,
            p.currency
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(claimed > 0)
    }

    async fn payments_for_order(&self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError> {
        Ok(sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, customer_id, amount_cents, refunded_cents, currency, \
             idempotency_key FROM payment.payments WHERE order_id = $1 \
             ORDER BY created_at, payment_id",
            order_id
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[async_trait]
impl PaymentTx for PgPaymentTx {
    async fn insert_payment(&mut self, p: &PaymentRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO payment.payments (payment_id, order_id, customer_id, amount_cents, \
             refunded_cents, currency, idempotency_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            p.payment_id,
            p.order_id,
            p.customer_id,
            p.amount_cents,
            p.refunded_cents,
            p.currency,
            p.idempotency_key,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn payment_by_key_for_update(&mut self, key: &str) -> Result<Option<PaymentRow>, StoreError> {
        Ok(sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, customer_id, amount_cents, refunded_cents, currency, \
             idempotency_key FROM payment.payments WHERE idempotency_key = $1 FOR UPDATE",
            key
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn payment_for_update(&mut self, payment_id: &str) -> Result<Option<PaymentRow>, StoreError> {
        Ok(sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, customer_id, amount_cents, refunded_cents, currency, \
             idempotency_key FROM payment.payments WHERE payment_id = $1 FOR UPDATE",
            payment_id
        )
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    async fn order_payments_for_update(&mut self, order_id: &str) -> Result<Vec<PaymentRow>, StoreError> {
        Ok(sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, customer_id, amount_cents, refunded_cents, currency, \
             idempotency_key FROM payment.payments WHERE order_id = $1 \
             ORDER BY created_at, payment_id FOR UPDATE",
            order_id
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn record_refund(
        &mut self,
        refund_id: &str,
        payment_id: &str,
        amount_cents: i64,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO payment.refunds (refund_id, payment_id, amount_cents, idempotency_key, \
             created_at) VALUES ($1, $2, $3, $4, $5)",
            refund_id,
            payment_id,
            amount_cents,
            key,
            now
        )
        .execute(&mut *self.tx)
        .await?;
        sqlx::query!(
            "UPDATE payment.payments SET refunded_cents = refunded_cents + $2 WHERE payment_id = $1",
            payment_id,
            amount_cents
        )
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
