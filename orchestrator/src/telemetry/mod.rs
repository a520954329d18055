//! What the orchestrator tells about itself: logs (human or JSON), a trace per saga exported
//! over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and Prometheus metrics on
//! `--metrics-listen`. The process-wide setup (subscriber, exporter, `/metrics` server, W3C
//! parsing) is shared with the participants (`sagaflow_participants::kit::telemetry`).
//!
//! - [`trace`]: a saga's span tree, built from its committed history under derived ids.
//! - [`metrics`]: the engine's counters, gauges and histograms.
//! - [`call`]: the attempt's trace context, handed to the invoker for the call's metadata.
//!
//! Each actor holds an [`ActorTelemetry`] only when tracing or metrics are on; otherwise the
//! engine's hot path pays one `None` check per step.

pub mod call;
pub mod metrics;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sagaflow_language::interpreter::{HistoryEvent, Status, WorkId};
pub use sagaflow_participants::kit::telemetry::{
    LogFormat, Telemetry, TelemetryError, TelemetryOptions, init, init_logging, otlp_configured, span_sink,
};
use uuid::Uuid;

use self::call::CallTrace;
pub use self::metrics::EngineMetrics;
use self::trace::SagaTrace;
pub use self::trace::TraceParent;

/// What one actor records about its execution.
#[derive(Debug)]
pub(crate) struct ActorTelemetry {
    trace: Option<SagaTrace>,
    metrics: Option<Arc<EngineMetrics>>,
    definition: String,
    /// When the execution started (ms since the epoch), for its duration.
    started_ms: i64,
}

impl ActorTelemetry {
    /// `None` when neither spans nor metrics are recorded (nothing is allocated then).
    pub(crate) fn new(
        metrics: Option<&Arc<EngineMetrics>>,
        execution: Uuid,
        definition: &str,
        version: u32,
        started_ms: i64,
        parent: Option<&TraceParent>,
    ) -> Option<Box<ActorTelemetry>> {
        let trace = span_sink().and_then(|sink| SagaTrace::new(sink, execution, definition, version, parent));
        if trace.is_none() && metrics.is_none() {
            return None;
        }
        Some(Box::new(ActorTelemetry {
            trace,
            metrics: metrics.cloned(),
            definition: definition.to_owned(),
            started_ms,
        }))
    }

    /// Rebuilds open spans from the stored history (after a takeover).
    pub(crate) fn rebuild(&mut self, history: &[sagaflow_language::interpreter::HistoryEvent]) {
        if let Some(trace) = &mut self.trace {
            trace.rebuild(history);
        }
    }

    /// Whether the stored history is needed to continue the trace.
    pub(crate) fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// A step was committed at `at`.
    pub(crate) fn committed(&mut self, history: &[HistoryEvent], at: SystemTime) {
        if let Some(trace) = &mut self.trace {
            trace.observe(history, Some(at));
        }
        if let Some(metrics) = &self.metrics {
            metrics.observe_history(&self.definition, history);
        }
    }

    /// The context to send with call `id`.
    pub(crate) fn call_trace(&self, id: WorkId) -> Option<CallTrace> {
        self.trace.as_ref()?.call_trace(id)
    }

    pub(crate) fn metrics(&self) -> Option<&Arc<EngineMetrics>> {
        self.metrics.as_ref()
    }

    /// The execution reached a final status (or COMPENSATION_STUCK).
    pub(crate) fn settled(&mut self, status: Status, now_ms: i64) {
        if status == Status::CompensationStuck
            && let Some(trace) = &mut self.trace
        {
            trace.park(SystemTime::now());
        }
        if let Some(metrics) = &self.metrics {
            let took = Duration::from_millis(u64::try_from(now_ms - self.started_ms).unwrap_or(0));
            metrics.execution_settled(&self.definition, status, took);
        }
    }
}

/// Milliseconds since the epoch of a wall-clock time (the interpreter's clock).
pub(crate) fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
