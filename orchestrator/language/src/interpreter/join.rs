//! Parallel and Map states: child threads per branch or item, Map concurrency and tolerated
//! failures, results in order, and the saga ledger of the children when the state ends.

use serde_json::{Value, json};

use super::data::{as_float, as_integer, compact, display_plain};
use super::execution::{Cursor, Join, MachineStep, ParentLink, Thread, ThreadId, Visit};
use super::history::EventKind;
use super::run::{Failure, Runner, Work, machine_of, resilience};
use crate::errors;
use crate::expr::EvalError;
use crate::model::{MapState, MaxConcurrency, NumberOrPath, PathField, State, StateKind};

impl Runner<'_> {
    pub(super) fn start_join(&mut self, thread: ThreadId, state: &State, mut visit: Visit) {
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

    pub(super) fn prepare_join(
        &mut self,
        thread: ThreadId,
        state: &State,
        visit: &mut Visit,
    ) -> Result<Join, EvalError> {
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

    pub(super) fn max_concurrency(&self, thread: ThreadId, m: &MapState, input: &Value) -> Result<u64, EvalError> {
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

    pub(super) fn tolerated_failures(
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

    pub(super) fn spawn_child(&mut self, parent: ThreadId, state: &State, slot: usize) {
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

    pub(super) fn map_item_input(
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

    pub(super) fn thread_ended(&mut self, thread: ThreadId) {
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
    pub(super) fn join_progress(&mut self, parent: ThreadId) {
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

    pub(super) fn join_complete(&mut self, parent: ThreadId) {
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

    pub(super) fn join_failed(&mut self, parent: ThreadId, failure: Failure) {
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
    pub(super) fn collect_child(&mut self, parent: ThreadId, child: ThreadId) {
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
}
