//! Definitions, machines and states: which fields each state type allows and requires, and
//! the values of Pass, Wait, Fail, Parallel and Map states (Task: `task`; Retry and Catch:
//! `resilience`; Choice: `choice`). Builds the model and, beside it, the skeleton the graph
//! and saga checks walk.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value;

use super::fields::{Object, json_type};
use super::{Ctx, Loc, suggest};
use crate::expr::{Expr, timestamp};
use crate::model::{
    Definition, FailField, FailState, MapState, MaxConcurrency, NumberOrPath, ParallelState, PassState, PathField,
    SagaRole, State, StateKind, StateMachine, ToleratedFailure, Transition, WaitState,
};

/// The shape of one machine as the graph and saga checks need it, recorded even where
/// fields are wrong so that one mistake does not hide the others.
#[derive(Debug)]
pub(crate) struct MachineSk {
    pub(crate) start_at: Option<(String, Loc)>,
    pub(crate) states: IndexMap<String, StateSk>,
}

#[derive(Debug)]
pub(crate) struct StateSk {
    pub(crate) loc: Loc,
    pub(crate) edges: Vec<Edge>,
    /// Reaching this state ends its machine successfully: a Succeed state or `End: true`.
    pub(crate) ends_ok: bool,
    pub(crate) task: Option<TaskSk>,
    /// Parallel branches or the Map processor.
    pub(crate) children: Vec<MachineSk>,
    /// Neither Next nor End was given (reported as `missing-next`); the graph checks assume
    /// the state below was meant, so the one omission is not reported again as
    /// "unreachable".
    pub(crate) missing_next: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskSk {
    /// The role after defaults (`compensatable` when `Compensate` is there).
    pub(crate) role: Option<SagaRole>,
    /// A retrier with MaxAttempts > 0 handles `States.ALL` or `States.TaskFailed`.
    pub(crate) absorbs_failures: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    Next,
    Choice,
    Default,
    Catch,
}

#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) target: String,
    /// The field that names the target.
    pub(crate) loc: Loc,
    pub(crate) kind: EdgeKind,
    /// `ErrorEquals` of a Catch edge.
    pub(crate) errors: Vec<String>,
}

pub(crate) const STATE_TYPES: [&str; 8] = ["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"];

const TOP_FIELDS: &[&str] = &["StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"];
const BRANCH_FIELDS: &[&str] = &["StartAt", "States", "Comment"];
const PROCESSOR_FIELDS: &[&str] = &["StartAt", "States", "Comment", "ProcessorConfig"];
const COMMON_FIELDS: &[&str] = &["Type", "Comment", "QueryLanguage"];
const PASS_FIELDS: &[&str] =
    &["InputPath", "OutputPath", "Parameters", "Result", "ResultPath", "Next", "End", "Assign"];
const TASK_FIELDS: &[&str] = &[
    "Resource",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
    "TimeoutSeconds",
    "TimeoutSecondsPath",
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "Next",
    "End",
    "Assign",
    "Compensate",
    "SagaRole",
];
const CHOICE_FIELDS: &[&str] = &["InputPath", "OutputPath", "Choices", "Default", "Assign"];
const WAIT_FIELDS: &[&str] =
    &["InputPath", "OutputPath", "Seconds", "SecondsPath", "Timestamp", "TimestampPath", "Next", "End", "Assign"];
const SUCCEED_FIELDS: &[&str] = &["InputPath", "OutputPath"];
const FAIL_FIELDS: &[&str] = &["Error", "ErrorPath", "Cause", "CausePath"];
const PARALLEL_FIELDS: &[&str] = &[
    "Branches",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
    "Next",
    "End",
    "Assign",
];
const MAP_FIELDS: &[&str] = &[
    "ItemProcessor",
    "Iterator",
    "ItemsPath",
    "ItemSelector",
    "Parameters",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "Label",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "ResultSelector",
    "Retry",
    "Catch",
    "Next",
    "End",
    "Assign",
];
const WAIT_KINDS: [&str; 4] = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"];

fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pass" => PASS_FIELDS,
        "Task" => TASK_FIELDS,
        "Choice" => CHOICE_FIELDS,
        "Wait" => WAIT_FIELDS,
        "Succeed" => SUCCEED_FIELDS,
        "Fail" => FAIL_FIELDS,
        "Parallel" => PARALLEL_FIELDS,
        _ => MAP_FIELDS,
    }
}

/// Builds the model while checking it; see the module docs.
#[derive(Debug)]
pub(crate) struct Compiler<'c, 's> {
    pub(crate) ctx: &'c mut Ctx<'s>,
    /// Where each state name was first defined: AWS requires names to be unique across the
    /// whole definition, branches and processors included.
    names: HashMap<String, Loc>,
}

impl<'c, 's> Compiler<'c, 's> {
    pub(crate) fn new(ctx: &'c mut Ctx<'s>) -> Self {
        Compiler { ctx, names: HashMap::new() }
    }

    pub(crate) fn definition(mut self, root: &Value) -> (Option<Definition>, Option<MachineSk>) {
        let at = Loc::default();
        let Value::Object(object) = root else {
            self.ctx.error(
                "invalid-type",
                &at,
                format!("a definition must be a JSON object with StartAt and States, not {}", json_type(root)),
            );
            return (None, None);
        };
        let comment = self.ctx.string(object, &at, "Comment").map(str::to_string);
        if let Some(version) = self.ctx.string(object, &at, "Version")
            && version != "1.0"
        {
            self.ctx.error("invalid-value", &at.key("Version"), format!("Version must be \"1.0\", not \"{version}\""));
        }
        let timeout_seconds = self.ctx.whole(object, &at, "TimeoutSeconds", 1);
        if !self.query_language(object, &at) {
            // A JSONata machine is written in another language: one clear error says so,
            // instead of one per JSONata field.
            return (None, None);
        }
        let (machine, skeleton) = self.machine(object, &at, TOP_FIELDS, "the definition");
        let definition = machine.map(|machine| Definition { comment, timeout_seconds, machine });
        (definition, Some(skeleton))
    }

    /// Checks `QueryLanguage`; false for JSONata.
    fn query_language(&mut self, object: &Object, at: &Loc) -> bool {
        match self.ctx.string(object, at, "QueryLanguage") {
            None | Some("JSONPath") => {}
            Some("JSONata") => {
                self.ctx.error(
                    "unsupported-query-language",
                    &at.key("QueryLanguage"),
                    "JSONata is not supported yet; use JSONPath",
                );
                return false;
            }
            Some(other) => self.ctx.error(
                "invalid-value",
                &at.key("QueryLanguage"),
                format!("QueryLanguage must be \"JSONPath\", not \"{other}\""),
            ),
        }
        true
    }

    /// A `StartAt` + `States` object: the top level, a Parallel branch or a Map processor.
    fn machine(
        &mut self,
        object: &Object,
        at: &Loc,
        allowed: &[&str],
        what: &str,
    ) -> (Option<StateMachine>, MachineSk) {
        self.ctx.unknown_fields(object, at, allowed, what);
        let start_at = self.ctx.required_string(object, at, "StartAt", what);
        let mut skeleton =
            MachineSk { start_at: start_at.map(|name| (name.to_string(), at.key("StartAt"))), states: IndexMap::new() };
        let mut states = IndexMap::new();
        let mut complete = true;
        match object.get("States") {
            None => {
                self.ctx.error_key("missing-field", at, format!("{what} needs a \"States\" object"));
                complete = false;
            }
            Some(Value::Object(map)) => {
                let states_at = at.key("States");
                if map.is_empty() {
                    self.ctx.error("invalid-value", &states_at, "States must hold at least one state");
                    complete = false;
                }
                for (name, value) in map {
                    let state_at = states_at.state(name);
                    self.state_name(name, &state_at);
                    let (state, state_skeleton) = self.state(name, value, &state_at);
                    match state {
                        Some(state) => {
                            states.insert(name.clone(), state);
                        }
                        None => complete = false,
                    }
                    skeleton.states.insert(name.clone(), state_skeleton);
                }
            }
            Some(other) => {
                self.ctx.wrong_type(&at.key("States"), "States", "an object", other);
                complete = false;
            }
        }
        let machine = match start_at {
            Some(start_at) if complete => Some(StateMachine { start_at: start_at.to_string(), states }),
            _ => None,
        };
        (machine, skeleton)
    }

    fn state_name(&mut self, name: &str, at: &Loc) {
        let length = name.chars().count();
        if length == 0 || length > 80 {
            self.ctx.error_key(
                "invalid-value",
                at,
                format!("state names must be 1 to 80 characters long; this one has {length}"),
            );
        }
        if let Some(first) = self.names.get(name) {
            let (line, column) = self.ctx.source.position(&first.pointer, super::Focus::Key);
            self.ctx.error_key(
                "duplicate-state-name",
                at,
                format!(
                    "state name \"{name}\" is already used at {line}:{column} ({}); state names \
                     must be unique across the whole definition, branches included",
                    first.pointer
                ),
            );
        } else {
            self.names.insert(name.to_string(), at.clone());
        }
    }

    fn state(&mut self, name: &str, value: &Value, at: &Loc) -> (Option<State>, StateSk) {
        let mut skeleton = StateSk {
            loc: at.clone(),
            edges: Vec::new(),
            ends_ok: false,
            task: None,
            children: Vec::new(),
            missing_next: false,
        };
        let Value::Object(object) = value else {
            self.ctx.wrong_type(at, &format!("state \"{name}\""), "an object", value);
            return (None, skeleton);
        };
        let kind = match object.get("Type") {
            None => {
                self.ctx.error_key(
                    "missing-field",
                    at,
                    format!("state \"{name}\" needs a \"Type\": one of {}", STATE_TYPES.join(", ")),
                );
                None
            }
            Some(Value::String(kind)) if STATE_TYPES.contains(&kind.as_str()) => Some(kind.as_str()),
            Some(Value::String(kind)) => {
                let hint = suggest::hint(kind, STATE_TYPES);
                self.ctx.error(
                    "unknown-state-type",
                    &at.key("Type"),
                    format!("unknown state type \"{kind}\"{hint}; valid types are {}", STATE_TYPES.join(", ")),
                );
                None
            }
            Some(other) => {
                self.ctx.wrong_type(&at.key("Type"), "Type", "a string", other);
                None
            }
        };
        let Some(kind) = kind else {
            // Without a type no field can be judged, but its transitions still count, so one
            // mistyped Type does not make every later state "unreachable".
            self.generic_edges(object, at, &mut skeleton);
            return (None, skeleton);
        };
        if !self.query_language(object, at) {
            self.generic_edges(object, at, &mut skeleton);
            return (None, skeleton);
        }
        self.state_fields(object, at, kind);
        let comment = self.ctx.string(object, at, "Comment").map(str::to_string);
        let allowed = allowed_fields(kind);
        let (input_path, output_path) = if allowed.contains(&"InputPath") {
            (
                self.ctx.path_field(object, at, "InputPath", true, false),
                self.ctx.path_field(object, at, "OutputPath", true, false),
            )
        } else {
            (PathField::Identity, PathField::Identity)
        };
        let assign = if allowed.contains(&"Assign") { self.ctx.template(object, at, "Assign") } else { None };
        let needs_transition = allowed.contains(&"Next");
        let transition = if needs_transition { self.transition(name, object, at, &mut skeleton) } else { None };
        let state_kind = match kind {
            "Pass" => Some(StateKind::Pass(self.pass(object, at))),
            "Task" => self.task(name, object, at, &mut skeleton).map(StateKind::Task),
            "Choice" => self.choice(object, at, &mut skeleton).map(StateKind::Choice),
            "Wait" => self.wait(object, at).map(StateKind::Wait),
            "Succeed" => {
                skeleton.ends_ok = true;
                Some(StateKind::Succeed)
            }
            "Fail" => Some(StateKind::Fail(self.fail(object, at))),
            "Parallel" => self.parallel(object, at, &mut skeleton).map(StateKind::Parallel),
            _ => self.map(object, at, &mut skeleton).map(StateKind::Map),
        };
        if needs_transition && transition.is_none() {
            return (None, skeleton);
        }
        let state = state_kind.map(|kind| State {
            name: name.to_string(),
            comment,
            kind,
            input_path,
            output_path,
            transition,
            assign,
        });
        (state, skeleton)
    }

    /// Fields that do not belong on a state of this type, each with the most useful message.
    fn state_fields(&mut self, object: &Object, at: &Loc, kind: &str) {
        let allowed = allowed_fields(kind);
        for key in object.keys() {
            let key = key.as_str();
            if COMMON_FIELDS.contains(&key) || allowed.contains(&key) {
                continue;
            }
            let key_at = at.key(key);
            match key {
                "Compensate" => self.ctx.error_key(
                    "compensate-not-on-task",
                    &key_at,
                    format!(
                        "Compensate is only allowed on Task states, and this is a {kind} state; \
                         move it to the Task whose effect it undoes"
                    ),
                ),
                "SagaRole" => self.ctx.error_key(
                    "saga-role-not-on-task",
                    &key_at,
                    format!("SagaRole is only allowed on Task states, and this is a {kind} state"),
                ),
                "Next" | "End" if kind == "Choice" => self.ctx.error_key(
                    "field-not-allowed",
                    &key_at,
                    format!(
                        "a Choice state cannot have {key}: it moves on through its Choices' Next \
                         and its Default"
                    ),
                ),
                "Next" | "End" => self.ctx.error_key(
                    "field-not-allowed",
                    &key_at,
                    format!("a {kind} state ends its machine, so it cannot have {key}"),
                ),
                "ItemReader" | "ResultWriter" | "ItemBatcher" if kind == "Map" => self.ctx.error_key(
                    "unsupported-field",
                    &key_at,
                    format!(
                        "{key} is not supported yet: a Map state reads its items from its input \
                         (ItemsPath), and a DISTRIBUTED map runs inline"
                    ),
                ),
                "Credentials" if kind == "Task" => self.ctx.error_key(
                    "unsupported-field",
                    &key_at,
                    "Credentials is not supported: Sagaflow calls participants with its own \
                     configuration",
                ),
                "Arguments" | "Output" | "Items" => {
                    let instead = match key {
                        "Arguments" => "Parameters",
                        "Output" => "OutputPath or ResultSelector",
                        _ => "ItemsPath",
                    };
                    self.ctx.error_key(
                        "unknown-field",
                        &key_at,
                        format!("{key} belongs to JSONata mode; in JSONPath use {instead}"),
                    );
                }
                _ if STATE_TYPES.iter().any(|t| allowed_fields(t).contains(&key)) => {
                    self.ctx.error_key("field-not-allowed", &key_at, format!("{key} is not allowed on a {kind} state"));
                }
                _ => {
                    let hint = suggest::hint(key, COMMON_FIELDS.iter().chain(allowed).copied());
                    self.ctx.error_key(
                        "unknown-field",
                        &key_at,
                        format!("unknown field \"{key}\" in a {kind} state{hint}"),
                    );
                }
            }
        }
    }

    /// Transitions of a state whose type is unknown, read as far as they can be.
    fn generic_edges(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) {
        let mut add = |target: Option<&Value>, loc: Loc, kind| {
            if let Some(Value::String(target)) = target {
                skeleton.edges.push(Edge { target: target.clone(), loc, kind, errors: Vec::new() });
            }
        };
        add(object.get("Next"), at.key("Next"), EdgeKind::Next);
        add(object.get("Default"), at.key("Default"), EdgeKind::Default);
        for (field, kind) in [("Choices", EdgeKind::Choice), ("Catch", EdgeKind::Catch)] {
            if let Some(Value::Array(items)) = object.get(field) {
                for (i, item) in items.iter().enumerate() {
                    add(item.get("Next"), at.key(field).index(i).key("Next"), kind);
                }
            }
        }
        skeleton.ends_ok = object.get("End") == Some(&Value::Bool(true));
    }

    /// `Next` or `End`, exactly one.
    fn transition(&mut self, name: &str, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Option<Transition> {
        let next = self.ctx.string(object, at, "Next");
        let end = self.ctx.boolean(object, at, "End");
        if let Some(next) = next {
            skeleton.edges.push(Edge {
                target: next.to_string(),
                loc: at.key("Next"),
                kind: EdgeKind::Next,
                errors: Vec::new(),
            });
        }
        let has_next = object.contains_key("Next");
        if has_next && end == Some(true) {
            self.ctx.error_key(
                "next-and-end",
                &at.key("End"),
                format!("state \"{name}\" has both Next and End; keep one"),
            );
            return None;
        }
        if let Some(next) = next {
            return Some(Transition::Next(next.to_string()));
        }
        if end == Some(true) {
            skeleton.ends_ok = true;
            return Some(Transition::End);
        }
        // A wrongly typed End was reported already; only a missing or false End is "missing".
        let end_missing = end == Some(false) || !object.contains_key("End");
        if !has_next && end_missing {
            skeleton.missing_next = true;
            self.ctx.error_key(
                "missing-next",
                at,
                format!(
                    "state \"{name}\" has neither Next nor End; add \"Next\": \"<state>\" or \
                     \"End\": true"
                ),
            );
        }
        None
    }

    fn pass(&mut self, object: &Object, at: &Loc) -> PassState {
        PassState {
            result: object.get("Result").cloned(),
            parameters: self.ctx.template(object, at, "Parameters"),
            result_path: self.ctx.path_field(object, at, "ResultPath", true, true),
        }
    }

    fn wait(&mut self, object: &Object, at: &Loc) -> Option<WaitState> {
        let present: Vec<&str> = WAIT_KINDS.into_iter().filter(|k| object.contains_key(*k)).collect();
        match present.as_slice() {
            [] => {
                self.ctx.error_key(
                    "missing-field",
                    at,
                    "a Wait state needs one of Seconds, SecondsPath, Timestamp or TimestampPath",
                );
                None
            }
            [key] => {
                let key_at = at.key(key);
                match *key {
                    "Seconds" => self.ctx.whole(object, at, key, 0).map(WaitState::Seconds),
                    "Timestamp" => {
                        let text = self.ctx.string(object, at, key)?;
                        if timestamp::parse_millis(text).is_none() {
                            self.ctx.error(
                                "invalid-timestamp",
                                &key_at,
                                format!(
                                    "Timestamp \"{text}\" is not an ISO 8601 timestamp such as \
                                     \"2016-03-14T01:59:00Z\""
                                ),
                            );
                            return None;
                        }
                        Some(WaitState::Timestamp(text.to_string()))
                    }
                    "SecondsPath" => self.ctx.reference_path(&object[*key], &key_at, key).map(WaitState::SecondsPath),
                    _ => self.ctx.reference_path(&object[*key], &key_at, key).map(WaitState::TimestampPath),
                }
            }
            [first, second, ..] => {
                self.ctx.error_key(
                    "exclusive-fields",
                    &at.key(second),
                    format!(
                        "a Wait state takes exactly one of Seconds, SecondsPath, Timestamp and \
                         TimestampPath; this one has {first} and {second}"
                    ),
                );
                None
            }
        }
    }

    fn fail(&mut self, object: &Object, at: &Loc) -> FailState {
        FailState {
            error: self.fail_field(object, at, "Error", "ErrorPath"),
            cause: self.fail_field(object, at, "Cause", "CausePath"),
        }
    }

    fn fail_field(&mut self, object: &Object, at: &Loc, literal: &str, path: &str) -> Option<FailField> {
        if self.ctx.exclusive(object, at, literal, path) {
            return None;
        }
        if let Some(text) = self.ctx.string(object, at, literal) {
            return Some(FailField::Literal(text.to_string()));
        }
        let text = self.ctx.string(object, at, path)?;
        match Expr::parse(text) {
            Ok(expr) => Some(FailField::Dynamic(expr)),
            Err(err) => {
                self.ctx.expr_error("invalid-expression", &at.key(path), path, &err);
                None
            }
        }
    }

    fn parallel(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Option<Box<ParallelState>> {
        let branches = match object.get("Branches") {
            None => {
                self.ctx.error_key(
                    "missing-field",
                    at,
                    "a Parallel state needs \"Branches\": an array of machines with StartAt and \
                     States",
                );
                None
            }
            Some(Value::Array(items)) => {
                let branches_at = at.key("Branches");
                if items.is_empty() {
                    self.ctx.error("invalid-value", &branches_at, "Branches must hold at least one branch");
                }
                let mut branches = Some(Vec::with_capacity(items.len()));
                for (i, item) in items.iter().enumerate() {
                    let branch_at = branches_at.index(i);
                    let Value::Object(branch) = item else {
                        self.ctx.wrong_type(&branch_at, "a branch", "an object", item);
                        branches = None;
                        continue;
                    };
                    let (machine, child) = self.machine(branch, &branch_at, BRANCH_FIELDS, "a Parallel branch");
                    skeleton.children.push(child);
                    match (machine, branches.as_mut()) {
                        (Some(machine), Some(list)) => list.push(machine),
                        _ => branches = None,
                    }
                }
                branches.filter(|b| !b.is_empty())
            }
            Some(other) => {
                self.ctx.wrong_type(&at.key("Branches"), "Branches", "an array", other);
                None
            }
        };
        let parameters = self.ctx.template(object, at, "Parameters");
        let resilience = self.resilience(object, at, skeleton);
        Some(Box::new(ParallelState { branches: branches?, parameters, resilience }))
    }

    fn map(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Option<Box<MapState>> {
        self.ctx.exclusive(object, at, "ItemProcessor", "Iterator");
        let processor_key = ["ItemProcessor", "Iterator"].into_iter().find(|k| object.contains_key(*k));
        let mut distributed = false;
        let processor = match processor_key {
            None => {
                self.ctx.error_key(
                    "missing-field",
                    at,
                    "a Map state needs \"ItemProcessor\" (or the older \"Iterator\"): the machine \
                     run for each item",
                );
                None
            }
            Some(key) => {
                let processor_at = at.key(key);
                match &object[key] {
                    Value::Object(processor) => {
                        distributed = self.processor_config(processor, &processor_at);
                        let (machine, child) =
                            self.machine(processor, &processor_at, PROCESSOR_FIELDS, &format!("a Map {key}"));
                        skeleton.children.push(child);
                        machine
                    }
                    other => {
                        self.ctx.wrong_type(&processor_at, key, "an object", other);
                        None
                    }
                }
            }
        };
        let items_path = self.ctx.path_field(object, at, "ItemsPath", false, false);
        self.ctx.exclusive(object, at, "ItemSelector", "Parameters");
        let item_selector = if object.contains_key("ItemSelector") {
            self.ctx.template(object, at, "ItemSelector")
        } else {
            self.ctx.template(object, at, "Parameters")
        };
        let max_concurrency = if self.ctx.exclusive(object, at, "MaxConcurrency", "MaxConcurrencyPath") {
            None
        } else if let Some(value) = object.get("MaxConcurrencyPath") {
            self.ctx
                .reference_path(value, &at.key("MaxConcurrencyPath"), "MaxConcurrencyPath")
                .map(MaxConcurrency::Path)
        } else {
            self.ctx.whole(object, at, "MaxConcurrency", 0).map(MaxConcurrency::Value)
        };
        let tolerated_failure = ToleratedFailure {
            count: self.number_or_path(object, at, "ToleratedFailureCount", false),
            percentage: self.number_or_path(object, at, "ToleratedFailurePercentage", true),
        };
        let label = self.ctx.string(object, at, "Label").map(str::to_string);
        if let Some(label) = &label
            && label.chars().count() > 40
        {
            self.ctx.error("invalid-value", &at.key("Label"), "Label must be at most 40 characters");
        }
        let resilience = self.resilience(object, at, skeleton);
        Some(Box::new(MapState {
            processor: processor?,
            items_path,
            item_selector,
            max_concurrency: max_concurrency.unwrap_or(MaxConcurrency::Value(0)),
            tolerated_failure,
            label,
            distributed,
            resilience,
        }))
    }

    /// `ProcessorConfig`; true for `Mode: DISTRIBUTED`.
    fn processor_config(&mut self, processor: &Object, at: &Loc) -> bool {
        let Some(value) = processor.get("ProcessorConfig") else {
            return false;
        };
        let at = at.key("ProcessorConfig");
        let Value::Object(config) = value else {
            self.ctx.wrong_type(&at, "ProcessorConfig", "an object", value);
            return false;
        };
        self.ctx.unknown_fields(config, &at, &["Mode", "ExecutionType"], "ProcessorConfig");
        if let Some(kind) = self.ctx.string(config, &at, "ExecutionType")
            && kind != "STANDARD"
            && kind != "EXPRESS"
        {
            self.ctx.error(
                "invalid-value",
                &at.key("ExecutionType"),
                format!("ExecutionType must be \"STANDARD\" or \"EXPRESS\", not \"{kind}\""),
            );
        }
        match self.ctx.string(config, &at, "Mode") {
            None | Some("INLINE") => false,
            Some("DISTRIBUTED") => true,
            Some(other) => {
                self.ctx.error(
                    "invalid-value",
                    &at.key("Mode"),
                    format!("Mode must be \"INLINE\" or \"DISTRIBUTED\", not \"{other}\""),
                );
                false
            }
        }
    }

    /// `ToleratedFailureCount`/`...Percentage` and their `Path` forms.
    fn number_or_path(&mut self, object: &Object, at: &Loc, key: &str, percentage: bool) -> Option<NumberOrPath> {
        let path_key = format!("{key}Path");
        if self.ctx.exclusive(object, at, key, &path_key) {
            return None;
        }
        if let Some(value) = object.get(&path_key) {
            return self.ctx.reference_path(value, &at.key(&path_key), &path_key).map(NumberOrPath::Path);
        }
        if !percentage {
            return self.ctx.whole(object, at, key, 0).map(|n| NumberOrPath::Number(n as f64));
        }
        let value = self.ctx.number(object, at, key)?;
        if !(0.0..=100.0).contains(&value) {
            self.ctx.error("invalid-value", &at.key(key), format!("{key} must be between 0 and 100; found {value}"));
            return None;
        }
        Some(NumberOrPath::Number(value))
    }
}
