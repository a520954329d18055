//! The participants' request layer, around every service of a participant process: a server
//! span continuing the caller's W3C trace (when OTLP export is on) and the participant's
//! metrics (when `--metrics-listen` is set): calls, errors by name, injected faults, latency.
//! With neither, calls pass straight through.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::Code;
use tonic_types::StatusExt as _;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::kit::chaos::InjectedFault;

/// Metadata keys the orchestrator sends with each call (DESIGN §3), recorded on the span.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const SAGAFLOW_ATTEMPT: &str = "sagaflow-attempt";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: String,
    error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    method: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// A participant process's metrics (names in docs/observability.md).
#[derive(Debug, Clone)]
pub struct ParticipantMetrics {
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl ParticipantMetrics {
    /// Creates the metrics and registers them (prefix `sagaflow_participant_`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ParticipantMetrics {
            calls: Family::default(),
            errors: Family::default(),
            faults: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        let registry = registry.sub_registry_with_prefix("sagaflow_participant");
        registry.register("calls", "Calls handled, by gRPC method and status code", metrics.calls.clone());
        registry.register(
            "errors",
            "Failed calls by error name (the google.rpc.ErrorInfo reason, e.g. Payment.CardDeclined, or Grpc.<Code>)",
            metrics.errors.clone(),
        );
        registry.register(
            "injected_faults",
            "Calls touched by fault injection (kind: latency, error, error_after_apply)",
            metrics.faults.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Time to handle a call, injected latency included",
            metrics.duration.clone(),
        );
        metrics
    }
}

/// The request layer; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RpcLayer {
    metrics: Option<ParticipantMetrics>,
    traced: bool,
}

impl RpcLayer {
    /// Spans when OTLP export is on (see [`super::span_sink`]); metrics when given.
    pub fn new(metrics: Option<ParticipantMetrics>) -> Self {
        RpcLayer { metrics, traced: super::span_sink().is_some() }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.metrics.clone(), traced: self.traced }
    }
}

/// A service behind [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Option<ParticipantMetrics>,
    traced: bool,
}

impl<S, B, R> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The instance that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        // Health checks and reflection are not the participant's business calls.
        let observed = (self.traced || self.metrics.is_some()) && !path.starts_with("/grpc.");
        if !observed {
            return Box::pin(inner.call(request));
        }
        let method = path.trim_start_matches('/').to_owned();
        let span = self.traced.then(|| server_span(&method, &request));
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = inner.call(request);
        Box::pin(async move {
            let result = match &span {
                Some(span) => call.instrument(span.clone()).await,
                None => call.await,
            };
            if let Ok(response) = &result {
                let (code, error) = outcome(response.headers());
                if let Some(span) = &span {
                    span.record("rpc.grpc.status_code", code as i32);
                    if let Some(error) = &error {
                        span.record("otel.status_code", "ERROR");
                        span.record("error.type", error.as_str());
                    }
                }
                if let Some(metrics) = metrics {
                    record(&metrics, method, code, error, response.extensions().get::<InjectedFault>(), started);
                }
            }
            result
        })
    }
}

/// A server span for one call, child of the caller's `traceparent` when it sent one.
fn server_span<B>(method: &str, request: &http::Request<B>) -> tracing::Span {
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    let header = |key: &str| request.headers().get(key).and_then(|v| v.to_str().ok()).unwrap_or("");
    let span = tracing::info_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
        rpc.grpc.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        sagaflow.idempotency_key = header(IDEMPOTENCY_KEY),
        sagaflow.attempt = header(SAGAFLOW_ATTEMPT),
    );
    if let Some(parent) = super::propagation::extract_http(request.headers()) {
        use opentelemetry::trace::TraceContextExt as _;
        // Fails only when the span is disabled by the log filter: then there is nothing to parent.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    span
}

/// The call's gRPC code and, for a failure, its error name. A handler's error comes back as a
/// trailers-only response, so `grpc-status` is in the headers; a success has none there.
fn outcome(headers: &http::HeaderMap) -> (Code, Option<String>) {
    let Some(status) = tonic::Status::from_header_map(headers) else { return (Code::Ok, None) };
    if status.code() == Code::Ok {
        return (Code::Ok, None);
    }
    let name = match status.get_details_error_info() {
        Some(info) if !info.reason.is_empty() => info.reason,
        _ => format!("Grpc.{:?}", status.code()),
    };
    (status.code(), Some(name))
}

fn record(
    metrics: &ParticipantMetrics,
    method: String,
    code: Code,
    error: Option<String>,
    fault: Option<&InjectedFault>,
    started: Instant,
) {
    metrics.duration.get_or_create(&MethodLabels { method: method.clone() }).observe(started.elapsed().as_secs_f64());
    if let Some(fault) = fault {
        metrics.faults.get_or_create(&FaultLabels { method: method.clone(), kind: fault.as_str().to_owned() }).inc();
    }
    if let Some(error) = error {
        metrics.errors.get_or_create(&ErrorLabels { method: method.clone(), error }).inc();
    }
    metrics.calls.get_or_create(&CallLabels { method, code: format!("{code:?}") }).inc();
}
