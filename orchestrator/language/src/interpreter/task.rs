//! Task states: building the call (timeouts, idempotency key), handling the answer, Retry
//! with backoff, Catch, and the timers of Wait states and retries.

use serde_json::{Value, json};

use super::data::{compact, object, over_limit};
use super::execution::{Cursor, RedrivePoint, ThreadId, Visit, Waiter};
use super::history::EventKind;
use super::run::{Failure, Runner, Work, machine_of, resilience};
use super::{Action, Call, DEFAULT_TASK_TIMEOUT_SECONDS, Event, WorkId};
use crate::errors;
use crate::expr::EvalError;
use crate::model::{Catcher, State, StateKind, Timeout};

impl Runner<'_> {
    pub(super) fn start_task(&mut self, thread: ThreadId, state: &State, mut visit: Visit) {
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

    pub(super) fn invoke_task(&mut self, thread: ThreadId, state: &State, visit: Visit, outcome_unknown: bool) {
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
            object([
                ("callId", id.into()),
                ("resource", call.resource.clone().into()),
                ("input", call.input.clone()),
                ("idempotencyKey", call.idempotency_key.clone().into()),
                ("attempt", call.attempt.into()),
                ("timeoutSeconds", timeout.into()),
            ]),
        );
        self.issue(Action::Invoke(call), Waiter::Thread(thread));
        self.thread_mut(thread).cursor = Cursor::Task { visit, call: Some(id), timer: None, outcome_unknown };
    }

    /// `{execution}:{scoped state}#{visit}`: the same for every attempt of one visit.
    pub(super) fn idempotency_key(&self, thread: ThreadId, visit: &Visit) -> String {
        let prefix = if self.ex.key_prefix.is_empty() { &self.ex.execution_id } else { &self.ex.key_prefix };
        format!("{}:{}{}#{}", prefix, self.thread(thread).scope, visit.state, visit.number)
    }

    pub(super) fn on_task_result(
        &mut self,
        thread: ThreadId,
        id: WorkId,
        result: Result<Value, (Failure, bool)>,
        record: Event,
    ) {
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
                let over = over_limit(&output);
                let too_large = over.is_some();
                // The participant applied the call whatever its answer's size: the
                // compensation is owed before anything else can fail (an answer too large
                // to keep is handed to it as null).
                if task.compensate.is_some() {
                    let key = self.idempotency_key(thread, &visit);
                    let kept = (!too_large).then(|| output.clone());
                    self.push_ledger(thread, &visit, scope, key, kept);
                }
                if let Some(over) = over {
                    let failure = Failure::new(errors::DATA_LIMIT_EXCEEDED, over.state_cause(&visit.state));
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
    pub(super) fn state_failed(
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

    pub(super) fn catch(
        &mut self,
        thread: ThreadId,
        catcher: &Catcher,
        visit: &Visit,
        failure: &Failure,
    ) -> Result<(), Failure> {
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

    pub(super) fn on_timer(&mut self, thread: ThreadId, id: WorkId) {
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
}
