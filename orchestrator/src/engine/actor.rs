//! One owned execution: a task that applies each event to the interpreter, commits the
//! resulting transition (fenced by its lease), and only then acts on it — calls go out,
//! timers are armed, waiters are told. A lost lease stops the actor without acting.
//!
//! The actor's calls run on its own task, polled beside its mailbox, not as tasks of their
//! own: a participant's answer then wakes the actor directly instead of a call task that
//! passes it on through the mailbox, one hand-off less per step (at one saga in flight each
//! hand-off can wake an idle CPU).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::future::{AbortHandle, Abortable, Aborted};
use futures::stream::FuturesUnordered;
use sagaflow_language::Definition;
use sagaflow_language::interpreter::{self, Action, Envelope, Event, Execution, Status, Step, WorkId};
use tokio::sync::mpsc;
use tracing::{Instrument as _, debug, info, warn};
use uuid::Uuid;

use super::{Engine, EngineError, settled, snapshot_of};
use crate::invoker::CallOutcome;
use crate::store::{StoreError, Timer, Transition};
use crate::telemetry::{ActorTelemetry, epoch_ms};

/// What the engine keeps of a running actor.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) epoch: i64,
    /// Set before the actor sends the commit that gives the lease up, so the renewal loop
    /// does not mistake the released lease for a lost one.
    pub(crate) releasing: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(crate) enum Msg {
    Request {
        inbox_id: i64,
        /// Boxed: an event is large and the other messages are small.
        event: Box<Event>,
    },
    /// An inbox request nobody can read: consume it, or the execution is re-claimed for it
    /// again and again.
    Discard {
        inbox_id: i64,
    },
    LeaseLost,
}

pub(crate) struct Actor {
    pub(crate) engine: Engine,
    pub(crate) id: Uuid,
    pub(crate) epoch: i64,
    pub(crate) definition: Arc<Definition>,
    pub(crate) execution: Execution,
    pub(crate) rx: mpsc::Receiver<Msg>,
    /// Armed timers: work id → due (ms since epoch).
    pub(crate) timers: BTreeMap<WorkId, i64>,
    /// Calls in flight, polled by the actor itself.
    pub(crate) calls: Calls,
    /// Inbox requests already applied (the inbox is read again until the commit deletes them).
    pub(crate) delivered: BTreeSet<i64>,
    /// Spans and metrics of this execution; `None` when neither is on.
    pub(crate) telemetry: Option<Box<ActorTelemetry>>,
    /// Calls this replica sent again when it took the execution over, until they answer.
    pub(crate) resent: BTreeSet<WorkId>,
    /// Shared with the handle: see [`Handle::releasing`].
    pub(crate) releasing: Arc<AtomicBool>,
}

/// A call in flight: resolves to its work id and outcome.
type CallFuture = Pin<Box<dyn Future<Output = (WorkId, CallOutcome)> + Send>>;

/// The actor's calls in flight, each abortable so an abandoned one can be stopped.
#[derive(Default)]
pub(crate) struct Calls {
    running: FuturesUnordered<Abortable<CallFuture>>,
    handles: HashMap<WorkId, AbortHandle>,
}

impl Calls {
    fn start(&mut self, id: WorkId, call: CallFuture) {
        let (handle, registration) = AbortHandle::new_pair();
        self.running.push(Abortable::new(call, registration));
        self.handles.insert(id, handle);
    }

    fn abort(&mut self, id: WorkId) {
        if let Some(handle) = self.handles.remove(&id) {
            handle.abort();
        }
    }

    /// The next call to finish; pending forever while none runs, so it can sit in a
    /// `select!` beside the mailbox.
    async fn next_done(&mut self) -> (WorkId, CallOutcome) {
        loop {
            match self.running.next().await {
                Some(Ok((id, outcome))) => {
                    self.handles.remove(&id);
                    return (id, outcome);
                }
                Some(Err(Aborted)) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").field("in_flight", &self.handles.keys().collect::<Vec<_>>()).finish()
    }
}

/// Why the actor stops.
enum Stop {
    Settled,
    LeaseLost,
    Shutdown,
    /// The store refused a commit for a reason other than the lease.
    Refused,
}

impl Actor {
    pub(crate) async fn run(mut self, actions: Vec<Action>, inbox: Vec<(i64, Option<Event>)>) {
        let stop = self.run_inner(actions, inbox).await;
        // Stop the calls still in flight before the execution is let go.
        drop(std::mem::take(&mut self.calls));
        self.engine.inner.actors.lock().await.remove(&self.id);
        if let Some(metrics) = &self.engine.inner.config.metrics {
            metrics.actor_stopped();
        }
        match stop {
            Stop::Settled => {
                self.engine.announce(self.id, self.execution.status);
                self.engine.forget_watcher(self.id);
            }
            Stop::LeaseLost => info!(execution = %self.id, "stopped: another replica owns the execution"),
            Stop::Shutdown => debug!(execution = %self.id, "stopped for shutdown"),
            Stop::Refused => warn!(execution = %self.id, "stopped after a refused commit"),
        }
    }

    async fn run_inner(&mut self, actions: Vec<Action>, inbox: Vec<(i64, Option<Event>)>) -> Stop {
        // Whatever was outstanding when this replica took over goes out again; calls keep
        // their idempotency keys, so participants answer repeats with their first answer.
        self.act(actions);
        if settled(self.execution.status) && inbox.is_empty() {
            return Stop::Settled;
        }
        for (inbox_id, event) in inbox {
            let stop = match event {
                Some(event) => self.apply_request(inbox_id, event).await,
                None => self.discard(inbox_id).await,
            };
            if let Some(stop) = stop {
                return stop;
            }
        }
        loop {
            let next_timer = self.timers.iter().min_by_key(|(_, due)| **due).map(|(id, due)| (*id, *due));
            let sleep = match next_timer {
                Some((_, due)) => {
                    let wait = (due - Utc::now().timestamp_millis()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait))
                }
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { return Stop::Shutdown };
                    let stop = match msg {
                        Msg::Request { inbox_id, event } => self.apply_request(inbox_id, *event).await,
                        Msg::Discard { inbox_id } => self.discard(inbox_id).await,
                        Msg::LeaseLost => Some(Stop::LeaseLost),
                    };
                    if let Some(stop) = stop {
                        return stop;
                    }
                }
                (id, outcome) = self.calls.next_done() => {
                    let resent = self.resent.remove(&id);
                    if let Some(stop) = self.apply(call_event(id, outcome, resent), Vec::new()).await {
                        return stop;
                    }
                }
                _ = sleep, if next_timer.is_some() => {
                    if let Some((id, _)) = next_timer {
                        self.timers.remove(&id);
                        if let Some(stop) = self.apply(Event::TimerFired { id }, Vec::new()).await {
                            return stop;
                        }
                    }
                }
                _ = self.engine.inner.cancel.cancelled() => return Stop::Shutdown,
            }
        }
    }

    async fn apply_request(&mut self, inbox_id: i64, event: Event) -> Option<Stop> {
        if !self.delivered.insert(inbox_id) {
            return None;
        }
        self.apply(event, vec![inbox_id]).await
    }

    /// Consume an unreadable inbox request with an otherwise empty commit.
    async fn discard(&mut self, inbox_id: i64) -> Option<Stop> {
        if !self.delivered.insert(inbox_id) {
            return None;
        }
        warn!(execution = %self.id, inbox = inbox_id, "discarding an unreadable inbox request");
        let owner = &self.engine.inner.config.owner;
        let Ok(transition) =
            transition(self.id, self.epoch, owner, &self.execution, &mut Step::default(), vec![inbox_id])
        else {
            return Some(Stop::Refused);
        };
        if let Err(stop) = self.commit(transition).await {
            return Some(stop);
        }
        settled(self.execution.status).then_some(Stop::Settled)
    }

    /// Step, commit, act. `Some` when the actor must stop.
    async fn apply(&mut self, event: Event, inbox: Vec<i64>) -> Option<Stop> {
        let wall = SystemTime::now();
        let now = epoch_ms(wall);
        let mut step = match interpreter::step(&self.definition, &mut self.execution, Envelope { now_ms: now, event }) {
            Ok(step) => step,
            Err(e) => {
                // A late answer for abandoned work, or a request that does not fit the status:
                // nothing changes, but a consumed request must still leave the inbox.
                debug!(execution = %self.id, error = %e, "event ignored");
                if inbox.is_empty() {
                    return None;
                }
                Step::default()
            }
        };
        let owner = &self.engine.inner.config.owner;
        let transition = match transition(self.id, self.epoch, owner, &self.execution, &mut step, inbox) {
            Ok(t) => t,
            Err(e) => {
                // The state in memory moved on but cannot be recorded: leave the execution to
                // be taken over from its last committed state, as after a refused commit.
                tracing::error!(execution = %self.id, error = %e, "could not record a step");
                return Some(Stop::Refused);
            }
        };
        let committed = match self.commit(transition).await {
            Ok(committed) => committed,
            Err(stop) => return Some(stop),
        };
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.committed(&committed.events, wall);
        }
        self.act(step.actions);
        settled(self.execution.status).then_some(Stop::Settled)
    }

    /// Commit, riding out database outages; a lost lease ends the actor. Any other error is
    /// not one that waiting fixes: the actor stops without acting, its lease expires, and the
    /// execution is taken over again from its last committed state.
    async fn commit(&mut self, transition: Transition) -> Result<Transition, Stop> {
        if transition.release {
            self.releasing.store(true, Ordering::Release);
        }
        let mut delay = Duration::from_millis(50);
        let mut transition = transition;
        loop {
            let failed = match self.engine.inner.committer.commit(transition).await {
                Ok(committed) => return Ok(committed),
                Err(failed) => failed,
            };
            match (failed.error, failed.transition) {
                (StoreError::LeaseLost(_), _) => return Err(Stop::LeaseLost),
                (_, None) => return Err(Stop::Shutdown),
                (StoreError::Unavailable(e), Some(back)) => {
                    warn!(execution = %self.id, error = %e, retry_in = ?delay, "database unavailable; retrying the commit");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.engine.inner.cancel.cancelled() => return Err(Stop::Shutdown),
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                    transition = *back;
                }
                (e, Some(_)) => {
                    tracing::error!(execution = %self.id, error = %e, "commit refused; leaving the execution to be taken over from its last committed state");
                    return Err(Stop::Refused);
                }
            }
        }
    }

    /// Carry out the actions of a committed step.
    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Invoke(call) => {
                    let invoker = self.engine.inner.invoker.clone();
                    let id = call.id;
                    debug!(execution = %self.id, state = %call.scope, attempt = call.attempt, "calling {}", call.resource);
                    // The invoker logs at debug level only: then its lines carry the execution.
                    let log_span = if tracing::enabled!(tracing::Level::DEBUG) {
                        tracing::debug_span!("call", execution = %self.id)
                    } else {
                        tracing::Span::none()
                    };
                    let future: CallFuture = match &self.telemetry {
                        None => Box::pin(
                            async move {
                                let outcome = invoker.invoke(&call).await;
                                (id, outcome)
                            }
                            .instrument(log_span),
                        ),
                        Some(telemetry) => {
                            let trace = telemetry.call_trace(id);
                            let metrics = telemetry.metrics().cloned();
                            Box::pin(
                                async move {
                                    let started = Instant::now();
                                    let outcome = match trace {
                                        Some(trace) => {
                                            crate::telemetry::call::scope(trace, invoker.invoke(&call)).await
                                        }
                                        None => invoker.invoke(&call).await,
                                    };
                                    if let Some(metrics) = metrics {
                                        let error = match &outcome {
                                            CallOutcome::Succeeded(_) => None,
                                            CallOutcome::Failed { error, .. } => Some(error.as_str()),
                                        };
                                        metrics.call_finished(&call, started.elapsed(), error);
                                    }
                                    (id, outcome)
                                }
                                .instrument(log_span),
                            )
                        }
                    };
                    self.calls.start(id, future);
                }
                Action::StartTimer { id, due_ms } => {
                    self.timers.insert(id, due_ms);
                }
                Action::Abandon { id } => {
                    self.timers.remove(&id);
                    self.calls.abort(id);
                }
                Action::Finished { status } => {
                    info!(execution = %self.id, %status, "execution settled");
                    if let Some(telemetry) = &mut self.telemetry {
                        telemetry.settled(status, Utc::now().timestamp_millis());
                    }
                    self.engine.announce(self.id, status);
                }
            }
        }
    }
}

/// The event a finished call becomes. `resent`: this replica sent the call again after taking
/// the execution over, so the previous owner may have sent it too and that send may have been
/// applied; a failure of this send cannot prove otherwise, so its outcome is unknown whatever
/// the invoker made of it (decision 0016). Found by the saga model
/// (`orchestrator/language/tests/saga_model.rs`).
pub(crate) fn call_event(id: WorkId, outcome: CallOutcome, resent: bool) -> Event {
    match outcome {
        CallOutcome::Succeeded(output) => Event::TaskSucceeded { id, output },
        CallOutcome::Failed { error, cause, outcome_unknown } => {
            Event::TaskFailed { id, error, cause, outcome_unknown: outcome_unknown || resent }
        }
    }
}

/// The durable timers a step arms.
pub(crate) fn timers_of(step: &Step) -> Vec<(WorkId, i64)> {
    step.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartTimer { id, due_ms } => Some((*id, *due_ms)),
            _ => None,
        })
        .collect()
}

/// The store transition recording `step`, already applied to `execution`. The step's history
/// moves into the transition (copying every event's payload cost more than the interpreter's
/// own work); the committer hands the transition back once it is committed.
pub(crate) fn transition(
    id: Uuid,
    epoch: i64,
    owner: &str,
    execution: &Execution,
    step: &mut Step,
    inbox_consumed: Vec<i64>,
) -> Result<Transition, EngineError> {
    let mut timers_added = Vec::new();
    let mut timers_removed = Vec::new();
    for action in &step.actions {
        match action {
            Action::StartTimer { id, due_ms } => timers_added.push(Timer {
                work_id: *id,
                due: DateTime::<Utc>::from_timestamp_millis(*due_ms).unwrap_or_else(Utc::now),
            }),
            Action::Abandon { id } => timers_removed.push(*id),
            _ => {}
        }
    }
    // A fired timer is consumed by the step that handled it.
    for event in &step.history {
        if let Some(Event::TimerFired { id }) = &event.cause {
            timers_removed.push(*id);
        }
    }
    let status = execution.status;
    Ok(Transition {
        execution_id: id,
        epoch,
        owner: owner.to_owned(),
        events: std::mem::take(&mut step.history),
        status,
        snapshot: snapshot_of(execution)?,
        output: execution.output.clone(),
        error: execution.error.clone(),
        cause: execution.cause.clone(),
        timers_added,
        timers_removed,
        inbox_consumed,
        release: settled(status) || status == Status::Pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_connection() -> CallOutcome {
        CallOutcome::Failed { error: "Grpc.Unavailable".into(), cause: None, outcome_unknown: false }
    }

    #[test]
    fn a_failed_call_sent_again_after_a_takeover_has_an_unknown_outcome() {
        let event = call_event(7, refused_connection(), true);
        assert!(matches!(event, Event::TaskFailed { id: 7, outcome_unknown: true, .. }), "{event:?}");
    }

    #[test]
    fn a_first_send_keeps_the_invokers_classification() {
        let event = call_event(7, refused_connection(), false);
        assert!(matches!(event, Event::TaskFailed { outcome_unknown: false, .. }), "{event:?}");
        let ok = call_event(7, CallOutcome::Succeeded(serde_json::json!({"a": 1})), true);
        assert!(matches!(ok, Event::TaskSucceeded { id: 7, .. }), "{ok:?}");
    }
}
