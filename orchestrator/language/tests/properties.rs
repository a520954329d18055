//! Property tests of the language crate:
//! - parsing and validation never panic, whatever the text or JSON;
//! - the interpreter never panics on a valid definition, whatever the input and outcomes;
//! - the same events give the same history and calls, and a recorded history replays to
//!   exactly itself;
//! - every run ends (or parks for an operator), and compensations run in reverse order of
//!   completion, each forward key undone at most once.

use proptest::prelude::*;
use sagaflow_language::driver::{self, Options, TaskOutcome};
use sagaflow_language::interpreter::{self, Call, Execution, Status};
use sagaflow_language::{compile, compile_value};
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-zA-Z$.@*\\[\\]0-9 ']{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("$"),
            Just("$.a"),
            Just("$$"),
            Just("$.a[0]"),
            Just("States.Format('{}', $.a)"),
            Just("Pass"),
            Just("Task"),
            Just("Choice"),
            Just("Map"),
            Just("Parallel"),
            Just("States.ALL"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[a-zA-Z.$]{1,8}".boxed(),
                        prop_oneof![
                            Just("Type"),
                            Just("Next"),
                            Just("End"),
                            Just("States"),
                            Just("StartAt"),
                            Just("Resource"),
                            Just("Choices"),
                            Just("Parameters"),
                            Just("ResultPath"),
                            Just("Retry"),
                            Just("Catch"),
                            Just("ErrorEquals"),
                            Just("Compensate"),
                            Just("Branches"),
                            Just("ItemProcessor"),
                            Just("Variable"),
                            Just("x.$"),
                        ]
                        .prop_map(String::from)
                        .boxed(),
                    ],
                    inner,
                ),
                0..6,
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A valid-by-construction definition: states chained in order ending in `Fin`, with
/// random types and fields; a Choice may divert to the `Boom` Fail state.
fn arb_definition() -> impl Strategy<Value = Value> {
    let state = (0..9u8, any::<bool>(), 0..4u8, arb_json());
    prop::collection::vec(state, 1..7).prop_map(|specs| {
        let n = specs.len();
        let mut states = serde_json::Map::new();
        let mut uses_boom = false;
        for (i, (kind, flag, variant, data)) in specs.into_iter().enumerate() {
            let name = format!("S{i}");
            let next = Some(if i + 1 < n { format!("S{}", i + 1) } else { "Fin".to_string() });
            let mut s = match kind {
                0 => json!({ "Type": "Pass", "Result": data }),
                1 => json!({ "Type": "Pass", "Parameters": { "v.$": "$", "k": data, "n.$": "States.MathAdd(1, 2)" } }),
                2 | 3 => {
                    let mut t = json!({ "Type": "Task", "Resource": format!("grpc://p/s.v1.S/M{variant}") });
                    if flag {
                        t["Compensate"] = json!({ "Resource": "grpc://p/s.v1.S/Undo" });
                    } else {
                        t["SagaRole"] = json!("readonly");
                    }
                    if variant % 2 == 0 {
                        t["Retry"] = json!([{ "ErrorEquals": ["Grpc.Unavailable", "States.Timeout"], "MaxAttempts": variant, "JitterStrategy": "FULL" }]);
                    }
                    if variant == 3 && next.is_some() {
                        t["Catch"] = json!([{ "ErrorEquals": ["States.ALL"], "Next": next.clone().unwrap_or_default(), "ResultPath": "$.error" }]);
                    }
                    t
                }
                4 => json!({ "Type": "Choice", "Choices": [
                        { "Variable": "$.v", "IsPresent": flag, "Next": next.clone().unwrap_or_default() }
                    ], "Default": next.clone().unwrap_or_default() }),
                5 => json!({ "Type": "Wait", "Seconds": variant }),
                6 => {
                    uses_boom = true;
                    json!({ "Type": "Choice", "Choices": [
                        { "Variable": "$.v", "IsNumeric": flag, "Next": "Boom" }
                    ], "Default": next.clone().unwrap_or_default() })
                }
                7 => json!({ "Type": "Parallel", "Branches": [
                    { "StartAt": format!("B{i}"), "States": { format!("B{i}"): { "Type": "Task", "Resource": "grpc://p/s.v1.S/B", "Compensate": { "Resource": "grpc://p/s.v1.S/UndoB" }, "End": true } } },
                    { "StartAt": format!("C{i}"), "States": { format!("C{i}"): { "Type": "Pass", "Result": data, "End": true } } }
                ]}),
                _ => json!({ "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": variant,
                    "ItemProcessor": { "StartAt": format!("I{i}"), "States": { format!("I{i}"): { "Type": "Task", "Resource": "grpc://p/s.v1.S/I", "Compensate": { "Resource": "grpc://p/s.v1.S/UndoI" }, "End": true } } },
                    "ResultPath": "$.mapped" }),
            };
            if !matches!(kind, 4 | 6) {
                s["Next"] = json!(next);
            }
            states.insert(name, s);
        }
        states.insert("Fin".into(), json!({ "Type": "Succeed" }));
        if uses_boom {
            states.insert("Boom".into(), json!({ "Type": "Fail", "Error": "Gen.Failed", "Cause": "generated" }));
        }
        json!({ "StartAt": "S0", "States": states })
    })
}

#[derive(Debug, Clone)]
enum Answer {
    Ok(Value),
    Refuse(&'static str),
    Unavailable,
    TimeoutUnknown,
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => arb_json().prop_map(Answer::Ok),
        1 => prop_oneof![Just("Biz.Declined"), Just("Grpc.Internal")].prop_map(Answer::Refuse),
        1 => Just(Answer::Unavailable),
        1 => Just(Answer::TimeoutUnknown),
    ]
}

fn handler(answers: Vec<Answer>) -> impl FnMut(&Call, i64) -> TaskOutcome {
    let mut n = 0usize;
    move |_call: &Call, _now| {
        let answer = answers.get(n % answers.len().max(1)).cloned().unwrap_or(Answer::Ok(Value::Null));
        n += 1;
        match answer {
            Answer::Ok(v) => TaskOutcome::Succeed(v),
            Answer::Refuse(e) => {
                TaskOutcome::Fail { error: e.into(), cause: Some("no".into()), outcome_unknown: false }
            }
            Answer::Unavailable => {
                TaskOutcome::Fail { error: "Grpc.Unavailable".into(), cause: None, outcome_unknown: false }
            }
            Answer::TimeoutUnknown => {
                TaskOutcome::Fail { error: "States.Timeout".into(), cause: None, outcome_unknown: true }
            }
        }
    }
}

fn arb_input() -> impl Strategy<Value = Value> {
    (arb_json(), prop::collection::vec(arb_json(), 0..4), any::<bool>())
        .prop_map(|(v, items, plain)| if plain { v } else { json!({ "v": v, "items": items }) })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_on_any_text(text in "\\PC{0,200}") {
        let _ = compile(&text);
    }

    #[test]
    fn validation_never_panics_on_any_json(value in arb_json()) {
        let _ = compile_value(&value);
        let _ = compile_value(&json!({ "StartAt": "A", "States": { "A": value } }));
    }

    #[test]
    fn generated_definitions_run_deterministically_and_end(
        definition in arb_definition(),
        input in arb_input(),
        answers in prop::collection::vec(arb_answer(), 1..12),
    ) {
        let Ok(compiled) = compile_value(&definition) else { return Ok(()) };
        let def = compiled.definition;
        let run = |answers: Vec<Answer>| {
            let mut h = handler(answers);
            driver::run(&def, input.clone(), &mut h, &Options::default())
        };
        let first = run(answers.clone()).expect("a generated run ends");
        let second = run(answers).expect("a generated run ends");
        prop_assert_eq!(&first.history, &second.history);
        prop_assert_eq!(&first.calls, &second.calls);
        prop_assert!(first.status.is_terminal() || first.status == Status::CompensationStuck);

        // A recorded history replays to exactly itself.
        let mut replayed = Execution::new();
        let mut history = Vec::new();
        for recorded in &first.history {
            if let Some(envelope) = recorded.as_input() {
                history.extend(interpreter::step(&def, &mut replayed, envelope).expect("replay applies").history);
            }
        }
        prop_assert_eq!(&history, &first.history);

        // Each forward key is compensated at most once (first attempts), and a lane's
        // compensations run in reverse order of the forward calls.
        let mut undone = std::collections::BTreeSet::new();
        let forward: Vec<&Call> = first.calls.iter().filter(|c| c.compensates.is_none()).collect();
        let mut last_position = usize::MAX;
        for c in first.calls.iter().filter(|c| c.compensates.is_some() && c.attempt == 1) {
            let key = c.compensates.clone().unwrap_or_default();
            prop_assert!(undone.insert(key.clone()), "compensated twice: {}", key);
            let position = forward.iter().rposition(|f| f.idempotency_key == key);
            prop_assert!(position.is_some(), "compensates a call never made: {}", key);
            // Top-level steps (no scope prefix) are strictly reverse-ordered.
            if !c.scope.contains('[') {
                let p = position.unwrap_or_default();
                prop_assert!(p < last_position, "top-level compensations out of reverse order");
                last_position = p;
            }
        }
        if first.status == Status::Succeeded {
            prop_assert!(undone.is_empty());
        }
    }
}
