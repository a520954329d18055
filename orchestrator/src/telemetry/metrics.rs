//! The orchestrator's Prometheus metrics (names, meanings and labels in
//! docs/observability.md). Counters are updated where things happen; gauges that describe the
//! whole database (executions stuck in compensation, the connection pool) are read at each
//! scrape.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sagaflow_language::interpreter::{Call, EventKind, HistoryEvent, Status};
use sagaflow_participants::kit::telemetry::metrics_http::{self, Render};

use crate::store::Store;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DefinitionLabels {
    definition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    definition: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    participant: String,
    method: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    participant: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskErrorLabels {
    participant: String,
    method: String,
    error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompensationLabels {
    definition: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Saga durations: 5 ms to about 80 minutes.
fn saga_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 21))
}

/// Call and claim latencies: 0.25 ms to about 16 s.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 17))
}

/// One resource's metric handles, resolved once so a call records without allocating. The
/// histograms are made on first use, so a method never called as a compensation (or never
/// failing) shows no empty series.
#[derive(Debug)]
struct CallHandles {
    /// By kind (forward, compensation), then outcome (ok, error).
    durations: [[OnceLock<Histogram>; 2]; 2],
    retries: Counter,
    participant: String,
    method: String,
}

/// The engine's metrics.
#[derive(Debug)]
pub struct EngineMetrics {
    started: Family<DefinitionLabels, Counter>,
    finished: Family<FinishedLabels, Counter>,
    saga_duration: HistogramFamily<FinishedLabels>,
    in_flight: Gauge,
    task_duration: HistogramFamily<TaskLabels>,
    task_errors: Family<TaskErrorLabels, Counter>,
    retries: Family<MethodLabels, Counter>,
    rollbacks: Family<DefinitionLabels, Counter>,
    compensations: Family<CompensationLabels, Counter>,
    stuck: Gauge,
    takeovers: Counter,
    leases_lost: Counter,
    claim_delay: Histogram,
    pool: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    calls: RwLock<HashMap<String, Arc<CallHandles>>>,
}

impl EngineMetrics {
    /// Creates the metrics and registers them (prefix `sagaflow_`).
    pub fn register(registry: &mut Registry) -> Arc<EngineMetrics> {
        let m = EngineMetrics {
            started: Family::default(),
            finished: Family::default(),
            saga_duration: Family::new_with_constructor(saga_histogram),
            in_flight: Gauge::default(),
            task_duration: Family::new_with_constructor(call_histogram),
            task_errors: Family::default(),
            retries: Family::default(),
            rollbacks: Family::default(),
            compensations: Family::default(),
            stuck: Gauge::default(),
            takeovers: Counter::default(),
            leases_lost: Counter::default(),
            claim_delay: call_histogram(),
            pool: Family::default(),
            pool_max: Gauge::default(),
            calls: RwLock::new(HashMap::new()),
        };
        let r = registry.sub_registry_with_prefix("sagaflow");
        r.register("executions_started", "Executions started, by definition", m.started.clone());
        r.register(
            "executions_finished",
            "Executions that reached a final status, by definition and status",
            m.finished.clone(),
        );
        r.register(
            "execution_duration_seconds",
            "Start to final status, by definition and status",
            m.saga_duration.clone(),
        );
        r.register("executions_in_flight", "Executions this replica owns and is driving now", m.in_flight.clone());
        r.register(
            "task_duration_seconds",
            "One call attempt to a participant, by participant, method, kind (forward, compensation) and outcome (ok, error)",
            m.task_duration.clone(),
        );
        r.register("task_errors", "Failed call attempts by participant, method and error name", m.task_errors.clone());
        r.register(
            "task_retries",
            "Call attempts after the first (Retry), by participant and method",
            m.retries.clone(),
        );
        r.register("rollbacks_started", "Executions that began compensating, by definition", m.rollbacks.clone());
        r.register(
            "compensations",
            "Compensation steps settled, by definition and outcome (succeeded, stuck, skipped, resolved)",
            m.compensations.clone(),
        );
        r.register(
            "executions_compensation_stuck",
            "Executions parked in COMPENSATION_STUCK, waiting for an operator (whole database)",
            m.stuck.clone(),
        );
        r.register("lease_takeovers", "Executions this replica claimed from the database", m.takeovers.clone());
        r.register(
            "leases_lost",
            "Executions this replica was driving when another took them over",
            m.leases_lost.clone(),
        );
        r.register(
            "claim_delay_seconds",
            "From an execution becoming claimable (its lease expired, or a request arrived) to this replica claiming it",
            m.claim_delay.clone(),
        );
        r.register("db_pool_connections", "Database connections by state (idle, in_use)", m.pool.clone());
        r.register("db_pool_max_connections", "The database pool's size limit", m.pool_max.clone());
        Arc::new(m)
    }

    pub(crate) fn execution_started(&self, definition: &str) {
        self.started.get_or_create(&DefinitionLabels { definition: definition.to_owned() }).inc();
    }

    /// A final status, or COMPENSATION_STUCK (counted by the gauge, not here).
    pub(crate) fn execution_settled(&self, definition: &str, status: Status, took: Duration) {
        if !status.is_terminal() {
            return;
        }
        let labels = FinishedLabels { definition: definition.to_owned(), status: status.to_string() };
        self.saga_duration.get_or_create(&labels).observe(took.as_secs_f64());
        self.finished.get_or_create(&labels).inc();
    }

    pub(crate) fn actor_started(&self) {
        self.in_flight.inc();
    }

    pub(crate) fn actor_stopped(&self) {
        self.in_flight.dec();
    }

    /// Counts what a committed step's history says about compensations.
    pub(crate) fn observe_history(&self, definition: &str, events: &[HistoryEvent]) {
        for event in events {
            let outcome = match event.kind {
                EventKind::CompensationStarted => {
                    self.rollbacks.get_or_create(&DefinitionLabels { definition: definition.to_owned() }).inc();
                    continue;
                }
                EventKind::CompensationSucceeded => "succeeded",
                EventKind::CompensationStuck => "stuck",
                EventKind::CompensationSkipped => "skipped",
                EventKind::CompensationResolved => "resolved",
                _ => continue,
            };
            self.compensations.get_or_create(&CompensationLabels { definition: definition.to_owned(), outcome }).inc();
        }
    }

    /// Records one finished call attempt.
    pub(crate) fn call_finished(&self, call: &Call, took: Duration, error: Option<&str>) {
        let handles = self.handles(&call.resource);
        let kind = usize::from(call.compensates.is_some());
        if call.attempt > 1 {
            handles.retries.inc();
        }
        let outcome = usize::from(error.is_some());
        handles.durations[kind][outcome]
            .get_or_init(|| {
                self.task_duration.get_or_create_owned(&TaskLabels {
                    participant: handles.participant.clone(),
                    method: handles.method.clone(),
                    kind: ["forward", "compensation"][kind],
                    outcome: ["ok", "error"][outcome],
                })
            })
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.task_errors
                .get_or_create(&TaskErrorLabels {
                    participant: handles.participant.clone(),
                    method: handles.method.clone(),
                    error: error.to_owned(),
                })
                .inc();
        }
    }

    fn handles(&self, resource: &str) -> Arc<CallHandles> {
        if let Some(found) = self.calls.read().unwrap_or_else(|e| e.into_inner()).get(resource) {
            return found.clone();
        }
        let (participant, method) = match crate::invoker::grpc::parse_resource(resource) {
            Ok(r) => (r.participant, format!("{}/{}", r.service, r.method)),
            Err(_) => (String::new(), resource.to_owned()),
        };
        let handles = Arc::new(CallHandles {
            durations: Default::default(),
            retries: self
                .retries
                .get_or_create_owned(&MethodLabels { participant: participant.clone(), method: method.clone() }),
            participant,
            method,
        });
        self.calls.write().unwrap_or_else(|e| e.into_inner()).insert(resource.to_owned(), handles.clone());
        handles
    }

    pub(crate) fn takeover(&self, claimable_for: Option<Duration>) {
        self.takeovers.inc();
        if let Some(delay) = claimable_for {
            self.claim_delay.observe(delay.as_secs_f64());
        }
    }

    pub(crate) fn lease_lost(&self) {
        self.leases_lost.inc();
    }

    /// Reads the database-wide gauges (a failed read keeps the last value).
    async fn refresh(&self, store: &dyn Store) {
        if let Ok(stuck) = store.count_with_status(Status::CompensationStuck).await {
            self.stuck.set(stuck);
        }
        if let Some(pool) = store.pool_stats() {
            self.pool.get_or_create(&PoolLabels { state: "idle" }).set(i64::from(pool.idle));
            self.pool
                .get_or_create(&PoolLabels { state: "in_use" })
                .set(i64::from(pool.size.saturating_sub(pool.idle)));
            self.pool_max.set(i64::from(pool.max));
        }
    }
}

/// What one scrape renders: the database-wide gauges refreshed, then the registry.
pub fn render(registry: Arc<Registry>, metrics: Arc<EngineMetrics>, store: Arc<dyn Store>) -> Render {
    Arc::new(move || {
        let (registry, metrics, store) = (registry.clone(), metrics.clone(), store.clone());
        Box::pin(async move {
            // A slow database must not hang the scrape: the gauges keep their last values.
            let _ = tokio::time::timeout(Duration::from_secs(2), metrics.refresh(store.as_ref())).await;
            metrics_http::encode(&registry)
        })
    })
}
