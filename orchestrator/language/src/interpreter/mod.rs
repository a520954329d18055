//! The interpreter: a pure step function `(definition, execution state, event) -> step`.
//!
//! The caller (the durable engine, the in-memory [`crate::driver`], `sagaflow replay`) feeds
//! [`Event`]s wrapped in an [`Envelope`] that carries the time; the interpreter mutates the
//! [`Execution`] and returns the [`Action`]s to perform and the [`HistoryEvent`]s to record.
//! It never reads a clock or a random source: randomness is drawn from a seed fixed at start
//! and the event's sequence number, so replaying a history reproduces every action.
//!
//! # Layout
//! - [`execution`]: the serializable execution state (threads, cursors, pending work).
//! - [`run`]: applying an event: the work queue, data flow, simple states, the end.
//! - `task`: Task calls, Retry with backoff, Catch, timers. `join`: Parallel and Map.
//! - `data`: size checks, time formatting and lenient numbers.
//! - [`saga`]: the compensation ledger and the reverse-order rollback.
//! - [`fork`]: a new execution that keeps an original's history before a state.
//! - [`history`]: history events, named after Step Functions' where one exists.
//! - [`retry`]: backoff arithmetic (interval, rate, cap, jitter).

mod data;
pub mod execution;
pub mod fork;
pub mod history;
mod join;
pub mod retry;
mod run;
pub mod saga;
mod task;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use execution::{Execution, Status};
pub use history::{EventKind, HistoryEvent};

use crate::model::Definition;

pub use crate::limits::{HISTORY_EVENT_LIMIT, PAYLOAD_LIMIT_BYTES};
/// Default per-attempt timeout of a Task or compensation without `TimeoutSeconds`.
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 60;

/// Identifies an outstanding call or timer within one execution.
pub type WorkId = u64;

/// What starts an execution: the input and the facts the context object exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// Execution id (a UUID v7 in the engine); prefix of every idempotency key.
    pub execution_id: String,
    pub execution_name: String,
    pub state_machine_id: String,
    pub state_machine_name: String,
    pub input: Value,
    /// Seed of every pseudo-random draw (jitter, `States.UUID`) of this execution.
    pub seed: u64,
    /// Number of redrives so far (`$$.Execution.RedriveCount`).
    #[serde(default)]
    pub redrive_count: u32,
    /// Prefix of idempotency keys when it is not this execution's id: a fork replays the
    /// steps it copies under the original's keys, whose effects it now owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_namespace: Option<String>,
    /// A fork stops when the top level is about to enter this state, and waits for
    /// `ResumeFork` to run it under its own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_at: Option<String>,
}

/// Something that happened to an execution, from outside the interpreter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    Started(Start),
    /// A task or compensation call answered.
    TaskSucceeded {
        id: WorkId,
        output: Value,
    },
    /// A task or compensation call failed. `outcome_unknown` is set when the request may
    /// have been applied (timeout, connection lost after sending).
    TaskFailed {
        id: WorkId,
        error: String,
        cause: Option<String>,
        #[serde(default)]
        outcome_unknown: bool,
    },
    TimerFired {
        id: WorkId,
    },
    /// Stop and compensate; ends CANCELLED once the compensations are done.
    Cancel {
        reason: Option<String>,
    },
    /// Stop without compensating.
    Terminate {
        reason: Option<String>,
    },
    /// Operator acts on a COMPENSATION_STUCK execution.
    RetryCompensation,
    SkipCompensation {
        reason: String,
    },
    ResolveCompensation {
        reason: String,
    },
    /// Resume a FAILED execution at the state whose failure ended it.
    Redrive,
    /// Continue a fork at its fork state, under the fork's own idempotency keys.
    ResumeFork,
}

/// An event with the time it happened (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub now_ms: i64,
    pub event: Event,
}

/// A call to a participant (a Task attempt or a compensation attempt).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: WorkId,
    /// The state's name, and its scoped path (`Fanout#1[1].Charge`: state, visit, slot).
    pub state: String,
    pub scope: String,
    pub resource: String,
    pub input: Value,
    /// Stable across retries, crashes and redrives of the same state visit.
    pub idempotency_key: String,
    /// For a compensation: the key of the forward call it undoes.
    pub compensates: Option<String>,
    pub timeout_seconds: u64,
    pub heartbeat_seconds: Option<u64>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What the caller must do after a step.
// Actions are few and short-lived (moved from the step to the caller once); boxing the call
// would cost an allocation per task for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    Invoke(Call),
    /// Deliver `TimerFired { id }` at `due_ms`.
    StartTimer {
        id: WorkId,
        due_ms: i64,
    },
    /// A call or timer is no longer wanted; a late answer will be ignored.
    Abandon {
        id: WorkId,
    },
    /// The execution reached a final status (or parked in COMPENSATION_STUCK).
    Finished {
        status: Status,
    },
}

/// The result of one step: history to append (in order) and actions to carry out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub history: Vec<HistoryEvent>,
    pub actions: Vec<Action>,
}

/// Why an event could not be applied. The execution is left unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    #[error("the execution has already started")]
    AlreadyStarted,
    #[error("the execution has not started")]
    NotStarted,
    #[error("no outstanding call or timer has id {0}")]
    UnknownWork(WorkId),
    #[error("the execution is {0} and cannot take {1}")]
    InvalidInStatus(Status, &'static str),
}

/// Apply one event. On error nothing changed.
pub fn step(definition: &Definition, execution: &mut Execution, envelope: Envelope) -> Result<Step, StepError> {
    run::apply(definition, execution, envelope)
}
