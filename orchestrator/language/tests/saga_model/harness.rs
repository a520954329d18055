//! The orchestrator's side of the model: one execution driven through the pure interpreter
//! the way the engine drives it (step → commit → act), with a virtual clock, calls that meet
//! every fate the network and the participants can give them, crashes that lose whatever
//! was not committed, takeovers that rebuild the execution and re-issue its outstanding
//! calls under the same keys, and an operator who cancels, terminates, redrives and repairs.
//!
//! A crash can only lose what was not committed: each step's events and snapshot commit
//! together (DESIGN §4), and nothing is sent before its step commits. So a crash cuts the
//! history at the last step boundary, or (when the last commit did not make it) one step
//! earlier, whose sends then never happened. Cutting inside a step cannot happen and is not
//! modelled; replaying a cut history from nothing must rebuild exactly the snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use sagaflow_language::Definition;
use sagaflow_language::interpreter::saga::StepStatus;
use sagaflow_language::interpreter::{
    self, Action, Call, Envelope, Event, Execution, HistoryEvent, Start, Status, StepError, WorkId,
};
use serde_json::Value;

use super::participants::{Answer, Participants};

/// Execution id of every modelled run (a UUID v7, as the engine makes).
pub(crate) const EXECUTION_ID: &str = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
const START_MS: i64 = 1_704_067_200_000;
/// Most steps a healthy world may take to end an execution once faults stop.
pub(crate) const SETTLE_LIMIT: usize = 400;
/// How far ahead `FireTimer` may move the clock.
const FIRE_HORIZON_MS: i64 = 60_000;
/// Most timers one clock jump may fire (a zero-delay retry loop would spin forever).
const JUMP_FIRE_LIMIT: usize = 200;

/// What happens to one call that is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The participant serves it and the answer comes back.
    Answer,
    /// As `Answer`, and the answer is delivered a second time.
    Duplicate,
    /// A first-time forward call gets its method's business refusal (a compensation is
    /// never refused: it meets `Unavailable` instead).
    Refuse,
    /// The connection is refused: nothing was sent (a known outcome).
    Unavailable,
    /// The attempt times out before the request reaches the participant; the request may
    /// still arrive later.
    TimeoutBeforeApply { arrives_late: bool },
    /// The participant applies it, but the attempt times out before the answer arrives; the
    /// answer may still arrive later (and must be ignored).
    TimeoutAfterApply { answer_arrives_late: bool },
    /// The participant applies it, then the call fails with an unknown-outcome status.
    AppliedThenFailed,
}

/// One step of a scenario. Indices pick among what is there (modulo its size); an op that
/// finds nothing to act on does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Deliver {
        pick: usize,
        fate: Fate,
    },
    /// The earliest timer fires (the clock moves to its due time), if it is due within a
    /// minute: calls in flight answer or time out well before that (their per-attempt
    /// timeouts are seconds), so a later timer, such as the execution's own timeout, is
    /// reached by `Jump` instead.
    FireTimer,
    /// The clock jumps ahead and every timer that falls due fires, in due order.
    Jump {
        seconds: u32,
    },
    /// A request that was delayed in the network reaches its participant now.
    LateRequest {
        pick: usize,
    },
    /// An answer the orchestrator gave up on arrives now.
    LateAnswer {
        pick: usize,
    },
    /// The replica dies. `lose_last_step`: its last transition's commit did not make it.
    /// `reached`: bit i says whether the i-th request in flight had reached the network.
    Crash {
        lose_last_step: bool,
        reached: u8,
    },
    Cancel,
    Terminate,
    Redrive,
    RetryCompensation,
    SkipCompensation,
    ResolveCompensation,
}

/// A call handed to the network, with the step that issued it.
#[derive(Debug, Clone)]
struct InFlight {
    call: Call,
    step: usize,
}

/// One order and the world it lives in.
#[derive(Debug)]
pub(crate) struct World {
    def: Rc<Definition>,
    pub(crate) execution: Execution,
    /// The committed history (what a takeover finds).
    pub(crate) history: Vec<HistoryEvent>,
    /// History length after each committed step.
    boundaries: Vec<usize>,
    /// The execution as committed before the latest step, and how many calls had been sent
    /// then: what a takeover sees when the latest commit is lost.
    before_last: Option<(Execution, usize)>,
    now: i64,
    inflight: Vec<InFlight>,
    timers: BTreeMap<WorkId, i64>,
    late_requests: Vec<Call>,
    late_answers: Vec<Event>,
    /// Operator requests applied, with the step that applied them: the inbox keeps a request
    /// until its step commits, so a crash that loses the step hands it to the next replica.
    inbox: Vec<(Event, usize)>,
    pub(crate) participants: Participants,
    /// Every call handed to the network, in order, across replicas.
    pub(crate) sent: Vec<Call>,
    /// Calls sent again by a takeover, until they are answered. The previous owner may have
    /// sent them too, so (as the engine does) a failure of the new send is reported with an
    /// unknown outcome whatever it says: it cannot prove the first send was not applied.
    resent: BTreeSet<WorkId>,
    /// Whether the engine follows that rule (off only to show what breaks without it).
    pub(crate) resent_failures_unknown: bool,
    /// Keep the execution as it was before each step: the next op loses the last commit.
    pub(crate) keep_previous: bool,
    pub(crate) crashes: usize,
}

type Checked<T = ()> = Result<T, String>;

fn answer_event(call: &Call, answer: Answer) -> Event {
    match answer {
        Ok(output) => Event::TaskSucceeded { id: call.id, output },
        Err((error, cause)) => Event::TaskFailed { id: call.id, error, cause: Some(cause), outcome_unknown: false },
    }
}

fn failed(call: &Call, error: &str, outcome_unknown: bool) -> Event {
    Event::TaskFailed { id: call.id, error: error.into(), cause: Some("injected".into()), outcome_unknown }
}

/// Rebuild an execution from its history alone, as `sagaflow replay` does: every recorded
/// outside event applied again to a fresh execution.
pub(crate) fn replay(def: &Definition, history: &[HistoryEvent]) -> Checked<(Execution, Vec<HistoryEvent>)> {
    let mut execution = Execution::new();
    let mut rebuilt = Vec::with_capacity(history.len());
    for recorded in history {
        if let Some(envelope) = recorded.as_input() {
            let step = interpreter::step(def, &mut execution, envelope)
                .map_err(|e| format!("replay refused event #{}: {e}", recorded.id))?;
            rebuilt.extend(step.history);
        }
    }
    Ok((execution, rebuilt))
}

impl World {
    pub(crate) fn start(def: Rc<Definition>, input: Value, participants: Participants, seed: u64) -> Checked<World> {
        let mut world = World {
            def,
            execution: Execution::new(),
            history: Vec::new(),
            boundaries: Vec::new(),
            before_last: None,
            now: START_MS,
            inflight: Vec::new(),
            timers: BTreeMap::new(),
            late_requests: Vec::new(),
            late_answers: Vec::new(),
            inbox: Vec::new(),
            participants,
            sent: Vec::new(),
            resent: BTreeSet::new(),
            resent_failures_unknown: true,
            keep_previous: false,
            crashes: 0,
        };
        world.apply(Event::Started(Start {
            execution_id: EXECUTION_ID.into(),
            execution_name: "order-1".into(),
            state_machine_id: "sagaflow:order@1".into(),
            state_machine_name: "order".into(),
            input,
            seed,
            redrive_count: 0,
            key_namespace: None,
            fork_at: None,
        }))?;
        Ok(world)
    }

    /// Apply an event that must be accepted, commit it and act on it.
    fn apply(&mut self, event: Event) -> Checked {
        match self.try_apply(event.clone(), false)? {
            true => Ok(()),
            false => Err(format!("the interpreter refused {event:?} in status {}", self.execution.status)),
        }
    }

    /// Apply an event that may be refused (`may_refuse`: then a refusal must leave the
    /// execution untouched), commit it and act on it.
    fn try_apply(&mut self, event: Event, may_refuse: bool) -> Checked<bool> {
        // Copies of the execution are the harness's main cost in a debug build: take one
        // only when a refusal is expected or the next op loses this step's commit.
        let before = (may_refuse || self.keep_previous).then(|| self.execution.clone());
        let envelope = Envelope { now_ms: self.now, event: event.clone() };
        let step = match interpreter::step(&self.def, &mut self.execution, envelope) {
            Ok(step) => step,
            Err(e) => {
                if before.as_ref().is_some_and(|b| *b != self.execution) {
                    return Err(format!("refusing {event:?} ({e}) changed the execution"));
                }
                return Ok(false);
            }
        };
        self.before_last = before.map(|b| (b, self.sent.len()));
        self.history.extend(step.history);
        self.boundaries.push(self.history.len());
        let number = self.boundaries.len();
        for action in step.actions {
            match action {
                Action::Invoke(call) => {
                    self.sent.push(call.clone());
                    self.inflight.push(InFlight { call, step: number });
                }
                Action::StartTimer { id, due_ms } => {
                    self.timers.insert(id, due_ms);
                }
                Action::Abandon { id } => {
                    self.timers.remove(&id);
                    // An abandoned request was sent: it may still reach its participant.
                    if let Some(i) = self.inflight.iter().position(|f| f.call.id == id) {
                        let gone = self.inflight.remove(i);
                        self.late_requests.push(gone.call);
                    }
                }
                Action::Finished { .. } => {}
            }
        }
        Ok(true)
    }

    /// An event that must be refused (a duplicate or stale answer) and change nothing.
    fn expect_refused(&mut self, event: Event) -> Checked {
        let before = self.execution.clone();
        let envelope = Envelope { now_ms: self.now, event: event.clone() };
        match interpreter::step(&self.def, &mut self.execution, envelope) {
            Err(StepError::UnknownWork(_)) if self.execution == before => Ok(()),
            Err(e) => Err(format!("a stale answer {event:?} was refused as {e:?} or changed the execution")),
            Ok(_) => Err(format!("a stale or duplicate answer was applied: {event:?}")),
        }
    }

    pub(crate) fn run(&mut self, op: &Op) -> Checked {
        match *op {
            Op::Deliver { pick, fate } => self.deliver(pick, fate),
            Op::FireTimer => {
                let soon = self.timers.values().min().is_some_and(|due| *due <= self.now + FIRE_HORIZON_MS);
                if soon {
                    self.fire_earliest()?;
                }
                Ok(())
            }
            Op::Jump { seconds } => {
                self.now += i64::from(seconds) * 1000;
                for _ in 0..JUMP_FIRE_LIMIT {
                    match self.timers.iter().map(|(id, due)| (*due, *id)).min() {
                        Some((due, _)) if due <= self.now => {
                            self.fire_earliest()?;
                        }
                        _ => break,
                    }
                }
                Ok(())
            }
            Op::LateRequest { pick } => {
                if !self.late_requests.is_empty() {
                    let call = self.late_requests.remove(pick % self.late_requests.len());
                    // Nobody waits for this answer any more.
                    let _ = self.participants.handle(&call, self.now, false);
                }
                Ok(())
            }
            Op::LateAnswer { pick } => {
                if self.late_answers.is_empty() {
                    return Ok(());
                }
                let event = self.late_answers.remove(pick % self.late_answers.len());
                self.expect_refused(event)
            }
            Op::Crash { lose_last_step, reached } => self.crash(lose_last_step, reached),
            Op::Cancel => self.operator(Event::Cancel { reason: Some("the customer cancelled".into()) }),
            Op::Terminate => self.operator(Event::Terminate { reason: Some("stopped by the operator".into()) }),
            Op::Redrive => self.operator(Event::Redrive),
            Op::RetryCompensation => self.operator(Event::RetryCompensation),
            Op::SkipCompensation => self.operator(Event::SkipCompensation { reason: "accepted as is".into() }),
            Op::ResolveCompensation => {
                self.undo_stuck_by_hand();
                self.operator(Event::ResolveCompensation { reason: "undone by hand".into() })
            }
        }
    }

    fn deliver(&mut self, pick: usize, fate: Fate) -> Checked {
        if self.inflight.is_empty() {
            return Ok(());
        }
        let InFlight { call, .. } = self.inflight.remove(pick % self.inflight.len());
        self.now += 5;
        let compensation = call.compensates.is_some();
        let event = match fate {
            Fate::Answer | Fate::Duplicate => answer_event(&call, self.participants.handle(&call, self.now, false)),
            Fate::Refuse if !compensation => answer_event(&call, self.participants.handle(&call, self.now, true)),
            Fate::Refuse | Fate::Unavailable => failed(&call, "Grpc.Unavailable", false),
            Fate::TimeoutBeforeApply { arrives_late } => {
                if arrives_late {
                    self.late_requests.push(call.clone());
                }
                failed(&call, "States.Timeout", true)
            }
            Fate::TimeoutAfterApply { answer_arrives_late } => {
                let answer = self.participants.handle(&call, self.now, false);
                if answer_arrives_late {
                    self.late_answers.push(answer_event(&call, answer));
                }
                failed(&call, "States.Timeout", true)
            }
            Fate::AppliedThenFailed => {
                let _ = self.participants.handle(&call, self.now, false);
                failed(&call, "Grpc.Internal", true)
            }
        };
        let event = match event {
            Event::TaskFailed { id, error, cause, outcome_unknown } if self.resent.remove(&id) => {
                let outcome_unknown = outcome_unknown || self.resent_failures_unknown;
                Event::TaskFailed { id, error, cause, outcome_unknown }
            }
            other => {
                self.resent.remove(&call.id);
                other
            }
        };
        self.apply(event.clone())?;
        if fate == Fate::Duplicate {
            self.expect_refused(event)?;
        }
        Ok(())
    }

    /// Fire the earliest timer; false when none is armed.
    fn fire_earliest(&mut self) -> Checked<bool> {
        let Some((due, id)) = self.timers.iter().map(|(id, due)| (*due, *id)).min() else {
            return Ok(false);
        };
        self.timers.remove(&id);
        self.now = self.now.max(due);
        self.apply(Event::TimerFired { id })?;
        Ok(true)
    }

    /// An operator request through the inbox: applied if the execution accepts it now,
    /// discarded (as the engine does) if not.
    fn operator(&mut self, event: Event) -> Checked {
        if self.try_apply(event.clone(), true)? {
            self.inbox.push((event, self.boundaries.len()));
        }
        Ok(())
    }

    /// Before marking stuck compensations resolved, the operator undoes them by hand.
    fn undo_stuck_by_hand(&mut self) {
        if self.execution.status != Status::CompensationStuck {
            return;
        }
        let Some(rollback) = self.execution.rollback() else { return };
        let stuck: Vec<String> = rollback
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Stuck)
            .map(|s| s.owed.forward_key.clone())
            .collect();
        for forward in stuck {
            let attempt = self.sent.iter().rev().find(|c| c.compensates.as_deref() == Some(forward.as_str()));
            if let Some(call) = attempt {
                let mut parts = call.resource.trim_start_matches("grpc://").split('/');
                let service = parts.next().unwrap_or_default().to_owned();
                let method = call.resource.rsplit('/').next().unwrap_or_default().to_owned();
                self.participants.operator_undo(&service, &method, &forward);
            }
        }
    }

    /// The replica dies; another takes over from what was committed.
    fn crash(&mut self, lose_last_step: bool, reached: u8) -> Checked {
        self.crashes += 1;
        let snapshot = match self.before_last.take() {
            Some((before, sent_before)) if lose_last_step && self.boundaries.len() >= 2 => {
                // The last commit failed: its events never existed and its sends never went out.
                let lost = self.boundaries.len();
                self.boundaries.pop();
                self.history.truncate(self.boundaries.last().copied().unwrap_or(0));
                self.sent.truncate(sent_before);
                self.inflight.retain(|f| f.step != lost);
                before
            }
            _ => self.execution.clone(),
        };
        for (i, gone) in std::mem::take(&mut self.inflight).into_iter().enumerate() {
            if reached >> (i % 8) & 1 == 1 {
                self.late_requests.push(gone.call);
            }
        }
        // Answers travel on the dead replica's connections: none reaches the next one.
        self.late_answers.clear();
        self.timers.clear();
        self.resent.clear();

        // The engine's way: the snapshot committed with the last transition.
        let text = serde_json::to_string(&snapshot).map_err(|e| format!("the snapshot does not serialize: {e}"))?;
        let rebuilt: Execution =
            serde_json::from_str(&text).map_err(|e| format!("the snapshot does not deserialize: {e}"))?;
        if rebuilt != snapshot {
            return Err(format!("the snapshot does not survive a JSON round trip: {text}"));
        }
        // The history's way: replaying the committed history rebuilds the same execution
        // and the same events.
        let (replayed, replayed_history) = replay(&self.def, &self.history)?;
        if replayed_history != self.history {
            return Err("replaying the committed history does not reproduce it".into());
        }
        if replayed != rebuilt {
            let replayed = serde_json::to_string(&replayed).unwrap_or_default();
            return Err(format!(
                "replaying the history rebuilds another execution than the snapshot:\nreplayed {replayed}\nsnapshot {text}"
            ));
        }
        self.execution = rebuilt;

        // Takeover: outstanding calls go out again with their keys, timers are re-armed.
        let number = self.boundaries.len();
        for action in self.execution.outstanding() {
            match action {
                Action::Invoke(call) => {
                    self.sent.push(call.clone());
                    self.resent.insert(call.id);
                    self.inflight.push(InFlight { call, step: number });
                }
                Action::StartTimer { id, due_ms } => {
                    self.timers.insert(id, due_ms);
                }
                Action::Abandon { .. } | Action::Finished { .. } => {}
            }
        }
        // Operator requests whose step was lost are still in the inbox.
        let (kept, lost): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.inbox).into_iter().partition(|(_, s)| *s <= number);
        self.inbox = kept;
        for (event, _) in lost {
            self.operator(event)?;
        }
        Ok(())
    }

    /// Faults stop: every call is answered, every timer fires, a stuck rollback is retried.
    /// Returns the steps it took; an execution that cannot end is a violation.
    pub(crate) fn settle(&mut self) -> Checked<usize> {
        for taken in 0..SETTLE_LIMIT {
            if !self.inflight.is_empty() {
                self.deliver(0, Fate::Answer)?;
                continue;
            }
            let status = self.execution.status;
            if status.is_terminal() {
                return Ok(taken);
            }
            if self.fire_earliest()? {
                continue;
            }
            if status == Status::CompensationStuck {
                self.operator(Event::RetryCompensation)?;
                continue;
            }
            return Err(format!("the execution is {status} with nothing outstanding: it can never end"));
        }
        Err(format!("the execution did not end within {SETTLE_LIMIT} steps once faults stopped"))
    }

    /// Every request still in the network arrives.
    pub(crate) fn flush_network(&mut self) {
        for call in std::mem::take(&mut self.late_requests) {
            let _ = self.participants.handle(&call, self.now, false);
        }
    }

    /// The calls the execution itself still waits for, as the harness sees them.
    pub(crate) fn in_flight_ids(&self) -> Vec<WorkId> {
        self.inflight.iter().map(|f| f.call.id).collect()
    }
}
