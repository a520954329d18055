//! `sagaflow bench`: drives the real engine against a real PostgreSQL and measures it.
//!
//! # What runs
//! - The saga: [`DEFINITION`], a four-Task order saga built into the binary (ReserveInventory
//!   → ChargePayment → CreateShipment → CommitInventory, the order saga without its fraud
//!   screening and retry jitter). On `--path compensate` every order's address lacks a
//!   postal code, so CreateShipment fails with `Fulfillment.AddressRejected` (a definite
//!   refusal) and Refund then Release run: five Task calls, ending `COMPENSATED`.
//! - Participants: `echo` ([`echo`]: in-process gRPC services that answer at once and write
//!   nothing, with reflection and health, to measure the orchestrator alone) or `demo` (the
//!   real payment, inventory and fulfillment services in-process on PostgreSQL, in a
//!   database of their own, `<bench database>_parts`, when the server lets the benchmark
//!   create one, else in their own schemas of the benchmark database; 64 SKUs restocked for
//!   every order).
//! - Replicas: `--replicas R` engines in this process sharing the database, each with its own
//!   owner name, pool, invoker (HTTP/2 connections) and background loops. Starts go
//!   round-robin; each saga is awaited on the engine that started it through the engine's
//!   completion watcher (falling back to `Engine::wait` if it does not fire), so awaiting adds
//!   no database reads to the commit count.
//! - Load: a closed loop of `--concurrency C` workers, each starting the next order as soon as
//!   its previous one settled. A warm-up (`--warmup`, default N/10 capped at 300) runs first
//!   and is not counted.
//!
//! # Figures (one line per run, or one JSON object with `--output json`)
//! - sagas/s: measured orders / wall time of the measured window.
//! - p50/p99/max latency: from the `Engine::start` call to the terminal status.
//! - commits per Task state: Δ`pg_stat_database.xact_commit` of the benchmark database over
//!   the measured window / (orders × Task calls per saga: 4 on success, 5 on compensate).
//!   It counts every transaction of that database, read-only ones included: the engines'
//!   background loops (a few per second per replica) and, on `demo` when the participants
//!   had to share the database, the participants' commits (`commits_include_participants`).
//!   Counters are read after `--stats-wait` (default 11 s): PostgreSQL 15 backends that go idle
//!   less than 1 s after their last report only report again after 10 s idle. The engines
//!   stop before that wait, so their idle loops during it are not counted.
//! - WAL bytes per saga: Δ`pg_current_wal_lsn()` / orders. Server-wide: on `demo` it includes
//!   the participants' writes, and anything else the server does meanwhile.
//! - peak RSS: `VmHWM` of this process (engines, and the in-process participants too).
//!
//! # Safety
//! `--database-url` is required. A database holding anything (a schema other than an empty
//! `public`, or any table) is refused unless `--allow-existing-data`; the benchmark then drops
//! only what it created (the schemas `sagaflow`, `payment`, `inventory`, `fulfillment`,
//! `fraud` and `public._sqlx_migrations` when they did not exist before). `--create-database`
//! makes a throwaway `sagaflow_bench_<random>` on that server and drops it afterwards.
//!
//! # Scale
//! `--preload-completed N` copies the warm-up's finished sagas (history included) until the
//! database holds N completed executions before measuring ([`preload`]); `--keep-data` keeps
//! the database afterwards, so later runs reuse it with `--allow-existing-data`.
//!
//! - [`echo`]: the echo participants.
//! - [`database`]: the refusal, throwaway databases, statistics and clean-up.

pub mod database;
pub mod echo;
mod preload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sagaflow_language::interpreter::Status;
use sagaflow_participants::{Backend, ServeOptions, ServiceKind};
use sagaflow_proto::inventory::v1::RestockRequest;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::{Engine, EngineConfig, StartRequest, settled};
use crate::invoker::grpc::GrpcInvoker;
use crate::store::open_store_with;

/// The benchmark saga (see the module documentation).
pub const DEFINITION: &str = include_str!("bench.asl.json");
/// The name it is registered under.
pub const DEFINITION_NAME: &str = "sagaflow-bench";
/// SKUs the demo inventory is stocked with; orders spread over them.
const SKUS: usize = 64;
/// How long one saga may take before the run fails.
const SAGA_LIMIT: Duration = Duration::from_secs(120);
/// Connections per replica's pool.
const POOL_SIZE: u32 = 16;
/// Connections of the demo participants' pool.
const PARTICIPANTS_POOL_SIZE: u32 = 24;

/// Which participants answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Participants {
    /// In-process gRPC services that answer at once and write nothing.
    Echo,
    /// The real participants, in-process, on PostgreSQL.
    Demo,
}

/// Which way every saga goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaPath {
    /// Four Tasks, SUCCEEDED.
    Success,
    /// The third Task fails; two compensations run; COMPENSATED.
    Compensate,
}

impl Participants {
    fn label(self) -> &'static str {
        match self {
            Participants::Echo => "echo",
            Participants::Demo => "demo",
        }
    }
}

impl SagaPath {
    fn label(self) -> &'static str {
        match self {
            SagaPath::Success => "success",
            SagaPath::Compensate => "compensate",
        }
    }

    /// Task calls per saga: the forward Tasks that ran and the compensations.
    fn task_states(self) -> u32 {
        match self {
            SagaPath::Success => 4,
            SagaPath::Compensate => 5,
        }
    }

    fn expected(self) -> Status {
        match self {
            SagaPath::Success => Status::Succeeded,
            SagaPath::Compensate => Status::Compensated,
        }
    }
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub database_url: String,
    pub orders: usize,
    /// `None`: N/10, at least 1, at most 300.
    pub warmup: Option<usize>,
    pub concurrency: usize,
    pub participants: Participants,
    pub path: SagaPath,
    pub replicas: usize,
    pub allow_existing_data: bool,
    pub create_database: bool,
    /// Pause before each statistics reading.
    pub stats_wait: Duration,
    /// Completed executions the database must hold before the measured window.
    pub preload_completed: Option<i64>,
    /// Keep what the benchmark created (database, schemas) for later runs.
    pub keep_data: bool,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub participants: Participants,
    pub path: SagaPath,
    pub orders: usize,
    pub warmup: usize,
    pub concurrency: usize,
    pub replicas: usize,
    pub elapsed_seconds: f64,
    pub sagas_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub task_states_per_saga: u32,
    pub commits: i64,
    pub commits_per_saga: f64,
    pub commits_per_task_state: f64,
    /// True on `demo` when the participants share the benchmark database.
    pub commits_include_participants: bool,
    pub wal_bytes_per_saga: f64,
    pub peak_rss_bytes: u64,
    /// Completed executions in the database when the measured window began.
    pub completed_before: i64,
    /// Of those, copies this run made (`--preload-completed`).
    pub preloaded_copies: i64,
    /// Size of the executions and history tables (indexes and TOAST included) at that moment.
    pub history_table_bytes: i64,
    /// Sagas that ended otherwise than the path expects (the run fails if any did).
    pub unexpected: usize,
}

impl Figures {
    /// The one-line human form.
    pub fn line(&self) -> String {
        format!(
            "bench {}/{} orders={} concurrency={} replicas={}: {:.0} sagas/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, \
             {:.2} commits/Task state{}, {:.1} KiB WAL/saga, peak RSS {:.0} MiB{}{}",
            self.participants.label(),
            self.path.label(),
            self.orders,
            self.concurrency,
            self.replicas,
            self.sagas_per_second,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.commits_per_task_state,
            if self.commits_include_participants { " (participants included)" } else { "" },
            self.wal_bytes_per_saga / 1024.0,
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            if self.completed_before >= 10_000 {
                format!(
                    ", on {} completed executions ({:.1} GiB of tables)",
                    self.completed_before,
                    self.history_table_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
                )
            } else {
                String::new()
            },
            if self.unexpected > 0 { format!(", {} UNEXPECTED outcomes", self.unexpected) } else { String::new() },
        )
    }
}

/// Run the benchmark once, cleaning up what it created whatever happens.
pub async fn run(options: BenchOptions) -> anyhow::Result<Figures> {
    let tag = Uuid::now_v7().simple().to_string();
    let tag = &tag[tag.len() - 10..];
    if options.create_database {
        let name = format!("sagaflow_bench_{tag}");
        let url = database::create_database(&options.database_url, &name).await?;
        let result = measure(&options, &url, tag).await;
        if options.keep_data {
            eprintln!("kept the benchmark database: {}", database::redact(&url));
            return result;
        }
        let dropped = database::drop_database(&options.database_url, &name).await;
        let figures = result?;
        dropped?;
        Ok(figures)
    } else {
        let before = database::check_empty(&options.database_url, options.allow_existing_data).await?;
        let result = measure(&options, &options.database_url, tag).await;
        if options.keep_data {
            return result;
        }
        let cleaned = database::clean_up(&options.database_url, &before).await;
        let figures = result?;
        let dropped = cleaned?;
        tracing::debug!(?dropped, "cleaned up");
        Ok(figures)
    }
}

/// Where the demo participants keep their data, and whether the benchmark created it.
struct PartsDatabase {
    url: String,
    created: Option<String>,
}

async fn measure(options: &BenchOptions, url: &str, tag: &str) -> anyhow::Result<Figures> {
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut stats = database::Stats::open(url).await?;
    let mut parts_db = None;
    let mut parts_backend = None;
    let setup = async {
        let endpoints = match options.participants {
            Participants::Echo => {
                let addr = echo::start(cancel.clone(), &mut tasks).await?;
                format!("http://{addr}")
            }
            Participants::Demo => {
                let db = parts_database(url).await;
                let (addr, backend) = start_demo(&db.url, &cancel, &mut tasks).await?;
                parts_db = Some(db);
                parts_backend = Some(backend);
                let endpoint = format!("http://{addr}");
                restock(&endpoint, options.orders + warmup_of(options)).await?;
                endpoint
            }
        };
        let participants: BTreeMap<String, String> =
            ["payment", "inventory", "fulfillment"].iter().map(|p| ((*p).to_owned(), endpoints.clone())).collect();
        let mut engines = Vec::new();
        for i in 0..options.replicas.max(1) {
            let store = open_store_with(url, POOL_SIZE).await.context("opening the orchestrator's store")?;
            if i == 0 {
                store.migrate().await.context("applying the orchestrator's migrations")?;
            }
            let invoker = Arc::new(GrpcInvoker::new(participants.clone(), Default::default()));
            let config = EngineConfig { owner: format!("bench-{tag}-{i}"), ..EngineConfig::default() };
            let engine = Engine::new(store, invoker, config);
            engine
                .definitions()
                .register(DEFINITION_NAME, DEFINITION)
                .await
                .map_err(|e| anyhow::anyhow!("registering the benchmark saga: {e}"))?;
            engine.spawn_loops();
            engines.push(engine);
        }
        anyhow::Ok(engines)
    }
    .await;
    let result = match setup {
        Ok(engines) => {
            let result = drive_and_read(options, url, &engines, &mut stats, tag, parts_db.as_ref()).await;
            // Already stopped unless the run failed early; stopping twice is harmless.
            for engine in &engines {
                engine.shutdown().await;
            }
            result
        }
        Err(e) => Err(e),
    };
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(backend) = parts_backend {
        backend.close().await;
    }
    drop(stats);
    if let Some(PartsDatabase { created: Some(name), .. }) = parts_db
        && let Err(e) = database::drop_database(url, &name).await
    {
        tracing::warn!(error = %e, "could not drop the participants' database {name}");
    }
    result
}

/// A database of their own for the demo participants if the server allows it (so that the
/// benchmark database's commit count is the orchestrator's alone), else the benchmark's.
async fn parts_database(url: &str) -> PartsDatabase {
    let mut conn = match <sqlx::PgConnection as sqlx::Connection>::connect(url).await {
        Ok(c) => c,
        Err(_) => return PartsDatabase { url: url.to_owned(), created: None },
    };
    let name: Result<String, _> = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await;
    drop(conn);
    let Ok(name) = name else { return PartsDatabase { url: url.to_owned(), created: None } };
    let parts = format!("{name}_parts");
    match database::create_database(url, &parts).await {
        Ok(parts_url) => PartsDatabase { url: parts_url, created: Some(parts) },
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not create a database for the participants; they share the benchmark database, \
                 so its commit count includes theirs"
            );
            PartsDatabase { url: url.to_owned(), created: None }
        }
    }
}

/// The real payment, inventory and fulfillment services on one loopback port.
async fn start_demo(
    url: &str,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<(std::net::SocketAddr, Backend)> {
    let services = vec![ServiceKind::Payment, ServiceKind::Inventory, ServiceKind::Fulfillment];
    let backend =
        Backend::open_with(url, PARTICIPANTS_POOL_SIZE).await.context("opening the participants' database")?;
    sagaflow_participants::migrate(&backend, &services).await.context("migrating the participants' schemas")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = backend.clone();
    let stop = cancel.child_token();
    tasks.spawn(async move {
        if let Err(e) = sagaflow_participants::serve(serving, ServeOptions::new(services), listener, stop).await {
            tracing::error!(error = %e, "the demo participants stopped");
        }
    });
    Ok((addr, backend))
}

/// Put enough stock on every benchmark SKU for `orders` orders of one item.
async fn restock(endpoint: &str, orders: usize) -> anyhow::Result<()> {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_owned())?.connect().await?;
    let mut inventory = InventoryClient::new(channel);
    let quantity = u32::try_from(orders / SKUS + 2).context("too many orders to stock")?;
    for sku in 0..SKUS {
        let mut request = tonic::Request::new(RestockRequest { sku: sku_name(sku), quantity });
        let key = format!("bench-restock-{}-{sku}", Uuid::now_v7().simple());
        request.metadata_mut().insert(crate::invoker::grpc::IDEMPOTENCY_KEY, key.parse()?);
        inventory.restock(request).await.with_context(|| format!("restocking {}", sku_name(sku)))?;
    }
    Ok(())
}

fn sku_name(i: usize) -> String {
    format!("BENCH-SKU-{i:02}")
}

fn warmup_of(options: &BenchOptions) -> usize {
    options.warmup.unwrap_or((options.orders / 10).clamp(1, 300))
}

/// The input of order `i`.
fn order(tag: &str, i: usize, path: SagaPath) -> (String, Value) {
    let order_id = format!("bench-{tag}-{i}");
    let postal_code = match path {
        SagaPath::Success => "12345",
        SagaPath::Compensate => "",
    };
    let input = json!({
        "orderId": order_id,
        "customerId": format!("cust-{}", i % 1000),
        "items": [{ "sku": sku_name(i % SKUS), "quantity": 1, "unitPriceCents": 1999 }],
        "amountCents": 1999,
        "currency": "USD",
        "paymentToken": "tok_ok",
        "shippingAddress": { "line1": "1 Bench Street", "city": "Springfield", "postalCode": postal_code, "country": "US" }
    });
    (order_id, input)
}

async fn drive_and_read(
    options: &BenchOptions,
    url: &str,
    engines: &[Engine],
    stats: &mut database::Stats,
    tag: &str,
    parts: Option<&PartsDatabase>,
) -> anyhow::Result<Figures> {
    let warmup = warmup_of(options);
    let concurrency = options.concurrency.max(1);
    drive(engines, 0, warmup, concurrency, tag, options.path).await?;
    let preloaded = preload::preload(url, options.preload_completed.unwrap_or(0)).await?;
    let before = stats.read(options.stats_wait).await?;
    let started = Instant::now();
    let mut outcomes = drive(engines, warmup, options.orders, concurrency, tag, options.path).await?;
    let elapsed = started.elapsed();
    // The window ends with the last saga: the engines' loops would otherwise go on committing
    // through the wait for the counters, which was 0.01 commits per Task state at one saga in
    // flight (2,000 orders; 11 s of idle claims and inbox polls).
    for engine in engines {
        engine.shutdown().await;
    }
    let after = stats.read(options.stats_wait).await?;

    let unexpected = outcomes.iter().filter(|(_, status)| *status != options.path.expected()).count();
    if let Some((_, status)) = outcomes.iter().find(|(_, status)| *status != options.path.expected()) {
        tracing::error!(%status, expected = %options.path.expected(), "a saga ended unexpectedly");
    }
    outcomes.sort_by_key(|(latency, _)| *latency);
    let latencies: Vec<Duration> = outcomes.into_iter().map(|(latency, _)| latency).collect();
    let n = options.orders.max(1) as f64;
    let commits = after.commits - before.commits;
    let task_states = options.path.task_states();
    Ok(Figures {
        participants: options.participants,
        path: options.path,
        orders: options.orders,
        warmup,
        concurrency,
        replicas: engines.len(),
        elapsed_seconds: elapsed.as_secs_f64(),
        sagas_per_second: options.orders as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: ms(percentile(&latencies, 50.0)),
        p99_ms: ms(percentile(&latencies, 99.0)),
        max_ms: ms(latencies.last().copied().unwrap_or_default()),
        task_states_per_saga: task_states,
        commits,
        commits_per_saga: commits as f64 / n,
        commits_per_task_state: commits as f64 / (n * f64::from(task_states)),
        commits_include_participants: parts.is_some_and(|p| p.created.is_none()),
        wal_bytes_per_saga: (after.wal - before.wal) / n,
        peak_rss_bytes: peak_rss().unwrap_or(0),
        completed_before: preloaded.completed,
        preloaded_copies: preloaded.copied,
        history_table_bytes: preloaded.table_bytes,
        unexpected,
    })
}

/// Run orders `first..first + count` with `concurrency` in flight; each one's latency and
/// final status.
async fn drive(
    engines: &[Engine],
    first: usize,
    count: usize,
    concurrency: usize,
    tag: &str,
    path: SagaPath,
) -> anyhow::Result<Vec<(Duration, Status)>> {
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + count;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count.max(1)) {
        let next = next.clone();
        let engines = engines.to_vec();
        let tag = tag.to_owned();
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return anyhow::Ok(done);
                }
                let engine = &engines[i % engines.len()];
                done.push(one_saga(engine, &tag, i, path).await?);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("a benchmark worker panicked")??);
    }
    Ok(all)
}

/// Start order `i` and await its end on the engine that started (and so owns) it.
async fn one_saga(engine: &Engine, tag: &str, i: usize, path: SagaPath) -> anyhow::Result<(Duration, Status)> {
    let (order_id, input) = order(tag, i, path);
    let id = Uuid::now_v7();
    // Watch before starting, so the end cannot be announced before anyone listens.
    let mut receiver = {
        let mut watchers = engine.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.entry(id).or_insert_with(|| watch::channel(Status::Running).0).subscribe()
    };
    let started = Instant::now();
    let request = StartRequest {
        definition: DEFINITION_NAME.to_owned(),
        version: None,
        input,
        execution_id: Some(id),
        idempotency_key: Some(order_id),
    };
    let outcome = async {
        engine.start(request).await.with_context(|| format!("starting order {i}"))?;
        loop {
            let status = *receiver.borrow_and_update();
            if settled(status) {
                return anyhow::Ok(status);
            }
            // The local actor announces the end; if it stops without (a lost lease), ask.
            match tokio::time::timeout(Duration::from_secs(5), receiver.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(engine.wait(id, SAGA_LIMIT).await?),
            }
        }
    }
    .await;
    let latency = started.elapsed();
    drop(receiver);
    engine.forget_watcher(id);
    let status = outcome?;
    if !settled(status) {
        anyhow::bail!("order {i} did not settle within {} s (still {status})", SAGA_LIMIT.as_secs());
    }
    Ok((latency, status))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// This process's peak resident set (`VmHWM` in `/proc/self/status`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_saga_is_valid() {
        let compiled = sagaflow_language::compile(DEFINITION);
        assert!(compiled.is_ok(), "{:?}", compiled.err().map(|d| d.to_string()));
    }

    #[test]
    fn percentiles_and_rss() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert!(peak_rss().is_some_and(|b| b > 0));
    }

    #[test]
    fn the_compensate_path_has_no_postal_code() {
        let (_, input) = order("t", 3, SagaPath::Compensate);
        assert_eq!(input["shippingAddress"]["postalCode"], "");
        assert_eq!(input["items"][0]["sku"], "BENCH-SKU-03");
    }
}
