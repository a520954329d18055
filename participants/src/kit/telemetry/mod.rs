//! Process telemetry that the participants and the orchestrator share: the log subscriber
//! (human or JSON lines on stderr), OTLP trace export over gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace context in gRPC metadata
//! ([`propagation`]), the `/metrics` endpoint ([`metrics_http`]) and the participants' own
//! request spans and metrics ([`rpc`]).
//!
//! With no OTLP endpoint nothing is exported and no span is built: [`span_sink`] is `None`
//! and the request layer passes calls straight through, so tracing costs nothing when off.

pub mod metrics_http;
pub mod propagation;
pub mod rpc;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::ValueEnum;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor,
};
use serde::Deserialize;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, for terminals.
    #[default]
    Human,
    /// One JSON object per event (fields flattened, with the current span's fields), for log
    /// shippers.
    Json,
}

/// Spans buffered for export when `OTEL_BSP_MAX_QUEUE_SIZE` is unset. The SDK's 2,048 fills in
/// well under a second at the orchestrator's full rate (about fifteen spans per saga), and a
/// full queue drops spans.
const DEFAULT_MAX_QUEUE: usize = 65_536;

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `service.name` of exported spans unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: &'static str,
    pub log_format: LogFormat,
    /// Default `RUST_LOG`-style filter (e.g. `info`), used when `RUST_LOG` is unset; noisy
    /// transport crates are quieted on top of it.
    pub directives: String,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "cannot export traces to OTEL_EXPORTER_OTLP_ENDPOINT (use a gRPC collector address such as http://127.0.0.1:4317)"
    )]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running telemetry; [`Telemetry::shutdown`] flushes the spans still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter (waits at most a few seconds).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("warning: could not flush traces on shutdown: {err}");
        }
    }
}

/// Whether the standard variables ask for OTLP export: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set and non-empty, and `OTEL_SDK_DISABLED` not `true`.
pub fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the log subscriber and, when [`otlp_configured`], the OTLP exporter (which must be
/// created inside a tokio runtime: its gRPC channel lives there). Call once per process; a
/// second call keeps the first subscriber.
pub fn init(options: &TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    let provider = if otlp_configured() { Some(exporter(options.service_name)?) } else { None };
    // `tracing` spans (the participants' request spans) reach OTLP through this layer; the
    // orchestrator's saga spans are built directly (see `SpanSink`).
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("sagaflow"))
            // Spans describe calls, not code: no source locations, threads or busy/idle times.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    });
    let _ = tracing_subscriber::registry()
        .with(env_filter(&options.directives))
        .with(fmt_layer(options.log_format))
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

/// Installs only the log subscriber, for commands that never export traces.
pub fn init_logging(format: LogFormat, directives: &str) {
    let _ = tracing_subscriber::registry().with(env_filter(directives)).with(fmt_layer(format)).try_init();
}

fn fmt_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
    }
}

fn env_filter(directives: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{directives},h2=warn,tower=warn,hyper=warn,sqlx=warn,opentelemetry=warn,opentelemetry_sdk=warn"
        ))
    })
}

/// Builds the OTLP pipeline and publishes its [`SpanSink`].
fn exporter(default_service: &'static str) -> Result<SdkTracerProvider, TelemetryError> {
    let mut exporter =
        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(Duration::from_secs(10)).build()?;
    let resource = if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        Resource::builder().build()
    } else {
        Resource::builder().with_service_name(default_service).build()
    };
    exporter.set_resource(&resource);
    let mut batch = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batch = batch.with_max_queue_size(DEFAULT_MAX_QUEUE);
    }
    let processor = Arc::new(BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build());
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(SharedProcessor(processor.clone()))
        .build();
    let _ = SINK.set(SpanSink::new(
        processor,
        InstrumentationScope::builder(default_service).with_version(env!("CARGO_PKG_VERSION")).build(),
    ));
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    Ok(provider)
}

static SINK: OnceLock<SpanSink> = OnceLock::new();

/// Where finished spans built by hand go: the same batch queue and exporter as the tracer
/// provider's. The orchestrator builds its saga spans this way because it must choose their
/// ids (derived from the execution, so any replica names a span the same) and their times
/// (taken from the history), which the SDK's tracer does not allow.
#[derive(Debug)]
pub struct SpanSink {
    processor: Arc<dyn SpanProcessor>,
    scope: InstrumentationScope,
}

impl SpanSink {
    /// A sink feeding `processor` (the exporter's batch queue; a collecting one in tests).
    pub fn new(processor: Arc<dyn SpanProcessor>, scope: InstrumentationScope) -> SpanSink {
        SpanSink { processor, scope }
    }

    /// Queues a finished span for export (never blocks; a full queue drops it).
    pub fn emit(&self, span: SpanData) {
        self.processor.on_end(span);
    }

    /// The instrumentation scope to put in hand-built spans.
    pub fn scope(&self) -> &InstrumentationScope {
        &self.scope
    }
}

/// The process's span sink: `Some` only when OTLP export is on.
pub fn span_sink() -> Option<&'static SpanSink> {
    SINK.get()
}

/// Lets the tracer provider and the [`SpanSink`] share one batch processor.
#[derive(Debug)]
struct SharedProcessor(Arc<BatchSpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    // The exporter got the resource before the processor was built (`set_resource` needs
    // `&mut`, which a shared processor cannot give).
}
