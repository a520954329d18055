//! State handlers and data flow: entering states, InputPath → Parameters → work →
//! ResultSelector → ResultPath → OutputPath, Retry and Catch, Parallel and Map joins.
//!
//! Work is processed from a FIFO queue until every thread is blocked on a call or a timer,
//! so one event may run many synchronous states (Pass, Choice, ...) in a deterministic order.

use std::borrow::Cow;
use std::collections::VecDeque;

use chrono::{DateTime, SecondsFormat};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value, json};

use super::execution::{
    Cursor, Execution, Join, MachineStep, ParentLink, Pending, RedrivePoint, Status, Thread, ThreadId, Visit, Waiter,
};
use super::history::{EventKind, HistoryEvent};
use super::saga::LedgerEntry;
use super::{
    Action, Call, DEFAULT_TASK_TIMEOUT_SECONDS, Envelope, Event, PAYLOAD_LIMIT_BYTES, Start, Step, StepError, WorkId,
};
use crate::errors;
use crate::expr::{EvalError, ReferencePath, Scope, Template, choice, timestamp};
use crate::model::{
    Catcher, Definition, FailField, MapState, MaxConcurrency, NumberOrPath, PathField, Resilience, State, StateKind,
    StateMachine, Timeout, Transition, WaitState,
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
    fn output(&self) -> Value {
        let mut out = Map::new();
        if let Some(e) = &self.error {
            out.insert("Error".into(), Value::String(e.clone()));
        }
        if let Some(c) = &self.cause {
            out.insert("Cause".into(), Value::String(c.clone()));
        }
        Value::Object(out)
    }

    fn name(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
}

enum Work {
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
    queue: VecDeque<Work>,
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

    fn thread(&self, id: ThreadId) -> &Thread {
        &self.ex.threads[&id]
    }

    fn thread_mut(&mut self, id: ThreadId) -> &mut Thread {
        self.ex.threads.get_mut(&id).expect("thread exists while work refers to it")
    }

    fn state_of(&self, thread: ThreadId, name: &str) -> &State {
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

    fn eval_template(&mut self, thread: ThreadId, template: &Template, input: &Value) -> Result<Value, EvalError> {
        let vars = &self.ex.threads[&thread].variables;
        let scope = Scope { input, context: &self.ctx, variables: vars };
        template.eval(&scope, &mut self.rng)
    }

    fn get_path(&self, thread: ThreadId, path: &ReferencePath, input: &Value) -> Result<Value, EvalError> {
        let vars = &self.ex.threads[&thread].variables;
        path.get(&Scope { input, context: &self.ctx, variables: vars })
    }

    /// InputPath without copying when it is the identity (the common case).
    fn select_ref<'v>(
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
    fn select(&self, thread: ThreadId, field: &PathField, value: Value) -> Result<Value, EvalError> {
        match field {
            PathField::Identity => Ok(value),
            PathField::Null => Ok(Value::Object(Map::new())),
            PathField::Path(path) => self.get_path(thread, path, &value),
        }
    }

    /// ResultPath: the raw input with the result placed into it.
    fn merge_result(field: &PathField, raw_input: Value, result: Value) -> Result<Value, EvalError> {
        match field {
            PathField::Identity => Ok(result),
            PathField::Null => Ok(raw_input),
            PathField::Path(path) => path.set(raw_input, result),
        }
    }

    fn runtime_failure(visit: &Visit, err: EvalError) -> Failure {
        Failure::new(
            err.error,
            format!(
                "An error occurred while executing the state '{}' (entered at the event id #{}). {}",
                visit.state, visit.entered_event, err.message
            ),
        )
    }

    fn scoped(&self, thread: ThreadId, state: &str) -> String {
        format!("{}{}", self.thread(thread).scope, state)
    }

    // ---------------------------------------------------------------- events

    fn dispatch(&mut self, env: Envelope) {
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
    fn resume_fork(&mut self) {
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
    fn redrive(&mut self) {
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

    fn start(&mut self, start: Start) {
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
            json!({ "input": input, "stateMachine": self.ctx["StateMachine"]["Name"] }),
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
        if over_limit(&input) {
            let failure = Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The execution input is {} bytes, over the limit of {} bytes.",
                    json_size(&input),
                    PAYLOAD_LIMIT_BYTES
                ),
            );
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

    fn drain(&mut self) {
        while let Some(work) = self.queue.pop_front() {
            match work {
                Work::Enter { thread, state, input } => self.enter(thread, state, input),
                Work::ThreadEnded { thread } => self.thread_ended(thread),
            }
        }
    }

    // ---------------------------------------------------------------- states

    fn enter(&mut self, thread: ThreadId, name: String, raw_input: Value) {
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
        let entered_event = self.emit(entered_kind, Some(scoped), json!({ "input": raw_input }));
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
    fn run_state(&mut self, thread: ThreadId, state: &State, mut visit: Visit) -> Result<(), Failure> {
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
                self.emit(EventKind::SucceedStateExited, Some(scoped), json!({ "output": output }));
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

    fn fail_field(
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

    fn wait_due(&self, thread: ThreadId, wait: &WaitState, input: &Value) -> Result<i64, EvalError> {
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

    fn finish_wait(&mut self, thread: ThreadId, state: &State, visit: Visit) -> Result<(), Failure> {
        let input = visit.effective_input.clone();
        let assigned = match &state.assign {
            Some(t) => Some(self.eval_template(thread, t, &input).map_err(|e| Self::runtime_failure(&visit, e))?),
            None => None,
        };
        let output = self.select(thread, &state.output_path, input).map_err(|e| Self::runtime_failure(&visit, e))?;
        self.exit_state(thread, state, &visit, output, assigned, state.transition.as_ref())
    }

    /// ResultSelector → Assign → ResultPath → OutputPath → exit, for Pass, Task, Parallel, Map.
    fn finish_state(
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
        if over_limit(&output) {
            return Err(Failure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!(
                    "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                    visit.state
                ),
            ));
        }
        self.exit_state(thread, state, &visit, output, assigned, state.transition.as_ref())
    }

    fn exit_state(
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
        self.emit(exited_kind(&state.kind), Some(scoped), json!({ "output": output }));
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

    // ---------------------------------------------------------------- tasks

    fn start_task(&mut self, thread: ThreadId, state: &State, mut visit: Visit) {
        let StateKind::Task(task) = &state.kind else { unreachable!("start_task on a Task") };
        let prepared = (|| {
            let input = self.select_ref(thread, &state.input_path, &visit.raw_input)?;
            match &task.parameters {
                Some(params) => self.eval_template(thread, params, &input),
                None => Ok(input.into_owned()),
            }
        })();
        let input = match prepared {
            Ok(input) => input,
            Err(e) => {
                let failure = Self::runtime_failure(&visit, e);
                return self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
            }
        };
        visit.effective_input = input;
        self.invoke_task(thread, state, visit, false);
    }

    fn invoke_task(&mut self, thread: ThreadId, state: &State, visit: Visit, outcome_unknown: bool) {
        let StateKind::Task(task) = &state.kind else { unreachable!("invoke_task on a Task") };
        let timeout = match &task.timeout {
            None => Ok(DEFAULT_TASK_TIMEOUT_SECONDS),
            Some(Timeout::Seconds(s)) => Ok(*s),
            Some(Timeout::Path(p)) => self.get_path(thread, p, &visit.effective_input).and_then(|v| {
                v.as_u64().filter(|s| *s > 0).ok_or_else(|| EvalError {
                    error: errors::RUNTIME.into(),
                    message: format!(
                        "The TimeoutSecondsPath field refers to value {} which is not a positive integer: {}",
                        compact(&v),
                        p.as_str()
                    ),
                })
            }),
        };
        let heartbeat = match &task.heartbeat {
            None => Ok(None),
            Some(Timeout::Seconds(s)) => Ok(Some(*s)),
            Some(Timeout::Path(p)) => self.get_path(thread, p, &visit.effective_input).map(|v| v.as_u64()),
        };
        let (timeout, heartbeat) = match (timeout, heartbeat) {
            (Ok(t), Ok(h)) => (t, h),
            (Err(e), _) | (_, Err(e)) => {
                let failure = Self::runtime_failure(&visit, e);
                return self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
            }
        };
        let id = self.new_work_id();
        let scope = self.scoped(thread, &visit.state);
        let key = self.idempotency_key(thread, &visit);
        let call = Call {
            id,
            state: visit.state.clone(),
            scope: scope.clone(),
            resource: task.resource.clone(),
            input: visit.effective_input.clone(),
            idempotency_key: key,
            compensates: None,
            timeout_seconds: timeout,
            heartbeat_seconds: heartbeat,
            attempt: visit.retry_count + 1,
        };
        self.emit(
            EventKind::TaskScheduled,
            Some(scope),
            json!({
                "callId": id,
                "resource": call.resource,
                "input": call.input,
                "idempotencyKey": call.idempotency_key,
                "attempt": call.attempt,
                "timeoutSeconds": timeout,
            }),
        );
        self.issue(Action::Invoke(call), Waiter::Thread(thread));
        self.thread_mut(thread).cursor = Cursor::Task { visit, call: Some(id), timer: None, outcome_unknown };
    }

    /// `{execution}:{scoped state}#{visit}`: the same for every attempt of one visit.
    fn idempotency_key(&self, thread: ThreadId, visit: &Visit) -> String {
        let prefix = if self.ex.key_prefix.is_empty() { &self.ex.execution_id } else { &self.ex.key_prefix };
        format!("{}:{}{}#{}", prefix, self.thread(thread).scope, visit.state, visit.number)
    }

    fn on_task_result(&mut self, thread: ThreadId, id: WorkId, result: Result<Value, (Failure, bool)>, record: Event) {
        let Cursor::Task { visit, outcome_unknown, .. } =
            std::mem::replace(&mut self.thread_mut(thread).cursor, Cursor::Aborted)
        else {
            unreachable!("a task answer always finds its thread waiting on it")
        };
        let def = self.def;
        let steps = self.thread(thread).machine.clone();
        let state = &machine_of(def, &steps).states[visit.state.as_str()];
        let StateKind::Task(task) = &state.kind else { unreachable!("task answers go to Task states") };
        let scope = self.scoped(thread, &visit.state);
        self.set_state_context(&visit.state, visit.entered_ms, Some(visit.retry_count));
        match result {
            Ok(output) => {
                self.record(EventKind::TaskSucceeded, Some(scope.clone()), json!({ "callId": id }), Some(record));
                let too_large = over_limit(&output);
                // The participant applied the call whatever its answer's size: the
                // compensation is owed before anything else can fail (an answer too large
                // to keep is handed to it as null).
                if task.compensate.is_some() {
                    let key = self.idempotency_key(thread, &visit);
                    let kept = (!too_large).then(|| output.clone());
                    self.push_ledger(thread, &visit, scope, key, kept);
                }
                if too_large {
                    let failure = Failure::new(
                        errors::DATA_LIMIT_EXCEEDED,
                        format!(
                            "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                            visit.state
                        ),
                    );
                    return self
                        .end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
                }
                if let Err(failure) = self.finish_state(
                    thread,
                    state,
                    visit,
                    &task.resilience.result_path,
                    task.resilience.result_selector.as_ref(),
                    output,
                ) {
                    self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
                }
            }
            Err((failure, unknown)) => {
                let kind = if failure.error.as_deref() == Some(errors::TIMEOUT) {
                    EventKind::TaskTimedOut
                } else {
                    EventKind::TaskFailed
                };
                self.record(
                    kind,
                    Some(scope),
                    json!({ "callId": id, "error": failure.error, "cause": failure.cause, "outcomeUnknown": unknown }),
                    Some(record),
                );
                self.state_failed(thread, state, visit, failure, outcome_unknown || unknown);
            }
        }
    }

    /// Retry, then Catch, then fail the thread: for Task, Parallel and Map failures.
    fn state_failed(
        &mut self,
        thread: ThreadId,
        state: &State,
        mut visit: Visit,
        failure: Failure,
        outcome_unknown: bool,
    ) {
        let resilience = resilience(&state.kind).expect("only Task, Parallel and Map fail through here");
        let name = failure.name().to_owned();
        let terminal = errors::is_terminal(&name);
        if !terminal
            && let Some(index) = resilience.retry.iter().position(|r| errors::matches(&r.error_equals, &name, true))
        {
            let retrier = &resilience.retry[index];
            if visit.retries[index] < retrier.max_attempts {
                let delay = super::retry::delay_ms(retrier, visit.retries[index], &mut self.rng);
                visit.retries[index] += 1;
                visit.retry_count += 1;
                let scope = self.scoped(thread, &visit.state);
                let is_task = matches!(state.kind, StateKind::Task(_));
                self.emit(
                    if is_task { EventKind::TaskRetryScheduled } else { EventKind::StateRetryScheduled },
                    Some(scope),
                    json!({ "error": failure.error, "cause": failure.cause, "delayMs": delay, "retry": visit.retry_count }),
                );
                let timer = self.start_timer(self.now_ms + delay, Waiter::Thread(thread));
                self.thread_mut(thread).cursor = if is_task {
                    Cursor::Task { visit, call: None, timer: Some(timer), outcome_unknown }
                } else {
                    Cursor::Backoff { visit, timer }
                };
                return;
            }
        }
        if outcome_unknown
            && let StateKind::Task(task) = &state.kind
            && task.compensate.is_some()
        {
            let scope = self.scoped(thread, &visit.state);
            let key = self.idempotency_key(thread, &visit);
            self.push_ledger(thread, &visit, scope, key, None);
        }
        if !terminal
            && let Some(catcher) = resilience.catch.iter().find(|c| errors::matches(&c.error_equals, &name, true))
        {
            if let Err(failure) = self.catch(thread, catcher, &visit, &failure) {
                self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
            }
            return;
        }
        if thread == 0 {
            // The root fails here for good: remember where, so a redrive can resume.
            let root = self.thread(0);
            self.ex.redrive_point = Some(RedrivePoint {
                state: visit.state.clone(),
                raw_input: std::mem::take(&mut visit.raw_input),
                variables: root.variables.clone(),
                visits: root.visits.clone(),
            });
        }
        self.end_thread(thread, Cursor::Failed { error: name, cause: failure.cause });
    }

    fn catch(&mut self, thread: ThreadId, catcher: &Catcher, visit: &Visit, failure: &Failure) -> Result<(), Failure> {
        let error_output = failure.output();
        let assigned = match &catcher.assign {
            Some(t) => Some(self.eval_template(thread, t, &error_output).map_err(|e| Self::runtime_failure(visit, e))?),
            None => None,
        };
        let output = Self::merge_result(&catcher.result_path, visit.raw_input.clone(), error_output)
            .map_err(|e| Self::runtime_failure(visit, e))?;
        if let Some(Value::Object(vars)) = assigned {
            let t = self.thread_mut(thread);
            for (k, v) in vars {
                t.variables.insert(k, v);
            }
        }
        self.queue.push_back(Work::Enter { thread, state: catcher.next.clone(), input: output });
        Ok(())
    }

    fn on_timer(&mut self, thread: ThreadId, id: WorkId) {
        let cursor = std::mem::replace(&mut self.thread_mut(thread).cursor, Cursor::Aborted);
        let def = self.def;
        let steps = self.thread(thread).machine.clone();
        let machine = machine_of(def, &steps);
        match cursor {
            Cursor::Wait { visit, timer } if timer == id => {
                let state = &machine.states[visit.state.as_str()];
                self.set_state_context(&visit.state, visit.entered_ms, None);
                if let Err(failure) = self.finish_wait(thread, state, visit) {
                    self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
                }
            }
            Cursor::Task { visit, timer: Some(timer), outcome_unknown, .. } if timer == id => {
                let state = &machine.states[visit.state.as_str()];
                self.set_state_context(&visit.state, visit.entered_ms, Some(visit.retry_count));
                self.invoke_task(thread, state, visit, outcome_unknown);
            }
            Cursor::Backoff { visit, timer } if timer == id => {
                let state = &machine.states[visit.state.as_str()];
                self.set_state_context(&visit.state, visit.entered_ms, None);
                self.start_join(thread, state, visit);
            }
            other => {
                self.thread_mut(thread).cursor = other;
            }
        }
    }

    // ---------------------------------------------------------------- Parallel and Map

    fn start_join(&mut self, thread: ThreadId, state: &State, mut visit: Visit) {
        let prepared = self.prepare_join(thread, state, &mut visit);
        let mut join = match prepared {
            Ok(join) => join,
            Err(e) => {
                let failure = Self::runtime_failure(&visit, e);
                return self.end_thread(thread, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
            }
        };
        let scope = self.scoped(thread, &visit.state);
        let started = if join.is_map { EventKind::MapStateStarted } else { EventKind::ParallelStateStarted };
        self.emit(started, Some(scope), json!({ "length": join.results.len() }));
        let mut spawn = Vec::new();
        if join.is_map {
            let limit = if join.max_concurrency == 0 { u64::MAX } else { join.max_concurrency };
            while join.next_item < join.items.len() && join.running < limit {
                spawn.push(join.next_item);
                join.next_item += 1;
                join.running += 1;
            }
        } else {
            spawn.extend(0..join.results.len());
            join.running = join.results.len() as u64;
        }
        let empty = join.results.is_empty();
        self.thread_mut(thread).cursor = Cursor::Join(Box::new(join));
        if empty {
            return self.join_complete(thread);
        }
        for slot in spawn {
            self.spawn_child(thread, state, slot);
        }
    }

    fn prepare_join(&mut self, thread: ThreadId, state: &State, visit: &mut Visit) -> Result<Join, EvalError> {
        let input = self.select(thread, &state.input_path, visit.raw_input.clone())?;
        let mut join = Join {
            visit: visit.clone(),
            is_map: false,
            items: Vec::new(),
            next_item: 0,
            max_concurrency: 0,
            running: 0,
            tolerated_failures: 0,
            failures: 0,
            results: Vec::new(),
            children: Vec::new(),
            child_ledgers: Vec::new(),
        };
        match &state.kind {
            StateKind::Parallel(p) => {
                let input = match &p.parameters {
                    Some(t) => self.eval_template(thread, t, &input)?,
                    None => input,
                };
                join.results = vec![None; p.branches.len()];
                join.child_ledgers = vec![Vec::new(); p.branches.len()];
                visit.effective_input = input;
            }
            StateKind::Map(m) => {
                join.is_map = true;
                let items = match &m.items_path {
                    PathField::Identity => input.clone(),
                    PathField::Null => Value::Array(Vec::new()),
                    PathField::Path(p) => self.get_path(thread, p, &input)?,
                };
                let Value::Array(items) = items else {
                    return Err(EvalError {
                        error: errors::RUNTIME.into(),
                        message: format!("Map state input must be an array but was: {}", compact(&items)),
                    });
                };
                join.max_concurrency = self.max_concurrency(thread, m, &input)?;
                join.tolerated_failures = self.tolerated_failures(thread, m, &input, items.len())?;
                join.results = vec![None; items.len()];
                join.child_ledgers = vec![Vec::new(); items.len()];
                join.items = items;
                visit.effective_input = input;
            }
            _ => unreachable!("joins are Parallel or Map"),
        }
        join.visit = visit.clone();
        Ok(join)
    }

    fn max_concurrency(&self, thread: ThreadId, m: &MapState, input: &Value) -> Result<u64, EvalError> {
        match &m.max_concurrency {
            MaxConcurrency::Value(v) => Ok(*v),
            MaxConcurrency::Path(p) => {
                let v = self.get_path(thread, p, input)?;
                as_integer(&v).and_then(|n| u64::try_from(n).ok()).ok_or_else(|| EvalError {
                    error: errors::RUNTIME.into(),
                    message: format!(
                        "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                        display_plain(&v),
                        p.as_str()
                    ),
                })
            }
        }
    }

    fn tolerated_failures(
        &self,
        thread: ThreadId,
        m: &MapState,
        input: &Value,
        items: usize,
    ) -> Result<u64, EvalError> {
        let runtime = |message: String| EvalError { error: errors::RUNTIME.into(), message };
        let mut tolerated: Option<u64> = None;
        if let Some(count) = &m.tolerated_failure.count {
            let n = match count {
                NumberOrPath::Number(n) => *n,
                NumberOrPath::Path(p) => {
                    let v = self.get_path(thread, p, input)?;
                    match as_integer(&v) {
                        Some(n) => n as f64,
                        None => {
                            return Err(runtime(format!(
                                "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                                display_plain(&v),
                                p.as_str()
                            )));
                        }
                    }
                }
            };
            if n < 0.0 {
                return Err(runtime("ToleratedFailureCount cannot be negative.".into()));
            }
            tolerated = Some(n as u64);
        }
        if let Some(percentage) = &m.tolerated_failure.percentage {
            let p = match percentage {
                NumberOrPath::Number(n) => *n,
                NumberOrPath::Path(path) => {
                    let v = self.get_path(thread, path, input)?;
                    match as_float(&v) {
                        Some(n) => n,
                        None => {
                            return Err(runtime(format!(
                                "The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {}",
                                display_plain(&v),
                                path.as_str()
                            )));
                        }
                    }
                }
            };
            if !(0.0..=100.0).contains(&p) {
                return Err(runtime("ToleratedFailurePercentage must be between 0 and 100.".into()));
            }
            let by_percentage = (p / 100.0 * items as f64).floor() as u64;
            tolerated = Some(tolerated.map_or(by_percentage, |t| t.max(by_percentage)));
        }
        Ok(tolerated.unwrap_or(0))
    }

    fn spawn_child(&mut self, parent: ThreadId, state: &State, slot: usize) {
        let id = self.ex.next_thread_id;
        self.ex.next_thread_id += 1;
        let (input, branch, start_at) = {
            let Cursor::Join(join) = &self.thread(parent).cursor else { unreachable!("children spawn from a join") };
            match &state.kind {
                StateKind::Parallel(p) => {
                    (join.visit.effective_input.clone(), slot as u32, p.branches[slot].start_at.clone())
                }
                StateKind::Map(_) => (Value::Null, 0, String::new()),
                _ => unreachable!("joins are Parallel or Map"),
            }
        };
        let parent_thread = self.thread(parent);
        let mut machine = parent_thread.machine.clone();
        let visit_number = parent_thread.visits.get(&state.name).copied().unwrap_or(1);
        machine.push(MachineStep { state: state.name.clone(), branch });
        let scope = format!("{}{}#{}[{}].", parent_thread.scope, state.name, visit_number, slot);
        let child = Thread {
            parent: Some(ParentLink { thread: parent, slot: slot as u32 }),
            machine,
            scope,
            variables: parent_thread.variables.clone(),
            visits: Default::default(),
            cursor: Cursor::Aborted,
            ledger: Vec::new(),
        };
        self.ex.threads.insert(id, child);
        if let Cursor::Join(join) = &mut self.thread_mut(parent).cursor {
            join.children.push(id);
        }
        let (input, start_at) = match &state.kind {
            StateKind::Map(m) => match self.map_item_input(parent, state, m, slot) {
                Ok(input) => (input, m.processor.start_at.clone()),
                Err(e) => {
                    let Cursor::Join(join) = &self.thread(parent).cursor else { unreachable!("join") };
                    let failure = Self::runtime_failure(&join.visit, e);
                    return self.end_thread(id, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
                }
            },
            _ => (input, start_at),
        };
        let scoped = self.scoped(parent, &state.name);
        let started = if matches!(state.kind, StateKind::Map(_)) { Some(EventKind::MapIterationStarted) } else { None };
        if let Some(kind) = started {
            self.emit(kind, Some(scoped), json!({ "index": slot }));
        }
        self.queue.push_back(Work::Enter { thread: id, state: start_at, input });
    }

    fn map_item_input(
        &mut self,
        parent: ThreadId,
        state: &State,
        m: &MapState,
        slot: usize,
    ) -> Result<Value, EvalError> {
        let (item, input, entered_ms) = {
            let Cursor::Join(join) = &self.thread(parent).cursor else { unreachable!("join") };
            (join.items[slot].clone(), join.visit.effective_input.clone(), join.visit.entered_ms)
        };
        let Some(selector) = &m.item_selector else {
            return Ok(item);
        };
        self.set_state_context(&state.name, entered_ms, None);
        if let Value::Object(ctx) = &mut self.ctx {
            ctx.insert("Map".into(), json!({ "Item": { "Index": slot, "Value": item } }));
        }
        self.eval_template(parent, selector, &input)
    }

    fn thread_ended(&mut self, thread: ThreadId) {
        let Some(t) = self.ex.threads.get(&thread) else {
            return;
        };
        let Some(link) = t.parent else {
            return self.root_ended();
        };
        let child = self.ex.threads.remove(&thread).expect("present");
        let parent = link.thread;
        let slot = link.slot as usize;
        let Some(Thread { cursor: Cursor::Join(join), .. }) = self.ex.threads.get_mut(&parent) else {
            return;
        };
        join.child_ledgers[slot] = child.ledger;
        join.running = join.running.saturating_sub(1);
        join.children.retain(|c| *c != thread);
        let is_map = join.is_map;
        let state_name = join.visit.state.clone();
        let scoped = self.scoped(parent, &state_name);
        match child.cursor {
            Cursor::Done(output) => {
                if let Cursor::Join(join) = &mut self.thread_mut(parent).cursor {
                    join.results[slot] = Some(output);
                }
                if is_map {
                    self.emit(EventKind::MapIterationSucceeded, Some(scoped), json!({ "index": slot }));
                }
            }
            Cursor::Failed { error, cause } => {
                let failure = Failure { error: (!error.is_empty()).then_some(error), cause };
                if is_map {
                    self.emit(
                        EventKind::MapIterationFailed,
                        Some(scoped),
                        json!({ "index": slot, "error": failure.error, "cause": failure.cause }),
                    );
                    let Cursor::Join(join) = &mut self.thread_mut(parent).cursor else { unreachable!("join") };
                    join.failures += 1;
                    join.results[slot] = Some(failure.output());
                    if join.failures <= join.tolerated_failures && !errors::is_terminal(failure.name()) {
                        return self.join_progress(parent);
                    }
                    let failure = if join.tolerated_failures > 0 {
                        Failure::new(
                            errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                            "The specified tolerated failure threshold was exceeded",
                        )
                    } else {
                        failure
                    };
                    return self.join_failed(parent, failure);
                }
                return self.join_failed(parent, failure);
            }
            _ => {}
        }
        self.join_progress(parent);
    }

    /// Start more Map iterations if allowed, or complete the join when nothing is left.
    fn join_progress(&mut self, parent: ThreadId) {
        let (state_name, to_spawn, complete) = {
            let Cursor::Join(join) = &mut self.thread_mut(parent).cursor else {
                return;
            };
            let mut to_spawn = Vec::new();
            if join.is_map {
                let limit = if join.max_concurrency == 0 { u64::MAX } else { join.max_concurrency };
                while join.next_item < join.items.len() && join.running < limit {
                    to_spawn.push(join.next_item);
                    join.next_item += 1;
                    join.running += 1;
                }
            }
            let complete = join.running == 0 && join.next_item >= join.items.len() && to_spawn.is_empty();
            (join.visit.state.clone(), to_spawn, complete)
        };
        if complete {
            return self.join_complete(parent);
        }
        let def = self.def;
        let steps = self.thread(parent).machine.clone();
        let state = &machine_of(def, &steps).states[state_name.as_str()];
        for slot in to_spawn {
            self.spawn_child(parent, state, slot);
        }
    }

    fn join_complete(&mut self, parent: ThreadId) {
        let Cursor::Join(join) = std::mem::replace(&mut self.thread_mut(parent).cursor, Cursor::Aborted) else {
            return;
        };
        let join = *join;
        self.push_group(parent, &join.visit.state, join.child_ledgers);
        let def = self.def;
        let steps = self.thread(parent).machine.clone();
        let state = &machine_of(def, &steps).states[join.visit.state.as_str()];
        let scoped = self.scoped(parent, &join.visit.state);
        let kind = if join.is_map { EventKind::MapStateSucceeded } else { EventKind::ParallelStateSucceeded };
        self.emit(kind, Some(scoped), Value::Null);
        let results = Value::Array(join.results.into_iter().map(|r| r.unwrap_or(Value::Null)).collect());
        let visit = join.visit;
        self.set_state_context(&visit.state, visit.entered_ms, None);
        let r = resilience(&state.kind).expect("joins are Parallel or Map");
        if let Err(failure) =
            self.finish_state(parent, state, visit, &r.result_path, r.result_selector.as_ref(), results)
        {
            self.end_thread(parent, Cursor::Failed { error: failure.name().into(), cause: failure.cause });
        }
    }

    fn join_failed(&mut self, parent: ThreadId, failure: Failure) {
        let children = match &self.thread(parent).cursor {
            Cursor::Join(join) => join.children.clone(),
            _ => return,
        };
        for child in children {
            self.abort_thread(child);
            self.collect_child(parent, child);
        }
        let Cursor::Join(join) = std::mem::replace(&mut self.thread_mut(parent).cursor, Cursor::Aborted) else {
            return;
        };
        let join = *join;
        self.push_group(parent, &join.visit.state, join.child_ledgers);
        let scoped = self.scoped(parent, &join.visit.state);
        let kind = if join.is_map { EventKind::MapStateFailed } else { EventKind::ParallelStateFailed };
        self.emit(kind, Some(scoped), json!({ "error": failure.error, "cause": failure.cause }));
        let def = self.def;
        let steps = self.thread(parent).machine.clone();
        let state = &machine_of(def, &steps).states[join.visit.state.as_str()];
        let visit = join.visit;
        self.set_state_context(&visit.state, visit.entered_ms, None);
        self.state_failed(parent, state, visit, failure, false);
    }

    /// Move an aborted child's ledger into its parent's join and drop the child.
    fn collect_child(&mut self, parent: ThreadId, child: ThreadId) {
        let Some(c) = self.ex.threads.remove(&child) else {
            return;
        };
        let slot = c.parent.map(|l| l.slot as usize).unwrap_or(0);
        if let Cursor::Join(join) = &mut self.thread_mut(parent).cursor {
            if let Some(l) = join.child_ledgers.get_mut(slot) {
                *l = c.ledger;
            }
            join.children.retain(|x| *x != child);
        }
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

    fn push_ledger(
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
            document: json!({ "Input": visit.effective_input, "Result": result }),
            outcome_unknown: result.is_none(),
        });
        self.thread_mut(thread).ledger.push(entry);
    }

    fn push_group(&mut self, thread: ThreadId, state: &str, lanes: Vec<Vec<LedgerEntry>>) {
        if lanes.iter().all(Vec::is_empty) {
            return;
        }
        let scope = self.scoped(thread, state);
        self.thread_mut(thread).ledger.push(LedgerEntry::Group { scope, lanes });
    }

    // ---------------------------------------------------------------- the end

    fn root_ended(&mut self) {
        let cursor = std::mem::replace(&mut self.thread_mut(0).cursor, Cursor::Aborted);
        match cursor {
            Cursor::Done(output) => {
                self.emit(EventKind::ExecutionSucceeded, None, json!({ "output": output }));
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
    fn history_full(&mut self) {
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

    fn on_execution_timeout(&mut self) {
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

fn resilience(kind: &StateKind) -> Option<&Resilience> {
    match kind {
        StateKind::Task(t) => Some(&t.resilience),
        StateKind::Parallel(p) => Some(&p.resilience),
        StateKind::Map(m) => Some(&m.resilience),
        _ => None,
    }
}

fn entered_kind(kind: &StateKind) -> EventKind {
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

fn exited_kind(kind: &StateKind) -> EventKind {
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

/// An integer, or a string holding one: AWS accepts `"1"` where a count is read from data.
fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number, or a string holding one.
fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// ISO-8601 with milliseconds, as `$$.Execution.StartTime` shows it.
pub(crate) fn format_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A value as AWS quotes it inside messages: strings bare, everything else as JSON.
fn display_plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// Whether a value's compact JSON text is over the payload limit.
pub(crate) fn over_limit(value: &Value) -> bool {
    size_upper_bound(value, PAYLOAD_LIMIT_BYTES) > PAYLOAD_LIMIT_BYTES && json_size(value) > PAYLOAD_LIMIT_BYTES
}

/// An upper bound of the compact JSON size (every character escaped as `\uXXXX`, every
/// number at its longest), cheap to compute; stops counting once past `stop`.
fn size_upper_bound(value: &Value, stop: usize) -> usize {
    fn walk(value: &Value, total: &mut usize, stop: usize) {
        if *total > stop {
            return;
        }
        match value {
            Value::Null | Value::Bool(_) => *total += 5,
            Value::Number(_) => *total += 24,
            Value::String(s) => *total += s.len() * 6 + 2,
            Value::Array(items) => {
                *total += 2 + items.len();
                for item in items {
                    walk(item, total, stop);
                }
            }
            Value::Object(map) => {
                *total += 2 + map.len() * 2;
                for (k, v) in map {
                    *total += k.len() * 6 + 2;
                    walk(v, total, stop);
                }
            }
        }
    }
    let mut total = 0;
    walk(value, &mut total, stop);
    total
}

/// Size of a value's compact JSON text, without building the text.
pub(crate) fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}
