//! The state of one execution between events: fully serializable, so the engine can keep a
//! snapshot beside the history, and deterministic (ordered maps only).
//!
//! An execution is a tree of threads: the top-level machine is thread 0; each Parallel
//! branch and Map iteration runs in a child thread whose result flows back to its parent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::saga::Rollback;
use super::{Action, Call, WorkId};

/// Where an execution stands (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Created but no `Started` event applied yet.
    Pending,
    Running,
    Succeeded,
    /// Failed with nothing to compensate.
    Failed,
    Compensating,
    /// Failed, every compensation done.
    Compensated,
    /// A compensation ran out of retries; waits for an operator.
    CompensationStuck,
    Cancelled,
    Terminated,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Compensating,
        Status::Compensated,
        Status::CompensationStuck,
        Status::Cancelled,
        Status::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Compensating => "COMPENSATING",
            Status::Compensated => "COMPENSATED",
            Status::CompensationStuck => "COMPENSATION_STUCK",
            Status::Cancelled => "CANCELLED",
            Status::Terminated => "TERMINATED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text))
    }

    /// No further event changes a terminal execution (except a redrive).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Compensated | Status::Cancelled | Status::Terminated
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a thread of an execution.
pub type ThreadId = u32;

/// The whole mutable state of one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub status: Status,
    pub execution_id: String,
    /// The context object minus its per-state part (`Execution`, `StateMachine`).
    pub(crate) context: Value,
    pub(crate) seed: u64,
    /// Id of the last history event.
    pub(crate) last_event_id: u64,
    pub(crate) next_work_id: WorkId,
    pub(crate) next_thread_id: ThreadId,
    pub(crate) threads: BTreeMap<ThreadId, Thread>,
    /// Outstanding calls and timers: what to re-issue after a crash, and who waits on each.
    pub(crate) pending: BTreeMap<WorkId, Pending>,
    /// The rollback in progress, once the execution failed or was cancelled.
    pub(crate) rollback: Option<Rollback>,
    /// The definition-level timeout timer, if any.
    pub(crate) timeout_timer: Option<WorkId>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// Set by a cancel so the end status is CANCELLED rather than COMPENSATED.
    pub(crate) cancelled: bool,
    /// Where a redrive resumes: the top-level state whose failure ended the execution.
    #[serde(default)]
    pub(crate) redrive_point: Option<RedrivePoint>,
    #[serde(default)]
    pub(crate) redrive_count: u32,
    /// Prefix of idempotency keys (the execution id, or the original's while a fork replays).
    #[serde(default)]
    pub(crate) key_prefix: String,
    /// A fork's stop: the top-level state to pause before, then where it paused.
    #[serde(default)]
    pub(crate) fork_at: Option<String>,
    #[serde(default)]
    pub(crate) fork_point: Option<RedrivePoint>,
}

/// What a redrive needs to re-enter the failed state as the same visit (so its calls keep
/// their idempotency keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RedrivePoint {
    pub(crate) state: String,
    pub(crate) raw_input: Value,
    pub(crate) variables: Map<String, Value>,
    pub(crate) visits: BTreeMap<String, u32>,
}

impl Execution {
    /// A fresh execution awaiting its `Started` event.
    pub fn new() -> Self {
        Execution {
            status: Status::Pending,
            execution_id: String::new(),
            context: Value::Null,
            seed: 0,
            last_event_id: 0,
            next_work_id: 1,
            next_thread_id: 0,
            threads: BTreeMap::new(),
            pending: BTreeMap::new(),
            rollback: None,
            timeout_timer: None,
            output: None,
            error: None,
            cause: None,
            cancelled: false,
            redrive_point: None,
            redrive_count: 0,
            key_prefix: String::new(),
            fork_at: None,
            fork_point: None,
        }
    }

    /// A fork that reached its fork state and waits for `ResumeFork`.
    pub fn awaiting_fork(&self) -> bool {
        self.fork_point.is_some()
    }

    /// Whether a redrive can resume this execution: it FAILED in a top-level Task,
    /// Parallel or Map state (a deterministic failure, e.g. a Fail state, cannot be redriven).
    pub fn can_redrive(&self) -> bool {
        self.status == Status::Failed && self.redrive_point.is_some()
    }

    pub fn redrive_count(&self) -> u32 {
        self.redrive_count
    }

    /// The execution's input as given at start.
    pub fn input(&self) -> Option<&Value> {
        self.context.pointer("/Execution/Input")
    }

    /// Id of the last history event recorded.
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id
    }

    /// Every outstanding call and timer, as the actions that start them: after a crash the
    /// engine re-issues these (calls keep their idempotency keys).
    pub fn outstanding(&self) -> Vec<Action> {
        self.pending.values().map(|p| p.action.clone()).collect()
    }

    /// The call with this id, if it is outstanding.
    pub fn outstanding_call(&self, id: WorkId) -> Option<&Call> {
        match &self.pending.get(&id)?.action {
            Action::Invoke(call) => Some(call),
            _ => None,
        }
    }

    /// The compensation plan and its progress, once a rollback began.
    pub fn rollback(&self) -> Option<&Rollback> {
        self.rollback.as_ref()
    }
}

impl Default for Execution {
    fn default() -> Self {
        Execution::new()
    }
}

/// Who waits on an outstanding call or timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) action: Action,
    pub(crate) waiter: Waiter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Waiter {
    /// A thread's Task call, Wait timer or retry backoff.
    Thread(ThreadId),
    /// A compensation call or its backoff; the index addresses the rollback step.
    Compensation(usize),
    /// The execution's own `TimeoutSeconds`.
    ExecutionTimeout,
}

/// One line of execution: the top-level machine, a Parallel branch or a Map iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Thread {
    pub(crate) parent: Option<ParentLink>,
    /// How to find this thread's state machine from the definition's top level.
    pub(crate) machine: Vec<MachineStep>,
    /// Prefix of scoped state names (`Fanout#1[0].`), empty at top level.
    pub(crate) scope: String,
    pub(crate) variables: Map<String, Value>,
    /// How many times each state was entered in this thread (part of idempotency keys).
    pub(crate) visits: BTreeMap<String, u32>,
    pub(crate) cursor: Cursor,
    /// Completed compensatable work of this thread, oldest first.
    pub(crate) ledger: Vec<super::saga::LedgerEntry>,
}

/// A Parallel branch (its index) or the Map processor (index 0) of a named state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MachineStep {
    pub(crate) state: String,
    pub(crate) branch: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParentLink {
    pub(crate) thread: ThreadId,
    /// Branch index or item index in the parent's results.
    pub(crate) slot: u32,
}

/// Facts about the current visit of a state, needed until it exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Visit {
    pub(crate) state: String,
    /// Which visit of this state in its thread (1-based).
    pub(crate) number: u32,
    /// History id of the `...StateEntered` event (quoted in runtime errors).
    pub(crate) entered_event: u64,
    pub(crate) entered_ms: i64,
    /// The state's raw input (before InputPath): ResultPath merges into it.
    pub(crate) raw_input: Value,
    /// The effective input (after InputPath and Parameters/ItemSelector as applicable).
    pub(crate) effective_input: Value,
    /// Attempts consumed per retrier, in `Retry` order.
    pub(crate) retries: Vec<u64>,
    /// Retries so far in total (`$$.State.RetryCount`).
    pub(crate) retry_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Cursor {
    /// Waiting for a Task call (`call`) or its retry backoff (`timer`).
    Task {
        visit: Visit,
        call: Option<WorkId>,
        timer: Option<WorkId>,
        /// Some attempt's outcome is unknown: compensation is owed even if it finally fails.
        outcome_unknown: bool,
    },
    /// Waiting for a Wait state's timer.
    Wait { visit: Visit, timer: WorkId },
    /// Waiting for the children of a Parallel or Map state.
    Join(Box<Join>),
    /// A Parallel or Map waiting out its retry backoff before running its children again.
    Backoff { visit: Visit, timer: WorkId },
    /// Finished with this output.
    Done(Value),
    /// Failed with this error.
    Failed { error: String, cause: Option<String> },
    /// Stopped from outside (sibling failure, cancel, terminate).
    Aborted,
}

/// Progress of a Parallel or Map state over its child threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Join {
    pub(crate) visit: Visit,
    pub(crate) is_map: bool,
    /// Map: the items still to start, and the item values (for `$$.Map.Item.Value`).
    pub(crate) items: Vec<Value>,
    pub(crate) next_item: usize,
    /// Map: how many iterations may run at once (0 = all).
    pub(crate) max_concurrency: u64,
    pub(crate) running: u64,
    /// Map: iterations that may fail before the state fails.
    pub(crate) tolerated_failures: u64,
    pub(crate) failures: u64,
    pub(crate) results: Vec<Option<Value>>,
    pub(crate) children: Vec<ThreadId>,
    /// Completed children, by slot: each child's ledger moves here when it ends.
    pub(crate) child_ledgers: Vec<Vec<super::saga::LedgerEntry>>,
}
