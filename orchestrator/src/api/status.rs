//! The one place where errors become `tonic::Status`. Bad input answers InvalidArgument with
//! field violations; database and internal details go to the log, not to the client.

use sagaflow_language::Diagnostics;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::error;

use super::input::Invalid;
use crate::engine::EngineError;
use crate::engine::definitions::RegisterError;
use crate::store::StoreError;

/// Most bytes of field violations one status carries, and of its message. Both travel in the
/// HTTP/2 trailers, and clients refuse a header block past 16 KiB (hyper's default; gRPC's C
/// core stops at 8 KiB): a bigger answer would reach the caller as a protocol error instead
/// of what is wrong with its request. Percent-encoding can triple the message and base64
/// grows the details by a third; these budgets keep the worst case near 9 KiB.
const VIOLATIONS_BUDGET_BYTES: usize = 4 * 1024;
const MESSAGE_LIMIT_BYTES: usize = 1024;
/// Longest field name or description of one violation, in bytes.
const VIOLATION_LIMIT_BYTES: usize = 512;

/// InvalidArgument with one violation per `(field, description)`, as many as fit the
/// trailers; the last one then says how many were left out.
pub fn invalid(message: impl Into<String>, violations: &[(String, String)]) -> Status {
    let mut details = ErrorDetails::new();
    let mut budget = VIOLATIONS_BUDGET_BYTES;
    let mut listed = 0;
    for (field, description) in violations {
        let field = clip(field, VIOLATION_LIMIT_BYTES);
        let description = clip(description, VIOLATION_LIMIT_BYTES);
        // Protobuf framing adds a few bytes per violation.
        let cost = field.len() + description.len() + 8;
        if cost > budget {
            break;
        }
        budget -= cost;
        listed += 1;
        details.add_bad_request_violation(field, description);
    }
    if listed < violations.len() {
        details.add_bad_request_violation(
            String::new(),
            format!("and {} more problems, left out to keep this answer small", violations.len() - listed),
        );
    }
    Status::with_error_details(Code::InvalidArgument, clip(&message.into(), MESSAGE_LIMIT_BYTES), details)
}

/// A request the API's input checks refused.
pub fn input(e: Invalid) -> Status {
    invalid(e.message, &e.violations)
}

/// `text` cut to at most `limit` bytes at a character boundary, marked when cut.
fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A definition's diagnostics as field violations (field = JSON pointer).
pub fn invalid_definition(diagnostics: &Diagnostics) -> Status {
    let violations: Vec<(String, String)> =
        diagnostics.errors().map(|d| (d.pointer.clone(), format!("{}:{}: {}", d.line, d.column, d.message))).collect();
    let first = violations.first().map(|(p, m)| format!(": {p} {m}")).unwrap_or_default();
    invalid(format!("the definition is invalid ({} errors){first}", violations.len()), &violations)
}

pub fn store(e: StoreError) -> Status {
    match e {
        StoreError::ExecutionNotFound(id) => Status::not_found(format!("execution {id} does not exist")),
        StoreError::DefinitionNotFound(name) => Status::not_found(format!("definition \"{name}\" is not registered")),
        StoreError::Unavailable(detail) => {
            error!(%detail, "database unavailable");
            Status::unavailable("the database is unavailable; retry shortly")
        }
        StoreError::LeaseLost(id) => Status::aborted(format!("execution {id} moved to another replica; retry")),
        other => {
            error!(error = %other, "store failure");
            Status::internal("internal storage error; see the server log")
        }
    }
}

pub fn engine(e: EngineError) -> Status {
    match e {
        EngineError::Store(e) => store(e),
        EngineError::UnknownDefinition(name) => Status::not_found(format!(
            "definition \"{name}\" is not registered; deploy it with `sagaflow definitions deploy` or serve --definitions"
        )),
        EngineError::UnknownVersion { name, version } => {
            Status::not_found(format!("definition \"{name}\" has no version {version}"))
        }
        EngineError::UnknownExecution(id) => Status::not_found(format!("execution {id} does not exist")),
        EngineError::AmbiguousExecution(prefix) => {
            Status::invalid_argument(format!("\"{prefix}\" matches several executions; give more of the id"))
        }
        EngineError::InvalidRequest(message) => Status::invalid_argument(message),
        EngineError::Conflict(id) => Status::already_exists(format!(
            "execution {id} already exists for this key with a different request; use a new key"
        )),
        EngineError::ShuttingDown => Status::unavailable("the server is shutting down; retry on another replica"),
        EngineError::BrokenDefinition(id, detail) => {
            error!(definition = id, %detail, "stored definition does not compile");
            Status::internal("a stored definition no longer compiles; see the server log")
        }
    }
}

pub fn register(e: RegisterError) -> Status {
    match e {
        RegisterError::Invalid(diagnostics) => invalid_definition(&diagnostics),
        RegisterError::BadName(name) => invalid(
            format!("definition name {name:?} is not valid"),
            &[("name".into(), "use 1-80 letters, digits, '-', '_' or '.'".into())],
        ),
        RegisterError::Store(e) => store(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of the header block the status travels in (names and values).
    fn header_bytes(status: Status) -> usize {
        status.into_http::<()>().headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum()
    }

    fn listed(status: &Status) -> Vec<(String, String)> {
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("violations");
        bad_request.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect()
    }

    /// Regression: a definition or an order with many problems produced an InvalidArgument
    /// whose trailers passed 16 KiB, which hyper clients (the CLI among them) refuse.
    #[test]
    fn a_refusal_fits_the_trailers_whatever_it_lists() {
        let violations: Vec<(String, String)> =
            (0..10_000).map(|i| (format!("/States/S{i}/Next"), "é".repeat(2_000))).collect();
        let status = invalid("ü".repeat(100_000), &violations);
        let listed = listed(&status);
        assert!((2..20).contains(&listed.len()), "{} listed", listed.len());
        let (field, description) = listed.last().expect("a summary");
        assert_eq!(
            (field.as_str(), description.as_str()),
            ("", &*format!("and {} more problems, left out to keep this answer small", 10_000 - (listed.len() - 1)))
        );
        assert!(listed[0].1.len() <= 512 && listed[0].1.ends_with('…'));
        assert!(status.message().len() <= 1024, "{}", status.message().len());
        let bytes = header_bytes(status);
        assert!(bytes < 12 * 1024, "{bytes} bytes of headers");
    }

    #[test]
    fn small_refusals_pass_unchanged() {
        let violations = vec![("currency".to_owned(), "use USD".to_owned()), ("items".to_owned(), "one".to_owned())];
        let status = invalid("the order is invalid", &violations);
        assert_eq!(status.message(), "the order is invalid");
        assert_eq!(listed(&status), violations);
    }
}
