//! The W3C trace context of the call attempt in progress, handed from the engine to the
//! invoker through a task-local (so the `Invoker` trait stays as it is), and written into the
//! call's gRPC metadata by [`inject`].

use std::future::Future;

use sagaflow_participants::kit::telemetry::propagation::{TRACEPARENT, TRACESTATE};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// The headers naming one attempt's span.
#[derive(Debug, Clone)]
pub struct CallTrace {
    pub traceparent: AsciiMetadataValue,
    pub tracestate: Option<AsciiMetadataValue>,
}

tokio::task_local! {
    static CURRENT: CallTrace;
}

/// Runs `call` (one attempt) with `trace` as its context.
pub async fn scope<F: Future>(trace: CallTrace, call: F) -> F::Output {
    CURRENT.scope(trace, call).await
}

/// Adds `traceparent` (and `tracestate`) to an outgoing call's metadata when the attempt runs
/// inside [`scope`]; does nothing otherwise.
pub fn inject(metadata: &mut MetadataMap) {
    let _ = CURRENT.try_with(|trace| {
        metadata.insert(TRACEPARENT, trace.traceparent.clone());
        if let Some(state) = &trace.tracestate {
            metadata.insert(TRACESTATE, state.clone());
        }
    });
}
