//! A small OTLP/gRPC trace receiver (the collector's `TraceService`) on a real socket: the
//! processes under test export to it, and tests read back what arrived.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span, ids in lowercase hex (an empty parent for a root).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the process that sent it.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client (OTLP's numbering).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// 2 for an error status.
    pub status_code: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Debug, Default, Clone)]
struct Sink {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<Mutex<u64>>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        status_code: span.status.map_or(0, |s| s.code),
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano,
                    });
                }
            }
        }
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).extend(received);
        *self.requests.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The receiver; it serves until dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    sink: Sink,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on `addr` (port 0 for any free port).
    pub async fn start(addr: SocketAddr) -> anyhow::Result<OtlpReceiver> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let sink = Sink::default();
        let service = TraceServiceServer::new(sink.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Ok(OtlpReceiver { addr, sink, server })
    }

    /// The value of `OTEL_EXPORTER_OTLP_ENDPOINT` that reaches this receiver.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.sink.spans.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> u64 {
        *self.sink.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }

    /// Waits until `done` holds for the spans of `trace_id` (checked every 100 ms), or `limit`
    /// passes; returns the spans then.
    pub async fn wait_for(
        &self,
        trace_id: &str,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What is wrong with a trace as one connected tree under `root_parent` (the caller's span):
/// spans whose parent is neither another span of the trace nor `root_parent`. Empty when the
/// trace is connected.
pub fn disconnected(spans: &[ReceivedSpan], root_parent: &str) -> Vec<String> {
    let ids: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id != root_parent && !ids.contains(s.parent_span_id.as_str()))
        .map(|s| format!("{} '{}' (parent {:?}) from {}", s.span_id, s.name, s.parent_span_id, s.service))
        .collect()
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
