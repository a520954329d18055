//! The faults a run injects and the injector that carries them out at their moments:
//! orchestrator replicas SIGKILLed and restarted, PostgreSQL stopped (cleanly or as a crash)
//! and started again, participants SIGKILLed and restarted, participants made slow, failing,
//! applying-then-failing or answering past the deadline (through their Chaos service), and
//! the network between orchestrator and participants delayed, blackholed or cut (through the
//! proxies). Kills and restarts are carried out one at a time; Chaos and network faults last
//! a few seconds each and may overlap everything else.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, SetFaultRequest};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::cluster::{Cluster, PARTICIPANTS};
use crate::pg_cluster::{PgCluster, StopMode};
use crate::proxy::FaultProxy;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL an orchestrator replica, restart it after a pause.
    ReplicaKill,
    /// Stop PostgreSQL (fast or immediate), start it again after a pause.
    PostgresRestart,
    /// SIGKILL a participant process, restart it on the same port after a pause.
    ParticipantKill,
    /// Every call of a method waits before it is handled.
    ParticipantSlow,
    /// Calls fail with UNAVAILABLE before anything is applied.
    ParticipantErrors,
    /// Calls are applied, then answered DEADLINE_EXCEEDED: a timeout after applying.
    ParticipantTimeoutAfterApply,
    /// The next few calls are applied and their answers lost (UNAVAILABLE), so each is
    /// delivered again with its key and answered from the participant's idempotency table.
    ParticipantDuplicate,
    /// The next two calls are held longer than the task's deadline.
    ParticipantPastDeadline,
    /// Every chunk between orchestrator and a participant is delayed.
    NetworkDelay,
    /// Nothing moves between orchestrator and a participant until restored.
    NetworkBlackhole,
    /// Every connection to a participant is reset, and new ones too until restored.
    NetworkCut,
}

/// The groups the issue counts faults in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Orchestrator,
    Database,
    Participant,
    Network,
}

impl FaultKind {
    pub const PARTICIPANT: [FaultKind; 6] = [
        FaultKind::ParticipantKill,
        FaultKind::ParticipantSlow,
        FaultKind::ParticipantErrors,
        FaultKind::ParticipantTimeoutAfterApply,
        FaultKind::ParticipantDuplicate,
        FaultKind::ParticipantPastDeadline,
    ];
    pub const NETWORK: [FaultKind; 3] = [FaultKind::NetworkDelay, FaultKind::NetworkBlackhole, FaultKind::NetworkCut];
    pub const ALL: [FaultKind; 11] = [
        FaultKind::ReplicaKill,
        FaultKind::PostgresRestart,
        FaultKind::ParticipantKill,
        FaultKind::ParticipantSlow,
        FaultKind::ParticipantErrors,
        FaultKind::ParticipantTimeoutAfterApply,
        FaultKind::ParticipantDuplicate,
        FaultKind::ParticipantPastDeadline,
        FaultKind::NetworkDelay,
        FaultKind::NetworkBlackhole,
        FaultKind::NetworkCut,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::ReplicaKill => "orchestrator replica SIGKILL + restart",
            FaultKind::PostgresRestart => "PostgreSQL stop + restart",
            FaultKind::ParticipantKill => "participant SIGKILL + restart",
            FaultKind::ParticipantSlow => "participant slow answers",
            FaultKind::ParticipantErrors => "participant UNAVAILABLE before applying",
            FaultKind::ParticipantTimeoutAfterApply => "participant times out after applying",
            FaultKind::ParticipantDuplicate => "participant answer lost, call delivered twice",
            FaultKind::ParticipantPastDeadline => "participant answers past the deadline",
            FaultKind::NetworkDelay => "network delay (proxy)",
            FaultKind::NetworkBlackhole => "network blackhole (proxy)",
            FaultKind::NetworkCut => "network cut, connections reset (proxy)",
        }
    }

    pub fn group(self) -> Group {
        match self {
            FaultKind::ReplicaKill => Group::Orchestrator,
            FaultKind::PostgresRestart => Group::Database,
            FaultKind::NetworkDelay | FaultKind::NetworkBlackhole | FaultKind::NetworkCut => Group::Network,
            _ => Group::Participant,
        }
    }
}

/// How many faults of each group a run injects.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub kills: usize,
    pub pg_restarts: usize,
    pub participant_faults: usize,
    pub network_faults: usize,
}

impl FaultPlan {
    pub fn total(&self) -> usize {
        self.kills + self.pg_restarts + self.participant_faults + self.network_faults
    }

    /// Moments (from the start of the load) and kinds, in time order, spread at random over
    /// `window`. Participant and network faults cycle through their kinds so each shows up;
    /// PostgreSQL restarts fall near evenly spaced points, so they hit the middle of the run.
    pub fn schedule(&self, window: Duration, rng: &mut StdRng) -> Vec<(Duration, FaultKind)> {
        let mut kinds: Vec<FaultKind> = vec![FaultKind::ReplicaKill; self.kills];
        let mut participant = FaultKind::PARTICIPANT.to_vec();
        participant.shuffle(rng);
        kinds.extend(participant.iter().cycle().take(self.participant_faults));
        let mut network = FaultKind::NETWORK.to_vec();
        network.shuffle(rng);
        kinds.extend(network.iter().cycle().take(self.network_faults));
        let mut out: Vec<(Duration, FaultKind)> =
            kinds.into_iter().map(|k| (window.mul_f64(rng.gen_range(0.02..0.92)), k)).collect();
        for i in 0..self.pg_restarts {
            let at = (i as f64 + 1.0) / (self.pg_restarts as f64 + 1.0) + rng.gen_range(-0.06..0.06);
            out.push((window.mul_f64(at.clamp(0.05, 0.9)), FaultKind::PostgresRestart));
        }
        out.sort_by_key(|(at, _)| *at);
        out
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Injected {
    pub kind: FaultKind,
    pub target: String,
    /// From the start of the load.
    pub at: Duration,
    pub detail: String,
}

/// The methods of each participant a Chaos fault may name (`*` is every business method).
fn methods(participant: &str) -> &'static [&'static str] {
    match participant {
        "payment" => &["*", "payment.v1.Payment/Charge", "payment.v1.Payment/Refund"],
        "inventory" => {
            &["*", "inventory.v1.Inventory/Reserve", "inventory.v1.Inventory/Release", "inventory.v1.Inventory/Commit"]
        }
        "fraud" => &["*", "fraud.v1.Fraud/Check"],
        "fulfillment" => {
            &["*", "fulfillment.v1.Fulfillment/CreateShipment", "fulfillment.v1.Fulfillment/CancelShipment"]
        }
        _ => &["*"],
    }
}

/// Carries out faults against a running environment.
#[derive(Debug)]
pub struct Injector<'a> {
    cluster: &'a mut Cluster,
    pg: Arc<Mutex<PgCluster>>,
    proxies: BTreeMap<&'static str, Arc<FaultProxy>>,
    rng: StdRng,
    started: Instant,
    pub log: Vec<Injected>,
    /// Timers that lift the lasting faults.
    restores: JoinSet<()>,
    /// (participant, method) with a Chaos fault armed, and proxies with a fault on.
    busy: Arc<Mutex<BTreeSet<(String, String)>>>,
    pg_stops: usize,
    /// Replicas a kill may pick (the soak spares replica 0 to follow its memory).
    pub killable_replicas: Vec<usize>,
    /// Processes found dead that no fault had killed: crashes of their own.
    pub crashes: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn chaos(url: String) -> anyhow::Result<ChaosClient<Channel>> {
    let channel = Channel::from_shared(url)?.connect_timeout(Duration::from_secs(3)).connect().await?;
    Ok(ChaosClient::new(channel))
}

impl<'a> Injector<'a> {
    pub fn new(
        cluster: &'a mut Cluster,
        pg: Arc<Mutex<PgCluster>>,
        proxies: BTreeMap<&'static str, Arc<FaultProxy>>,
        seed: u64,
        started: Instant,
    ) -> Self {
        let killable_replicas = (0..cluster.replicas.len()).collect();
        Injector {
            cluster,
            pg,
            proxies,
            rng: StdRng::seed_from_u64(seed),
            started,
            log: Vec::new(),
            restores: JoinSet::new(),
            busy: Arc::new(Mutex::new(BTreeSet::new())),
            pg_stops: 0,
            killable_replicas,
            crashes: Vec::new(),
        }
    }

    /// Inject each fault at its moment; returns once the last one is injected and lifted.
    pub async fn run(&mut self, schedule: &[(Duration, FaultKind)]) -> anyhow::Result<()> {
        for (at, kind) in schedule {
            tokio::time::sleep_until((self.started + *at).into()).await;
            self.inject(*kind).await?;
        }
        self.settle().await
    }

    /// Wait for the lasting faults to be lifted, then make sure everything runs again.
    pub async fn settle(&mut self) -> anyhow::Result<()> {
        while self.restores.join_next().await.is_some() {}
        self.note_crashes().await?;
        self.restore_all().await
    }

    /// Record every process that is down though no fault holds it down (between faults,
    /// every replica and participant must be running), and start it again so the run goes on.
    async fn note_crashes(&mut self) -> anyhow::Result<()> {
        let at = self.started.elapsed();
        let processes = self.cluster.replicas.iter_mut().chain(self.cluster.participants.values_mut());
        for p in processes {
            if !p.is_running() {
                self.crashes.push(format!(
                    "{} had exited on its own by {at:?}; its log ends:\n{}",
                    p.name,
                    p.log_tail(15)
                ));
                restart(p).await?;
            }
        }
        Ok(())
    }

    /// Each replica's name and process id (none while it is down).
    pub fn replica_pids(&self) -> Vec<(String, Option<u32>)> {
        self.cluster.replicas.iter().map(|r| (r.name.clone(), r.pid())).collect()
    }

    fn pause(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(min_ms..=max_ms))
    }

    fn record(&mut self, kind: FaultKind, target: impl Into<String>, detail: impl Into<String>) {
        self.log.push(Injected { kind, target: target.into(), at: self.started.elapsed(), detail: detail.into() });
    }

    /// Inject one fault of `kind`. Kills and restarts return once the process is back.
    pub async fn inject(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        self.note_crashes().await?;
        match kind {
            FaultKind::ReplicaKill => {
                // Mostly one replica; one time in five every killable one at once, so no
                // orchestrator is left and all work resumes from the database alone.
                let victims: Vec<usize> = if self.killable_replicas.len() > 1 && self.rng.gen_bool(0.2) {
                    self.killable_replicas.clone()
                } else {
                    self.killable_replicas.choose(&mut self.rng).copied().into_iter().collect()
                };
                let down = self.pause(200, 2500);
                let together = if victims.len() > 1 { ", all replicas at once" } else { "" };
                for &i in &victims {
                    let replica = &mut self.cluster.replicas[i];
                    replica.kill();
                    let name = replica.name.clone();
                    self.record(kind, name, format!("down {down:?}{together}"));
                }
                tokio::time::sleep(down).await;
                for &i in &victims {
                    restart(&mut self.cluster.replicas[i]).await?;
                }
            }
            FaultKind::PostgresRestart => {
                // Alternate: a clean stop, then a crash (immediate: WAL replay on start).
                let mode = if self.pg_stops.is_multiple_of(2) { StopMode::Fast } else { StopMode::Immediate };
                self.pg_stops += 1;
                // Longer than a starting replica's 5 s connection timeout, as a restart or a
                // failover of a real server can be.
                let down = self.pause(6000, 9000);
                let pg = self.pg.clone();
                tokio::task::spawn_blocking(move || lock(&pg).stop(mode)).await??;
                // A replica also crashes during the outage and is started again while the
                // database is still down, as a supervisor would: it must wait for the
                // database, not exit (and so crash-loop).
                let crashed = self.killable_replicas.choose(&mut self.rng).copied();
                let mut detail = format!("{}, down {down:?}", mode.label());
                if let Some(i) = crashed {
                    let replica = &mut self.cluster.replicas[i];
                    replica.respawn()?;
                    detail.push_str(&format!(", {} restarted meanwhile", replica.name));
                }
                self.record(kind, "postgres", detail);
                tokio::time::sleep(down).await;
                self.start_postgres().await?;
                if let Some(i) = crashed {
                    self.cluster.replicas[i]
                        .ready(Duration::from_secs(60))
                        .await
                        .context("a replica started while PostgreSQL was down did not come up once it was back")?;
                }
            }
            FaultKind::ParticipantKill => {
                let name = *PARTICIPANTS.choose(&mut self.rng).unwrap_or(&"payment");
                let down = self.pause(300, 3000);
                let process = self.cluster.participants.get_mut(name).context("participant")?;
                process.kill();
                self.record(kind, name, format!("down {down:?}"));
                tokio::time::sleep(down).await;
                restart(self.cluster.participants.get_mut(name).context("participant")?).await?;
            }
            FaultKind::ParticipantSlow
            | FaultKind::ParticipantErrors
            | FaultKind::ParticipantTimeoutAfterApply
            | FaultKind::ParticipantDuplicate
            | FaultKind::ParticipantPastDeadline => self.chaos_fault(kind).await?,
            FaultKind::NetworkDelay | FaultKind::NetworkBlackhole | FaultKind::NetworkCut => self.network_fault(kind),
        }
        Ok(())
    }

    async fn start_postgres(&self) -> anyhow::Result<()> {
        let pg = self.pg.clone();
        tokio::task::spawn_blocking(move || lock(&pg).start()).await?
    }

    /// A free (participant, target) pair: a Chaos fault replaces the one armed on the same
    /// method, and a proxy holds one mode, so lasting faults never share a target.
    fn reserve(&mut self, candidates: Vec<(String, String)>) -> Option<(String, String)> {
        let mut busy = lock(&self.busy);
        let free: Vec<_> = candidates.into_iter().filter(|c| !busy.contains(c)).collect();
        let pick = free.choose(&mut self.rng)?.clone();
        busy.insert(pick.clone());
        Some(pick)
    }

    async fn chaos_fault(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let candidates: Vec<(String, String)> = PARTICIPANTS
            .iter()
            .flat_map(|p| methods(p).iter().map(move |m| ((*p).to_owned(), (*m).to_owned())))
            .collect();
        let Some((participant, method)) = self.reserve(candidates) else { return Ok(()) };
        let rate = self.rng.gen_range(0.3..0.7);
        let (fault, lasts) = match kind {
            FaultKind::ParticipantSlow => {
                let latency_ms = self.rng.gen_range(300..2500);
                (Fault { latency_ms, ..Default::default() }, self.pause(3000, 8000))
            }
            FaultKind::ParticipantErrors => (
                Fault { error_rate: rate, error_code: "UNAVAILABLE".into(), ..Default::default() },
                self.pause(2000, 6000),
            ),
            FaultKind::ParticipantTimeoutAfterApply => (
                Fault {
                    error_rate: rate,
                    error_code: "DEADLINE_EXCEEDED".into(),
                    apply_then_fail: true,
                    ..Default::default()
                },
                self.pause(2000, 6000),
            ),
            FaultKind::ParticipantDuplicate => (
                Fault {
                    error_rate: 1.0,
                    error_code: "UNAVAILABLE".into(),
                    apply_then_fail: true,
                    remaining: self.rng.gen_range(3..9),
                    ..Default::default()
                },
                self.pause(4000, 8000),
            ),
            // Longer than any task's TimeoutSeconds in the order saga (10 s or 15 s).
            _ => (Fault { latency_ms: 16_000, remaining: 2, ..Default::default() }, Duration::from_secs(20)),
        };
        let fault = Fault { method: method.clone(), ..fault };
        let detail = format!(
            "{method}: rate {:.2}, latency {} ms, {}{}, for {lasts:?}",
            fault.error_rate,
            fault.latency_ms,
            if fault.apply_then_fail { "applied then " } else { "" },
            if fault.error_code.is_empty() { "no error".to_owned() } else { fault.error_code.clone() },
        );
        let url = self.cluster.participants[participant.as_str()].url();
        let armed = async {
            chaos(url.clone()).await?.set_fault(SetFaultRequest { fault: Some(fault) }).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = armed {
            // The participant may be restarting; this fault is simply not injected.
            lock(&self.busy).remove(&(participant.clone(), method.clone()));
            eprintln!("fault suite: could not arm {kind:?} on {participant}: {e:#}");
            return Ok(());
        }
        self.record(kind, participant.clone(), detail);
        let busy = self.busy.clone();
        self.restores.spawn(async move {
            tokio::time::sleep(lasts).await;
            if let Ok(mut c) = chaos(url).await {
                let _ = c.clear_faults(ClearFaultsRequest { method: method.clone() }).await;
            }
            lock(&busy).remove(&(participant, method));
        });
        Ok(())
    }

    fn network_fault(&mut self, kind: FaultKind) {
        let candidates = self.proxies.keys().map(|p| ((*p).to_owned(), "proxy".to_owned())).collect();
        let Some((participant, _)) = self.reserve(candidates) else { return };
        let Some(proxy) = self.proxies.get(participant.as_str()).cloned() else { return };
        let (detail, lasts) = match kind {
            FaultKind::NetworkDelay => {
                let by = self.pause(50, 400);
                proxy.delay(by);
                (format!("{by:?} per chunk"), self.pause(3000, 8000))
            }
            FaultKind::NetworkBlackhole => {
                proxy.blackhole();
                (String::from("nothing forwarded"), self.pause(1000, 5000))
            }
            _ => {
                proxy.cut();
                (String::from("connections reset"), self.pause(500, 3000))
            }
        };
        self.record(kind, participant.clone(), format!("{detail}, for {lasts:?}"));
        let busy = self.busy.clone();
        self.restores.spawn(async move {
            tokio::time::sleep(lasts).await;
            proxy.restore();
            lock(&busy).remove(&(participant, "proxy".to_owned()));
        });
    }

    /// Everything back: PostgreSQL up, every process running, no Chaos fault armed, every
    /// proxy forwarding.
    pub async fn restore_all(&mut self) -> anyhow::Result<()> {
        if !lock(&self.pg).is_running() {
            self.start_postgres().await?;
        }
        for proxy in self.proxies.values() {
            proxy.restore();
        }
        for p in self.cluster.participants.values_mut() {
            if !p.is_running() {
                restart(p).await?;
            }
        }
        for r in &mut self.cluster.replicas {
            if !r.is_running() {
                restart(r).await?;
            }
        }
        for p in self.cluster.participants.values() {
            chaos(p.url()).await?.clear_faults(ClearFaultsRequest { method: String::new() }).await?;
        }
        lock(&self.busy).clear();
        Ok(())
    }
}

/// Start a killed process again on its address, retrying: its port may linger a moment.
async fn restart(process: &mut crate::process::Process) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..3 {
        match process.restart(Duration::from_secs(60)).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("restart")).context(format!("restarting {}", process.name)))
}
