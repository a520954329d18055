//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata: read from a request's
//! headers, and written for an outgoing call.

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header names.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Reads W3C headers through any header map.
struct Headers<'a, F: Fn(&str) -> Option<&'a str>>(F);

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Headers<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The remote span a request names in its `traceparent` (and `tracestate`), if valid.
pub fn extract_http(headers: &http::HeaderMap) -> Option<SpanContext> {
    extract_with(|key| headers.get(key).and_then(|v| v.to_str().ok()))
}

/// The remote span a gRPC request's metadata names, if valid.
pub fn extract_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<SpanContext> {
    extract_with(|key| metadata.get(key).and_then(|v| v.to_str().ok()))
}

/// The remote span named by a `traceparent` value and an optional `tracestate`.
pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    extract_with(|key| match key {
        TRACEPARENT => Some(traceparent),
        TRACESTATE => tracestate,
        _ => None,
    })
}

fn extract_with<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
    let context = TraceContextPropagator::new().extract(&Headers(get));
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The `traceparent` value naming `span` (version 00).
pub fn traceparent(span: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", span.trace_id(), span.span_id(), span.trace_flags().to_u8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_traceparent() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = parse(value, Some("vendor=x")).expect("valid");
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(span.trace_state().header(), "vendor=x");
        assert_eq!(traceparent(&span), value);
        assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
        assert!(parse("garbage", None).is_none());
    }
}
