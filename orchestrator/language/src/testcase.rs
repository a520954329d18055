//! Definition test cases: the format of the shared conformance corpus, extended for sagas.
//!
//! A case names a definition, an input, stubs for its tasks and the expected end. This
//! module parses cases, runs them with the in-memory [`driver`](crate::driver) and compares
//! the result; reading files is left to the caller so the crate stays free of I/O.
//! The format is documented for users in `docs/testing-definitions.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::driver::{self, Options, TaskHandler, TaskOutcome};
use crate::interpreter::{Call, Status};
use crate::{Definition, Diagnostics};

/// One test case as written in a `*.json` case file.
#[derive(Debug, Clone, Deserialize)]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default = "default_query_language")]
    pub query_language: String,
    /// The definition itself, inline.
    #[serde(default)]
    pub definition: Option<Value>,
    /// Or a definition file, relative to the case file (resolved by the caller).
    #[serde(default)]
    pub definition_file: Option<String>,
    #[serde(default)]
    pub input: Value,
    pub expected: Expected,
    /// JSON Pointers into `expected` whose values are not compared.
    #[serde(default)]
    pub ignore_paths: Vec<String>,
    /// Stubs by `Resource` (or by state name, which wins).
    #[serde(default)]
    pub tasks: BTreeMap<String, Stub>,
}

fn default_query_language() -> String {
    "JSONPath".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    /// `SUCCEEDED`, `FAILED`, `COMPENSATED`, `COMPENSATION_STUCK`, ...
    pub status: String,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub error: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub cause: Option<Option<String>>,
    #[serde(default)]
    pub error_json: Option<Value>,
    #[serde(default)]
    pub cause_json: Option<Value>,
    /// Saga extension: the states whose compensations ran, in the order of their first
    /// attempts (retries are not repeated).
    #[serde(default)]
    pub compensations: Option<Vec<String>>,
    /// Saga extension: the states whose forward calls were made, in order (retries repeat).
    #[serde(default)]
    pub calls: Option<Vec<String>>,
}

/// Distinguish a field given as `null` from an absent one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// How a stubbed task answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stub {
    /// `"echo"` returns the input unchanged; `"timeout"` fails with `States.Timeout` after
    /// (maybe) applying the call, so its outcome is unknown.
    Named(String),
    Behaviour(Behaviour),
    /// One stub per invocation; the last one repeats.
    Sequence(Vec<Stub>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// Return this value.
    Return(Value),
    /// Fail with this error; `causes` gives one cause per invocation.
    Raise(Raise),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Raise {
    pub error: String,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub causes: Option<Vec<String>>,
}

/// What went wrong with a case.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseFailure {
    /// The definition did not validate.
    Invalid(Diagnostics),
    /// The query language is not supported.
    Unsupported(String),
    /// The run could not finish.
    Run(String),
    /// The result differs.
    Mismatch(Box<Mismatch>),
}

impl std::fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaseFailure::Invalid(d) => write!(f, "definition is invalid:\n{d}"),
            CaseFailure::Unsupported(what) => write!(f, "not supported: {what}"),
            CaseFailure::Run(e) => write!(f, "run failed: {e}"),
            CaseFailure::Mismatch(m) => {
                for line in &m.problems {
                    writeln!(f, "{line}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a result differs: each problem says where and how; `expected` and `actual`
/// summarise both ends (status, output or error and cause, calls) for a diff.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub problems: Vec<String>,
    pub expected: Value,
    pub actual: Value,
}

/// The stub handler for a case: answers by state name, then by resource.
#[derive(Debug)]
pub struct Stubs<'a> {
    tasks: &'a BTreeMap<String, Stub>,
    invocations: BTreeMap<String, usize>,
}

impl<'a> Stubs<'a> {
    pub fn new(tasks: &'a BTreeMap<String, Stub>) -> Self {
        Stubs { tasks, invocations: BTreeMap::new() }
    }
}

impl TaskHandler for Stubs<'_> {
    fn call(&mut self, call: &Call, _now_ms: i64) -> TaskOutcome {
        let key = if call.compensates.is_some() {
            // A compensation may be stubbed by "<State>.compensate" or by its resource.
            let by_state = format!("{}.compensate", call.state);
            if self.tasks.contains_key(&by_state) { by_state } else { call.resource.clone() }
        } else if self.tasks.contains_key(&call.state) {
            call.state.clone()
        } else {
            call.resource.clone()
        };
        let n = {
            let count = self.invocations.entry(key.clone()).or_insert(0);
            *count += 1;
            *count
        };
        let Some(stub) = self.tasks.get(&key) else {
            // Unstubbed compensations succeed, so a case only stubs what it is about.
            if call.compensates.is_some() {
                return TaskOutcome::Succeed(Value::Object(Default::default()));
            }
            return TaskOutcome::Fail {
                error: "Sagaflow.NoStub".into(),
                cause: Some(format!("no stub for state '{}' or resource '{}'", call.state, call.resource)),
                outcome_unknown: false,
            };
        };
        answer(stub, n, call)
    }
}

/// The `n`-th (1-based) answer of a stub.
fn answer(stub: &Stub, n: usize, call: &Call) -> TaskOutcome {
    match stub {
        Stub::Named(name) if name == "echo" => TaskOutcome::Succeed(call.input.clone()),
        Stub::Named(name) if name == "timeout" => TaskOutcome::Fail {
            error: crate::errors::TIMEOUT.into(),
            cause: Some("the stub timed out (the call may have been applied)".into()),
            outcome_unknown: true,
        },
        Stub::Named(other) => TaskOutcome::Fail {
            error: "Sagaflow.NoStub".into(),
            cause: Some(format!("unknown stub \"{other}\" (use \"echo\", \"timeout\", or an object)")),
            outcome_unknown: false,
        },
        Stub::Sequence(list) => match list.get(n - 1).or(list.last()) {
            Some(item) => answer(item, n, call),
            None => TaskOutcome::Succeed(call.input.clone()),
        },
        Stub::Behaviour(Behaviour::Return(v)) => TaskOutcome::Succeed(v.clone()),
        Stub::Behaviour(Behaviour::Raise(r)) => {
            let cause = match &r.causes {
                Some(causes) => causes.get(n - 1).or(causes.last()).cloned(),
                None => r.cause.clone(),
            };
            TaskOutcome::Fail { error: r.error.clone(), cause, outcome_unknown: false }
        }
    }
}

impl TestCase {
    pub fn parse(text: &str) -> Result<TestCase, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Run the case against `definition` (already compiled) and compare.
    pub fn check(&self, definition: &Definition) -> Result<(), CaseFailure> {
        let mut stubs = Stubs::new(&self.tasks);
        let outcome = driver::run(definition, self.input.clone(), &mut stubs, &Options::default())
            .map_err(|e| CaseFailure::Run(e.to_string()))?;
        let mut problems = Vec::new();
        let expected_status = self.expected.status.to_ascii_uppercase();
        if outcome.status.as_str() != expected_status {
            let mut got = outcome.status.as_str().to_owned();
            if let Some(error) = &outcome.error {
                got.push_str(&format!(" with {error}"));
            }
            if let Some(cause) = &outcome.cause {
                got.push_str(&format!(": {cause}"));
            }
            problems.push(format!("status: expected {expected_status}, got {got}"));
        }
        let ignored =
            |pointer: &str| self.ignore_paths.iter().any(|p| pointer == p || pointer.starts_with(&format!("{p}/")));
        if outcome.status == Status::Succeeded || expected_status == "SUCCEEDED" {
            if let Some(expected) = &self.expected.output {
                let actual = outcome.output.clone().unwrap_or(Value::Null);
                compare("/output", expected, &actual, &ignored, &mut problems);
            }
        } else {
            compare_text(
                "/error",
                &self.expected.error,
                self.expected.error_json.as_ref(),
                &outcome.error,
                &ignored,
                &mut problems,
            );
            compare_text(
                "/cause",
                &self.expected.cause,
                self.expected.cause_json.as_ref(),
                &outcome.cause,
                &ignored,
                &mut problems,
            );
        }
        if let Some(expected) = &self.expected.compensations {
            let actual: Vec<String> = first_attempts(&outcome.calls, true);
            if &actual != expected {
                problems.push(format!("compensations: expected {expected:?}, got {actual:?}"));
            }
        }
        if let Some(expected) = &self.expected.calls {
            let actual: Vec<String> =
                outcome.calls.iter().filter(|c| c.compensates.is_none()).map(|c| c.state.clone()).collect();
            if &actual != expected {
                problems.push(format!("calls: expected {expected:?}, got {actual:?}"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut expected = serde_json::Map::new();
        expected.insert("status".into(), Value::String(expected_status));
        if let Some(output) = &self.expected.output {
            expected.insert("output".into(), output.clone());
        }
        if let Some(Some(error)) = &self.expected.error {
            expected.insert("error".into(), Value::String(error.clone()));
        }
        if let Some(Some(cause)) = &self.expected.cause {
            expected.insert("cause".into(), Value::String(cause.clone()));
        }
        let actual_compensations = first_attempts(&outcome.calls, true);
        let actual_calls: Vec<String> =
            outcome.calls.iter().filter(|c| c.compensates.is_none()).map(|c| c.state.clone()).collect();
        if let Some(c) = &self.expected.calls {
            expected.insert("calls".into(), json!(c));
        }
        if let Some(c) = &self.expected.compensations {
            expected.insert("compensations".into(), json!(c));
        }
        let mut actual = serde_json::Map::new();
        actual.insert("status".into(), Value::String(outcome.status.as_str().into()));
        if let Some(output) = outcome.output {
            actual.insert("output".into(), output);
        }
        if let Some(error) = outcome.error {
            actual.insert("error".into(), Value::String(error));
        }
        if let Some(cause) = outcome.cause {
            actual.insert("cause".into(), Value::String(cause));
        }
        if self.expected.calls.is_some() {
            actual.insert("calls".into(), json!(actual_calls));
        }
        if self.expected.compensations.is_some() {
            actual.insert("compensations".into(), json!(actual_compensations));
        }
        Err(CaseFailure::Mismatch(Box::new(Mismatch {
            problems,
            expected: Value::Object(expected),
            actual: Value::Object(actual),
        })))
    }
}

/// State names of compensation calls in the order they first ran (retries not repeated).
fn first_attempts(calls: &[Call], compensations: bool) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.compensates.is_some() == compensations && c.attempt == 1)
        .map(|c| c.state.clone())
        .collect()
}

fn compare_text(
    pointer: &str,
    expected: &Option<Option<String>>,
    expected_json: Option<&Value>,
    actual: &Option<String>,
    ignored: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) {
    if ignored(pointer) {
        return;
    }
    if let Some(json) = expected_json {
        let parsed = actual.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok());
        if parsed.as_ref() != Some(json) {
            problems.push(format!("{pointer}: expected JSON {json}, got {actual:?}"));
        }
        return;
    }
    if let Some(expected) = expected
        && expected != actual
    {
        problems.push(format!("{pointer}: expected {expected:?}, got {actual:?}"));
    }
}

/// Structural comparison: numbers by value, object key order ignored, ignored pointers skipped.
fn compare(
    pointer: &str,
    expected: &Value,
    actual: &Value,
    ignored: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) {
    if ignored(pointer) {
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                match a.get(k) {
                    Some(av) => compare(&p, ev, av, ignored, problems),
                    None if ignored(&p) => {}
                    None => problems.push(format!("{p}: missing (expected {ev})")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    problems.push(format!("{pointer}/{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!("{pointer}: expected {} items, got {}: {actual}", e.len(), a.len()));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                compare(&format!("{pointer}/{i}"), ev, av, ignored, problems);
            }
        }
        (Value::Number(e), Value::Number(a)) => {
            let same = match (e.as_i64(), a.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => e.as_f64() == a.as_f64(),
            };
            if !same {
                problems.push(format!("{pointer}: expected {e}, got {a}"));
            }
        }
        (e, a) if e == a => {}
        (e, a) => problems.push(format!("{pointer}: expected {e}, got {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_ignored_pointers_are_skipped() {
        let mut problems = Vec::new();
        let ignored = |p: &str| p == "/output/id";
        compare(
            "/output",
            &serde_json::json!({"a": 1.0, "id": "x", "b": [1, 2]}),
            &serde_json::json!({"b": [1, 2], "a": 1}),
            &ignored,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_sequence_stub_answers_per_invocation_and_repeats_the_last() {
        let tasks: BTreeMap<String, Stub> = serde_json::from_value(serde_json::json!({
            "grpc://payment/payment.v1.Payment/Charge": [
                {"raise": {"error": "Grpc.Unavailable", "cause": "down"}},
                {"return": {"paymentId": "p1"}}
            ]
        }))
        .expect("valid stubs");
        let mut stubs = Stubs::new(&tasks);
        let call = Call {
            id: 1,
            state: "Charge".into(),
            scope: "Charge".into(),
            resource: "grpc://payment/payment.v1.Payment/Charge".into(),
            input: Value::Null,
            idempotency_key: "k".into(),
            compensates: None,
            timeout_seconds: 60,
            heartbeat_seconds: None,
            attempt: 1,
        };
        assert!(matches!(stubs.call(&call, 0), TaskOutcome::Fail { .. }));
        assert!(matches!(stubs.call(&call, 0), TaskOutcome::Succeed(_)));
        assert!(matches!(stubs.call(&call, 0), TaskOutcome::Succeed(_)));
    }
}

pub mod suite {
    //! Running many case files: discovery under folders, per-category totals, and the
    //! `N passed, M failed` summary shared by `sagaflow test` and the conformance test.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::{CaseFailure, TestCase};

    /// One case's result.
    #[derive(Debug, Clone)]
    pub struct CaseResult {
        pub file: PathBuf,
        pub name: String,
        pub category: String,
        pub outcome: Result<(), CaseFailure>,
    }

    /// Every case file under `paths`: files as given, folders searched recursively for
    /// `*.json` files that are not definitions (`*.asl.json`), sorted for stable output.
    pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                walk(path, &mut files)?;
            } else {
                files.push(path.clone());
            }
        }
        Ok(files)
    }

    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, files)?;
            } else {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name.ends_with(".json") && !name.ends_with(".asl.json") {
                    files.push(path);
                }
            }
        }
        Ok(())
    }

    /// Load, compile and run one case file. A file holding an array runs each case in it.
    pub fn run_file(file: &Path) -> Vec<CaseResult> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => return vec![broken(file, format!("cannot read: {e}"))],
        };
        let cases: Vec<TestCase> = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => {
                let mut cases = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match serde_json::from_value(item.clone()) {
                        Ok(case) => cases.push(case),
                        Err(e) => return vec![broken(file, format!("case #{}: {}", i + 1, explain(&item, e)))],
                    }
                }
                cases
            }
            Ok(value) => match serde_json::from_value(value.clone()) {
                Ok(case) => vec![case],
                Err(e) => return vec![broken(file, format!("not a test case: {}", explain(&value, e)))],
            },
            Err(e) => return vec![broken(file, format!("not JSON: {e}"))],
        };
        cases.into_iter().map(|case| run_case(file, case)).collect()
    }

    fn run_case(file: &Path, case: TestCase) -> CaseResult {
        let category = case.category.clone().unwrap_or_else(|| {
            file.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("cases").to_owned()
        });
        let result = |outcome| CaseResult {
            file: file.to_owned(),
            name: case.name.clone(),
            category: category.clone(),
            outcome,
        };
        if !case.query_language.eq_ignore_ascii_case("JSONPath") {
            return result(Err(CaseFailure::Unsupported(format!("QueryLanguage {}", case.query_language))));
        }
        let compiled = match (&case.definition, &case.definition_file) {
            (Some(def), _) => crate::compile_value(def),
            (None, Some(rel)) => {
                let path = file.parent().unwrap_or(Path::new(".")).join(rel);
                match std::fs::read_to_string(&path) {
                    Ok(text) => crate::compile(&text),
                    Err(e) => {
                        return result(Err(CaseFailure::Run(format!("cannot read {}: {e}", path.display()))));
                    }
                }
            }
            (None, None) => {
                return result(Err(CaseFailure::Run("the case has neither `definition` nor `definition_file`".into())));
            }
        };
        match compiled {
            Ok(compiled) => result(case.check(&compiled.definition)),
            Err(diagnostics) => result(Err(CaseFailure::Invalid(diagnostics))),
        }
    }

    /// Say which stub is malformed instead of serde's "did not match any variant".
    fn explain(case: &serde_json::Value, error: serde_json::Error) -> String {
        let name = case.get("name").and_then(|n| n.as_str()).unwrap_or("(unnamed)");
        if let Some(tasks) = case.get("tasks").and_then(|t| t.as_object()) {
            for (key, stub) in tasks {
                if serde_json::from_value::<super::Stub>(stub.clone()).is_err() {
                    return format!(
                        "case \"{name}\": tasks.\"{key}\" is not a stub; use \"echo\", \"timeout\", \
                         {{\"return\": VALUE}}, {{\"raise\": {{\"error\": NAME, \"cause\": TEXT}}}}, or a list of these"
                    );
                }
            }
        }
        format!("case \"{name}\": {error}")
    }

    fn broken(file: &Path, message: String) -> CaseResult {
        CaseResult {
            file: file.to_owned(),
            name: file.display().to_string(),
            category: "invalid".into(),
            outcome: Err(CaseFailure::Run(message)),
        }
    }

    /// Passed and failed counts per category, in name order.
    pub fn totals(results: &[CaseResult]) -> BTreeMap<String, (usize, usize)> {
        let mut totals: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for r in results {
            let t = totals.entry(r.category.clone()).or_default();
            if r.outcome.is_ok() {
                t.0 += 1;
            } else {
                t.1 += 1;
            }
        }
        totals
    }
}
