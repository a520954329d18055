//! The typed, validated form of a state machine definition.
//!
//! Values of these types only come out of [`crate::compile`], so the interpreter may rely on
//! every invariant the validator checks (targets exist, paths parse, fields are consistent).

use indexmap::IndexMap;
use serde_json::Value;

use crate::expr::{Expr, Path, ReferencePath, Template};

/// A whole definition: the top-level state machine plus definition-wide settings.
#[derive(Debug, Clone)]
pub struct Definition {
    pub comment: Option<String>,
    /// `TimeoutSeconds` of the whole execution.
    pub timeout_seconds: Option<u64>,
    pub machine: StateMachine,
}

/// A `StartAt` plus its states: the top level, a Parallel branch or a Map processor.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub start_at: String,
    /// States in source order; names are unique within one machine.
    pub states: IndexMap<String, State>,
}

impl StateMachine {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.get(name)
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub comment: Option<String>,
    pub kind: StateKind,
    /// `InputPath`: absent means `$`; `null` means an empty object.
    pub input_path: PathField,
    /// `OutputPath`: absent means `$`; `null` means an empty object.
    pub output_path: PathField,
    /// `Next` or `End`; `None` for Choice, Succeed and Fail.
    pub transition: Option<Transition>,
    /// `Assign` (variables), evaluated after the state's work succeeds.
    pub assign: Option<Template>,
}

/// An optional path field that distinguishes "absent" from "null".
#[derive(Debug, Clone, Default)]
pub enum PathField {
    /// Field absent: behaves as `$`.
    #[default]
    Identity,
    /// Field present with `null`: the value becomes `{}` (input/output) or is discarded (result).
    Null,
    Path(ReferencePath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Pass(PassState),
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitState),
    Succeed,
    Fail(FailState),
    Parallel(Box<ParallelState>),
    Map(Box<MapState>),
}

impl StateKind {
    /// The `Type` name as written in definitions.
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Pass(_) => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice(_) => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel(_) => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PassState {
    pub result: Option<Value>,
    pub parameters: Option<Template>,
    pub result_path: PathField,
}

/// Fields shared by states that do work and may fail: Task, Parallel, Map.
#[derive(Debug, Clone, Default)]
pub struct Resilience {
    pub result_selector: Option<Template>,
    pub result_path: PathField,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone)]
pub struct TaskState {
    /// The `Resource` string as written (`grpc://...`, a Lambda ARN, ...).
    pub resource: String,
    pub parameters: Option<Template>,
    pub resilience: Resilience,
    pub timeout: Option<Timeout>,
    pub heartbeat: Option<Timeout>,
    /// Sagaflow extension: how to undo this task.
    pub compensate: Option<Compensation>,
    /// Sagaflow extension: the task's role in the saga (defaults from `compensate`).
    pub saga_role: Option<SagaRole>,
}

impl TaskState {
    /// The role after defaults: `compensatable` when a compensation is declared.
    pub fn effective_role(&self) -> Option<SagaRole> {
        self.saga_role.or(self.compensate.as_ref().map(|_| SagaRole::Compensatable))
    }
}

/// `TimeoutSeconds`/`TimeoutSecondsPath` (and the heartbeat pair).
#[derive(Debug, Clone)]
pub enum Timeout {
    Seconds(u64),
    Path(ReferencePath),
}

/// Sagaflow extension: the compensating call of a Task.
#[derive(Debug, Clone)]
pub struct Compensation {
    pub resource: String,
    /// Evaluated against `{"Input": <task effective input>, "Result": <task result or null>}`.
    pub parameters: Option<Template>,
    pub retry: Vec<Retrier>,
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaRole {
    Compensatable,
    Pivot,
    Retriable,
    Readonly,
}

impl SagaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaRole::Compensatable => "compensatable",
            SagaRole::Pivot => "pivot",
            SagaRole::Retriable => "retriable",
            SagaRole::Readonly => "readonly",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    /// Seconds before the first retry (default 1).
    pub interval_seconds: u64,
    /// Retries after the first attempt (default 3); 0 means never retry.
    pub max_attempts: u64,
    /// Multiplier per retry (default 2.0).
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: JitterStrategy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterStrategy {
    None,
    Full,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    /// Where the error output `{"Error", "Cause"}` goes; absent means `$`.
    pub result_path: PathField,
    pub assign: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct ChoiceState {
    pub choices: Vec<ChoiceBranch>,
    pub default: Option<String>,
}

/// One top-level entry of `Choices`: a rule, where to go, and what to assign.
#[derive(Debug, Clone)]
pub struct ChoiceBranch {
    pub rule: ChoiceRule,
    pub next: String,
    pub assign: Option<Template>,
}

#[derive(Debug, Clone)]
pub enum ChoiceRule {
    And(Vec<ChoiceRule>),
    Or(Vec<ChoiceRule>),
    Not(Box<ChoiceRule>),
    Compare { variable: Path, operator: Operator, operand: Operand },
}

/// The comparison of a data-test expression (without its `Path` suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl Operator {
    pub const ALL: [Operator; 23] = [
        Operator::StringEquals,
        Operator::StringLessThan,
        Operator::StringGreaterThan,
        Operator::StringLessThanEquals,
        Operator::StringGreaterThanEquals,
        Operator::StringMatches,
        Operator::NumericEquals,
        Operator::NumericLessThan,
        Operator::NumericGreaterThan,
        Operator::NumericLessThanEquals,
        Operator::NumericGreaterThanEquals,
        Operator::BooleanEquals,
        Operator::TimestampEquals,
        Operator::TimestampLessThan,
        Operator::TimestampGreaterThan,
        Operator::TimestampLessThanEquals,
        Operator::TimestampGreaterThanEquals,
        Operator::IsNull,
        Operator::IsPresent,
        Operator::IsNumeric,
        Operator::IsString,
        Operator::IsBoolean,
        Operator::IsTimestamp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operator::StringEquals => "StringEquals",
            Operator::StringLessThan => "StringLessThan",
            Operator::StringGreaterThan => "StringGreaterThan",
            Operator::StringLessThanEquals => "StringLessThanEquals",
            Operator::StringGreaterThanEquals => "StringGreaterThanEquals",
            Operator::StringMatches => "StringMatches",
            Operator::NumericEquals => "NumericEquals",
            Operator::NumericLessThan => "NumericLessThan",
            Operator::NumericGreaterThan => "NumericGreaterThan",
            Operator::NumericLessThanEquals => "NumericLessThanEquals",
            Operator::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Operator::BooleanEquals => "BooleanEquals",
            Operator::TimestampEquals => "TimestampEquals",
            Operator::TimestampLessThan => "TimestampLessThan",
            Operator::TimestampGreaterThan => "TimestampGreaterThan",
            Operator::TimestampLessThanEquals => "TimestampLessThanEquals",
            Operator::TimestampGreaterThanEquals => "TimestampGreaterThanEquals",
            Operator::IsNull => "IsNull",
            Operator::IsPresent => "IsPresent",
            Operator::IsNumeric => "IsNumeric",
            Operator::IsString => "IsString",
            Operator::IsBoolean => "IsBoolean",
            Operator::IsTimestamp => "IsTimestamp",
        }
    }

    /// Type tests (`Is*`) take a boolean literal and have no `Path` form.
    pub fn is_type_test(self) -> bool {
        matches!(
            self,
            Operator::IsNull
                | Operator::IsPresent
                | Operator::IsNumeric
                | Operator::IsString
                | Operator::IsBoolean
                | Operator::IsTimestamp
        )
    }

    /// Whether `<name>Path` is also a valid operator (every comparison except StringMatches).
    pub fn has_path_form(self) -> bool {
        !self.is_type_test() && self != Operator::StringMatches
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value),
    /// The `...Path` form: the operand is read from the data.
    Path(Path),
}

#[derive(Debug, Clone)]
pub enum WaitState {
    Seconds(u64),
    SecondsPath(ReferencePath),
    /// A timestamp that parses as ISO-8601 (Java's ISO_OFFSET_DATE_TIME rules), kept as written.
    Timestamp(String),
    TimestampPath(ReferencePath),
}

#[derive(Debug, Clone, Default)]
pub struct FailState {
    pub error: Option<FailField>,
    pub cause: Option<FailField>,
}

/// `Error`/`Cause` as a literal or the `...Path` form (a path or an intrinsic function).
#[derive(Debug, Clone)]
pub enum FailField {
    Literal(String),
    Dynamic(Expr),
}

#[derive(Debug, Clone)]
pub struct ParallelState {
    pub branches: Vec<StateMachine>,
    pub parameters: Option<Template>,
    pub resilience: Resilience,
}

#[derive(Debug, Clone)]
pub struct MapState {
    /// `ItemProcessor`, or the legacy `Iterator`.
    pub processor: StateMachine,
    pub items_path: PathField,
    /// `ItemSelector`, or the legacy `Parameters`.
    pub item_selector: Option<Template>,
    pub max_concurrency: MaxConcurrency,
    pub tolerated_failure: ToleratedFailure,
    pub label: Option<String>,
    /// `ProcessorConfig.Mode == DISTRIBUTED`; runs like INLINE when there is no ItemReader.
    pub distributed: bool,
    pub resilience: Resilience,
}

#[derive(Debug, Clone)]
pub enum MaxConcurrency {
    /// 0 means unlimited.
    Value(u64),
    Path(ReferencePath),
}

#[derive(Debug, Clone, Default)]
pub struct ToleratedFailure {
    pub count: Option<NumberOrPath>,
    pub percentage: Option<NumberOrPath>,
}

#[derive(Debug, Clone)]
pub enum NumberOrPath {
    Number(f64),
    Path(ReferencePath),
}
