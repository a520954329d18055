//! Calls to participants: resolves `grpc://<participant>/<package.Service>/<Method>`
//! through the configured endpoints and the participant's server reflection, converts the
//! JSON input to protobuf and the answer back (proto3 JSON mapping), enforces the
//! per-attempt deadline, sends the idempotency metadata, and names every failure
//! (DESIGN §3: `google.rpc.ErrorInfo` reason, `Grpc.<Code>`, `States.Timeout`).

pub mod grpc;
pub mod typecheck;

use async_trait::async_trait;
use sagaflow_language::interpreter::Call;
use serde_json::Value;

/// How a call ended, as the interpreter needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Succeeded(Value),
    Failed {
        error: String,
        cause: Option<String>,
        /// The request may have been applied (timeout, connection lost after sending).
        outcome_unknown: bool,
    },
}

/// Makes task and compensation calls.
#[async_trait]
pub trait Invoker: Send + Sync + 'static {
    async fn invoke(&self, call: &Call) -> CallOutcome;
}
