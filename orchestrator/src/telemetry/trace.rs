//! A saga's spans, built from its history as it is committed: one span for the execution, one
//! per state visit, one per call attempt, and for a rollback one per compensation with its
//! attempts. Spans are emitted when they end, straight to the export queue.
//!
//! Every span id is derived from the execution id and the history event that opened the span,
//! and the trace id is the caller's (or the execution id), so a replica that takes an
//! execution over rebuilds the open spans from the stored history and finishes them under the
//! same ids: a saga that survives a crash stays one connected trace.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{KeyValue, StringValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use sagaflow_language::interpreter::{Event, EventKind, HistoryEvent, WorkId};
use sagaflow_participants::kit::telemetry::SpanSink;
use sagaflow_participants::kit::telemetry::propagation;
use serde_json::Value;
use tonic::metadata::AsciiMetadataValue;
use uuid::Uuid;

use super::call::CallTrace;

/// Kinds of derived span ids (mixed into the hash, so two kinds never share an id).
const EXECUTION: u64 = 1;
const STATE: u64 = 2;
const ATTEMPT: u64 = 3;
const ROLLBACK: u64 = 4;
const COMPENSATION: u64 = 5;
const REDRIVE: u64 = 6;
const REPAIR: u64 = 7;

/// The caller's trace context as persisted with the execution (W3C header values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceParent {
    /// The context a request's metadata carries, if it carries a valid one (normalized).
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<TraceParent> {
        let span = propagation::extract_metadata(metadata)?;
        let state = span.trace_state().header();
        Some(TraceParent {
            traceparent: propagation::traceparent(&span),
            tracestate: (!state.is_empty()).then_some(state),
        })
    }

    fn span_context(&self) -> Option<SpanContext> {
        propagation::parse(&self.traceparent, self.tracestate.as_deref())
    }
}

/// A span opened by a history event and not yet ended.
#[derive(Debug)]
struct Open {
    id: SpanId,
    parent: SpanId,
    start: SystemTime,
    name: Cow<'static, str>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    /// The last error seen inside the span (an attempt's, a state's failure).
    error: Option<String>,
    retries: u32,
}

/// The spans of one execution; see the module documentation.
#[derive(Debug)]
pub(crate) struct SagaTrace {
    sink: &'static SpanSink,
    execution: Uuid,
    execution_attr: StringValue,
    definition: Arc<str>,
    version: u32,
    trace_id: TraceId,
    flags: TraceFlags,
    trace_state: TraceState,
    /// The caller's span: the execution span's (remote) parent.
    caller: Option<SpanId>,
    execution_span: SpanId,
    execution_start: Option<SystemTime>,
    /// The execution span was emitted (the execution ended once; a redrive runs on).
    execution_done: bool,
    /// The parent of top-level states and rollbacks: the execution span, or the open segment.
    segment: SpanId,
    /// The segment span (`redrive`, `repair`) of a run after the execution span was sent.
    redrive: Option<Open>,
    states: HashMap<String, Open>,
    attempts: HashMap<WorkId, Open>,
    rollback: Option<Open>,
    compensations: HashMap<String, Open>,
    /// False while rebuilding from a stored history: spans are tracked, not emitted.
    live: bool,
}

impl SagaTrace {
    /// The trace of `execution`. `None` when the caller asked not to sample it.
    pub(crate) fn new(
        sink: &'static SpanSink,
        execution: Uuid,
        definition: &str,
        version: u32,
        parent: Option<&TraceParent>,
    ) -> Option<SagaTrace> {
        let caller = parent.and_then(TraceParent::span_context);
        if caller.as_ref().is_some_and(|c| !c.is_sampled()) {
            return None;
        }
        let trace_id = caller.as_ref().map_or_else(|| TraceId::from_bytes(*execution.as_bytes()), |c| c.trace_id());
        let execution_span = derive(execution, EXECUTION, 0);
        Some(SagaTrace {
            sink,
            execution,
            execution_attr: StringValue::from(execution.to_string()),
            definition: Arc::from(definition),
            version,
            trace_id,
            flags: TraceFlags::SAMPLED,
            trace_state: caller.as_ref().map(|c| c.trace_state().clone()).unwrap_or_default(),
            caller: caller.map(|c| c.span_id()),
            execution_span,
            execution_start: None,
            execution_done: false,
            segment: execution_span,
            redrive: None,
            states: HashMap::new(),
            attempts: HashMap::new(),
            rollback: None,
            compensations: HashMap::new(),
            live: true,
        })
    }

    /// Replays a stored history (after a takeover): open spans are rebuilt, none is emitted.
    pub(crate) fn rebuild(&mut self, history: &[HistoryEvent]) {
        self.live = false;
        self.observe(history, None);
        self.live = true;
        for attempt in self.attempts.values_mut() {
            attempt.attributes.push(KeyValue::new("sagaflow.reissued", true));
        }
    }

    /// The W3C context to send with call `id` (its attempt span), if that attempt is open.
    pub(crate) fn call_trace(&self, id: WorkId) -> Option<CallTrace> {
        let attempt = self.attempts.get(&id)?;
        let span = SpanContext::new(self.trace_id, attempt.id, self.flags, false, self.trace_state.clone());
        let traceparent = AsciiMetadataValue::try_from(propagation::traceparent(&span)).ok()?;
        let header = self.trace_state.header();
        let tracestate = if header.is_empty() { None } else { AsciiMetadataValue::try_from(header).ok() };
        Some(CallTrace { traceparent, tracestate })
    }

    /// Applies committed history events. `at` is the wall-clock time of a step observed live
    /// (all its events share it); without it each event's own (millisecond) timestamp is used.
    pub(crate) fn observe(&mut self, events: &[HistoryEvent], at: Option<SystemTime>) {
        for event in events {
            let t = at.unwrap_or_else(|| millis(event.timestamp_ms));
            self.apply(event, t);
        }
    }

    fn apply(&mut self, event: &HistoryEvent, t: SystemTime) {
        use EventKind as K;
        let scope = event.state.as_deref().unwrap_or("");
        match event.kind {
            K::ExecutionStarted => self.execution_start = Some(t),
            K::PassStateEntered
            | K::TaskStateEntered
            | K::ChoiceStateEntered
            | K::WaitStateEntered
            | K::SucceedStateEntered
            | K::FailStateEntered
            | K::ParallelStateEntered
            | K::MapStateEntered => self.enter(event, scope, t),
            K::PassStateExited
            | K::TaskStateExited
            | K::ChoiceStateExited
            | K::WaitStateExited
            | K::SucceedStateExited
            | K::ParallelStateExited
            | K::MapStateExited => {
                self.close_descendants(scope, t);
                if let Some(mut open) = self.states.remove(scope) {
                    // Errors that a retry got past do not make the state fail.
                    open.error = None;
                    self.end(open, t, Status::Ok);
                }
            }
            K::ParallelStateFailed | K::MapStateFailed => {
                let error = detail(&event.details, "error");
                if let Some(open) = self.states.get_mut(scope) {
                    open.error = error;
                }
            }
            K::TaskRetryScheduled | K::StateRetryScheduled => {
                if let Some(open) = self.states.get_mut(scope) {
                    open.retries += 1;
                }
            }
            K::TaskScheduled => {
                let parent = self.states.get(scope).map_or(self.segment, |s| s.id);
                self.schedule(event, scope, parent, t, false);
            }
            K::TaskSucceeded | K::CompensationSucceeded => {
                if let Some(id) = work_id(event) {
                    self.answer(id, t, None, false);
                }
                if event.kind == K::CompensationSucceeded
                    && let Some(open) = self.compensations.remove(scope)
                {
                    self.end(open, t, Status::Ok);
                }
            }
            K::TaskFailed | K::TaskTimedOut | K::CompensationFailed => {
                let error = detail(&event.details, "error").unwrap_or_else(|| "States.TaskFailed".to_owned());
                let unknown = event.details.get("outcomeUnknown").and_then(Value::as_bool).unwrap_or(false);
                if let Some(id) = work_id(event) {
                    self.answer(id, t, Some(error.clone()), unknown);
                }
                let owner = if event.kind == K::CompensationFailed {
                    self.compensations.get_mut(scope)
                } else {
                    self.states.get_mut(scope)
                };
                if let Some(open) = owner {
                    open.error = Some(error);
                }
            }
            K::CompensationStarted => {
                let error = detail(&event.details, "error");
                self.close_all_states(t, error.as_deref());
                if self.rollback.is_none() {
                    let id = derive(self.execution, ROLLBACK, event.id);
                    let mut open = self.open(id, self.segment, t, Cow::Borrowed("rollback"), SpanKind::Internal);
                    open.error = error;
                    self.rollback = Some(open);
                }
            }
            // A repair of a parked rollback: the execution, rollback and segment spans ended
            // when it parked (see `park`; a replica rebuilding the history did not see that, so
            // it drops them unsent). The rest runs in a `repair` segment with a new rollback.
            K::CompensationRetried | K::CompensationSkipped | K::CompensationResolved => {
                self.rollback = None;
                self.redrive = None;
                self.execution_done = true;
                self.segment = self.execution_span;
                self.resume(derive(self.execution, REPAIR, event.id), "repair", t);
                let id = derive(self.execution, ROLLBACK, event.id);
                self.rollback = Some(self.open(id, self.segment, t, Cow::Borrowed("rollback"), SpanKind::Internal));
            }
            K::CompensationScheduled => {
                if !self.compensations.contains_key(scope) {
                    let parent = self.rollback.as_ref().map_or(self.segment, |r| r.id);
                    let id = derive(self.execution, COMPENSATION, event.id);
                    let mut open = self.open(
                        id,
                        parent,
                        t,
                        Cow::Owned(format!("compensate {}", name_of(scope))),
                        SpanKind::Internal,
                    );
                    open.attributes.push(KeyValue::new("sagaflow.state", scope.to_owned()));
                    if let Some(forward) = detail(&event.details, "compensates") {
                        open.attributes.push(KeyValue::new("sagaflow.compensates", forward));
                    }
                    self.compensations.insert(scope.to_owned(), open);
                }
                let parent = self.compensations.get(scope).map_or(self.segment, |c| c.id);
                self.schedule(event, scope, parent, t, true);
            }
            K::CompensationStuck => {
                if let Some(mut open) = self.compensations.remove(scope) {
                    open.attributes.push(KeyValue::new("sagaflow.stuck", true));
                    let error = detail(&event.details, "error").or(open.error.take());
                    open.error = Some(error.unwrap_or_else(|| "Sagaflow.CompensationStuck".to_owned()));
                    self.end(open, t, Status::Unset);
                }
            }
            K::ExecutionRedriven => self.resume(derive(self.execution, REDRIVE, event.id), "redrive", t),
            K::ExecutionSucceeded
            | K::ExecutionFailed
            | K::ExecutionTimedOut
            | K::ExecutionCancelled
            | K::ExecutionTerminated
            | K::ExecutionCompensated => self.finish(event, t),
            _ => {}
        }
    }

    /// The execution runs on after it ended or parked: later spans go under a new segment span
    /// (`redrive`, `repair`), child of the execution span, which was already sent.
    fn resume(&mut self, id: SpanId, name: &'static str, t: SystemTime) {
        let open = self.open(id, self.execution_span, t, Cow::Borrowed(name), SpanKind::Internal);
        self.segment = id;
        self.redrive = Some(open);
    }

    /// The execution parked in COMPENSATION_STUCK (no history event says so; the engine does):
    /// the rollback and the execution span end, so the trace is complete while an operator
    /// looks at it. A repair continues it under a `repair` span.
    pub(crate) fn park(&mut self, t: SystemTime) {
        if let Some(mut open) = self.rollback.take() {
            open.error = Some("Sagaflow.CompensationStuck".to_owned());
            self.end(open, t, Status::Unset);
        }
        let parked = HistoryEvent {
            id: 0,
            timestamp_ms: 0,
            kind: EventKind::ExecutionFailed,
            state: None,
            details: serde_json::json!({ "error": "Sagaflow.CompensationStuck" }),
            cause: None,
        };
        self.finish_spans(&parked, t, "COMPENSATION_STUCK".to_owned());
    }

    fn open(&self, id: SpanId, parent: SpanId, start: SystemTime, name: Cow<'static, str>, kind: SpanKind) -> Open {
        Open {
            id,
            parent,
            start,
            name,
            kind,
            attributes: vec![KeyValue::new("sagaflow.execution.id", self.execution_attr.clone())],
            error: None,
            retries: 0,
        }
    }

    fn enter(&mut self, event: &HistoryEvent, scope: &str, t: SystemTime) {
        // A state left open in the same thread failed and was caught (possibly by itself: a
        // Catch may lead back to the state it guards), or was a Fail state.
        let thread = thread_of(scope);
        let ended: Vec<String> = self.states.keys().filter(|s| thread_of(s) == thread).cloned().collect();
        for s in ended {
            self.close_descendants(&s, t);
            if let Some(open) = self.states.remove(&s) {
                self.end(open, t, Status::Unset);
            }
        }
        let parent = parent_state(thread).and_then(|p| self.states.get(p)).map_or(self.segment, |p| p.id);
        let id = derive(self.execution, STATE, event.id);
        let mut open = self.open(id, parent, t, Cow::Owned(name_of(scope).to_owned()), SpanKind::Internal);
        open.attributes.push(KeyValue::new("sagaflow.state", scope.to_owned()));
        let kind = event.kind.as_str();
        open.attributes.push(KeyValue::new("sagaflow.state.type", kind.strip_suffix("StateEntered").unwrap_or(kind)));
        if event.kind == EventKind::FailStateEntered {
            open.error = detail(&event.details, "error").or_else(|| Some("States.Fail".to_owned()));
        }
        self.states.insert(scope.to_owned(), open);
    }

    fn schedule(&mut self, event: &HistoryEvent, scope: &str, parent: SpanId, t: SystemTime, compensation: bool) {
        let Some(call) = event.details.get("callId").and_then(Value::as_u64) else { return };
        let resource = event.details.get("resource").and_then(Value::as_str).unwrap_or("");
        let (participant, service, method) = match crate::invoker::grpc::parse_resource(resource) {
            Ok(r) => (r.participant, r.service, r.method),
            Err(_) => (String::new(), String::new(), resource.to_owned()),
        };
        let id = derive(self.execution, ATTEMPT, event.id);
        let name = if service.is_empty() { method.clone() } else { format!("{service}/{method}") };
        let mut open = self.open(id, parent, t, Cow::Owned(name), SpanKind::Client);
        let attempt = event.details.get("attempt").and_then(Value::as_i64).unwrap_or(1);
        open.attributes.extend([
            KeyValue::new("sagaflow.state", scope.to_owned()),
            KeyValue::new("sagaflow.attempt", attempt),
            KeyValue::new("sagaflow.participant", participant),
            KeyValue::new("sagaflow.compensation", compensation),
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
        ]);
        if let Some(key) = detail(&event.details, "idempotencyKey") {
            open.attributes.push(KeyValue::new("sagaflow.idempotency_key", key));
        }
        self.attempts.insert(call, open);
    }

    fn answer(&mut self, id: WorkId, t: SystemTime, error: Option<String>, outcome_unknown: bool) {
        if let Some(mut open) = self.attempts.remove(&id) {
            if outcome_unknown {
                open.attributes.push(KeyValue::new("sagaflow.outcome_unknown", true));
            }
            let status = if error.is_none() { Status::Ok } else { Status::Unset };
            open.error = error;
            self.end(open, t, status);
        }
    }

    /// Ends the states nested in a Parallel or Map state (`{scope}#...`).
    fn close_descendants(&mut self, scope: &str, t: SystemTime) {
        let nested: Vec<String> = self
            .states
            .keys()
            .filter(|s| s.len() > scope.len() && s.starts_with(scope) && s.as_bytes()[scope.len()] == b'#')
            .cloned()
            .collect();
        for s in nested {
            if let Some(open) = self.states.remove(&s) {
                self.end(open, t, Status::Unset);
            }
        }
    }

    fn close_all_states(&mut self, t: SystemTime, error: Option<&str>) {
        for (_, mut open) in std::mem::take(&mut self.states) {
            if open.error.is_none() {
                open.error = error.map(str::to_owned);
            }
            self.end(open, t, Status::Unset);
        }
    }

    /// The execution ended: every open span ends, then the execution's own (or the segment's).
    fn finish(&mut self, event: &HistoryEvent, t: SystemTime) {
        let kind = event.kind.as_str();
        let status = kind.strip_prefix("Execution").unwrap_or(kind).to_ascii_uppercase();
        self.finish_spans(event, t, status);
    }

    fn finish_spans(&mut self, event: &HistoryEvent, t: SystemTime, status: String) {
        let error = detail(&event.details, "error");
        for (_, mut open) in std::mem::take(&mut self.attempts) {
            open.attributes.push(KeyValue::new("sagaflow.abandoned", true));
            self.end(open, t, Status::Unset);
        }
        self.close_all_states(t, error.as_deref());
        for (_, open) in std::mem::take(&mut self.compensations) {
            self.end(open, t, Status::Unset);
        }
        if let Some(open) = self.rollback.take() {
            self.end(open, t, Status::Unset);
        }
        if let Some(mut open) = self.redrive.take() {
            open.attributes.push(KeyValue::new("sagaflow.status", status.clone()));
            open.error.clone_from(&error);
            self.segment = self.execution_span;
            self.end(open, t, Status::Unset);
        }
        if self.execution_done {
            return;
        }
        self.execution_done = true;
        let mut open = self.open(
            self.execution_span,
            self.caller.unwrap_or(SpanId::INVALID),
            self.execution_start.unwrap_or(t),
            Cow::Owned(format!("saga {}", self.definition)),
            SpanKind::Internal,
        );
        open.attributes.extend([
            KeyValue::new("sagaflow.definition", StringValue::from(self.definition.clone())),
            KeyValue::new("sagaflow.definition.version", i64::from(self.version)),
            KeyValue::new("sagaflow.status", status),
        ]);
        open.error = error;
        let is_success = event.kind == EventKind::ExecutionSucceeded;
        self.end(open, t, if is_success { Status::Ok } else { Status::Unset });
    }

    fn end(&self, mut open: Open, end: SystemTime, status: Status) {
        if !self.live {
            return;
        }
        let status = match open.error.take() {
            Some(error) => {
                open.attributes.push(KeyValue::new("error.type", error.clone()));
                Status::error(error)
            }
            None => status,
        };
        if open.retries > 0 {
            open.attributes.push(KeyValue::new("sagaflow.retries", i64::from(open.retries)));
        }
        self.sink.emit(SpanData {
            span_context: SpanContext::new(self.trace_id, open.id, self.flags, false, self.trace_state.clone()),
            parent_span_id: open.parent,
            parent_span_is_remote: self.caller.is_some_and(|c| c == open.parent),
            span_kind: open.kind,
            name: open.name,
            start_time: open.start,
            end_time: end.max(open.start),
            attributes: open.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.sink.scope().clone(),
        });
    }
}

/// A span id derived from the execution, the span's kind and the history event that opened it.
fn derive(execution: Uuid, kind: u64, event: u64) -> SpanId {
    let (high, low) = execution.as_u64_pair();
    let mut h = mix(high ^ mix(low ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    h = mix(h ^ event);
    SpanId::from_bytes(if h == 0 { 1u64 } else { h }.to_be_bytes())
}

/// SplitMix64's finalizer: a cheap, stable, well-spread 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn millis(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn detail(details: &Value, key: &str) -> Option<String> {
    details.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The call a task or compensation answer recorded.
fn work_id(event: &HistoryEvent) -> Option<WorkId> {
    match &event.cause {
        Some(Event::TaskSucceeded { id, .. } | Event::TaskFailed { id, .. }) => Some(*id),
        _ => event.details.get("callId").and_then(Value::as_u64),
    }
}

/// The thread prefix of a scoped state: `Fan#1[0].` for `Fan#1[0].Charge`, empty at top level.
fn thread_of(scope: &str) -> &str {
    scope.rfind("].").map_or("", |i| &scope[..i + 2])
}

/// The Parallel or Map state a thread prefix belongs to: `Fan` for `Fan#1[0].`.
fn parent_state(thread: &str) -> Option<&str> {
    let inner = thread.strip_suffix('.')?;
    inner.rfind('#').map(|i| &inner[..i])
}

/// The state's own name: `Charge` for `Fan#1[0].Charge`.
fn name_of(scope: &str) -> &str {
    &scope[thread_of(scope).len()..]
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::SpanProcessor;
    use serde_json::json;

    use super::*;

    /// Collects every span it is handed.
    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<SpanData>>);

    impl SpanProcessor for Collect {
        fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().expect("lock").push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn collector() -> (Arc<Collect>, &'static SpanSink) {
        let collect = Arc::new(Collect::default());
        let sink = SpanSink::new(collect.clone(), InstrumentationScope::builder("test").build());
        (collect, Box::leak(Box::new(sink)))
    }

    fn event(id: u64, kind: EventKind, state: Option<&str>, details: Value, cause: Option<Event>) -> HistoryEvent {
        HistoryEvent {
            id,
            timestamp_ms: 1_700_000_000_000 + id as i64,
            kind,
            state: state.map(str::to_owned),
            details,
            cause,
        }
    }

    /// An order-like saga: A succeeds, B fails, A is compensated.
    fn history(execution: Uuid) -> Vec<HistoryEvent> {
        use EventKind as K;
        let key = |s: &str| format!("{execution}:{s}#1");
        let call = |id: u64, s: &str, method: &str| json!({ "callId": id, "resource": format!("grpc://p/pkg.S/{method}"), "attempt": 1, "idempotencyKey": key(s) });
        vec![
            event(1, K::ExecutionStarted, None, json!({}), None),
            event(2, K::TaskStateEntered, Some("A"), Value::Null, None),
            event(3, K::TaskScheduled, Some("A"), call(1, "A", "Do"), None),
            event(
                4,
                K::TaskSucceeded,
                Some("A"),
                json!({ "callId": 1 }),
                Some(Event::TaskSucceeded { id: 1, output: json!({}) }),
            ),
            event(5, K::TaskStateExited, Some("A"), Value::Null, None),
            event(6, K::TaskStateEntered, Some("B"), Value::Null, None),
            event(7, K::TaskScheduled, Some("B"), call(2, "B", "Do"), None),
            event(
                8,
                K::TaskFailed,
                Some("B"),
                json!({ "callId": 2, "error": "X.Failed" }),
                Some(Event::TaskFailed { id: 2, error: "X.Failed".into(), cause: None, outcome_unknown: false }),
            ),
            event(9, K::CompensationStarted, None, json!({ "error": "X.Failed" }), None),
            event(10, K::CompensationScheduled, Some("A"), call(3, "A", "Undo"), None),
            event(
                11,
                K::CompensationSucceeded,
                Some("A"),
                Value::Null,
                Some(Event::TaskSucceeded { id: 3, output: json!({}) }),
            ),
            event(12, K::ExecutionCompensated, None, json!({ "error": "X.Failed" }), None),
        ]
    }

    fn tree(spans: &[SpanData]) -> Vec<(String, SpanId, SpanId)> {
        let mut tree: Vec<_> =
            spans.iter().map(|s| (s.name.to_string(), s.span_context.span_id(), s.parent_span_id)).collect();
        tree.sort_by_key(|(_, id, _)| u64::from_be_bytes(id.to_bytes()));
        tree
    }

    #[test]
    fn a_history_becomes_one_connected_tree_under_the_caller() {
        let (collect, sink) = collector();
        let execution = Uuid::now_v7();
        let caller = TraceParent {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        };
        let mut trace = SagaTrace::new(sink, execution, "order", 3, Some(&caller)).expect("sampled");
        trace.observe(&history(execution), None);
        let spans = collect.0.lock().expect("lock").clone();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            ["pkg.S/Do", "A", "pkg.S/Do", "B", "pkg.S/Undo", "compensate A", "rollback", "saga order"],
            "in the order they ended"
        );
        let by_name = |n: &str| spans.iter().rev().find(|s| s.name == n).expect(n);
        let root = by_name("saga order");
        assert_eq!(root.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(root.parent_span_is_remote);
        assert_eq!(format!("{}", root.span_context.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
        let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
        assert_eq!(ids.len(), spans.len(), "no span id twice");
        for span in &spans {
            assert!(span.parent_span_id == root.parent_span_id || ids.contains(&span.parent_span_id), "{span:?}");
        }
        assert_eq!(by_name("A").parent_span_id, root.span_context.span_id());
        assert_eq!(by_name("compensate A").parent_span_id, by_name("rollback").span_context.span_id());
        assert_eq!(by_name("pkg.S/Undo").parent_span_id, by_name("compensate A").span_context.span_id());
        assert!(matches!(&by_name("B").status, Status::Error { description } if description == "X.Failed"));
        assert!(matches!(by_name("A").status, Status::Ok));
    }

    #[test]
    fn a_replica_that_takes_over_at_any_event_finishes_the_same_spans() {
        let execution = Uuid::now_v7();
        let events = history(execution);
        let (whole, sink) = collector();
        SagaTrace::new(sink, execution, "order", 1, None).expect("trace").observe(&events, None);
        let whole = tree(&whole.0.lock().expect("lock"));
        for cut in 0..=events.len() {
            // The first owner ends what it saw; the next rebuilds from the history and goes on.
            let (first, sink) = collector();
            SagaTrace::new(sink, execution, "order", 1, None).expect("trace").observe(&events[..cut], None);
            let (second, sink) = collector();
            let mut next = SagaTrace::new(sink, execution, "order", 1, None).expect("trace");
            next.rebuild(&events[..cut]);
            next.observe(&events[cut..], None);
            let mut both = first.0.lock().expect("lock").clone();
            both.extend(second.0.lock().expect("lock").iter().cloned());
            assert_eq!(tree(&both), whole, "taken over after event {cut}");
        }
    }

    #[test]
    fn scopes_split_into_threads_and_parents() {
        assert_eq!(thread_of("Charge"), "");
        assert_eq!(thread_of("Fan#1[0].Charge"), "Fan#1[0].");
        assert_eq!(thread_of("A#1[0].B#2[3].C"), "A#1[0].B#2[3].");
        assert_eq!(parent_state("A#1[0].B#2[3]."), Some("A#1[0].B"));
        assert_eq!(parent_state(""), None);
        assert_eq!(name_of("A#1[0].B#2[3].C"), "C");
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        assert_eq!(derive(id, STATE, 4), derive(id, STATE, 4));
        assert_ne!(derive(id, STATE, 4), derive(id, ATTEMPT, 4));
        assert_ne!(derive(id, STATE, 4), derive(id, STATE, 5));
        assert_ne!(derive(id, STATE, 4), derive(Uuid::from_u128(2), STATE, 4));
    }
}
