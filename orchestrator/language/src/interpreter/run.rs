//! The step's engine room: applying an event, the work queue, entering states and their data
//! flow (InputPath → Parameters → work → ResultSelector → ResultPath → OutputPath), the simple
//! states, and how an execution ends. Tasks live in [`super::task`], Parallel and Map in
//! [`super::join`].
//!
//! Work is processed from a FIFO queue until every thread is blocked on a call or a timer,
//! so one event may run many synchronous states (Pass, Choice, ...) in a deterministic order.

use std::borrow::Cow;
use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value, json};

use super::data::{Over, compact, format_time, json_size, object, over_limit};
use super::execution::{
    Cursor, Execution, MachineStep, Pending, RedrivePoint, Status, Thread, ThreadId, Visit, Waiter,
};
use super::history::{EventKind, HistoryEvent};
use super::saga::LedgerEntry;
use super::{Action, Envelope, Event, PAYLOAD_LIMIT_BYTES, Start, Step, StepError, WorkId};
use crate::errors;
use crate::expr::{EvalError, ReferencePath, Scope, Template, choice, timestamp};
use crate::limits::NESTING_LIMIT;
use crate::model::{
    Definition, FailField, PathField, Resilience, State, StateKind, StateMachine, Transition, WaitState,
};

/// An error on its way through Retry and Catch. `None` fields are absent (a bare Fail state).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) error: Option<String>,
    pub(crate) cause: Option<String>,
}

impl Failure {
    pub(crate) fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Failure { error: Some(error.into()), cause: Some(cause.into()) }
    }

    /// The error output a Catch hands on: `{"Error": ..., "Cause": ...}`.
    pub(super) fn output(&self) -> Value {
        let mut out = Map::new();
        if let Some(e) = &self.error {
            out.insert("Error".into(), Value::String(e.clone()));
        }
        if let Some(c) = &self.cause {
            out.insert("Cause".into(), Value::String(c.clone()));
        }
        Value::Object(out)
    }

    pub(super) fn name(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
}

pub(super) enum Work {
    Enter { thread: ThreadId, state: String, input: Value },
    ThreadEnded { thread: ThreadId },
}

pub(crate) struct Runner<'a> {
    pub(crate) def: &'a Definition,
    pub(crate) ex: &'a mut Execution,
    pub(crate) now_ms: i64,
    /// The context object being evaluated against (taken out of `ex` for the step).
    pub(crate) ctx: Value,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) out: Step,
    pub(super) queue: VecDeque<Work>,
    /// The last formatted `EnteredTime`, reused while the clock stands still.
    time_cache: (i64, String),
}

pub(super) fn apply(def: &Definition, ex: &mut Execution, env: Envelope) -> Result<Step, StepError> {
    check(ex, &env.event)?;
    let ctx = std::mem::take(&mut ex.context);
    let rng = ChaCha8Rng::seed_from_u64(ex.seed ^ (ex.last_event_id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut runner = Runner {
        def,
        ex,
        now_ms: env.now_ms,
        ctx,
        rng,
        out: Step::default(),
        queue: VecDeque::new(),
        time_cache: (0, String::new()),
    };
    runner.dispatch(env);
    runner.drain();
    let Runner { ex, ctx, out, .. } = runner;
    ex.context = ctx;
    Ok(out)
}

/// Refuse events that do not fit the execution, before anything changes.
fn check(ex: &Execution, event: &Event) -> Result<(), StepError> {
    match event {
        Event::Started(_) if ex.status != Status::Pending => Err(StepError::AlreadyStarted),
        Event::Started(_) => Ok(()),
        _ if ex.status == Status::Pending => Err(StepError::NotStarted),
        Event::TaskSucceeded { id, .. } | Event::TaskFailed { id, .. } => match ex.pending.get(id) {
            Some(Pending { action: Action::Invoke(_), .. }) => Ok(()),
            _ => Err(StepError::UnknownWork(*id)),
        },
        Event::TimerFired { id } => match ex.pending.get(id) {
            Some(Pending { action: Action::StartTimer { .. }, .. }) => Ok(()),
            _ => Err(StepError::UnknownWork(*id)),
        },
        Event::Cancel { .. } if ex.status != Status::Running => Err(StepError::InvalidInStatus(ex.status, "cancel")),
        Event::Terminate { .. } if ex.status.is_terminal() => Err(StepError::InvalidInStatus(ex.status, "terminate")),
        Event::RetryCompensation | Event::SkipCompensation { .. } | Event::ResolveCompensation { .. }
            if ex.status != Status::CompensationStuck =>
        {
            Err(StepError::InvalidInStatus(ex.status, "a compensation repair"))
        }
        Event::Redrive if !ex.can_redrive() => Err(StepError::InvalidInStatus(ex.status, "redrive")),
        Event::ResumeFork if !ex.awaiting_fork() => Err(StepError::InvalidInStatus(ex.status, "a fork resumption")),
        _ => Ok(()),
    }
}

impl Runner<'_> {
    // ---------------------------------------------------------------- plumbing

    pub(crate) fn emit(&mut self, kind: EventKind, state: Option<String>, details: Value) -> u64 {
        self.record(kind, state, details, None)
    }

    pub(crate) fn record(
        &mut self,
        kind: EventKind,
        state: Option<String>,
        details: Value,
        cause: Option<Event>,
    ) -> u64 {
        self.ex.last_event_id += 1;
        let id = self.ex.last_event_id;
        self.out.history.push(HistoryEvent { id, timestamp_ms: self.now_ms, kind, state, details, cause });
        id
    }

    pub(crate) fn new_work_id(&mut self) -> WorkId {
        let id = self.ex.next_work_id;
        self.ex.next_work_id += 1;
        id
    }

    pub(crate) fn issue(&mut self, action: Action, waiter: Waiter) {
        let id = match &action {
            Action::Invoke(call) => call.id,
            Action::StartTimer { id, .. } => *id,
            _ => return self.out.actions.push(action),
        };
        self.ex.pending.insert(id, Pending { action: action.clone(), waiter });
        self.out.actions.push(action);
    }

    pub(crate) fn start_timer(&mut self, due_ms: i64, waiter: Waiter) -> WorkId {
        let id = self.new_work_id();
        self.issue(Action::StartTimer { id, due_ms }, waiter);
        id
    }

    pub(crate) fn abandon(&mut self, id: WorkId) {
        if self.ex.pending.remove(&id).is_some() {
            self.out.actions.push(Action::Abandon { id });
        }
    }

    pub(crate) fn finished(&mut self, status: Status) {
        self.ex.status = status;
        if let Some(timer) = self.ex.timeout_timer.take() {
            self.abandon(timer);
        }
        self.out.actions.push(Action::Finished { status });
    }

    pub(super) fn thread(&self, id: ThreadId) -> &Thread {
        &self.ex.threads[&id]
    }

    pub(super) fn thread_mut(&mut self, id: ThreadId) -> &mut Thread {
        self.ex.threads.get_mut(&id).expect("thread exists while work refers to it")
    }

    pub(super) fn state_of(&self, thread: ThreadId, name: &str) -> &State {
        &machine_of(self.def, &self.thread(thread).machine).states[name]
    }

    /// Point `$$.State` at the current state (and drop `$$.Map` unless asked for).
    pub(crate) fn set_state_context(&mut self, name: &str, entered_ms: i64, retry_count: Option<u32>) {
        if self.time_cache.0 != entered_ms || self.time_cache.1.is_empty() {
            self.time_cache = (entered_ms, format_time(entered_ms));
        }
        let Value::Object(ctx) = &mut self.ctx else {
            return;
        };
        ctx.shift_remove("Map");
        let state = ctx.entry("State").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(state) = state else { return };
        match state.get_mut("Name") {
            Some(Value::String(current)) if current == name => {}
            _ => {
                state.insert("Name".into(), Value::String(name.to_owned()));
            }
        }
        match state.get_mut("EnteredTime") {
            Some(Value::String(current)) if *current == self.time_cache.1 => {}
            _ => {
                state.insert("EnteredTime".into(), Value::String(self.time_cache.1.clone()));
            }
        }
        match retry_count {
            Some(n) => {
                state.insert("RetryCount".into(), Value::from(n));
            }
            None => {
                state.shift_remove("RetryCount");
            }
        }
    }

    pub(super) fn eval_template(
        &mut self,
        thread: ThreadId,
        template: &Template,
        input: &Value,
    ) -> Result<Value, EvalError> {
        let vars = &self.ex.threads[&thread].variables;
        let scope = Scope { input, context: &self.ctx, variables: vars };
        template.eval(&scope, &mut self.rng)
    }

    pub(super) fn get_path(&self, thread: ThreadId, path: &ReferencePath, input: &Value) -> Result<Value, EvalError> {
        let vars = &self.ex.threads[&thread].variables;
        path.get(&Scope { input, context: &self.ctx, variables: vars })
    }

    /// InputPath without copying when it is the identity (the common case).
    pub(super) fn select_ref<'v>(
        &self,
        thread: ThreadId,
        field: &PathField,
        value: &'v Value,
    ) -> Result<Cow<'v, Value>, EvalError> {
        match field {
            PathField::Identity => Ok(Cow::Borrowed(value)),
            PathField::Null => Ok(Cow::Owned(Value::Object(Map::new()))),
            PathField::Path(path) => self.get_path(thread, path, value).map(Cow::Owned),
        }
    }

    /// InputPath / OutputPath: `$` by default, `{}` for null.
    pub(super) fn select(&self, thread: ThreadId, field: &PathField, value: Value) -> Result<Value, EvalError> {
        match field {
            PathField::Identity => Ok(value),
            PathField::Null => Ok(Value::Object(Map::new())),
            PathField::Path(path) => self.get_path(thread, path, &value),
        }
    }

    /// ResultPath: the raw input with the result placed into it.
    pub(super) fn merge_result(field: &PathField, raw_input: Value, result: Value) -> Result<Value, EvalError> {
        match field {
            PathField::Identity => Ok(result),
            PathField::Null => Ok(raw_input),
            PathField::Path(path) => path.set(raw_input, result),
        }
    }

    pub(super) fn runtime_failure(visit: &Visit, err: EvalError) -> Failure {
        Failure::new(
            err.error,
            format!(
                "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
                visit.state, visit.entered_event, err.message
            ),
        )
    }

    pub(super) fn scoped(&self, thread: ThreadId, state: &str) -> String {
        format!("{}{}", self.thread(thread).scope, state)
    }

    // ---------------------------------------------------------------- events

    pub(super) fn dispatch(&mut self, env: Envelope) {
        let Envelope { event, .. } = env;
        match event {
            Event::Started(start) => self.start(start),
            Event::TaskSucceeded { id, output } => {
                let pending = self.ex.pending.remove(&id).expect("checked");
                let cause = Event::TaskSucceeded { id, output: output.clone() };
                match pending.waiter {
                    Waiter::Thread(thread) => self.on_task_result(thread, id, Ok(output), cause),
                    Waiter::Compensation(step) => self.on_compensation_result(step, Ok(output), cause),
                    Waiter::ExecutionTimeout => {}
                }
            }
            Event::TaskFailed { id, error, cause, outcome_unknown } => {
                let pending = self.ex.pending.remove(&id).expect("checked");
                let record = Event::TaskFailed { id, error: error.clone(), cause: cause.clone(), outcome_unknown };
                let failure = Failure { error: Some(error), cause };
                match pending.waiter {
                    Waiter::Thread(thread) => self.on_task_result(thread, id, Err((failure, outcome_unknown)), record),
                    Waiter::Compensation(step) => self.on_compensation_result(step, Err(failure), record),
                    Waiter::ExecutionTimeout => {}
                }
            }
            Event::TimerFired { id } => {
                let pending = self.ex.pending.remove(&id).expect("checked");
                self.record(EventKind::TimerFired, None, json!({ "timerId": id }), Some(Event::TimerFired { id }));
                match pending.waiter {
                    Waiter::Thread(thread) => self.on_timer(thread, id),
                    Waiter::Compensation(step) => self.on_compensation_timer(step),
                    Waiter::ExecutionTimeout => self.on_execution_timeout(),
                }
            }
            Event::Cancel { reason } => {
                let cause = reason.clone().unwrap_or_else(|| "The execution was cancelled.".into());
                self.record(
                    EventKind::ExecutionCancelRequested,
                    None,
                    json!({ "reason": reason }),
                    Some(Event::Cancel { reason }),
                );
                self.ex.cancelled = true;
                self.abort_thread(0);
                self.fail_execution(Failure::new("Sagaflow.Cancelled", cause));
            }
            Event::Terminate { reason } => {
                self.record(
                    EventKind::ExecutionTerminated,
                    None,
                    json!({ "reason": reason }),
                    Some(Event::Terminate { reason: reason.clone() }),
                );
                if self.ex.threads.contains_key(&0) {
                    self.abort_thread(0);
                }
                let ids: Vec<WorkId> = self.ex.pending.keys().copied().collect();
                for id in ids {
                    self.abandon(id);
                }
                if self.ex.error.is_none() {
                    self.ex.error = Some("Sagaflow.Terminated".into());
                    self.ex.cause = Some(reason.unwrap_or_else(|| "The execution was terminated.".into()));
                }
                self.finished(Status::Terminated);
            }
            Event::RetryCompensation => self.repair_compensation(super::saga::Repair::Retry),
            Event::SkipCompensation { reason } => self.repair_compensation(super::saga::Repair::Skip(reason)),
            Event::ResolveCompensation { reason } => self.repair_compensation(super::saga::Repair::Resolve(reason)),
            Event::Redrive => self.redrive(),
            Event::ResumeFork => self.resume_fork(),
        }
    }

    /// Continue a fork at its fork state: from here on, keys are the fork's own.
    pub(super) fn resume_fork(&mut self) {
        let Some(point) = self.ex.fork_point.take() else { return };
        let copied_from = std::mem::replace(&mut self.ex.key_prefix, self.ex.execution_id.clone());
        self.record(
            EventKind::ExecutionForked,
            None,
            json!({ "state": point.state, "copiedFrom": copied_from }),
            Some(Event::ResumeFork),
        );
        if let Some(root) = self.ex.threads.get_mut(&0) {
            root.variables = point.variables;
            root.visits = point.visits;
        }
        // The fork's own TimeoutSeconds runs from now, not from the original's start.
        if let Some(old) = self.ex.timeout_timer.take() {
            self.abandon(old);
        }
        if let Some(seconds) = self.def.timeout_seconds {
            let due = self.now_ms.saturating_add(seconds as i64 * 1000);
            let id = self.start_timer(due, Waiter::ExecutionTimeout);
            self.ex.timeout_timer = Some(id);
        }
        self.queue.push_back(Work::Enter { thread: 0, state: point.state, input: point.raw_input });
    }

    /// Resume a FAILED execution: re-enter the failed top-level state as the same visit,
    /// with the variables it had, so its calls reuse their idempotency keys.
    pub(super) fn redrive(&mut self) {
        let Some(point) = self.ex.redrive_point.take() else { return };
        self.ex.redrive_count += 1;
        let count = self.ex.redrive_count;
        self.record(
            EventKind::ExecutionRedriven,
            None,
            json!({ "state": point.state, "redriveCount": count, "error": self.ex.error, "cause": self.ex.cause }),
            Some(Event::Redrive),
        );
        if let Some(execution) = self.ctx.get_mut("Execution").and_then(Value::as_object_mut) {
            execution.insert("RedriveCount".into(), Value::from(count));
        }
        self.ex.status = Status::Running;
        self.ex.error = None;
        self.ex.cause = None;
        self.ex.output = None;
        self.ex.rollback = None;
        let mut visits = point.visits;
        if let Some(n) = visits.get_mut(&point.state) {
            *n = n.saturating_sub(1);
        }
        self.ex.threads.insert(
            0,
            Thread {
                parent: None,
                machine: Vec::new(),
                scope: String::new(),
                variables: point.variables,
                visits,
                cursor: Cursor::Aborted,
                ledger: Vec::new(),
            },
        );
        if let Some(seconds) = self.def.timeout_seconds {
            let due = self.now_ms.saturating_add(seconds as i64 * 1000);
            let id = self.start_timer(due, Waiter::ExecutionTimeout);
            self.ex.timeout_timer = Some(id);
        }
        self.queue.push_back(Work::Enter { thread: 0, state: point.state, input: point.raw_input });
    }

    pub(super) fn start(&mut self, start: Start) {
        let start_time = format_time(self.now_ms);
        self.ctx = json!({
            "Execution": {
                "Id": start.execution_id,
                "Input": start.input,
                "StartTime": start_time,
                "Name": start.execution_name,
                "RoleArn": "arn:sagaflow:iam::role/sagaflow",
                "RedriveCount": start.redrive_count,
            },
            "StateMachine": { "Id": start.state_machine_id, "Name": start.state_machine_name },
        });
        self.ex.execution_id = start.execution_id.clone();
        self.ex.key_prefix = start.key_namespace.clone().unwrap_or_else(|| start.execution_id.clone());
        self.ex.fork_at = start.fork_at.clone();
        self.ex.seed = start.seed;
        self.ex.status = Status::Running;
        let input = start.input.clone();
        self.record(
            EventKind::ExecutionStarted,
            None,
            object([("input", input.clone()), ("stateMachine", self.ctx["StateMachine"]["Name"].clone())]),
            Some(Event::Started(start)),
        );
        self.ex.threads.insert(
            0,
            Thread {
                parent: None,
                machine: Vec::new(),
                scope: String::new(),
                variables: Map::new(),
                visits: Default::default(),
                cursor: Cursor::Aborted,
                ledger: Vec::new(),
            },
        );
        self.ex.next_thread_id = 1;
        if let Some(over) = over_limit(&input) {
            let cause = match over {
                Over::Size => format!(
                    "The execution input is {} bytes, over the limit of {} bytes.",
                    json_size(&input),
                    PAYLOAD_LIMIT_BYTES
                ),
                Over::Depth => format!(
                    "The execution input nests arrays and objects more than {NESTING_LIMIT} levels deep, over the \
                     limit of {NESTING_LIMIT} levels."
                ),
            };
            let failure = Failure::new(errors::DATA_LIMIT_EXCEEDED, cause);
            self.thread_mut(0).cursor = Cursor::Failed { error: failure.name().into(), cause: failure.cause.clone() };
            self.queue.push_back(Work::ThreadEnded { thread: 0 });
            return;
        }
        if let Some(seconds) = self.def.timeout_seconds {
            let due = self.now_ms.saturating_add(seconds as i64 * 1000);
            let id = self.start_timer(due, Waiter::ExecutionTimeout);
            self.ex.timeout_timer = Some(id);
        }
        let start_at = self.def.machine.start_at.clone();
        self.queue.push_back(Work::Enter { thread: 0, state: start_at, input });
    }

    pub(super) fn drain(&mut self) {
        while let Some(work) = self.queue.pop_front() {
            match work {
                // A sibling that failed in this same step may have aborted (and dropped) the
                // thread after its entry was queued: a Map iteration started beside a failing one.
                Work::Enter { thread, .. } if !self.ex.threads.contains_key(&thread) => {}
                Work::Enter { thread, state, input } => self.enter(thread, state, input),
                Work::ThreadEnded { thread } => self.thread_ended(thread),
            }
        }
    }

    // ---------------------------------------------------------------- states

    pub(super) fn enter(&mut self, thread: ThreadId, name: String, raw_input: Value) {
        if self.ex.last_event_id >= super::HISTORY_EVENT_LIMIT {
            return self.history_full();
        }
        if thread == 0 && self.ex.fork_at.as_deref() == Some(name.as_str()) {
            // A fork copied everything before this state: pause until ResumeFork.
            self.ex.fork_at = None;
            let root = self.thread(0);
            self.ex.fork_point = Some(RedrivePoint {
                state: name,
                raw_input,
                variables: root.variables.clone(),
                visits: root.visits.clone(),
            });
            self.queue.clear();
            return;
        }
        let def = self.def;
        let steps = self.thread(thread).machine.clone();
        let machine = machine_of(def, &steps);
        let state = &machine.states[name.as_str()];
        let number = {
            let t = self.thread_mut(thread);
            match t.visits.get_mut(&name) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    t.visits.insert(name.clone(), 1);
                    1
                }
            }
        };
        let scoped = self.scoped(thread, &name);
        let entered_kind = entered_kind(&state.kind);
        let entered_event = self.emit(entered_kind, Some(scoped), object([("input", raw_input.clone())]));
        let retry_len = match &state.kind {
            StateKind::Task(t) => t.resilience.retry.len(),
            StateKind::Parallel(p) => p.resilience.retry.len(),
            StateKind::Map(m) => m.resilience.retry.len(),
            _ => 0,
        };
        let visit = Visit {
            state: name,
            number,
            entered_event,
            entered_ms: self.now_ms,
            raw_input,
            effective_input: Value::Null,
            retries: vec![0; retry_len],
            retry_count: 0,
        };
        let retry_count = matches!(state.kind, StateKind::Task(_)).then_some(0);
        self.set_state_context(&visit.state, visit.entered_ms, retry_count);
        if let Err(failure) = self.run_state(thread, state, visit) {
            self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
        }
    }

    /// Run the synchronous part of a state. `Err` is a failure no Catch can take (the thread
    /// fails with it); catchable failures are routed inside.
    pub(super) fn run_state(&mut self, thread: ThreadId, state: &State, mut visit: Visit) -> Result<(), Failure> {
        match &state.kind {
            StateKind::Pass(pass) => {
                let input = self
                    .select(thread, &state.input_path, visit.raw_input.clone())
                    .map_err(|e| Self::runtime_failure(&visit, e))?;
                let result = match (&pass.result, &pass.parameters) {
                    (Some(result), _) => result.clone(),
                    (None, Some(params)) => {
                        self.eval_template(thread, params, &input).map_err(|e| Self::runtime_failure(&visit, e))?
                    }
                    (None, None) => input,
                };
                self.finish_state(thread, state, visit, &pass.result_path, None, result)
            }
            StateKind::Choice(choice_state) => {
                let input = self
                    .select(thread, &state.input_path, visit.raw_input.clone())
                    .map_err(|e| Self::runtime_failure(&visit, e))?;
                let mut chosen = None;
                for branch in &choice_state.choices {
                    let vars = &self.ex.threads[&thread].variables;
                    let scope = Scope { input: &input, context: &self.ctx, variables: vars };
                    if choice::evaluate(&branch.rule, &scope).map_err(|e| Self::runtime_failure(&visit, e))? {
                        chosen = Some((branch.next.clone(), branch.assign.as_ref()));
                        break;
                    }
                }
                let (next, assign) = match chosen {
                    Some(found) => found,
                    None => match &choice_state.default {
                        Some(default) => (default.clone(), state.assign.as_ref()),
                        None => {
                            return Err(Failure::new(
                                errors::NO_CHOICE_MATCHED,
                                format!(
                                    "An error occurred while executing the state '{}' (entered at the event id #{}). No Choice Rule matched and there is no Default.",
                                    visit.state, visit.entered_event
                                ),
                            ));
                        }
                    },
                };
                let assigned = match assign {
                    Some(t) => {
                        Some(self.eval_template(thread, t, &input).map_err(|e| Self::runtime_failure(&visit, e))?)
                    }
                    None => None,
                };
                let output =
                    self.select(thread, &state.output_path, input).map_err(|e| Self::runtime_failure(&visit, e))?;
                self.exit_state(thread, state, &visit, output, assigned, Some(&Transition::Next(next)))
            }
            StateKind::Wait(wait) => {
                let input = self
                    .select(thread, &state.input_path, visit.raw_input.clone())
                    .map_err(|e| Self::runtime_failure(&visit, e))?;
                let due = self.wait_due(thread, wait, &input).map_err(|e| Self::runtime_failure(&visit, e))?;
                visit.effective_input = input;
                if due <= self.now_ms {
                    return self.finish_wait(thread, state, visit);
                }
                let timer = self.start_timer(due, Waiter::Thread(thread));
                self.thread_mut(thread).cursor = Cursor::Wait { visit, timer };
                Ok(())
            }
            StateKind::Succeed => {
                let input = self
                    .select(thread, &state.input_path, visit.raw_input.clone())
                    .map_err(|e| Self::runtime_failure(&visit, e))?;
                let output =
                    self.select(thread, &state.output_path, input).map_err(|e| Self::runtime_failure(&visit, e))?;
                let scoped = self.scoped(thread, &visit.state);
                self.emit(EventKind::SucceedStateExited, Some(scoped), object([("output", output.clone())]));
                self.end_thread(thread, Cursor::Done(output));
                Ok(())
            }
            StateKind::Fail(fail) => {
                let error = self.fail_field(thread, fail.error.as_ref(), "ErrorPath", &visit)?;
                let cause = self.fail_field(thread, fail.cause.as_ref(), "CausePath", &visit)?;
                Err(Failure { error, cause })
            }
            StateKind::Task(_) => {
                self.start_task(thread, state, visit);
                Ok(())
            }
            StateKind::Parallel(_) | StateKind::Map(_) => {
                self.start_join(thread, state, visit);
                Ok(())
            }
        }
    }

    pub(super) fn fail_field(
        &mut self,
        thread: ThreadId,
        field: Option<&FailField>,
        name: &str,
        visit: &Visit,
    ) -> Result<Option<String>, Failure> {
        match field {
            None => Ok(None),
            Some(FailField::Literal(text)) => Ok(Some(text.clone())),
            Some(FailField::Dynamic(expr)) => {
                let vars = &self.ex.threads[&thread].variables;
                let scope = Scope { input: &visit.raw_input, context: &self.ctx, variables: vars };
                let value = expr.eval(&scope, name, &mut self.rng).map_err(|e| Self::runtime_failure(visit, e))?;
                Ok(Some(match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                }))
            }
        }
    }

    pub(super) fn wait_due(&self, thread: ThreadId, wait: &WaitState, input: &Value) -> Result<i64, EvalError> {
        let runtime = |message: String| EvalError { error: errors::RUNTIME.into(), message };
        match wait {
            WaitState::Seconds(s) => Ok(self.now_ms.saturating_add(*s as i64 * 1000)),
            WaitState::Timestamp(text) => timestamp::parse_millis(text)
                .ok_or_else(|| runtime(format!("The Timestamp field is not a valid timestamp: {text}"))),
            WaitState::SecondsPath(path) => {
                let value = self.get_path(thread, path, input)?;
                let shown = compact(&value);
                let seconds = match &value {
                    Value::Number(n) => match n.as_i64() {
                        Some(s) => s,
                        None => {
                            return Err(runtime(format!(
                                "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                                path.as_str(),
                                shown
                            )));
                        }
                    },
                    _ => {
                        return Err(runtime(format!(
                            "The SecondsPath parameter cannot be parsed as a long value: {} == {}",
                            path.as_str(),
                            shown
                        )));
                    }
                };
                if seconds < 0 {
                    return Err(runtime(format!(
                        "The SecondsPath parameter references a negative value: {} == {}",
                        path.as_str(),
                        shown
                    )));
                }
                Ok(self.now_ms.saturating_add(seconds.saturating_mul(1000)))
            }
            WaitState::TimestampPath(path) => {
                let value = self.get_path(thread, path, input)?;
                let text = value.as_str().map(str::to_owned).unwrap_or_else(|| compact(&value));
                value.as_str().and_then(timestamp::parse_millis).ok_or_else(|| {
                    runtime(format!(
                        "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {} == {}",
                        path.as_str(),
                        text
                    ))
                })
            }
        }
    }

    pub(super) fn finish_wait(&mut self, thread: ThreadId, state: &State, visit: Visit) -> Result<(), Failure> {
        let input = visit.effective_input.clone();
        let assigned = match &state.assign {
            Some(t) => Some(self.eval_template(thread, t, &input).map_err(|e| Self::runtime_failure(&visit, e))?),
            None => None,
        };
        let output = self.select(thread, &state.output_path, input).map_err(|e| Self::runtime_failure(&visit, e))?;
        self.exit_state(thread, state, &visit, output, assigned, state.transition.as_ref())
    }

    /// ResultSelector → Assign → ResultPath → OutputPath → exit, for Pass, Task, Parallel, Map.
    pub(super) fn finish_state(
        &mut self,
        thread: ThreadId,
        state: &State,
        visit: Visit,
        result_path: &PathField,
        result_selector: Option<&Template>,
        result: Value,
    ) -> Result<(), Failure> {
        let mut visit = visit;
        let selected = match result_selector {
            Some(t) => self.eval_template(thread, t, &result).map_err(|e| Self::runtime_failure(&visit, e))?,
            None => result,
        };
        let assigned = match &state.assign {
            Some(t) => Some(self.eval_template(thread, t, &selected).map_err(|e| Self::runtime_failure(&visit, e))?),
            None => None,
        };
        let raw_input = std::mem::take(&mut visit.raw_input);
        let combined =
            Self::merge_result(result_path, raw_input, selected).map_err(|e| Self::runtime_failure(&visit, e))?;
        let output = self.select(thread, &state.output_path, combined).map_err(|e| Self::runtime_failure(&visit, e))?;
        if let Some(over) = over_limit(&output) {
            return Err(Failure::new(errors::DATA_LIMIT_EXCEEDED, over.state_cause(&visit.state)));
        }
        self.exit_state(thread, state, &visit, output, assigned, state.transition.as_ref())
    }

    pub(super) fn exit_state(
        &mut self,
        thread: ThreadId,
        state: &State,
        visit: &Visit,
        output: Value,
        assigned: Option<Value>,
        transition: Option<&Transition>,
    ) -> Result<(), Failure> {
        if let Some(Value::Object(vars)) = assigned {
            let t = self.thread_mut(thread);
            for (k, v) in vars {
                t.variables.insert(k, v);
            }
        }
        let scoped = self.scoped(thread, &visit.state);
        self.emit(exited_kind(&state.kind), Some(scoped), object([("output", output.clone())]));
        match transition {
            Some(Transition::Next(next)) => {
                self.queue.push_back(Work::Enter { thread, state: next.clone(), input: output });
            }
            Some(Transition::End) | None => self.end_thread(thread, Cursor::Done(output)),
        }
        Ok(())
    }

    pub(crate) fn end_thread(&mut self, thread: ThreadId, cursor: Cursor) {
        self.thread_mut(thread).cursor = cursor;
        self.queue.push_back(Work::ThreadEnded { thread });
    }

    /// Stop a thread and everything under it: abandon its calls and timers, and record
    /// compensations owed for calls whose outcome is now unknown.
    pub(crate) fn abort_thread(&mut self, thread: ThreadId) {
        let Some(t) = self.ex.threads.get_mut(&thread) else {
            return;
        };
        let cursor = std::mem::replace(&mut t.cursor, Cursor::Aborted);
        match cursor {
            Cursor::Task { visit, call, timer, outcome_unknown } => {
                if let Some(id) = call {
                    self.abandon(id);
                }
                if let Some(id) = timer {
                    self.abandon(id);
                }
                let compensatable = matches!(
                    &self.state_of(thread, &visit.state).kind,
                    StateKind::Task(task) if task.compensate.is_some()
                );
                if compensatable && (call.is_some() || outcome_unknown) {
                    let scope = self.scoped(thread, &visit.state);
                    let key = self.idempotency_key(thread, &visit);
                    self.push_ledger(thread, &visit, scope, key, None);
                }
            }
            Cursor::Wait { timer, .. } | Cursor::Backoff { timer, .. } => self.abandon(timer),
            Cursor::Join(join) => {
                let join = *join;
                let state = join.visit.state.clone();
                let mut ledgers = join.child_ledgers;
                for child in join.children {
                    self.abort_thread(child);
                    if let Some(c) = self.ex.threads.remove(&child) {
                        let slot = c.parent.map(|l| l.slot as usize).unwrap_or(0);
                        if let Some(l) = ledgers.get_mut(slot) {
                            *l = c.ledger;
                        }
                    }
                }
                self.push_group(thread, &state, ledgers);
            }
            Cursor::Done(_) | Cursor::Failed { .. } | Cursor::Aborted => {}
        }
    }

    pub(super) fn push_ledger(
        &mut self,
        thread: ThreadId,
        visit: &Visit,
        scope: String,
        forward_key: String,
        result: Option<Value>,
    ) {
        let machine = self.thread(thread).machine.clone();
        let entry = LedgerEntry::Step(super::saga::OwedCompensation {
            state: visit.state.clone(),
            scope,
            machine,
            forward_key,
            outcome_unknown: result.is_none(),
            document: object([("Input", visit.effective_input.clone()), ("Result", result.unwrap_or(Value::Null))]),
        });
        self.thread_mut(thread).ledger.push(entry);
    }

    pub(super) fn push_group(&mut self, thread: ThreadId, state: &str, lanes: Vec<Vec<LedgerEntry>>) {
        if lanes.iter().all(Vec::is_empty) {
            return;
        }
        let scope = self.scoped(thread, state);
        self.thread_mut(thread).ledger.push(LedgerEntry::Group { scope, lanes });
    }

    // ---------------------------------------------------------------- the end

    pub(super) fn root_ended(&mut self) {
        let cursor = std::mem::replace(&mut self.thread_mut(0).cursor, Cursor::Aborted);
        match cursor {
            Cursor::Done(output) => {
                self.emit(EventKind::ExecutionSucceeded, None, object([("output", output.clone())]));
                self.ex.output = Some(output);
                self.finished(Status::Succeeded);
            }
            Cursor::Failed { error, cause } => {
                let failure = Failure { error: (!error.is_empty()).then_some(error), cause };
                self.fail_execution(failure);
            }
            other => self.thread_mut(0).cursor = other,
        }
    }

    /// The history reached its limit: no new state starts; the execution fails and
    /// compensates (compensation events may go past the limit, so what is owed is paid).
    pub(super) fn history_full(&mut self) {
        if self.ex.status != Status::Running {
            return;
        }
        self.queue.clear();
        self.abort_thread(0);
        self.fail_execution(Failure::new(
            errors::DATA_LIMIT_EXCEEDED,
            format!(
                "The execution history reached its limit of {} events; split the work into smaller executions.",
                super::HISTORY_EVENT_LIMIT
            ),
        ));
    }

    pub(super) fn on_execution_timeout(&mut self) {
        self.ex.timeout_timer = None;
        if self.ex.status != Status::Running {
            return;
        }
        self.abort_thread(0);
        self.emit(EventKind::ExecutionTimedOut, None, Value::Null);
        self.fail_execution(Failure::new(errors::TIMEOUT, "The execution ran longer than its TimeoutSeconds."));
    }
}

/// The state machine a thread runs, found from the definition's top level.
pub(crate) fn machine_of<'d>(def: &'d Definition, steps: &[MachineStep]) -> &'d StateMachine {
    let mut machine = &def.machine;
    for step in steps {
        machine = match &machine.states[step.state.as_str()].kind {
            StateKind::Parallel(p) => &p.branches[step.branch as usize],
            StateKind::Map(m) => &m.processor,
            _ => unreachable!("machine paths only go through Parallel and Map states"),
        };
    }
    machine
}

pub(super) fn resilience(kind: &StateKind) -> Option<&Resilience> {
    match kind {
        StateKind::Task(t) => Some(&t.resilience),
        StateKind::Parallel(p) => Some(&p.resilience),
        StateKind::Map(m) => Some(&m.resilience),
        _ => None,
    }
}

pub(super) fn entered_kind(kind: &StateKind) -> EventKind {
    match kind {
        StateKind::Pass(_) => EventKind::PassStateEntered,
        StateKind::Task(_) => EventKind::TaskStateEntered,
        StateKind::Choice(_) => EventKind::ChoiceStateEntered,
        StateKind::Wait(_) => EventKind::WaitStateEntered,
        StateKind::Succeed => EventKind::SucceedStateEntered,
        StateKind::Fail(_) => EventKind::FailStateEntered,
        StateKind::Parallel(_) => EventKind::ParallelStateEntered,
        StateKind::Map(_) => EventKind::MapStateEntered,
    }
}

pub(super) fn exited_kind(kind: &StateKind) -> EventKind {
    match kind {
        StateKind::Pass(_) => EventKind::PassStateExited,
        StateKind::Task(_) => EventKind::TaskStateExited,
        StateKind::Choice(_) => EventKind::ChoiceStateExited,
        StateKind::Wait(_) => EventKind::WaitStateExited,
        StateKind::Succeed => EventKind::SucceedStateExited,
        StateKind::Parallel(_) => EventKind::ParallelStateExited,
        StateKind::Map(_) => EventKind::MapStateExited,
        // A Fail state never exits: the failure ends its thread.
        StateKind::Fail(_) => unreachable!("Fail states do not exit"),
    }
}
