//! The one place where errors become `tonic::Status`. Bad input answers InvalidArgument with
//! field violations; database and internal details go to the log, not to the client.

use sagaflow_language::Diagnostics;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::error;

use crate::engine::EngineError;
use crate::engine::definitions::RegisterError;
use crate::store::StoreError;

/// InvalidArgument with one violation per `(field, description)`.
pub fn invalid(message: impl Into<String>, violations: &[(String, String)]) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field.clone(), description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
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
