//! The durable engine: owns executions through leases, drives the interpreter, commits every
//! transition before acting on it, calls participants, and keeps timers durable.
//!
//! Each owned execution runs in its own actor task ([`actor`]); the engine's background
//! loops claim executions that need an owner, renew leases, and deliver inbox requests.
//!
//! - [`actor`]: one execution: step, commit, act.
//! - [`definitions`]: compiled definitions by id, and registration from files.
//! - `committer`: group commit, so many executions share each database transaction.

pub mod actor;
mod committer;
pub mod definitions;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use chrono::Utc;
use sagaflow_language::interpreter::{self, Envelope, Event, Execution, Start, Status};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use uuid::Uuid;

pub use self::definitions::Definitions;
use crate::invoker::Invoker;
use crate::store::{Created, NewExecution, Store, StoreError};
use crate::telemetry::{ActorTelemetry, EngineMetrics, TraceParent, epoch_ms};

/// Settings of one engine (one replica).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This replica's name in leases; unique among replicas sharing a database.
    pub owner: String,
    /// How long a lease lasts without renewal; a dead replica's executions move on after it.
    pub lease: Duration,
    /// How often to look for executions that need an owner.
    pub claim_interval: Duration,
    /// Executions taken per claim.
    pub claim_batch: u32,
    /// How often to look for cancel, terminate and repair requests when the store cannot
    /// announce them (and, after an announcement, while one waits for its actor).
    pub inbox_interval: Duration,
    /// How often to look anyway when the store announces requests (PostgreSQL `LISTEN`): a
    /// backstop, since an announcement lost with a connection is reported as such.
    pub inbox_backstop: Duration,
    /// Where the engine counts what it does (`None`: nothing is counted).
    pub metrics: Option<Arc<EngineMetrics>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: format!("sagaflow-{}", Uuid::now_v7().simple()),
            lease: Duration::from_secs(15),
            claim_interval: Duration::from_millis(500),
            claim_batch: 64,
            inbox_interval: Duration::from_millis(200),
            inbox_backstop: Duration::from_secs(5),
            metrics: None,
        }
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("definition \"{0}\" is not registered")]
    UnknownDefinition(String),
    #[error("definition \"{name}\" has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("the stored definition {0} no longer compiles: {1}")]
    BrokenDefinition(i64, String),
    #[error("execution {0} does not exist")]
    UnknownExecution(String),
    #[error("\"{0}\" matches several executions; give more of the id")]
    AmbiguousExecution(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("an execution already exists for this key with a different request: {0}")]
    Conflict(Uuid),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// A started (or found) execution.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    /// False when the id or idempotency key had already started an execution.
    pub created: bool,
}

/// What the API asks the engine to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub definition: String,
    /// `None` for the latest version.
    pub version: Option<u32>,
    pub input: Value,
    pub execution_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
}

/// A handle to a running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("owner", &self.inner.config.owner).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) definitions: Definitions,
    pub(crate) config: EngineConfig,
    /// Executions this replica owns: their actors' mailboxes and lease epochs.
    pub(crate) actors: Mutex<HashMap<Uuid, actor::Handle>>,
    /// Status watchers for `wait_for_completion`, by execution.
    pub(crate) watchers: std::sync::Mutex<HashMap<Uuid, watch::Sender<Status>>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Where every actor's transitions are committed, batched with others'.
    pub(crate) committer: committer::Committer,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, invoker: Arc<dyn Invoker>, config: EngineConfig) -> Self {
        let definitions = Definitions::new(store.clone());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let committer = committer::Committer::spawn(store.clone(), cancel.clone(), &tracker);
        Engine {
            inner: Arc::new(Inner {
                store,
                invoker,
                definitions,
                config,
                actors: Mutex::new(HashMap::new()),
                watchers: std::sync::Mutex::new(HashMap::new()),
                cancel,
                tracker,
                committer,
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn definitions(&self) -> &Definitions {
        &self.inner.definitions
    }

    pub fn owner(&self) -> &str {
        &self.inner.config.owner
    }

    /// Start the background loops: claiming, lease renewal, inbox delivery.
    pub fn spawn_loops(&self) {
        let engine = self.clone();
        self.inner.tracker.spawn(async move { engine.claim_loop().await });
        let engine = self.clone();
        self.inner.tracker.spawn(async move { engine.renew_loop().await });
        let engine = self.clone();
        self.inner.tracker.spawn(async move { engine.inbox_loop().await });
    }

    /// Stop: actors finish their current step, leases are released so another replica
    /// continues at once, and every task is awaited.
    pub async fn shutdown(&self) {
        // Note the leases before stopping: actors leave the table as they stop. An execution
        // that settled meanwhile has already given its lease up, so releasing it is a no-op.
        let held: Vec<(Uuid, i64)> = {
            let actors = self.inner.actors.lock().await;
            actors.iter().map(|(id, h)| (*id, h.epoch)).collect()
        };
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        if !held.is_empty()
            && let Err(e) = self.inner.store.release(&self.inner.config.owner, &held).await
        {
            warn!(error = %e, "could not release leases on shutdown; they expire on their own");
        }
        info!(owner = %self.inner.config.owner, released = held.len(), "engine stopped");
    }

    /// Start an execution, or find the one this id or idempotency key already started.
    pub async fn start(&self, request: StartRequest) -> Result<Started, EngineError> {
        self.start_traced(request, None).await
    }

    /// [`Engine::start`] for a request that carried a W3C trace context: the execution's trace
    /// continues it (the context is kept with the execution, for whichever replica runs it).
    pub async fn start_traced(
        &self,
        request: StartRequest,
        trace_parent: Option<TraceParent>,
    ) -> Result<Started, EngineError> {
        if self.inner.cancel.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let record = self.inner.definitions.record(&request.definition, request.version).await?;
        let definition = self.inner.definitions.compiled(record.id).await?;
        let id = request.execution_id.unwrap_or_else(Uuid::now_v7);
        let request_hash = request_hash(&record.name, &request.input);
        let mut execution = Execution::new();
        let start = Start {
            execution_id: id.to_string(),
            execution_name: id.to_string(),
            state_machine_id: format!("{}:{}", record.name, record.version),
            state_machine_name: record.name.clone(),
            input: request.input.clone(),
            seed: rand::random(),
            redrive_count: 0,
            key_namespace: None,
            fork_at: None,
        };
        let wall = SystemTime::now();
        let now = epoch_ms(wall);
        let mut step =
            interpreter::step(&definition, &mut execution, Envelope { now_ms: now, event: Event::Started(start) })
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let first = actor::transition(id, 1, &self.inner.config.owner, &execution, &mut step, Vec::new())?;
        let new = NewExecution {
            id,
            definition_id: record.id,
            input: request.input,
            idempotency_key: request.idempotency_key,
            request_hash,
            owner: self.inner.config.owner.clone(),
            lease: self.inner.config.lease,
            trace_parent,
        };
        let metrics = self.inner.config.metrics.as_ref();
        let mut telemetry =
            ActorTelemetry::new(metrics, id, &record.name, record.version, now, new.trace_parent.as_ref());
        let history = telemetry.is_some().then(|| first.events.clone());
        match self.inner.committer.create(new, first).await? {
            Created::New { epoch } => {
                debug!(execution = %id, definition = %record.name, "started");
                if let Some(metrics) = metrics {
                    metrics.execution_started(&record.name);
                }
                if let (Some(telemetry), Some(history)) = (&mut telemetry, &history) {
                    telemetry.committed(history, wall);
                }
                let timers = actor::timers_of(&step);
                self.spawn_actor(
                    id,
                    epoch,
                    definition,
                    execution,
                    timers,
                    step.actions,
                    Vec::new(),
                    telemetry,
                    Default::default(),
                )
                .await;
                Ok(Started { id, created: true })
            }
            Created::Existing { id, same_request: true } => Ok(Started { id, created: false }),
            Created::Existing { id, same_request: false } => Err(EngineError::Conflict(id)),
        }
    }

    /// Fork `original` at top-level `state`: a new execution that keeps the original's history
    /// before it and runs on from there (see `sagaflow_language::interpreter::fork`).
    pub async fn fork(&self, original: Uuid, state: &str) -> Result<Started, EngineError> {
        let record = self
            .inner
            .store
            .get_execution(original)
            .await?
            .ok_or_else(|| EngineError::UnknownExecution(original.to_string()))?;
        if !matches!(record.status, Status::Succeeded | Status::Failed | Status::Terminated) {
            return Err(EngineError::InvalidRequest(format!(
                "execution {original} is {}; only a SUCCEEDED, FAILED or TERMINATED execution can be forked \
                 (a running one is still writing its history, and a compensated one has undone the steps a fork would keep)",
                record.status
            )));
        }
        let mut history = Vec::new();
        loop {
            let after = history.last().map(|e: &interpreter::HistoryEvent| e.id).unwrap_or(0);
            let page = self.inner.store.history(original, after, 1000).await?;
            let done = page.len() < 1000;
            history.extend(page);
            if done {
                break;
            }
        }
        let definition = self.inner.definitions.compiled(record.definition_id).await?;
        let id = Uuid::now_v7();
        let wall = SystemTime::now();
        let forked = interpreter::fork::fork(&definition, &history, state, &id.to_string(), epoch_ms(wall))
            .map_err(|e| EngineError::InvalidRequest(format!("cannot fork {original} at \"{state}\": {e}")))?;
        let mut step = interpreter::Step { history: forked.history, actions: forked.actions };
        let first = actor::transition(id, 1, &self.inner.config.owner, &forked.execution, &mut step, Vec::new())?;
        let history = first.events.clone();
        let new = NewExecution {
            id,
            definition_id: record.definition_id,
            input: record.input.clone(),
            idempotency_key: None,
            request_hash: request_hash(&format!("fork of {original} at {state}"), &record.input),
            owner: self.inner.config.owner.clone(),
            lease: self.inner.config.lease,
            trace_parent: None,
        };
        let metrics = self.inner.config.metrics.as_ref();
        let mut telemetry =
            ActorTelemetry::new(metrics, id, &record.definition_name, record.definition_version, epoch_ms(wall), None);
        match self.inner.committer.create(new, first).await? {
            Created::New { epoch } => {
                info!(execution = %id, original = %original, state, "forked");
                if let Some(metrics) = metrics {
                    metrics.execution_started(&record.definition_name);
                }
                // The steps a fork copies ran in the original's trace: only what the fork runs
                // from here on gets spans (the copied history just opens the spans it left open).
                if let Some(telemetry) = &mut telemetry {
                    telemetry.rebuild(&history);
                }
                let timers = actor::timers_of(&step);
                self.spawn_actor(
                    id,
                    epoch,
                    definition,
                    forked.execution,
                    timers,
                    step.actions,
                    Vec::new(),
                    telemetry,
                    Default::default(),
                )
                .await;
                Ok(Started { id, created: true })
            }
            Created::Existing { id, .. } => Ok(Started { id, created: false }),
        }
    }

    /// Wait until the execution reaches a terminal status (or parks in COMPENSATION_STUCK),
    /// or `limit` passes; returns the status then.
    pub async fn wait(&self, id: Uuid, limit: Duration) -> Result<Status, EngineError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut waiter = Waiter { engine: self, id, receiver: self.watch(id) };
        let receiver = &mut waiter.receiver;
        let mut poll = Duration::from_millis(20);
        loop {
            let record = self
                .inner
                .store
                .get_execution(id)
                .await?
                .ok_or_else(|| EngineError::UnknownExecution(id.to_string()))?;
            if settled(record.status) {
                return Ok(record.status);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(record.status);
            }
            // A local actor announces the end at once; another replica's is seen by polling.
            let wake = (now + poll).min(deadline);
            tokio::select! {
                changed = receiver.changed() => {
                    if changed.is_ok() && settled(*receiver.borrow()) {
                        continue;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.inner.cancel.cancelled() => return Err(EngineError::ShuttingDown),
            }
            poll = (poll * 2).min(Duration::from_millis(250));
        }
    }

    /// Subscribe to the execution's status; [`Waiter`] gives the subscription back.
    fn watch(&self, id: Uuid) -> watch::Receiver<Status> {
        let mut watchers = self.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.entry(id).or_insert_with(|| watch::channel(Status::Running).0).subscribe()
    }

    /// Resolve a full id or a unique prefix of one.
    pub async fn resolve(&self, id_or_prefix: &str) -> Result<Uuid, EngineError> {
        let text = id_or_prefix.trim().to_ascii_lowercase();
        if let Ok(id) = Uuid::parse_str(&text) {
            return Ok(id);
        }
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(EngineError::InvalidRequest(format!(
                "\"{id_or_prefix}\" is not an execution id or a prefix of one (hex digits and dashes)"
            )));
        }
        let found = self.inner.store.find_by_prefix(&text, 2).await?;
        match found.as_slice() {
            [id] => Ok(*id),
            [] => Err(EngineError::UnknownExecution(id_or_prefix.to_owned())),
            _ => Err(EngineError::AmbiguousExecution(id_or_prefix.to_owned())),
        }
    }

    /// Queue an outside event (cancel, terminate, repair) for whoever owns the execution,
    /// and deliver it at once when that is this replica.
    pub async fn request(&self, id: Uuid, event: Event) -> Result<(), EngineError> {
        let request = serde_json::to_value(&event).map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let inbox_id = self.inner.store.post_request(id, request).await?;
        let actors = self.inner.actors.lock().await;
        if let Some(handle) = actors.get(&id) {
            let _ = handle.tx.try_send(actor::Msg::Request { inbox_id, event: Box::new(event) });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn spawn_actor(
        &self,
        id: Uuid,
        epoch: i64,
        definition: Arc<sagaflow_language::Definition>,
        execution: Execution,
        timers: Vec<(u64, i64)>,
        actions: Vec<interpreter::Action>,
        inbox: Vec<(i64, Option<Event>)>,
        telemetry: Option<Box<ActorTelemetry>>,
        resent: std::collections::BTreeSet<interpreter::WorkId>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let releasing = Arc::new(AtomicBool::new(settled(execution.status)));
        {
            let mut actors = self.inner.actors.lock().await;
            if actors.contains_key(&id) {
                return;
            }
            actors.insert(id, actor::Handle { tx, epoch, releasing: releasing.clone() });
        }
        if let Some(metrics) = &self.inner.config.metrics {
            metrics.actor_started();
        }
        let state = actor::Actor {
            engine: self.clone(),
            id,
            epoch,
            definition,
            execution,
            rx,
            timers: timers.into_iter().collect(),
            calls: Default::default(),
            delivered: Default::default(),
            telemetry,
            resent,
            releasing,
        };
        self.inner.tracker.spawn(state.run(actions, inbox));
    }

    pub(crate) fn announce(&self, id: Uuid, status: Status) {
        let watchers = self.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = watchers.get(&id) {
            sender.send_replace(status);
        }
    }

    pub(crate) fn forget_watcher(&self, id: Uuid) {
        let mut watchers = self.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if watchers.get(&id).is_some_and(|w| w.receiver_count() == 0) {
            watchers.remove(&id);
        }
    }

    async fn claim_loop(self) {
        let mut interval = tokio::time::interval(self.inner.config.claim_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            match self
                .inner
                .store
                .claim(&self.inner.config.owner, self.inner.config.lease, self.inner.config.claim_batch)
                .await
            {
                Ok(claimed) => {
                    for c in claimed {
                        if let Err(e) = self.adopt(c).await {
                            warn!(error = %e, "could not take over an execution");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "claiming executions failed; retrying"),
            }
        }
    }

    /// Continue an execution this replica just claimed: rebuild its state from the
    /// snapshot, re-issue its outstanding calls (same idempotency keys) and timers.
    async fn adopt(&self, claimed: crate::store::Claimed) -> Result<(), EngineError> {
        let id = claimed.record.id;
        let definition = self.inner.definitions.compiled(claimed.record.definition_id).await?;
        let execution: Execution = serde_json::from_value(claimed.record.snapshot.clone())
            .map_err(|e| EngineError::Store(StoreError::Corrupt(format!("snapshot of {id}: {e}"))))?;
        info!(execution = %id, epoch = claimed.epoch, status = %claimed.record.status, "took over execution");
        let metrics = self.inner.config.metrics.as_ref();
        if let Some(metrics) = metrics {
            // Claimable since its lease ran out, or (released) since the first request waiting.
            let since = claimed.previous_lease_expiry.or_else(|| claimed.inbox.iter().map(|i| i.created_at).min());
            metrics.takeover(since.and_then(|s| (Utc::now() - s).to_std().ok()));
        }
        let record = &claimed.record;
        let mut telemetry = ActorTelemetry::new(
            metrics,
            id,
            &record.definition_name,
            record.definition_version,
            record.started_at.timestamp_millis(),
            record.trace_parent.as_ref(),
        );
        if let Some(telemetry) = telemetry.as_mut().filter(|t| t.tracing()) {
            // The spans still open live only in the history: replay it to finish them under
            // the ids the previous owner gave them.
            let mut history = Vec::new();
            loop {
                let after = history.last().map_or(0, |e: &interpreter::HistoryEvent| e.id);
                let page = self.inner.store.history(id, after, 1000).await?;
                let done = page.len() < 1000;
                history.extend(page);
                if done {
                    break;
                }
            }
            telemetry.rebuild(&history);
        }
        let actions: Vec<interpreter::Action> =
            execution.outstanding().into_iter().filter(|a| matches!(a, interpreter::Action::Invoke(_))).collect();
        let timers = claimed.timers.iter().map(|t| (t.work_id, t.due.timestamp_millis())).collect();
        let inbox = claimed
            .inbox
            .into_iter()
            .map(|item| (item.id, serde_json::from_value::<Event>(item.request).ok()))
            .collect();
        // A failure of a call sent again says nothing of the previous owner's send.
        let resent = actions
            .iter()
            .filter_map(|a| match a {
                interpreter::Action::Invoke(call) => Some(call.id),
                _ => None,
            })
            .collect();
        self.spawn_actor(id, claimed.epoch, definition, execution, timers, actions, inbox, telemetry, resent).await;
        Ok(())
    }

    async fn renew_loop(self) {
        let period = self.inner.config.lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            let held: Vec<(Uuid, i64)> = {
                let actors = self.inner.actors.lock().await;
                actors.iter().map(|(id, h)| (*id, h.epoch)).collect()
            };
            if held.is_empty() {
                continue;
            }
            match self.inner.store.renew(&self.inner.config.owner, &held, self.inner.config.lease).await {
                Ok(lost) => {
                    let actors = self.inner.actors.lock().await;
                    for id in lost {
                        // Not renewed because the actor's own last commit released the lease
                        // while this renewal ran (under load, dozens per renewal): not a loss.
                        let Some(handle) = actors.get(&id) else { continue };
                        if handle.releasing.load(Ordering::Acquire) {
                            continue;
                        }
                        warn!(execution = %id, "lease lost; another replica continues this execution");
                        if let Some(metrics) = &self.inner.config.metrics {
                            metrics.lease_lost();
                        }
                        let _ = handle.tx.try_send(actor::Msg::LeaseLost);
                    }
                }
                Err(e) => warn!(error = %e, "renewing leases failed; retrying"),
            }
        }
    }

    async fn inbox_loop(self) {
        // Woken by the store's announcements where it makes them; polled otherwise. Polling
        // every 200 ms was five idle transactions a second per replica, most of the
        // background commits a lone saga's benchmark counted.
        let wake = Arc::new(Notify::new());
        // Polled at `inbox_interval` until the listener is up.
        let listening = Arc::new(AtomicBool::new(false));
        let engine = self.clone();
        let (announced, up) = (wake.clone(), listening.clone());
        self.inner.tracker.spawn(async move { engine.announcement_loop(announced, up).await });
        let mut waiting_for_actor = false;
        // Requests posted while no replica listened: look once at start.
        wake.notify_one();
        loop {
            let delay = if listening.load(Ordering::Relaxed) && !waiting_for_actor {
                self.inner.config.inbox_backstop
            } else {
                self.inner.config.inbox_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wake.notified() => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            let items = match self.inner.store.take_inbox(&self.inner.config.owner).await {
                Ok(items) => items,
                Err(e) => {
                    warn!(error = %e, "reading the inbox failed; retrying");
                    continue;
                }
            };
            let actors = self.inner.actors.lock().await;
            // A request for an execution whose actor is still being set up (adopted just now)
            // stays in the inbox; look again soon rather than at the backstop.
            waiting_for_actor = false;
            for item in items {
                let Some(handle) = actors.get(&item.execution_id) else {
                    waiting_for_actor = true;
                    continue;
                };
                let msg = match serde_json::from_value::<Event>(item.request.clone()) {
                    Ok(event) => actor::Msg::Request { inbox_id: item.id, event: Box::new(event) },
                    Err(_) => actor::Msg::Discard { inbox_id: item.id },
                };
                let _ = handle.tx.try_send(msg);
            }
        }
    }

    /// Turn the store's announcements into wake-ups of the inbox loop, for as long as the
    /// engine runs. While there is no feed (the database unreachable), the inbox loop polls,
    /// and a feed is opened again every second until one works. A store that cannot announce
    /// requests ends this at once.
    async fn announcement_loop(self, wake: Arc<Notify>, listening: Arc<AtomicBool>) {
        let mut failed = false;
        loop {
            let opened = tokio::select! {
                opened = self.inner.store.inbox_announcements() => opened,
                _ = self.inner.cancel.cancelled() => return,
            };
            match opened {
                Ok(None) => return,
                Ok(Some(mut announcements)) => {
                    listening.store(true, Ordering::Relaxed);
                    if failed {
                        info!("listening for inbox requests again");
                    }
                    // Requests posted while nobody listened.
                    wake.notify_one();
                    let error = loop {
                        let next = tokio::select! {
                            next = announcements.next() => next,
                            _ = self.inner.cancel.cancelled() => return,
                        };
                        // A missed announcement (Ok(false)) is handled like one received.
                        wake.notify_one();
                        if let Err(e) = next {
                            break e;
                        }
                    };
                    // A feed is not trusted again after an error: sqlx keeps a connection
                    // whose error it does not recognise as a lost connection (a reset one),
                    // and would report that error forever.
                    listening.store(false, Ordering::Relaxed);
                    warn!(error = %error, "listening for inbox requests failed; polling until it recovers");
                    failed = true;
                }
                Err(e) if failed => debug!(error = %e, "listening for inbox requests again failed; retrying"),
                Err(e) => {
                    warn!(error = %e, "cannot listen for inbox requests; polling until it can");
                    failed = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
        }
    }
}

/// One `wait` on an execution's status. The last waiter to leave removes the execution's
/// watcher, however the wait ends (settled, timed out, or dropped with its client): the
/// actor can only remove a watcher nobody is subscribed to, and one made for another
/// replica's (or an already settled) execution has no local actor at all, so without this
/// every waited-on execution left its channel behind for the life of the process.
struct Waiter<'a> {
    engine: &'a Engine,
    id: Uuid,
    receiver: watch::Receiver<Status>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut watchers = self.engine.inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
        // This waiter's own receiver still counts until the fields drop.
        if watchers.get(&self.id).is_some_and(|w| w.receiver_count() <= 1) {
            watchers.remove(&self.id);
        }
    }
}

/// Terminal, or parked for an operator.
pub fn settled(status: Status) -> bool {
    status.is_terminal() || status == Status::CompensationStuck
}

/// Identifies a start request: the same definition name and input hash the same.
pub fn request_hash(definition: &str, input: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(definition.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(input).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// The stored form of an execution's state.
pub(crate) fn snapshot_of(execution: &Execution) -> Result<Box<serde_json::value::RawValue>, EngineError> {
    // Straight to text: building a `Value` tree first cost a tenth of the engine's CPU.
    serde_json::value::to_raw_value(execution).map_err(|e| EngineError::Store(StoreError::Corrupt(e.to_string())))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use sagaflow_language::interpreter::Call;
    use serde_json::json;

    use super::*;
    use crate::invoker::CallOutcome;
    use crate::store::sqlite::SqliteStore;

    struct Echo;

    #[async_trait]
    impl Invoker for Echo {
        async fn invoke(&self, call: &Call) -> CallOutcome {
            CallOutcome::Succeeded(call.input.clone())
        }
    }

    /// Regression (found by the soak run: a replica's memory grew with every saga placed
    /// with `wait_for_completion`): a wait that ended left its execution's status channel
    /// in the engine for good.
    #[tokio::test]
    async fn a_finished_wait_leaves_no_watcher_behind() {
        let dir = std::env::temp_dir().join(format!("sagaflow-wait-{}", Uuid::new_v4().simple()));
        let store = SqliteStore::open(dir.join("engine.db").to_str().expect("path")).await.expect("store");
        store.migrate().await.expect("migrate");
        let config = EngineConfig { owner: "wait-test".into(), ..EngineConfig::default() };
        let engine = Engine::new(Arc::new(store), Arc::new(Echo), config);
        let definition = r#"{"StartAt": "Work", "States": {"Work": {"Type": "Task",
            "Resource": "grpc://p/s.v1.S/Work", "SagaRole": "readonly", "End": true}}}"#;
        engine.definitions().register("work", definition).await.expect("register");
        for n in 0..3 {
            let started = engine
                .start(StartRequest {
                    definition: "work".into(),
                    version: None,
                    input: json!({ "n": n }),
                    execution_id: None,
                    idempotency_key: None,
                })
                .await
                .expect("start");
            // Waited on while it runs, then again once it has settled (a repeated
            // StartOrder with wait_for_completion does exactly that).
            for _ in 0..2 {
                let status = engine.wait(started.id, Duration::from_secs(10)).await.expect("wait");
                assert_eq!(status, Status::Succeeded);
            }
        }
        let left = engine.inner.watchers.lock().unwrap_or_else(|e| e.into_inner()).len();
        assert_eq!(left, 0, "watchers left behind by finished waits");
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
