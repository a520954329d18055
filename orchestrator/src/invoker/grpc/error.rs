//! Naming call failures (DESIGN §3) and deciding whether the participant may have applied
//! the request.
//!
//! | Failure                                                         | Error                          | Outcome unknown |
//! |-----------------------------------------------------------------|--------------------------------|-----------------|
//! | status with `google.rpc.ErrorInfo` (non-empty reason)           | the reason, e.g. `Payment.CardDeclined` | no     |
//! | `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `UNIMPLEMENTED` | `Grpc.<Code>` | no |
//! | `UNAVAILABLE` raised while connecting (refused, connect timeout, DNS), or the stream refused with HTTP/2 `REFUSED_STREAM` | `Grpc.Unavailable` | no |
//! | `UNAVAILABLE` otherwise (answered by the server, or the connection broke after sending; tonic's `UNKNOWN` for a broken connection is reported as `UNAVAILABLE`, as the gRPC status-code guide prescribes) | `Grpc.Unavailable` | yes |
//! | `CANCELLED`, `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `INTERNAL`, `DATA_LOSS` | `Grpc.<Code>` | yes |
//! | per-attempt deadline (`TimeoutSeconds`) reached waiting for the answer | `States.Timeout`        | yes             |
//! | per-attempt deadline reached before sending (schema fetch took it all) | `States.Timeout`        | no              |
//! | answer does not decode as the response type                    | `Sagaflow.InvalidResponse`     | yes             |
//! | answer larger than `max_response_bytes`                        | `States.DataLimitExceeded`     | yes             |
//! | resource is not `grpc://<participant>/<package.Service>/<Method>` | `Sagaflow.InvalidResource`   | no              |
//! | participant alias not configured                               | `Sagaflow.UnknownParticipant`  | no              |
//! | participant's configured alias or URL unusable                 | `Sagaflow.InvalidEndpoint`     | no              |
//! | service or method not in the participant's reflection (after one refresh) | `Sagaflow.UnknownMethod` | no      |
//! | streaming method                                                | `Sagaflow.UnsupportedMethod`   | no              |
//! | input does not convert to the request type (unknown field, wrong type) | `Sagaflow.InvalidRequest` | no          |
//! | reflection not served or unusable                              | `Sagaflow.ReflectionFailed`    | no              |
//! | reflection call failed with a status                           | `Grpc.<Code>` of that status   | no              |
//!
//! Why: "outcome unknown" makes the engine push the step's compensation (with `Result: null`),
//! which is always safe because compensating a never-applied key is a no-op (DESIGN §3); saying
//! "not applied" when it was would leave an effect un-compensated. So an outcome is "known"
//! only when the request provably had no effect:
//! - an `ErrorInfo` refusal is the participant's own definite answer (DESIGN §3);
//! - the codes in the second row are, by the gRPC status-code guide, rejections of the request
//!   as such (validation, lookup, auth, precondition, routing), made before any state change;
//! - a connect failure, or `REFUSED_STREAM` (RFC 9113 §8.7: the stream was not processed),
//!   means no byte of the request reached the application; likewise every failure before the
//!   call (resolution, reflection, conversion) never sent anything;
//! - everything else may strike after the participant committed: `INTERNAL`/`UNKNOWN` after a
//!   partial write, `ABORTED` on a concurrency conflict around commit, `RESOURCE_EXHAUSTED`
//!   from a quota checked late, `CANCELLED`/`DEADLINE_EXCEEDED` and broken connections at any
//!   point, and a response that does not decode came from a call that succeeded.

use std::{borrow::Cow, error::Error as StdError, io, time::Duration};

use thiserror::Error;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::{
    ConfigError, codec::ResponseDecodeError, json::RequestError, reflection::ReflectionError, resource::ResourceError,
};
use crate::invoker::CallOutcome;

/// The per-attempt deadline was reached (ASL's predefined name).
pub const TIMEOUT: &str = "States.Timeout";
/// The resource is not a gRPC task resource.
pub const INVALID_RESOURCE: &str = "Sagaflow.InvalidResource";
/// The participant alias is not configured.
pub const UNKNOWN_PARTICIPANT: &str = "Sagaflow.UnknownParticipant";
/// The participant's configured alias or URL is unusable.
pub const INVALID_ENDPOINT: &str = "Sagaflow.InvalidEndpoint";
/// The participant does not serve the service or method.
pub const UNKNOWN_METHOD: &str = "Sagaflow.UnknownMethod";
/// The method streams; tasks are unary calls.
pub const UNSUPPORTED_METHOD: &str = "Sagaflow.UnsupportedMethod";
/// The input does not convert to the request message.
pub const INVALID_REQUEST: &str = "Sagaflow.InvalidRequest";
/// The answer does not convert to the response message.
pub const INVALID_RESPONSE: &str = "Sagaflow.InvalidResponse";
/// ASL's name for a result over a size limit.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
/// The participant's schema could not be read through reflection.
pub const REFLECTION_FAILED: &str = "Sagaflow.ReflectionFailed";

/// Where a call was going, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub participant: String,
    pub url: String,
}

/// A failed call, named as DESIGN §3 prescribes.
#[derive(Debug, Error)]
pub enum InvokeError {
    #[error("{0}; fix the task's Resource")]
    InvalidResource(#[from] ResourceError),

    #[error(
        "participant '{alias}' is not configured (configured: {}); add it to the \
         orchestrator's participants configuration or fix the task's Resource",
        display_list(.configured)
    )]
    UnknownParticipant { alias: String, configured: Vec<String> },

    #[error("{0}; fix the orchestrator's participants configuration")]
    InvalidEndpoint(ConfigError),

    #[error("participant '{}' at {} {detail}", .target.participant, .target.url)]
    UnknownMethod { target: Target, service: String, method: String, detail: String },

    #[error(
        "{service}/{method} on participant '{}' is a streaming method; tasks call unary methods",
        .target.participant
    )]
    UnsupportedMethod { target: Target, service: String, method: String },

    #[error("invalid request for {resource}: {source}; fix the task's Parameters or InputPath")]
    InvalidRequest { resource: String, source: RequestError },

    #[error(
        "participant '{}' at {} is unreachable ({reason}); is it running?",
        .target.participant, .target.url
    )]
    Unreachable { target: Target, reason: String },

    #[error(
        "reading the schema of participant '{}' at {} by server reflection failed: {source}",
        .target.participant, .target.url
    )]
    Reflection { target: Target, source: ReflectionError },

    /// The participant refused with `google.rpc.ErrorInfo`: a business error.
    #[error("{message}")]
    Refused { reason: String, domain: String, message: String },

    /// Any other status; `message` is the server's (or, for a local transport failure, an
    /// explanation).
    #[error("{message}")]
    Status { code: Code, message: String, outcome_unknown: bool },

    /// The attempt's deadline passed: while waiting for the answer (`sent`), or before the
    /// request could be sent (reading the participant's schema took it all).
    #[error(
        "{resource} {} within {}s (TimeoutSeconds){}",
        if *.sent { "did not answer" } else { "could not be sent" },
        .after.as_secs_f64(),
        if *.sent {
            "; it may have been applied"
        } else {
            ": reading the participant's schema by reflection took the whole deadline; nothing \
             was sent"
        }
    )]
    Timeout { resource: String, after: Duration, sent: bool },

    /// The answer is larger than the configured limit (checked before decoding it).
    #[error(
        "{resource} answered with a message too large to accept ({detail}); it was applied. \
         Return less from the participant, or raise the orchestrator's response limit"
    )]
    ResponseTooLarge { resource: String, detail: String },

    #[error(
        "{resource} answered, but {reason}; the participant's reflection and its service \
         disagree (redeploy it, or restart the orchestrator to refetch its schema)"
    )]
    InvalidResponse { resource: String, reason: String },
}

impl InvokeError {
    /// The error name the States Language sees (`Retry`/`Catch` `ErrorEquals`).
    pub fn error_name(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidResource(_) => INVALID_RESOURCE.into(),
            Self::UnknownParticipant { .. } => UNKNOWN_PARTICIPANT.into(),
            Self::InvalidEndpoint(_) => INVALID_ENDPOINT.into(),
            Self::UnknownMethod { .. } => UNKNOWN_METHOD.into(),
            Self::UnsupportedMethod { .. } => UNSUPPORTED_METHOD.into(),
            Self::InvalidRequest { .. } => INVALID_REQUEST.into(),
            Self::Unreachable { .. } => grpc_error_name(Code::Unavailable).into(),
            Self::Reflection { source: ReflectionError::Status(status), .. } => grpc_error_name(status.code()).into(),
            Self::Reflection { .. } => REFLECTION_FAILED.into(),
            Self::Refused { reason, .. } => reason.clone().into(),
            Self::Status { code, .. } => grpc_error_name(*code).into(),
            Self::Timeout { .. } => TIMEOUT.into(),
            Self::InvalidResponse { .. } => INVALID_RESPONSE.into(),
            Self::ResponseTooLarge { .. } => DATA_LIMIT_EXCEEDED.into(),
        }
    }

    /// Whether the participant may have applied the request (see the module table).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Status { outcome_unknown, .. } => *outcome_unknown,
            Self::Timeout { sent, .. } => *sent,
            Self::InvalidResponse { .. } | Self::ResponseTooLarge { .. } => true,
            Self::InvalidResource(_)
            | Self::UnknownParticipant { .. }
            | Self::InvalidEndpoint(_)
            | Self::UnknownMethod { .. }
            | Self::UnsupportedMethod { .. }
            | Self::InvalidRequest { .. }
            | Self::Unreachable { .. }
            | Self::Reflection { .. }
            | Self::Refused { .. } => false,
        }
    }

    /// The failure as the interpreter records it.
    pub fn into_outcome(self) -> CallOutcome {
        CallOutcome::Failed {
            error: self.error_name().into_owned(),
            cause: Some(self.to_string()),
            outcome_unknown: self.outcome_unknown(),
        }
    }
}

/// `Grpc.<Code>` with the code in UpperCamelCase, e.g. `Grpc.DeadlineExceeded`.
pub fn grpc_error_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Grpc.Ok",
        Code::Cancelled => "Grpc.Cancelled",
        Code::Unknown => "Grpc.Unknown",
        Code::InvalidArgument => "Grpc.InvalidArgument",
        Code::DeadlineExceeded => "Grpc.DeadlineExceeded",
        Code::NotFound => "Grpc.NotFound",
        Code::AlreadyExists => "Grpc.AlreadyExists",
        Code::PermissionDenied => "Grpc.PermissionDenied",
        Code::ResourceExhausted => "Grpc.ResourceExhausted",
        Code::FailedPrecondition => "Grpc.FailedPrecondition",
        Code::Aborted => "Grpc.Aborted",
        Code::OutOfRange => "Grpc.OutOfRange",
        Code::Unimplemented => "Grpc.Unimplemented",
        Code::Internal => "Grpc.Internal",
        Code::Unavailable => "Grpc.Unavailable",
        Code::DataLoss => "Grpc.DataLoss",
        Code::Unauthenticated => "Grpc.Unauthenticated",
    }
}

/// Whether a status code, as the participant's answer, proves the request was not applied.
pub fn code_means_not_applied(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
    )
}

/// Names the status a task call ended with.
pub(crate) fn status_error(status: Status, target: &Target, resource: &str) -> InvokeError {
    if let Some(failure) = find_source::<ResponseDecodeError>(&status) {
        return InvokeError::InvalidResponse { resource: resource.to_owned(), reason: failure.to_string() };
    }
    if let Some(reason) = connect_failure(&status) {
        return InvokeError::Unreachable { target: target.clone(), reason };
    }
    // tonic refuses an over-limit answer locally with OUT_OF_RANGE, which would otherwise read
    // as the participant's "not applied" refusal; its message is the only mark.
    if status.code() == Code::OutOfRange && status.message().starts_with("Error, decoded message length too large") {
        return InvokeError::ResponseTooLarge {
            resource: resource.to_owned(),
            detail: status.message().trim_start_matches("Error, ").to_owned(),
        };
    }
    let details = status.get_error_details();
    if let Some(info) = details.error_info().filter(|info| !info.reason.is_empty()) {
        return InvokeError::Refused {
            reason: info.reason.clone(),
            domain: info.domain.clone(),
            message: status.message().to_owned(),
        };
    }
    let local_transport_failure = find_source::<tonic::transport::Error>(&status).is_some();
    let code = match status.code() {
        // tonic leaves a connection that broke mid-call (reset, broken pipe, closed early) as
        // UNKNOWN; the gRPC status-code guide has the library report it as UNAVAILABLE, which
        // is also what `Retry` rules on connection trouble name.
        Code::Unknown if local_transport_failure => Code::Unavailable,
        code => code,
    };
    if code == Code::Unavailable && stream_refused(&status) {
        return InvokeError::Status {
            code,
            message: format!(
                "participant '{}' at {} refused the stream before processing it ({}); retry",
                target.participant,
                target.url,
                status.message()
            ),
            outcome_unknown: false,
        };
    }
    // A status made on this side from a transport failure has a message ("transport error",
    // "h2 protocol error: ...") that needs context; a server's status is shown as it is.
    let message = if local_transport_failure {
        format!(
            "the call to participant '{}' at {} failed after the request was sent ({}); it may \
             have been applied",
            target.participant,
            target.url,
            deepest_message(&status)
        )
    } else if status.message().is_empty() {
        format!("participant '{}' answered {} with no message", target.participant, grpc_error_name(code))
    } else {
        status.message().to_owned()
    };
    InvokeError::Status { code, message, outcome_unknown: !code_means_not_applied(code) }
}

/// Names a failure of the reflection call (nothing of the task was sent yet).
pub(crate) fn reflection_error(error: ReflectionError, target: &Target) -> InvokeError {
    if let ReflectionError::Status(status) = &error
        && let Some(reason) = connect_failure(status)
    {
        return InvokeError::Unreachable { target: target.clone(), reason };
    }
    InvokeError::Reflection { target: target.clone(), source: error }
}

/// When the failure happened while connecting (nothing was sent), why.
pub(crate) fn connect_failure(status: &Status) -> Option<String> {
    find_source::<tonic::ConnectError>(status)?;
    let mut reason = None;
    let mut source = status.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            reason = Some(match io.kind() {
                io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                io::ErrorKind::TimedOut => "connect timed out".to_owned(),
                _ => io.to_string(),
            });
        } else if err.is::<tonic::TimeoutExpired>() {
            reason = Some("connect timed out".to_owned());
        }
        source = err.source();
    }
    Some(reason.unwrap_or_else(|| deepest_message(status)))
}

/// HTTP/2 `REFUSED_STREAM` from the server: the stream was not processed (RFC 9113 §8.7).
fn stream_refused(status: &Status) -> bool {
    find_source::<h2::Error>(status)
        .is_some_and(|h2| h2.is_reset() && h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM))
}

fn find_source<E: StdError + 'static>(status: &Status) -> Option<&E> {
    let mut source = status.source();
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}

/// The innermost error's message: the most specific ("Connection reset by peer").
fn deepest_message(status: &Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = status.source();
    while let Some(err) = source {
        message = err.to_string();
        source = err.source();
    }
    message
}

fn display_list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn target() -> Target {
        Target { participant: "payment".into(), url: "http://127.0.0.1:1".into() }
    }

    #[test]
    fn error_info_is_a_known_business_error() {
        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "card declined",
            ErrorDetails::with_error_info("Payment.CardDeclined", "payment", []),
        );
        let err = status_error(status, &target(), "r");
        assert_eq!(err.error_name(), "Payment.CardDeclined");
        assert_eq!(err.to_string(), "card declined");
        assert!(!err.outcome_unknown());
    }

    #[test]
    fn plain_statuses_map_to_grpc_codes() {
        for (code, name, unknown) in [
            (Code::Internal, "Grpc.Internal", true),
            (Code::Unavailable, "Grpc.Unavailable", true),
            (Code::DeadlineExceeded, "Grpc.DeadlineExceeded", true),
            (Code::ResourceExhausted, "Grpc.ResourceExhausted", true),
            (Code::Aborted, "Grpc.Aborted", true),
            (Code::InvalidArgument, "Grpc.InvalidArgument", false),
            (Code::FailedPrecondition, "Grpc.FailedPrecondition", false),
            (Code::Unimplemented, "Grpc.Unimplemented", false),
        ] {
            let err = status_error(Status::new(code, "boom"), &target(), "r");
            assert_eq!(err.error_name(), name);
            assert_eq!(err.outcome_unknown(), unknown, "{name}");
            assert_eq!(err.to_string(), "boom");
        }
    }

    #[test]
    fn every_code_has_an_upper_camel_case_name() {
        for i in 0..=16 {
            let code = Code::from(i);
            let name = grpc_error_name(code);
            assert_eq!(name, format!("Grpc.{code:?}"));
        }
    }
}
