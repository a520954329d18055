//! The soak run (issue 5): steady load for a chosen duration with a fault every so often,
//! sampling throughput, each replica's resident memory (`VmRSS` of `/proc/PID/status`) and
//! the databases' size, so a leak or unbounded growth shows as a trend. The same checks as
//! the fault suite run at the end. Replica 0 is never killed, so its memory is one curve
//! over the whole run; the other replicas take the kills.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::fault_suite::faults::{FaultKind, Injected, Injector};
use crate::fault_suite::orders::{self, Limits, Outcome, Replicas};
use crate::fault_suite::{Environment, checks, report};

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    /// Orders in flight at once (each placed as soon as the previous one settles).
    pub concurrency: usize,
    /// At most this many orders started per second, if set.
    pub rate: Option<f64>,
    pub replicas: usize,
    pub lease: Duration,
    /// A fault of a random kind this often; none when zero.
    pub fault_every: Duration,
    /// A sample (one table row) this often.
    pub sample_every: Duration,
    pub seed: u64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            duration: Duration::from_secs(600),
            concurrency: 16,
            rate: None,
            replicas: 2,
            lease: Duration::from_secs(3),
            fault_every: Duration::from_secs(30),
            sample_every: Duration::from_secs(30),
            seed: 1,
        }
    }
}

/// Sizes of the databases at one moment, in bytes.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub orchestrator: i64,
    pub participants: i64,
    /// Orchestrator tables (with their indexes and TOAST).
    pub tables: BTreeMap<String, i64>,
}

/// One row of the soak's table.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    /// Sagas settled since the start.
    pub settled: usize,
    /// Sagas settled per second since the previous sample.
    pub throughput: f64,
    pub in_flight: usize,
    /// Replica name → resident memory in KiB (none while it is down).
    pub rss_kib: Vec<(String, Option<u64>)>,
    /// None while the database is down.
    pub sizes: Option<Sizes>,
    pub faults: usize,
}

/// What a soak run measured and found.
#[derive(Debug)]
pub struct SoakReport {
    pub options: SoakOptions,
    pub samples: Vec<Sample>,
    pub start_sizes: Sizes,
    pub end_sizes: Sizes,
    pub faults: Vec<Injected>,
    pub outcomes: Vec<Outcome>,
    pub checks: checks::Checks,
    /// Peak resident memory per replica (`VmHWM`) at the end, KiB.
    pub peak_kib: Vec<(String, Option<u64>)>,
    pub elapsed: Duration,
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn sizes(orchestrator_url: &str, participants_url: &str) -> anyhow::Result<Sizes> {
    let mut db = PgConnection::connect(orchestrator_url).await?;
    let orchestrator: i64 =
        sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut db).await?;
    let mut tables = BTreeMap::new();
    for table in ["executions", "history", "timers", "inbox"] {
        let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(format!("sagaflow.{table}"))
            .fetch_one(&mut db)
            .await?;
        tables.insert(table.to_owned(), size);
    }
    db.close().await?;
    let mut parts = PgConnection::connect(participants_url).await?;
    let participants: i64 =
        sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut parts).await?;
    parts.close().await?;
    Ok(Sizes { orchestrator, participants, tables })
}

fn mib(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Run the soak and report it. Errors are failures of the harness, not violations.
pub async fn run(options: SoakOptions) -> anyhow::Result<SoakReport> {
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    // Little logging: a 10-minute run must not measure the cost of writing logs.
    let mut env = Environment::start(options.replicas, options.lease, Some("warn".into())).await?;
    env.restock(10_000_000).await?;
    let skus = Environment::skus();
    let before = crate::invariants::stock_before(&env.cluster, &skus).await?;
    let replicas = Replicas::new(&env.replica_urls())?;
    let (orchestrator_url, participants_url) =
        (env.cluster.orchestrator_db.clone(), env.cluster.participants_db.clone());
    let start_sizes = sizes(&orchestrator_url, &participants_url).await?;

    let (stop, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let next_index = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let next_slot = Arc::new(tokio::sync::Mutex::new(Instant::now()));
    let run_id = format!("soak{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let limits = Limits { acknowledge: Duration::from_secs(120) };
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..options.concurrency {
        let (replicas, stop_rx, next_index, outcomes, next_slot, run_id) = (
            replicas.clone(),
            stop_rx.clone(),
            next_index.clone(),
            outcomes.clone(),
            next_slot.clone(),
            run_id.clone(),
        );
        let (rate, seed) = (options.rate, options.seed.wrapping_add(w as u64 + 1));
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            while !*stop_rx.borrow() {
                if let Some(rate) = rate {
                    let slot = {
                        let mut next = next_slot.lock().await;
                        let slot = (*next).max(Instant::now());
                        *next = slot + Duration::from_secs_f64(1.0 / rate.max(0.001));
                        slot
                    };
                    tokio::time::sleep_until(slot.into()).await;
                }
                let i = next_index.fetch_add(1, Ordering::Relaxed);
                let (kind, request) = orders::order(i, &run_id, &mut rng);
                let outcome = orders::place_and_wait(replicas.clone(), kind, request, limits, stop_rx.clone()).await;
                outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(outcome);
            }
        });
    }

    // Faults and samples from one loop: the injector holds the processes, and the sampler
    // reads their ids from it.
    let mut kinds: Vec<FaultKind> = Vec::new();
    let mut injector = Injector::new(&mut env.cluster, env.pg.clone(), env.proxies.clone(), rng.r#gen(), started);
    injector.killable_replicas = (1..options.replicas).collect();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = options.sample_every;
    let mut next_fault = if options.fault_every.is_zero() { options.duration * 2 } else { options.fault_every };
    let mut last_settled = 0;
    let mut last_at = Duration::ZERO;
    loop {
        let now = started.elapsed();
        if now >= options.duration {
            break;
        }
        let wake = next_sample.min(next_fault).min(options.duration);
        tokio::time::sleep_until((started + wake).into()).await;
        let now = started.elapsed();
        if now >= next_fault && now < options.duration {
            if kinds.is_empty() {
                kinds = FaultKind::ALL.to_vec();
                if options.replicas < 2 {
                    kinds.retain(|k| *k != FaultKind::ReplicaKill);
                }
                kinds.shuffle(&mut rng);
            }
            if let Some(kind) = kinds.pop() {
                injector.inject(kind).await?;
            }
            next_fault += options.fault_every;
        }
        if now >= next_sample {
            let settled = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
            let at = started.elapsed();
            let span = (at - last_at).as_secs_f64().max(0.001);
            let rss_kib = injector
                .replica_pids()
                .into_iter()
                .map(|(n, pid)| (n, pid.and_then(|p| proc_status_kib(p, "VmRSS:"))))
                .collect();
            let sample = Sample {
                at,
                settled,
                throughput: (settled - last_settled) as f64 / span,
                in_flight: replicas.in_flight.load(Ordering::Relaxed),
                rss_kib,
                sizes: sizes(&orchestrator_url, &participants_url).await.ok(),
                faults: injector.log.len(),
            };
            eprintln!("{}", sample_line(&sample));
            last_settled = settled;
            last_at = at;
            samples.push(sample);
            next_sample += options.sample_every;
        }
    }
    let _ = stop.send(true);
    injector.settle().await?;
    let peak_kib = injector
        .replica_pids()
        .into_iter()
        .map(|(n, pid)| (n, pid.and_then(|p| proc_status_kib(p, "VmHWM:"))))
        .collect();
    let faults = std::mem::take(&mut injector.log);
    let crashes = std::mem::take(&mut injector.crashes);
    drop(injector);
    // Orders cut short by the stop, acknowledged or not, may have started sagas that settle on
    // their own: place each again (the same order id names the same saga) and follow it to
    // its end, so the checks see final statuses.
    while workers.join_next().await.is_some() {}
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let (_keep, follow) = watch::channel(false);
    for o in outcomes.iter_mut().filter(|o| !orders::settled(&o.status)) {
        let again = orders::place_and_wait(replicas.clone(), o.kind, o.request.clone(), limits, follow.clone()).await;
        if o.execution_id.is_none() {
            o.execution_id = again.execution_id;
        }
        o.status = again.status;
        o.problems.extend(again.problems);
    }
    let end_sizes = sizes(&orchestrator_url, &participants_url).await?;
    let mut problems: Vec<String> = outcomes.iter().flat_map(|o| o.problems.clone()).collect();
    problems.extend(orders::restart_all(&replicas, &outcomes).await);
    let checks = checks::run(&env.cluster, &outcomes, &before, problems, crashes).await?;
    env.shutdown(checks.violations() > 0);
    Ok(SoakReport {
        options,
        samples,
        start_sizes,
        end_sizes,
        faults,
        outcomes,
        checks,
        peak_kib,
        elapsed: began.elapsed(),
    })
}

fn kib_text(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "down".into())
}

fn sample_line(s: &Sample) -> String {
    let rss: Vec<String> = s.rss_kib.iter().map(|(n, k)| format!("{n} {} MiB", kib_text(*k))).collect();
    let db = s
        .sizes
        .as_ref()
        .map(|z| format!("orchestrator db {} MiB, participants db {} MiB", mib(z.orchestrator), mib(z.participants)))
        .unwrap_or_else(|| "database down".into());
    format!(
        "soak: {:>5}s  {:>7} settled  {:>7.1}/s  in flight {:>3}  {}  {db}  faults {}",
        s.at.as_secs(),
        s.settled,
        s.throughput,
        s.in_flight,
        rss.join(", "),
        s.faults
    )
}

impl SoakReport {
    pub fn violations(&self) -> usize {
        self.checks.violations()
    }

    /// Database growth per settled saga, in bytes: (orchestrator, participants).
    pub fn growth_per_saga(&self) -> (f64, f64) {
        let sagas = self.outcomes.len().max(1) as f64;
        (
            (self.end_sizes.orchestrator - self.start_sizes.orchestrator) as f64 / sagas,
            (self.end_sizes.participants - self.start_sizes.participants) as f64 / sagas,
        )
    }

    pub fn render(&self) -> String {
        let o = &self.options;
        let names: Vec<String> =
            self.samples.first().map(|s| s.rss_kib.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
        let mut header = vec!["t (s)".to_owned(), "settled".into(), "sagas/s".into(), "in flight".into()];
        header.extend(names.iter().map(|n| format!("{n} RSS MiB")));
        header.extend(["orch db MiB".to_owned(), "parts db MiB".into(), "faults".into()]);
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header(header.clone());
        for s in &self.samples {
            let mut row = vec![
                s.at.as_secs().to_string(),
                s.settled.to_string(),
                format!("{:.1}", s.throughput),
                s.in_flight.to_string(),
            ];
            row.extend(s.rss_kib.iter().map(|(_, k)| kib_text(*k)));
            match &s.sizes {
                Some(z) => row.extend([mib(z.orchestrator), mib(z.participants)]),
                None => row.extend(["down".to_owned(), "down".into()]),
            }
            row.push(s.faults.to_string());
            t.add_row(row);
        }
        for c in 1..header.len() {
            if let Some(col) = t.column_mut(c) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let (orch, parts) = self.growth_per_saga();
        let table_growth: Vec<String> = self
            .end_sizes
            .tables
            .iter()
            .map(|(name, end)| {
                let start = self.start_sizes.tables.get(name).copied().unwrap_or(0);
                format!("{name} {:.0} B", (end - start) as f64 / self.outcomes.len().max(1) as f64)
            })
            .collect();
        let peaks: Vec<String> = self.peak_kib.iter().map(|(n, k)| format!("{n} {} MiB", kib_text(*k))).collect();
        let total_secs = o.duration.as_secs_f64().max(0.001);
        format!(
            "soak: {:?} at concurrency {}{}, {} replicas (replica-0 never killed), a fault every {:?}, seed {}\n\
             {} sagas settled, {:.1} sagas/s on average over the run\n{}\n\n{}\n\
             database growth per saga: orchestrator {:.0} B, participants {:.0} B (by table: {})\n\
             peak resident memory (VmHWM, current processes): {}\n\n\
             faults injected by kind\n{}\n\nsagas by final status\n{}\n\nchecks\n{}\n",
            o.duration,
            o.concurrency,
            o.rate.map(|r| format!(", at most {r}/s")).unwrap_or_default(),
            o.replicas,
            o.fault_every,
            o.seed,
            self.outcomes.len(),
            self.samples.last().map(|s| s.settled).unwrap_or(0) as f64 / total_secs,
            report::latency_line(&self.outcomes),
            t,
            orch,
            parts,
            table_growth.join(", "),
            peaks.join(", "),
            report::faults_table(&self.faults),
            report::statuses_table(&self.outcomes),
            report::checks_table(&self.checks),
        )
    }
}
