//! History events: the append-only record of an execution.
//!
//! Names follow Step Functions where one exists (`TaskStateEntered`, `TaskSucceeded`, ...),
//! plus Sagaflow's `Compensation*` events. Events that record something from outside the
//! interpreter (start, call answers, timers, operator acts) carry enough to rebuild the
//! [`Event`](super::Event) that caused them, so a history can be replayed offline.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Envelope, Event};

/// One entry of an execution's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// 1-based sequence number within the execution.
    pub id: u64,
    pub timestamp_ms: i64,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The state the event belongs to (scoped path inside Parallel/Map), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
    /// For events that record an outside event: that event, so the history can be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Event>,
}

impl HistoryEvent {
    /// The outside event this entry recorded, with its time, if it recorded one.
    pub fn as_input(&self) -> Option<Envelope> {
        self.cause.clone().map(|event| Envelope { now_ms: self.timestamp_ms, event })
    }
}

macro_rules! event_kinds {
    ($($name:ident),* $(,)?) => {
        /// The type of a history event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind { $($name),* }

        impl EventKind {
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$name => stringify!($name)),* }
            }
        }
    };
}

event_kinds! {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionTimedOut,
    ExecutionCancelled,
    ExecutionTerminated,
    ExecutionCompensated,
    PassStateEntered,
    PassStateExited,
    TaskStateEntered,
    TaskScheduled,
    TaskSucceeded,
    TaskFailed,
    TaskTimedOut,
    TaskRetryScheduled,
    TaskStateExited,
    ChoiceStateEntered,
    ChoiceStateExited,
    WaitStateEntered,
    WaitStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    FailStateEntered,
    ParallelStateEntered,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
    ParallelStateExited,
    MapStateEntered,
    MapStateStarted,
    MapIterationStarted,
    MapIterationSucceeded,
    MapIterationFailed,
    MapIterationAborted,
    MapStateSucceeded,
    MapStateFailed,
    MapStateExited,
    StateRetryScheduled,
    TimerFired,
    CompensationStarted,
    CompensationScheduled,
    CompensationSucceeded,
    CompensationFailed,
    CompensationRetryScheduled,
    CompensationStuck,
    CompensationRetried,
    CompensationSkipped,
    CompensationResolved,
    ExecutionCancelRequested,
    ExecutionRedriven,
    ExecutionForked,
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
