//! The fault suite (issue 5): hundreds of orders against several `sagaflow serve` replicas
//! on a private PostgreSQL, with the participants behind fault-injecting proxies, while a
//! scheduler injects faults at random moments. At the end every execution must be terminal
//! or parked in COMPENSATION_STUCK and every check must hold; the report prints faults by
//! kind, sagas by final status and violations by check.
//!
//! - [`orders`]: the order mix and placing orders through whichever replica answers.
//! - [`faults`]: the kinds of fault, their schedule and the injector.
//! - [`checks`]: what must hold at the end (DESIGN §6 and the orchestrator's own tables).
//! - [`report`]: the tables.

pub mod checks;
pub mod faults;
pub mod orders;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sagaflow_proto::inventory::v1::RestockRequest;
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::faults::{FaultKind, FaultPlan, Injected, Injector};
use self::orders::{IN_STOCK, Limits, Outcome, Replicas, SOLD_OUT};
use crate::cluster::{Cluster, Options, PARTICIPANTS};
use crate::pg_cluster::PgCluster;
use crate::proxy::FaultProxy;

/// A Sagaflow that faults can be injected into: its own PostgreSQL (stoppable), the four
/// participants behind proxies, and the replicas.
#[derive(Debug)]
pub struct Environment {
    pub pg: Arc<Mutex<PgCluster>>,
    pub cluster: Cluster,
    pub proxies: BTreeMap<&'static str, Arc<FaultProxy>>,
}

impl Environment {
    /// Create the private PostgreSQL, start the participants, a proxy in front of each, and
    /// `replicas` replicas that reach the participants through the proxies.
    pub async fn start(replicas: usize, lease: Duration, log_filter: Option<String>) -> anyhow::Result<Environment> {
        let pg = tokio::task::spawn_blocking(PgCluster::create).await??;
        let options =
            Options { replicas: 0, lease, database_url: Some(pg.admin_url()), log_filter, ..Options::default() };
        let mut cluster = Cluster::start(options).await.context("starting the participants")?;
        let mut proxies = BTreeMap::new();
        for name in PARTICIPANTS {
            let proxy = FaultProxy::start(name, cluster.participants[name].addr).await?;
            cluster.routes.insert(name, proxy.url());
            proxies.insert(name, Arc::new(proxy));
        }
        for i in 0..replicas {
            cluster.add_replica(&format!("replica-{i}")).await.context("starting a replica")?;
        }
        Ok(Environment { pg: Arc::new(Mutex::new(pg)), cluster, proxies })
    }

    pub fn replica_urls(&self) -> Vec<String> {
        self.cluster.replicas.iter().map(|r| r.url()).collect()
    }

    /// Add `quantity` to every in-stock SKU, so orders fail for want of stock only on purpose.
    pub async fn restock(&self, quantity: u32) -> anyhow::Result<()> {
        let mut inventory = self.cluster.inventory().await?;
        for sku in IN_STOCK {
            let mut request = tonic::Request::new(RestockRequest { sku: sku.to_owned(), quantity });
            let key = format!("fault-suite-restock-{sku}-{}", uuid::Uuid::new_v4().simple());
            request.metadata_mut().insert("idempotency-key", key.parse()?);
            inventory.restock(request).await?;
        }
        Ok(())
    }

    /// The SKUs whose stock the checks compare.
    pub fn skus() -> Vec<&'static str> {
        IN_STOCK.iter().copied().chain([SOLD_OUT]).collect()
    }

    /// Stop every process and remove the database; the logs stay when `keep_logs` (their
    /// folder is returned) and go otherwise.
    pub fn shutdown(mut self, keep_logs: bool) -> PathBuf {
        for r in &mut self.cluster.replicas {
            r.kill();
        }
        for p in self.cluster.participants.values_mut() {
            p.kill();
        }
        let pg_log = self.pg.lock().map(|pg| pg.log_path()).ok();
        if let Some(log) = pg_log {
            let _ = std::fs::copy(log, self.cluster.log_dir.join("postgres.log"));
        }
        let dir = self.cluster.log_dir.clone();
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&dir);
        }
        dir
    }
}

/// Settings of one fault run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub orders: usize,
    pub plan: FaultPlan,
    pub replicas: usize,
    pub lease: Duration,
    /// How long orders keep arriving and faults keep coming [default: 3 s per fault, at
    /// least 20 s].
    pub window: Option<Duration>,
    /// How long the sagas may take to settle once the last fault is lifted.
    pub settle_limit: Duration,
    /// How long an order may go unacknowledged before it counts as a violation.
    pub ack_limit: Duration,
    pub seed: u64,
    /// Share of the orders that arrive in bursts, just before PostgreSQL restarts and a
    /// replica kill, instead of at a steady rate.
    pub burst_share: f64,
    /// Print progress to stderr every few seconds.
    pub progress: bool,
}

impl SuiteOptions {
    pub fn window(&self) -> Duration {
        self.window.unwrap_or_else(|| Duration::from_secs((3 * self.plan.total() as u64).max(20)))
    }
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            orders: 500,
            plan: FaultPlan { kills: 20, pg_restarts: 2, participant_faults: 20, network_faults: 10 },
            replicas: 2,
            lease: Duration::from_secs(3),
            window: None,
            settle_limit: Duration::from_secs(600),
            ack_limit: Duration::from_secs(120),
            seed: 1,
            burst_share: 0.4,
            progress: false,
        }
    }
}

/// What a fault run did and found.
#[derive(Debug)]
pub struct SuiteReport {
    pub options: SuiteOptions,
    pub faults: Vec<Injected>,
    pub outcomes: Vec<Outcome>,
    pub checks: checks::Checks,
    pub elapsed: Duration,
    pub peak_in_flight: usize,
    /// Where the processes' logs are (kept when something failed).
    pub log_dir: PathBuf,
}

impl SuiteReport {
    pub fn violations(&self) -> usize {
        self.checks.violations()
    }

    /// Fault groups injected fewer times than the plan asked for.
    pub fn shortfalls(&self) -> Vec<String> {
        let plan = &self.options.plan;
        let count = |g: faults::Group| self.faults.iter().filter(|f| f.kind.group() == g).count();
        [
            ("orchestrator kills", count(faults::Group::Orchestrator), plan.kills),
            ("PostgreSQL restarts", count(faults::Group::Database), plan.pg_restarts),
            ("participant faults", count(faults::Group::Participant), plan.participant_faults),
            ("network faults", count(faults::Group::Network), plan.network_faults),
        ]
        .into_iter()
        .filter(|(_, got, want)| got < want)
        .map(|(name, got, want)| format!("{name}: {got} injected, {want} planned"))
        .collect()
    }

    pub fn render(&self) -> String {
        let o = &self.options;
        let settled = self.outcomes.iter().filter(|x| orders::settled(&x.status)).count();
        let retried = self.outcomes.iter().filter(|x| x.start_attempts > 1).count();
        format!(
            "fault suite: {} orders, {} replicas (lease {:?}), seed {}, load window {:?}, {:.1}s in all\n\
             peak orders in flight {}, {settled} settled, {retried} acknowledged only after a retried StartOrder\n{}\n\n\
             faults injected by kind\n{}\n\nsagas by final status\n{}\n\nchecks\n{}\n",
            self.outcomes.len(),
            o.replicas,
            o.lease,
            o.seed,
            o.window(),
            self.elapsed.as_secs_f64(),
            self.peak_in_flight,
            report::latency_line(&self.outcomes),
            report::faults_table(&self.faults),
            report::statuses_table(&self.outcomes),
            report::checks_table(&self.checks),
        )
    }
}

/// Moments at which orders arrive: most at a steady rate over the window, `burst_share` of
/// them in bursts just before each PostgreSQL restart and one replica kill.
fn arrivals(
    count: usize,
    window: Duration,
    schedule: &[(Duration, FaultKind)],
    share: f64,
    rng: &mut StdRng,
) -> Vec<Duration> {
    let mut bursts: Vec<Duration> =
        schedule.iter().filter(|(_, k)| *k == FaultKind::PostgresRestart).map(|(at, _)| *at).collect();
    if let Some((at, _)) = schedule.iter().find(|(_, k)| *k == FaultKind::ReplicaKill) {
        bursts.push(*at);
    }
    let in_bursts = if bursts.is_empty() { 0 } else { (count as f64 * share.clamp(0.0, 1.0)) as usize };
    let mut out: Vec<Duration> = (0..count)
        .map(|i| {
            if i < in_bursts {
                let at = bursts[i % bursts.len()];
                at.saturating_sub(Duration::from_millis(rng.gen_range(0..1500)))
            } else {
                window.mul_f64(rng.gen_range(0.0..0.95))
            }
        })
        .collect();
    out.sort();
    out
}

/// Run the suite: start everything, place the orders while injecting the faults, wait for
/// the sagas to settle, check, and report. Errors are failures of the harness itself (a
/// process that will not come back, the database unreachable at the end), not violations.
pub async fn run(options: SuiteOptions) -> anyhow::Result<SuiteReport> {
    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut env = Environment::start(options.replicas, options.lease, Some("info".into())).await?;
    env.restock(u32::try_from(options.orders * 4).unwrap_or(u32::MAX).max(100)).await?;
    let before = crate::invariants::stock_before(&env.cluster, &Environment::skus()).await?;
    let replicas = Replicas::new(&env.replica_urls())?;

    let window = options.window();
    let schedule = options.plan.schedule(window, &mut rng);
    let arrivals = arrivals(options.orders, window, &schedule, options.burst_share, &mut rng);
    let run_id = format!("fs{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let orders: Vec<_> = (0..options.orders).map(|i| orders::order(i, &run_id, &mut rng)).collect();
    let limits = Limits { acknowledge: options.ack_limit };
    let (give_up, give_up_rx) = watch::channel(false);
    let started = Instant::now();

    let load = {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            let mut set = JoinSet::new();
            for (i, ((kind, request), at)) in orders.into_iter().zip(arrivals).enumerate() {
                tokio::time::sleep_until((started + at).into()).await;
                let (replicas, rx) = (replicas.clone(), give_up_rx.clone());
                set.spawn(async move { (i, orders::place(replicas, kind, request, limits, rx).await) });
            }
            let mut out: Vec<(usize, Outcome)> = Vec::new();
            while let Some(done) = set.join_next().await {
                if let Ok(pair) = done {
                    out.push(pair);
                }
            }
            out.sort_by_key(|(i, _)| *i);
            out.into_iter().map(|(_, o)| o).collect::<Vec<Outcome>>()
        })
    };
    let progress = options.progress.then(|| {
        let replicas = replicas.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "fault suite: {:>4}s  in flight {}",
                    started.elapsed().as_secs(),
                    replicas.in_flight.load(Ordering::Relaxed)
                );
            }
        })
    });

    let mut injector = Injector::new(&mut env.cluster, env.pg.clone(), env.proxies.clone(), rng.r#gen(), started);
    let injected = injector.run(&schedule).await;
    let faults = std::mem::take(&mut injector.log);
    let crashes = std::mem::take(&mut injector.crashes);
    drop(injector);
    if let Err(e) = injected {
        let _ = give_up.send(true);
        let _ = load.await;
        let dir = env.shutdown(true);
        return Err(e.context(format!("injecting faults (logs in {})", dir.display())));
    }
    if options.progress {
        eprintln!("fault suite: {} faults injected and lifted; waiting for the sagas to settle", faults.len());
    }

    let deadline = tokio::time::sleep(options.settle_limit);
    tokio::pin!(deadline);
    let mut load = load;
    let outcomes = tokio::select! {
        done = &mut load => done?,
        _ = &mut deadline => {
            let _ = give_up.send(true);
            load.await?
        }
    };
    if let Some(p) = progress {
        p.abort();
    }
    let mut problems: Vec<String> = outcomes.iter().flat_map(|o| o.problems.clone()).collect();
    problems.extend(orders::restart_all(&replicas, &outcomes).await);
    let checks = checks::run(&env.cluster, &outcomes, &before, problems, crashes).await?;
    let keep = checks.violations() > 0;
    let peak_in_flight = replicas.peak_in_flight.load(Ordering::Relaxed);
    let log_dir = env.shutdown(keep);
    Ok(SuiteReport { options, faults, outcomes, checks, elapsed: began.elapsed(), peak_in_flight, log_dir })
}
