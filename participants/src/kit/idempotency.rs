//! At-most-once application of business calls, keyed by the `idempotency-key` metadata, with
//! compensation tombstones (DESIGN §3).
//!
//! A call runs in one database transaction that (1) begins holding transaction-scoped locks on
//! its key and, for a compensation, on the forward key it names in `saga-compensates`
//! ([`CallKey::lock_keys`], passed to the store's `begin`), (2) replays the
//! key's stored answer if there is one, otherwise (3) applies the effect and (4) stores the
//! answer (success or business refusal) before committing. Storage failures roll everything
//! back and store nothing, so the caller may retry.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Code;

use super::error::{ALREADY_COMPENSATED, KEY_REUSED, Refusal, ServiceError};
use super::store::StoreError;

/// gRPC metadata naming the call's idempotency key (required on every business call).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// gRPC metadata on a compensation call naming the forward call's key it undoes.
pub const SAGA_COMPENSATES: &str = "saga-compensates";
/// Longest key accepted; keys are derived identifiers, never payloads.
const MAX_KEY_LEN: usize = 512;

/// The identity of one business call as the idempotency machinery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKey {
    /// Full gRPC method, e.g. `payment.v1.Payment/Charge`.
    pub method: &'static str,
    /// The `idempotency-key` metadata.
    pub key: String,
    /// The `saga-compensates` metadata (the forward key), when present and non-empty.
    pub compensates: Option<String>,
    /// SHA-256 (hex) of the method, the `saga-compensates` key and the request's protobuf
    /// encoding: a repeated key with a different hash is a different request.
    pub request_hash: String,
}

impl CallKey {
    /// Reads the keys from the request metadata and hashes the request.
    pub fn from_request<T: Message>(method: &'static str, request: &tonic::Request<T>) -> Result<Self, ServiceError> {
        let key = metadata_key(request, IDEMPOTENCY_KEY)?.ok_or_else(|| {
            ServiceError::invalid(
                IDEMPOTENCY_KEY,
                "every business call needs `idempotency-key` gRPC metadata; send a key that \
                 stays the same across retries of this call",
            )
        })?;
        let compensates = metadata_key(request, SAGA_COMPENSATES)?;
        let request_hash = request_hash(method, compensates.as_deref(), request.get_ref());
        Ok(Self { method, key, compensates, request_hash })
    }

    /// The keys the call's transaction must lock before it reads them: its own and, for a
    /// compensation, the forward key it undoes. Sorted and deduplicated, so that two calls
    /// never wait on each other in a cycle.
    pub fn lock_keys(&self) -> Vec<&str> {
        let mut keys = vec![self.key.as_str()];
        if let Some(forward) = &self.compensates {
            keys.push(forward.as_str());
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

fn metadata_key<T>(request: &tonic::Request<T>, name: &'static str) -> Result<Option<String>, ServiceError> {
    let Some(value) = request.metadata().get(name) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ServiceError::invalid(name, "must be printable ASCII"))?.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_KEY_LEN {
        return Err(ServiceError::invalid(name, format!("is longer than {MAX_KEY_LEN} characters")));
    }
    Ok(Some(value.to_owned()))
}

/// SHA-256 over the method name, the forward key a compensation names, and the message's
/// encoding. prost encodes a decoded message deterministically, so the same request hashes
/// the same however the client encoded it.
pub fn request_hash<T: Message>(method: &str, compensates: Option<&str>, request: &T) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    if let Some(forward) = compensates {
        hasher.update(forward.as_bytes());
    }
    hasher.update([0]);
    hasher.update(request.encode_to_vec());
    hex::encode(hasher.finalize())
}

/// The answer stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The encoded protobuf response.
    Ok(Vec<u8>),
    Refused(Refusal),
}

/// What a key's row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRecord {
    /// The key was used and answered.
    Answered { method: String, request_hash: String, answer: Answer },
    /// A compensation ran before any forward call with this key: the key is dead.
    Tombstone { method: String, compensated_by: String },
}

/// The idempotency half of a service's transaction. Each service's store implements it over
/// the service's own `idempotency_keys` table (see [`pg_idempotency_tx`]).
#[async_trait]
pub trait IdempotencyTx: Send {
    async fn key_record(&mut self, key: &str) -> Result<Option<KeyRecord>, StoreError>;
    async fn save_answer(
        &mut self,
        key: &str,
        method: &str,
        request_hash: &str,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn save_tombstone(
        &mut self,
        forward_key: &str,
        forward_method: &str,
        compensated_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opens a call inside `tx`, which was begun holding the locks of [`CallKey::lock_keys`]:
/// returns the stored answer to replay, if any. A tombstoned key is refused with
/// `Saga.AlreadyCompensated`; a key reused for a different request with
/// `Saga.IdempotencyKeyReused`.
pub async fn open<T: IdempotencyTx + ?Sized>(tx: &mut T, call: &CallKey) -> Result<Option<Answer>, ServiceError> {
    match tx.key_record(&call.key).await? {
        None => Ok(None),
        Some(KeyRecord::Tombstone { compensated_by, .. }) => {
            tracing::info!(key = %call.key, method = call.method, %compensated_by, "refused: key already compensated");
            Err(Refusal::new(
                ALREADY_COMPENSATED,
                format!(
                    "idempotency key {:?} was compensated (by {compensated_by:?}) before this call arrived; it will not be applied",
                    call.key
                ),
            )
            .with("idempotency_key", &call.key)
            .with("compensated_by", compensated_by)
            .into())
        }
        Some(KeyRecord::Answered { method, request_hash, answer }) => {
            if request_hash != call.request_hash {
                return Err(Refusal::new(
                    KEY_REUSED,
                    format!(
                        "idempotency key {:?} was first used for a different {method} request; use a new key for a new request",
                        call.key
                    ),
                )
                .with("idempotency_key", &call.key)
                .with("first_method", method)
                .into());
            }
            tracing::debug!(key = %call.key, method = call.method, "replaying the stored answer");
            Ok(Some(answer))
        }
    }
}

/// Turns a replayed answer back into the response (or the same refusal).
pub fn replay<R: Message + Default>(answer: Answer) -> Result<R, ServiceError> {
    match answer {
        Answer::Ok(bytes) => R::decode(bytes.as_slice()).map_err(|err| {
            ServiceError::Store(StoreError::Corrupt {
                what: "idempotency answer".to_owned(),
                detail: format!("the stored response does not decode: {err}"),
            })
        }),
        Answer::Refused(refusal) => Err(refusal.into()),
    }
}

/// What a compensation found about the forward key it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The forward call succeeded: undo exactly its effect.
    Applied,
    /// The forward call was refused, or an earlier compensation already tombstoned it:
    /// nothing to undo.
    NothingApplied,
    /// No call with the forward key was ever seen: nothing to undo, and a tombstone must be
    /// left so a late forward call is refused ([`leave_tombstone`]).
    NeverSeen,
}

/// Looks up the forward key of a compensation (which [`open`] has locked).
pub async fn forward_state<T: IdempotencyTx + ?Sized>(tx: &mut T, forward_key: &str) -> Result<Forward, ServiceError> {
    Ok(match tx.key_record(forward_key).await? {
        None => Forward::NeverSeen,
        Some(KeyRecord::Answered { answer: Answer::Ok(_), .. }) => Forward::Applied,
        Some(KeyRecord::Answered { answer: Answer::Refused(_), .. }) | Some(KeyRecord::Tombstone { .. }) => {
            Forward::NothingApplied
        }
    })
}

/// Marks a never-seen forward key dead, in the compensation's transaction.
pub async fn leave_tombstone<T: IdempotencyTx + ?Sized>(
    tx: &mut T,
    forward_key: &str,
    forward_method: &str,
    call: &CallKey,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    tracing::info!(forward_key, compensated_by = %call.key, "compensation of a call never applied: leaving a tombstone");
    tx.save_tombstone(forward_key, forward_method, &call.key, now).await?;
    Ok(())
}

/// Stores the first answer of the key and commits the effect with it, then returns the
/// answer. Only successes and business refusals reach here; anything else was returned
/// early with `?`, which dropped (rolled back) the transaction.
pub async fn close<T: IdempotencyTx + ?Sized, R: Message>(
    mut tx: Box<T>,
    call: &CallKey,
    outcome: Result<R, Refusal>,
    now: DateTime<Utc>,
) -> Result<R, ServiceError> {
    let answer = match &outcome {
        Ok(response) => Answer::Ok(response.encode_to_vec()),
        Err(refusal) => Answer::Refused(refusal.clone()),
    };
    tx.save_answer(&call.key, call.method, &call.request_hash, &answer, now).await?;
    tx.commit().await?;
    match &outcome {
        Ok(_) => log_applied(call),
        Err(refusal) => {
            tracing::info!(key = %call.key, method = call.method, reason = %refusal.reason, "refused")
        }
    }
    outcome.map_err(ServiceError::Refused)
}

/// The log line of a call whose effect was applied (and its answer stored).
pub fn log_applied(call: &CallKey) {
    tracing::info!(key = %call.key, method = call.method, "applied");
}

/// The first half of a store's one-step call (decision 0020) done through the transaction
/// API: whether the key already has a row, in which case the caller does nothing.
pub async fn key_seen<T: IdempotencyTx + ?Sized>(tx: &mut T, call: &CallKey) -> Result<bool, StoreError> {
    Ok(tx.key_record(&call.key).await?.is_some())
}

/// The second half: store `response` as the key's answer and commit with the effect.
pub async fn commit_ok_answer<T: IdempotencyTx + ?Sized>(
    mut tx: Box<T>,
    call: &CallKey,
    response: &[u8],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    tx.save_answer(&call.key, call.method, &call.request_hash, &Answer::Ok(response.to_vec()), now).await?;
    tx.commit().await?;
    Ok(true)
}

/// The columns of a stored answer, as the `idempotency_keys` tables hold them.
#[derive(Debug, Default)]
pub struct AnswerColumns {
    pub outcome: &'static str,
    pub response: Option<Vec<u8>>,
    pub error_code: Option<i32>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    pub error_metadata: Option<String>,
}

impl AnswerColumns {
    /// Splits an answer into columns.
    pub fn from_answer(answer: &Answer) -> Self {
        match answer {
            Answer::Ok(bytes) => AnswerColumns { outcome: "ok", response: Some(bytes.clone()), ..Default::default() },
            Answer::Refused(refusal) => AnswerColumns {
                outcome: "refused",
                error_code: Some(refusal.code as i32),
                error_reason: Some(refusal.reason.clone()),
                error_message: Some(refusal.message.clone()),
                // A BTreeMap of strings always serializes.
                error_metadata: serde_json::to_string(&refusal.metadata).ok(),
                ..Default::default()
            },
        }
    }
}

/// One `idempotency_keys` row as read back.
#[derive(Debug)]
pub struct KeyRow {
    pub method: String,
    pub request_hash: Option<String>,
    pub outcome: String,
    pub response: Option<Vec<u8>>,
    pub error_code: Option<i32>,
    pub error_reason: Option<String>,
    pub error_message: Option<String>,
    pub error_metadata: Option<String>,
    pub compensated_by: Option<String>,
}

impl KeyRow {
    /// Reassembles the record; a row that breaks the table's invariants is corrupt.
    pub fn into_record(self, key: &str) -> Result<KeyRecord, StoreError> {
        let corrupt = |detail: &str| StoreError::Corrupt {
            what: format!("idempotency record of key {key:?}"),
            detail: detail.to_owned(),
        };
        match self.outcome.as_str() {
            "tombstone" => Ok(KeyRecord::Tombstone {
                method: self.method,
                compensated_by: self.compensated_by.unwrap_or_default(),
            }),
            "ok" | "refused" => {
                let request_hash = self.request_hash.ok_or_else(|| corrupt("no request hash"))?;
                let answer = if self.outcome == "ok" {
                    Answer::Ok(self.response.ok_or_else(|| corrupt("no response"))?)
                } else {
                    let metadata: BTreeMap<String, String> = match self.error_metadata {
                        Some(json) => serde_json::from_str(&json)
                            .map_err(|_| corrupt("error metadata is not a JSON object of strings"))?,
                        None => BTreeMap::new(),
                    };
                    Answer::Refused(Refusal {
                        code: Code::from_i32(self.error_code.unwrap_or(Code::FailedPrecondition as i32)),
                        reason: self.error_reason.ok_or_else(|| corrupt("no error reason"))?,
                        message: self.error_message.unwrap_or_default(),
                        metadata,
                    })
                };
                Ok(KeyRecord::Answered { method: self.method, request_hash, answer })
            }
            other => Err(corrupt(&format!("unknown outcome {other:?}"))),
        }
    }
}

/// Implements [`IdempotencyTx`] for a service's PostgreSQL transaction type (a struct with a
/// field `tx: sqlx::Transaction<'static, sqlx::Postgres>`) over `<schema>.idempotency_keys`.
///
/// A macro because sqlx checks each query against one literal table name. The key locks are
/// taken when the transaction begins ([`crate::kit::store::begin_locked`]).
macro_rules! pg_idempotency_tx {
    ($ty:ty, $schema:tt) => {
        #[async_trait::async_trait]
        impl $crate::kit::idempotency::IdempotencyTx for $ty {
            async fn key_record(
                &mut self,
                key: &str,
            ) -> Result<Option<$crate::kit::idempotency::KeyRecord>, $crate::kit::store::StoreError> {
                let row = sqlx::query_as!(
                    $crate::kit::idempotency::KeyRow,
                    "SELECT method, request_hash, outcome, response, error_code, error_reason, \
                     error_message, error_metadata, compensated_by FROM "
                        + $schema
                        + ".idempotency_keys WHERE idempotency_key = $1",
                    key
                )
                .fetch_optional(&mut *self.tx)
                .await?;
                row.map(|row| row.into_record(key)).transpose()
            }

            async fn save_answer(
                &mut self,
                key: &str,
                method: &str,
                request_hash: &str,
                answer: &$crate::kit::idempotency::Answer,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::kit::store::StoreError> {
                let c = $crate::kit::idempotency::AnswerColumns::from_answer(answer);
                sqlx::query!(
                    "INSERT INTO "
                        + $schema
                        + ".idempotency_keys (idempotency_key, method, request_hash, outcome, \
                           response, error_code, error_reason, error_message, error_metadata, \
                           created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    key,
                    method,
                    request_hash,
                    c.outcome,
                    c.response,
                    c.error_code,
                    c.error_reason,
                    c.error_message,
                    c.error_metadata,
                    now
                )
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn save_tombstone(
                &mut self,
                forward_key: &str,
                forward_method: &str,
                compensated_by: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::kit::store::StoreError> {
                sqlx::query!(
                    "INSERT INTO "
                        + $schema
                        + ".idempotency_keys (idempotency_key, method, outcome, compensated_by, \
                           created_at) VALUES ($1, $2, 'tombstone', $3, $4)",
                    forward_key,
                    forward_method,
                    compensated_by,
                    now
                )
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn commit(self: Box<Self>) -> Result<(), $crate::kit::store::StoreError> {
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use pg_idempotency_tx;

#[cfg(test)]
mod tests {
    use sagaflow_proto::payment::v1::RefundRequest;

    use super::*;

    #[test]
    fn the_hash_tells_requests_apart() {
        let refund = RefundRequest { order_id: "o-1".into(), ..Default::default() };
        let method = "payment.v1.Payment/Refund";
        let base = request_hash(method, None, &refund);
        assert_eq!(base, request_hash(method, None, &refund.clone()));
        assert_ne!(base, request_hash(method, Some("k"), &refund));
        assert_ne!(base, request_hash("payment.v1.Payment/Charge", None, &refund));
        let other = RefundRequest { amount_cents: 1, ..refund };
        assert_ne!(base, request_hash(method, None, &other));
    }

    #[test]
    fn missing_and_blank_keys_are_invalid() {
        let request = tonic::Request::new(RefundRequest::default());
        assert!(CallKey::from_request("m/M", &request).is_err());
        let mut blank = tonic::Request::new(RefundRequest::default());
        blank.metadata_mut().insert(IDEMPOTENCY_KEY, " ".parse().expect("ascii"));
        assert!(CallKey::from_request("m/M", &blank).is_err());
        let mut keyed = tonic::Request::new(RefundRequest::default());
        keyed.metadata_mut().insert(IDEMPOTENCY_KEY, "k-1".parse().expect("ascii"));
        keyed.metadata_mut().insert(SAGA_COMPENSATES, "k-0".parse().expect("ascii"));
        let call = CallKey::from_request("m/M", &keyed).expect("valid");
        assert_eq!(call.key, "k-1");
        assert_eq!(call.compensates.as_deref(), Some("k-0"));
    }
}
