//! The saga: what each execution owes in compensation, and how it pays it back.
//!
//! Every Task with `Compensate` that succeeds (or whose outcome is unknown) leaves an entry
//! in its thread's ledger; a finished Parallel or Map leaves a group whose lanes are its
//! branches' ledgers. When the execution fails or is cancelled the ledger becomes a
//! [`Rollback`]: a plan where each lane runs newest-first, lanes of a group run concurrently,
//! and nothing older starts before everything newer is settled. A compensation that runs
//! out of retries parks the execution in COMPENSATION_STUCK; the plan never skips it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::execution::{MachineStep, Status, Waiter};
use super::history::EventKind;
use super::run::{Failure, Runner, machine_of};
use super::{Action, Call, DEFAULT_TASK_TIMEOUT_SECONDS, Event};
use crate::errors;
use crate::expr::Scope;
use crate::model::{Definition, JitterStrategy, Retrier, StateKind, TaskState};

/// One item of a thread's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerEntry {
    Step(OwedCompensation),
    /// A Parallel or Map state: one lane per branch or iteration, in slot order.
    Group {
        scope: String,
        lanes: Vec<Vec<LedgerEntry>>,
    },
}

/// A compensation owed for one forward call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwedCompensation {
    /// The Task state's name and scoped path.
    pub state: String,
    pub scope: String,
    /// Where the Task's definition lives (to find its `Compensate`).
    pub(crate) machine: Vec<MachineStep>,
    pub forward_key: String,
    /// `{"Input": <task effective input>, "Result": <task result or null>}`.
    pub document: Value,
    /// The forward call may or may not have been applied.
    pub outcome_unknown: bool,
}

/// The compensation plan of a failed or cancelled execution, and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub steps: Vec<RollbackStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackStep {
    pub owed: OwedCompensation,
    /// Steps that must be settled first (newer work in the same lane or group).
    pub after: Vec<usize>,
    pub status: StepStatus,
    /// Attempts made so far (all retries included, across operator retries).
    pub attempts: u32,
    /// Retries consumed per retrier in the current round.
    pub(crate) retries: Vec<u64>,
    pub last_error: Option<String>,
    pub last_cause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Waiting,
    Running {
        call: u64,
    },
    Backoff {
        timer: u64,
    },
    Succeeded,
    /// Out of retries: waits for an operator.
    Stuck,
    /// An operator chose not to compensate this step.
    Skipped {
        reason: String,
    },
    /// An operator compensated this step by other means.
    Resolved {
        reason: String,
    },
}

impl StepStatus {
    /// Settled steps no longer hold back older ones.
    pub fn is_settled(&self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Skipped { .. } | StepStatus::Resolved { .. })
    }
}

/// An operator's repair of a stuck rollback.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Repair {
    Retry,
    Skip(String),
    Resolve(String),
}

/// Retry policy of a compensation without its own `Retry`: compensations must finish, so
/// they retry every error a few times before an operator is asked.
pub fn default_compensation_retry() -> Vec<Retrier> {
    vec![Retrier {
        error_equals: vec![errors::ALL.to_owned()],
        interval_seconds: 1,
        max_attempts: 5,
        backoff_rate: 2.0,
        max_delay_seconds: Some(60),
        jitter: JitterStrategy::Full,
    }]
}

impl Rollback {
    /// Turn a ledger (oldest first) into a plan; a forward key owed twice (a retried
    /// Parallel re-ran it) is compensated once.
    pub(crate) fn plan(ledger: Vec<LedgerEntry>) -> Rollback {
        let mut steps = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        plan_lane(ledger, Vec::new(), &mut steps, &mut seen);
        Rollback { steps }
    }

    pub fn is_done(&self) -> bool {
        self.steps.iter().all(|s| s.status.is_settled())
    }

    pub fn is_stuck(&self) -> bool {
        !self.is_done()
            && self.steps.iter().any(|s| s.status == StepStatus::Stuck)
            && !self.steps.iter().any(|s| matches!(s.status, StepStatus::Running { .. } | StepStatus::Backoff { .. }))
            && self.ready().is_empty()
    }

    /// Waiting steps whose predecessors are all settled.
    fn ready(&self) -> Vec<usize> {
        (0..self.steps.len())
            .filter(|&i| {
                self.steps[i].status == StepStatus::Waiting
                    && self.steps[i].after.iter().all(|&j| self.steps[j].status.is_settled())
            })
            .collect()
    }
}

/// Lay out one lane newest-first; returns the steps that settle the lane.
fn plan_lane(
    lane: Vec<LedgerEntry>,
    mut after: Vec<usize>,
    steps: &mut Vec<RollbackStep>,
    seen: &mut std::collections::BTreeSet<String>,
) -> Vec<usize> {
    for entry in lane.into_iter().rev() {
        match entry {
            LedgerEntry::Step(owed) => {
                if !seen.insert(owed.forward_key.clone()) {
                    continue;
                }
                steps.push(RollbackStep {
                    owed,
                    after: std::mem::take(&mut after),
                    status: StepStatus::Waiting,
                    attempts: 0,
                    retries: Vec::new(),
                    last_error: None,
                    last_cause: None,
                });
                after = vec![steps.len() - 1];
            }
            LedgerEntry::Group { lanes, .. } => {
                let mut frontier = Vec::new();
                for lane in lanes {
                    let before = steps.len();
                    let settled_by = plan_lane(lane, after.clone(), steps, seen);
                    // A lane that added nothing (empty, or all duplicates) holds nothing back.
                    if steps.len() > before {
                        frontier.extend(settled_by);
                    }
                }
                frontier.sort_unstable();
                frontier.dedup();
                if !frontier.is_empty() {
                    after = frontier;
                }
            }
        }
    }
    after
}

/// The Task state an owed compensation belongs to.
fn compensated_task<'d>(def: &'d Definition, owed: &OwedCompensation) -> &'d TaskState {
    match &machine_of(def, &owed.machine).states[owed.state.as_str()].kind {
        StateKind::Task(task) => task,
        _ => unreachable!("ledger entries come from Task states"),
    }
}

impl Runner<'_> {
    /// The execution failed (or was cancelled): compensate what is owed, or end.
    pub(crate) fn fail_execution(&mut self, failure: Failure) {
        self.ex.error = failure.error.clone();
        self.ex.cause = failure.cause.clone();
        let ledger = self.ex.threads.get_mut(&0).map(|t| std::mem::take(&mut t.ledger)).unwrap_or_default();
        self.ex.threads.clear();
        let rollback = Rollback::plan(ledger);
        if rollback.steps.is_empty() {
            let status = if self.ex.cancelled { Status::Cancelled } else { Status::Failed };
            let kind = if self.ex.cancelled { EventKind::ExecutionCancelled } else { EventKind::ExecutionFailed };
            self.emit(kind, None, json!({ "error": failure.error, "cause": failure.cause }));
            self.finished(status);
            return;
        }
        self.emit(
            EventKind::CompensationStarted,
            None,
            json!({
                "error": failure.error,
                "cause": failure.cause,
                "plan": rollback.steps.iter().map(|s| s.owed.scope.clone()).collect::<Vec<_>>(),
            }),
        );
        self.ex.status = Status::Compensating;
        self.ex.rollback = Some(rollback);
        self.advance_rollback();
    }

    /// Start every ready compensation; finish when all are settled; park when stuck.
    fn advance_rollback(&mut self) {
        let ready = match &self.ex.rollback {
            Some(r) => r.ready(),
            None => return,
        };
        for index in ready {
            self.invoke_compensation(index);
        }
        let Some(rollback) = &self.ex.rollback else {
            return;
        };
        if rollback.is_done() {
            let status = if self.ex.cancelled { Status::Cancelled } else { Status::Compensated };
            let kind = if self.ex.cancelled { EventKind::ExecutionCancelled } else { EventKind::ExecutionCompensated };
            self.emit(kind, None, json!({ "error": self.ex.error, "cause": self.ex.cause }));
            self.finished(status);
        } else if rollback.is_stuck() {
            if self.ex.status != Status::CompensationStuck {
                self.ex.status = Status::CompensationStuck;
                self.out.actions.push(Action::Finished { status: Status::CompensationStuck });
            }
        } else {
            self.ex.status = Status::Compensating;
        }
    }

    fn invoke_compensation(&mut self, index: usize) {
        let owed = self.ex.rollback.as_ref().expect("rollback in progress").steps[index].owed.clone();
        let task = compensated_task(self.def, &owed);
        let compensation = task.compensate.as_ref().expect("ledger entries have a Compensate");
        self.set_state_context(&owed.state, self.now_ms, None);
        let input = match &compensation.parameters {
            None => Ok(owed.document.clone()),
            Some(template) => {
                let vars = serde_json::Map::new();
                let scope = Scope { input: &owed.document, context: &self.ctx, variables: &vars };
                template.eval(&scope, &mut self.rng)
            }
        };
        let attempt = {
            let step = &mut self.ex.rollback.as_mut().expect("rollback").steps[index];
            step.attempts += 1;
            step.attempts
        };
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                // A compensation whose input cannot be built will not get better by retrying.
                let failure = Failure::new(
                    e.error,
                    format!("The compensation of '{}' could not build its input: {}", owed.scope, e.message),
                );
                return self.compensation_stuck(index, failure);
            }
        };
        let id = self.new_work_id();
        let call = Call {
            id,
            state: owed.state.clone(),
            scope: owed.scope.clone(),
            resource: compensation.resource.clone(),
            input,
            idempotency_key: format!("{}:compensate", owed.forward_key),
            compensates: Some(owed.forward_key.clone()),
            timeout_seconds: compensation.timeout_seconds.unwrap_or(DEFAULT_TASK_TIMEOUT_SECONDS),
            heartbeat_seconds: None,
            attempt,
        };
        self.emit(
            EventKind::CompensationScheduled,
            Some(owed.scope.clone()),
            json!({
                "callId": id,
                "resource": call.resource,
                "input": call.input,
                "idempotencyKey": call.idempotency_key,
                "compensates": owed.forward_key,
                "attempt": attempt,
            }),
        );
        self.issue(Action::Invoke(call), Waiter::Compensation(index));
        self.ex.rollback.as_mut().expect("rollback").steps[index].status = StepStatus::Running { call: id };
    }

    pub(crate) fn on_compensation_result(&mut self, index: usize, result: Result<Value, Failure>, record: Event) {
        let scope = self.ex.rollback.as_ref().expect("rollback").steps[index].owed.scope.clone();
        match result {
            Ok(output) => {
                self.record(EventKind::CompensationSucceeded, Some(scope), json!({ "output": output }), Some(record));
                self.ex.rollback.as_mut().expect("rollback").steps[index].status = StepStatus::Succeeded;
            }
            Err(failure) => {
                self.record(
                    EventKind::CompensationFailed,
                    Some(scope.clone()),
                    json!({ "error": failure.error, "cause": failure.cause }),
                    Some(record),
                );
                let owed = self.ex.rollback.as_ref().expect("rollback").steps[index].owed.clone();
                let task = compensated_task(self.def, &owed);
                let compensation = task.compensate.as_ref().expect("ledger entries have a Compensate");
                let retry = if compensation.retry.is_empty() {
                    default_compensation_retry()
                } else {
                    compensation.retry.clone()
                };
                let name = failure.error.clone().unwrap_or_default();
                let step = &mut self.ex.rollback.as_mut().expect("rollback").steps[index];
                step.last_error = failure.error.clone();
                step.last_cause = failure.cause.clone();
                if step.retries.len() != retry.len() {
                    step.retries = vec![0; retry.len()];
                }
                let chosen = (!errors::is_terminal(&name))
                    .then(|| retry.iter().position(|r| errors::matches(&r.error_equals, &name, true)))
                    .flatten()
                    .filter(|&i| step.retries[i] < retry[i].max_attempts);
                match chosen {
                    Some(i) => {
                        let delay = super::retry::delay_ms(&retry[i], step.retries[i], &mut self.rng);
                        step.retries[i] += 1;
                        self.emit(EventKind::CompensationRetryScheduled, Some(scope), json!({ "delayMs": delay }));
                        let timer = self.start_timer(self.now_ms + delay, Waiter::Compensation(index));
                        self.ex.rollback.as_mut().expect("rollback").steps[index].status =
                            StepStatus::Backoff { timer };
                    }
                    None => return self.compensation_stuck(index, failure),
                }
            }
        }
        self.advance_rollback();
    }

    fn compensation_stuck(&mut self, index: usize, failure: Failure) {
        let step = &mut self.ex.rollback.as_mut().expect("rollback").steps[index];
        step.status = StepStatus::Stuck;
        step.last_error = failure.error.clone();
        step.last_cause = failure.cause.clone();
        let scope = step.owed.scope.clone();
        let attempts = step.attempts;
        self.emit(
            EventKind::CompensationStuck,
            Some(scope),
            json!({ "error": failure.error, "cause": failure.cause, "attempts": attempts }),
        );
        self.advance_rollback();
    }

    pub(crate) fn on_compensation_timer(&mut self, index: usize) {
        let backing_off =
            matches!(self.ex.rollback.as_ref().map(|r| &r.steps[index].status), Some(StepStatus::Backoff { .. }));
        if backing_off {
            self.invoke_compensation(index);
            self.advance_rollback();
        }
    }

    pub(crate) fn repair_compensation(&mut self, repair: Repair) {
        let Some(rollback) = &self.ex.rollback else {
            return;
        };
        let stuck: Vec<usize> =
            (0..rollback.steps.len()).filter(|&i| rollback.steps[i].status == StepStatus::Stuck).collect();
        let (event, kind) = match &repair {
            Repair::Retry => (Event::RetryCompensation, EventKind::CompensationRetried),
            Repair::Skip(reason) => {
                (Event::SkipCompensation { reason: reason.clone() }, EventKind::CompensationSkipped)
            }
            Repair::Resolve(reason) => {
                (Event::ResolveCompensation { reason: reason.clone() }, EventKind::CompensationResolved)
            }
        };
        let scopes: Vec<String> =
            stuck.iter().map(|&i| self.ex.rollback.as_ref().expect("rollback").steps[i].owed.scope.clone()).collect();
        let reason = match &repair {
            Repair::Retry => None,
            Repair::Skip(r) | Repair::Resolve(r) => Some(r.clone()),
        };
        self.record(kind, None, json!({ "steps": scopes, "reason": reason }), Some(event));
        self.ex.status = Status::Compensating;
        for index in stuck {
            let step = &mut self.ex.rollback.as_mut().expect("rollback").steps[index];
            match &repair {
                Repair::Retry => {
                    step.status = StepStatus::Waiting;
                    step.retries.clear();
                }
                Repair::Skip(reason) => step.status = StepStatus::Skipped { reason: reason.clone() },
                Repair::Resolve(reason) => step.status = StepStatus::Resolved { reason: reason.clone() },
            }
        }
        self.advance_rollback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed(key: &str) -> LedgerEntry {
        LedgerEntry::Step(OwedCompensation {
            state: key.into(),
            scope: key.into(),
            machine: Vec::new(),
            forward_key: key.into(),
            document: Value::Null,
            outcome_unknown: false,
        })
    }

    fn keys(r: &Rollback) -> Vec<(&str, Vec<usize>)> {
        r.steps.iter().map(|s| (s.owed.forward_key.as_str(), s.after.clone())).collect()
    }

    #[test]
    fn a_lane_is_compensated_newest_first() {
        let plan = Rollback::plan(vec![owed("a"), owed("b"), owed("c")]);
        assert_eq!(keys(&plan), vec![("c", vec![]), ("b", vec![0]), ("a", vec![1])]);
        assert_eq!(plan.ready(), vec![0]);
    }

    #[test]
    fn branches_roll_back_concurrently_after_newer_work_and_before_older_work() {
        let group = LedgerEntry::Group {
            scope: "P".into(),
            lanes: vec![vec![owed("x1"), owed("x2")], vec![], vec![owed("y1")]],
        };
        let plan = Rollback::plan(vec![owed("a"), group, owed("z")]);
        assert_eq!(
            keys(&plan),
            vec![("z", vec![]), ("x2", vec![0]), ("x1", vec![1]), ("y1", vec![0]), ("a", vec![2, 3])]
        );
    }

    #[test]
    fn a_key_owed_twice_is_compensated_once() {
        let plan = Rollback::plan(vec![owed("a"), owed("a")]);
        assert_eq!(plan.steps.len(), 1);
    }
}
