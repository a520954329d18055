//! Business refusals and service errors, and the one place where they become
//! `tonic::Status` (DESIGN §3: a business error carries `google.rpc.ErrorInfo` whose reason
//! is the error name and whose status message is the cause).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::store::StoreError;

/// The `ErrorInfo.domain` of every error these participants raise.
pub const ERROR_DOMAIN: &str = "sagaflow.demo";

/// `Saga.IdempotencyKeyReused`: a key came back with a different request.
pub const KEY_REUSED: &str = "Saga.IdempotencyKeyReused";
/// `Saga.AlreadyCompensated`: a forward call arrived after its compensation had run.
pub const ALREADY_COMPENSATED: &str = "Saga.AlreadyCompensated";

/// A definite answer "no" (card declined, out of stock, ...). It is stored as the answer of
/// its idempotency key, in the same transaction as any effect, and replayed verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `FailedPrecondition` for business refusals; `NotFound` for reads of unknown things.
    pub code: Code,
    /// The error name (`ErrorInfo.reason`), e.g. `Payment.CardDeclined`.
    pub reason: String,
    /// The cause, for people (the status message).
    pub message: String,
    /// Machine-readable details (`ErrorInfo.metadata`), e.g. the SKU that ran out.
    pub metadata: BTreeMap<String, String>,
}

impl Refusal {
    /// A business refusal (`FailedPrecondition`).
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: Code::FailedPrecondition,
            reason: reason.into(),
            message: message.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// The same refusal with one more `ErrorInfo.metadata` entry.
    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.metadata.insert(key.into(), value.to_string());
        self
    }

    /// The same refusal under another status code.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    /// The gRPC status the client sees.
    pub fn to_status(&self) -> Status {
        let metadata: HashMap<String, String> = self.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let details = ErrorDetails::with_error_info(self.reason.clone(), ERROR_DOMAIN, metadata);
        Status::with_error_details(self.code, self.message.clone(), details)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// An error and all its sources on one line ("a: b: c"), for logs: error messages do not
/// repeat their source, so `{:#}`-style chains never print a cause twice.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Everything a participant call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; nothing is stored, so a corrected request may reuse the key.
    #[error("invalid {field}: {description}")]
    InvalidArgument { field: &'static str, description: String },
    /// A business refusal (stored under the key when it is the key's first answer).
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    /// Shorthand for [`ServiceError::InvalidArgument`].
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        ServiceError::InvalidArgument { field, description: description.into() }
    }
}

impl From<Refusal> for ServiceError {
    fn from(refusal: Refusal) -> Self {
        ServiceError::Refused(refusal)
    }
}

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::InvalidArgument { field, description } => {
                let details = ErrorDetails::with_bad_request_violation(field, description.clone());
                Status::with_error_details(Code::InvalidArgument, format!("invalid {field}: {description}"), details)
            }
            ServiceError::Refused(refusal) => refusal.to_status(),
            // Database details go to the log, not to the client.
            ServiceError::Store(err) if err.is_transient() => {
                tracing::warn!(error = %chain(&err), "transient storage failure");
                Status::unavailable("the participant's database is unavailable; retry the call")
            }
            ServiceError::Store(err) => {
                tracing::error!(error = %chain(&err), "storage failure");
                Status::internal("internal storage error; see the participant's log")
            }
        }
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        ServiceError::Store(err).into()
    }
}
