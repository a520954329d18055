//! Runs the conformance cases that only need the expression layer through `expr`: machines
//! made of Pass, Choice, Succeed and Fail states, evaluated by a deliberately tiny stepper
//! (the real interpreter lives in `interpreter`; this test pins down `expr` alone).
//!
//! The corpus lives outside the workspace (`../shared/conformance`, or `SAGAFLOW_CONFORMANCE`);
//! the test passes vacuously when it is absent.

use std::path::PathBuf;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use sagaflow_language::expr::{EvalError, Expr, NoVariables, Path, ReferencePath, Scope, Template, choice};
use sagaflow_language::model::{ChoiceRule, Operand, Operator};
use serde_json::{Map, Value, json};

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SAGAFLOW_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"))
        .join("cases");
    dir.is_dir().then_some(dir)
}

fn rule(json: &Value) -> ChoiceRule {
    let obj = json.as_object().expect("a choice rule is an object");
    if let Some(rules) = obj.get("And").and_then(Value::as_array) {
        return ChoiceRule::And(rules.iter().map(rule).collect());
    }
    if let Some(rules) = obj.get("Or").and_then(Value::as_array) {
        return ChoiceRule::Or(rules.iter().map(rule).collect());
    }
    if let Some(inner) = obj.get("Not") {
        return ChoiceRule::Not(Box::new(rule(inner)));
    }
    let variable = Path::parse(obj["Variable"].as_str().expect("Variable is a string")).expect("Variable parses");
    for (key, value) in obj {
        for operator in Operator::ALL {
            if key == operator.name() {
                return ChoiceRule::Compare { variable, operator, operand: Operand::Literal(value.clone()) };
            }
            if operator.has_path_form() && key.strip_suffix("Path") == Some(operator.name()) {
                let path = Path::parse(value.as_str().expect("a path")).expect("path parses");
                return ChoiceRule::Compare { variable, operator, operand: Operand::Path(path) };
            }
        }
    }
    panic!("no operator in {json}");
}

fn context(input: &Value, state: &str) -> Value {
    json!({
        "Execution": {
            "Id": "arn:aws:states:us-east-1:111111111111:execution:machine:exec",
            "Input": input,
            "Name": "exec",
            "RedriveCount": 0,
            "RoleArn": "arn:aws:iam::111111111111:role/role",
            "StartTime": "2024-01-01T00:00:00.000Z",
        },
        // corpus context_object.output_path.empty: no RetryCount outside Task states.
        "State": {"EnteredTime": "2024-01-01T00:00:00.000Z", "Name": state},
        "StateMachine": {
            "Id": "arn:aws:states:us-east-1:111111111111:stateMachine:machine",
            "Name": "machine",
        },
    })
}

fn sc<'a>(input: &'a Value, context: &'a Value, variables: &'a Map<String, Value>) -> Scope<'a> {
    Scope { input, context, variables }
}

enum Outcome {
    Succeeded(Value),
    Failed { error: Option<String>, cause: Option<String> },
}

fn failed(e: EvalError) -> Outcome {
    Outcome::Failed { error: Some(e.error), cause: Some(e.message) }
}

/// Steps through Pass/Choice/Succeed/Fail states; `None` when the case needs more.
fn run(definition: &Value, input: &Value) -> Option<Outcome> {
    let states = definition["States"].as_object()?;
    let mut name = definition["StartAt"].as_str()?.to_owned();
    let mut value = input.clone();
    let mut vars = Map::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..100 {
        let state = states.get(&name)?.as_object()?;
        if state.get("QueryLanguage").is_some() {
            return None;
        }
        let ctx = context(input, &name);
        let scope_vars = vars.clone();
        let path = |key: &str| state.get(key).map(|p| p.as_str().map(ReferencePath::parse));
        // InputPath
        let effective = match path("InputPath") {
            None => value.clone(),
            Some(None) => json!({}),
            Some(Some(p)) => match p.expect("InputPath parses").get(&sc(&value, &ctx, &scope_vars)) {
                Ok(v) => v,
                Err(e) => return Some(failed(e)),
            },
        };
        let next = state.get("Next").and_then(Value::as_str).map(str::to_owned);
        match state.get("Type")?.as_str()? {
            "Pass" => {
                let mut result = effective.clone();
                if let Some(params) = state.get("Parameters") {
                    let template = Template::compile(params).expect("Parameters compile");
                    result = match template.eval(&sc(&effective, &ctx, &scope_vars), &mut rng) {
                        Ok(v) => v,
                        Err(e) => return Some(failed(e)),
                    };
                }
                if let Some(literal) = state.get("Result") {
                    result = literal.clone();
                }
                let assigned = match state.get("Assign") {
                    Some(assign) => {
                        let template = Template::compile(assign).expect("Assign compiles");
                        match template.eval(&sc(&result, &ctx, &scope_vars), &mut rng) {
                            Ok(Value::Object(map)) => Some(map),
                            Ok(_) => None,
                            Err(e) => return Some(failed(e)),
                        }
                    }
                    None => None,
                };
                let mut output = match path("ResultPath") {
                    None => result,
                    Some(None) => value.clone(),
                    Some(Some(p)) => match p.expect("ResultPath parses").set(value.clone(), result) {
                        Ok(v) => v,
                        Err(e) => return Some(failed(e)),
                    },
                };
                output = match path("OutputPath") {
                    None => output,
                    Some(None) => json!({}),
                    Some(Some(p)) => match p.expect("OutputPath parses").get(&sc(&output, &ctx, &scope_vars)) {
                        Ok(v) => v,
                        Err(e) => return Some(failed(e)),
                    },
                };
                if let Some(map) = assigned {
                    vars.extend(map);
                }
                value = output;
                match next {
                    Some(next) => name = next,
                    None => return Some(Outcome::Succeeded(value)),
                }
            }
            "Choice" => {
                let mut target = state.get("Default").and_then(Value::as_str).map(str::to_owned);
                for branch in state.get("Choices")?.as_array()? {
                    if branch.get("Assign").is_some() {
                        return None;
                    }
                    match choice::evaluate(&rule(branch), &sc(&effective, &ctx, &scope_vars)) {
                        Ok(true) => {
                            target = branch["Next"].as_str().map(str::to_owned);
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => return Some(failed(e)),
                    }
                }
                let Some(target) = target else {
                    return Some(Outcome::Failed { error: Some("States.NoChoiceMatched".into()), cause: None });
                };
                value = match path("OutputPath") {
                    None => effective,
                    Some(None) => json!({}),
                    Some(Some(p)) => match p.expect("OutputPath parses").get(&sc(&effective, &ctx, &scope_vars)) {
                        Ok(v) => v,
                        Err(e) => return Some(failed(e)),
                    },
                };
                name = target;
            }
            "Succeed" => return Some(Outcome::Succeeded(effective)),
            "Fail" => {
                let field = |literal: &str, dynamic: &str| -> Result<Option<String>, EvalError> {
                    if let Some(text) = state.get(literal).and_then(Value::as_str) {
                        return Ok(Some(text.to_owned()));
                    }
                    let Some(source) = state.get(dynamic).and_then(Value::as_str) else {
                        return Ok(None);
                    };
                    let expr = Expr::parse(source).expect("Fail path parses");
                    let mut rng = ChaCha8Rng::seed_from_u64(0);
                    let v = expr.eval(&sc(&value, &ctx, &scope_vars), dynamic, &mut rng)?;
                    Ok(Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                };
                let error = match field("Error", "ErrorPath") {
                    Ok(e) => e,
                    Err(e) => return Some(failed(e)),
                };
                let cause = match field("Cause", "CausePath") {
                    Ok(c) => c,
                    Err(e) => return Some(failed(e)),
                };
                return Some(Outcome::Failed { error, cause });
            }
            _ => return None,
        }
    }
    None
}

fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.shift_remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items[i] = Value::Null;
            }
        }
        _ => {}
    }
}

#[test]
fn corpus_cases_that_need_only_expressions() {
    let Some(dir) = corpus_dir() else {
        eprintln!("conformance corpus not found; skipping");
        return;
    };
    let mut passed = 0;
    let mut failures = Vec::new();
    for category in ["choice", "context", "errors", "intrinsics", "pass", "paths", "variables"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(category))
            .expect("readable corpus")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable case");
            let case: Value = serde_json::from_str(&text).expect("case is JSON");
            if case["query_language"] != "JSONPath" {
                continue;
            }
            let states_ok = case["states_used"]
                .as_array()
                .is_some_and(|s| s.iter().all(|t| matches!(t.as_str(), Some("Pass" | "Choice" | "Succeed" | "Fail"))));
            // A data-limit case needs the interpreter's size checks, not expressions.
            if !states_ok || case["expected"]["error"] == "States.DataLimitExceeded" {
                continue;
            }
            let Some(outcome) = run(&case["definition"], &case["input"]) else {
                continue;
            };
            let name = case["name"].as_str().unwrap_or_default().to_owned();
            let ignore: Vec<String> = case["ignore_paths"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            let mut expected = case["expected"].clone();
            let mut actual = match outcome {
                Outcome::Succeeded(output) => json!({"status": "SUCCEEDED", "output": output}),
                Outcome::Failed { error, cause } => {
                    // The interpreter prefixes "An error occurred while executing the state
                    // 'X' (entered at the event id #N). "; compare only what expr words.
                    let cause = match (&cause, expected["cause"].as_str()) {
                        (Some(c), Some(exp)) if exp.starts_with("An error occurred") => {
                            let suffix = exp.split_once("). ").map_or(exp, |(_, s)| s);
                            expected["cause"] = json!(suffix);
                            json!(c)
                        }
                        _ => json!(cause),
                    };
                    json!({"status": "FAILED", "error": error, "cause": cause})
                }
            };
            for pointer in &ignore {
                remove_pointer(&mut expected, pointer);
                remove_pointer(&mut actual, pointer);
            }
            if actual == expected {
                passed += 1;
            } else {
                failures.push(format!("{name}\n  expected {expected}\n  actual   {actual}"));
            }
        }
    }
    eprintln!("{passed} corpus cases passed through expr");
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert!(passed > 450, "only {passed} cases ran");
}

#[test]
fn no_variables_is_empty() {
    let input = json!({});
    let scope = Scope { input: &input, context: &input, variables: &NoVariables };
    assert!(Path::parse("$x").expect("parses").find(&scope).is_none());
}
