//! The shared kit every demo participant is built from: idempotency with compensation
//! tombstones, business errors and their one mapping to `tonic::Status`, fault injection,
//! storage errors, a clock that tests can move, and process telemetry (logs, traces, metrics).

pub mod chaos;
pub mod clock;
pub mod error;
pub mod idempotency;
pub mod sqlite;
pub mod store;
pub mod telemetry;

use error::ServiceError;

/// A new identifier such as `pay_0193...`: a prefix naming the kind and a UUID v7, so ids sort
/// by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Checks that a required string field is present.
pub fn require(field: &'static str, value: &str) -> Result<(), ServiceError> {
    if value.trim().is_empty() { Err(ServiceError::invalid(field, "is required")) } else { Ok(()) }
}
