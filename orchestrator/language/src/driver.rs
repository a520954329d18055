//! Runs a definition to completion in memory: a virtual clock, timers that fire in due
//! order without real waiting, and task calls answered by a [`TaskHandler`] (stubs in tests,
//! `sagaflow test`, property tests). Nothing here sleeps or reads the real clock.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use crate::interpreter::{self, Action, Call, Envelope, Event, Execution, HistoryEvent, Start, Status, WorkId};
use crate::model::Definition;

/// How a stubbed call answers.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    Succeed(Value),
    Fail { error: String, cause: Option<String>, outcome_unknown: bool },
}

/// Answers task and compensation calls for the driver.
pub trait TaskHandler {
    fn call(&mut self, call: &Call, now_ms: i64) -> TaskOutcome;
}

impl<F: FnMut(&Call, i64) -> TaskOutcome> TaskHandler for F {
    fn call(&mut self, call: &Call, now_ms: i64) -> TaskOutcome {
        self(call, now_ms)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Virtual time of the start, in milliseconds since the epoch.
    pub start_ms: i64,
    /// Stop after this many events (a definition that loops forever).
    pub max_events: usize,
    pub execution_id: String,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // 2024-01-01T00:00:00Z: fixed so runs are reproducible.
            start_ms: 1_704_067_200_000,
            max_events: 100_000,
            execution_id: "00000000-0000-7000-8000-000000000000".into(),
            seed: 0x5A6A_F10B,
        }
    }
}

/// The end of an in-memory run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub history: Vec<HistoryEvent>,
    /// Every call made, in order (forward calls and compensations).
    pub calls: Vec<Call>,
    pub execution: Execution,
    /// Virtual milliseconds from start to end.
    pub elapsed_ms: i64,
}

/// Why a run could not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    #[error("the execution did not finish within {0} events (does the definition loop forever?)")]
    TooManyEvents(usize),
    #[error("the interpreter refused an event: {0}")]
    Step(#[from] interpreter::StepError),
}

/// Run `definition` on `input` until it ends (or parks in COMPENSATION_STUCK).
pub fn run(
    definition: &Definition,
    input: Value,
    handler: &mut dyn TaskHandler,
    options: &Options,
) -> Result<Outcome, DriverError> {
    let mut execution = Execution::new();
    let mut now = options.start_ms;
    let mut inbox: VecDeque<Event> = VecDeque::new();
    let mut timers: BTreeMap<(i64, WorkId), ()> = BTreeMap::new();
    let mut history = Vec::new();
    let mut calls = Vec::new();
    inbox.push_back(Event::Started(Start {
        execution_id: options.execution_id.clone(),
        execution_name: options.execution_id.clone(),
        state_machine_id: "sagaflow:definition".into(),
        state_machine_name: "definition".into(),
        input,
        seed: options.seed,
        redrive_count: 0,
        key_namespace: None,
        fork_at: None,
    }));
    loop {
        let event = match inbox.pop_front() {
            Some(event) => event,
            None => match timers.pop_first() {
                Some(((due, id), ())) => {
                    now = now.max(due);
                    Event::TimerFired { id }
                }
                None => break,
            },
        };
        let step = interpreter::step(definition, &mut execution, Envelope { now_ms: now, event })?;
        history.extend(step.history);
        if history.len() > options.max_events {
            return Err(DriverError::TooManyEvents(options.max_events));
        }
        for action in step.actions {
            match action {
                Action::Invoke(call) => {
                    let answer = match handler.call(&call, now) {
                        TaskOutcome::Succeed(output) => Event::TaskSucceeded { id: call.id, output },
                        TaskOutcome::Fail { error, cause, outcome_unknown } => {
                            Event::TaskFailed { id: call.id, error, cause, outcome_unknown }
                        }
                    };
                    calls.push(call);
                    inbox.push_back(answer);
                }
                Action::StartTimer { id, due_ms } => {
                    timers.insert((due_ms, id), ());
                }
                Action::Abandon { id } => {
                    timers.retain(|(_, t), ()| *t != id);
                    inbox.retain(|e| !matches!(e, Event::TaskSucceeded { id: i, .. } | Event::TaskFailed { id: i, .. } if *i == id));
                }
                Action::Finished { .. } => {}
            }
        }
        if execution.status.is_terminal() || execution.status == Status::CompensationStuck {
            break;
        }
    }
    Ok(Outcome {
        status: execution.status,
        output: execution.output.clone(),
        error: execution.error.clone(),
        cause: execution.cause.clone(),
        history,
        calls,
        elapsed_ms: now - options.start_ms,
        execution,
    })
}
