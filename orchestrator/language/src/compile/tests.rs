//! Tests of the compiler: one precise diagnostic per mistake (code, position, pointer, state,
//! sentence), every problem at once, warnings apart, and the model of valid definitions.

use serde_json::json;

use super::{compile, compile_value};
use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{
    ChoiceRule, FailField, JitterStrategy, MaxConcurrency, Operand, Operator, PathField, SagaRole, StateKind, Timeout,
    Transition, WaitState,
};

/// The diagnostics of a definition that must not compile.
fn diagnostics(source: &str) -> Vec<Diagnostic> {
    match compile(source) {
        Ok(compiled) => panic!("compiled, with warnings {:?}", compiled.warnings),
        Err(diagnostics) => diagnostics.0,
    }
}

/// The one error of a definition with one mistake. Fixtures often use Lambda ARNs without a
/// saga role, whose `no-saga-role` warning is beside the point here.
fn only(source: &str) -> Diagnostic {
    let (mut errors, warnings): (Vec<_>, Vec<_>) = diagnostics(source).into_iter().partition(|d| d.is_error());
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert!(warnings.iter().all(|w| w.code == "no-saga-role"), "unexpected warnings {warnings:#?}");
    errors.remove(0)
}

/// Codes of every diagnostic but the fixtures' `no-saga-role` noise.
fn codes_of(value: serde_json::Value) -> Vec<&'static str> {
    let all: Vec<&'static str> = match compile_value(&value) {
        Ok(compiled) => compiled.warnings.iter().map(|d| d.code).collect(),
        Err(diagnostics) => diagnostics.0.iter().map(|d| d.code).collect(),
    };
    all.into_iter().filter(|c| *c != "no-saga-role").collect()
}

#[test]
fn malformed_json_is_positioned() {
    let d = only("{\n  \"StartAt\": \"A\",\n  \"States\": {\n    \"A\": {\"Type\": \"Succeed\"},\n  }\n}");
    assert_eq!(d.code, "json-syntax");
    assert_eq!((d.line, d.column), (5, 3));
    assert!(d.message.contains("trailing comma"), "{}", d.message);

    let d = only("{\"StartAt\": \"A");
    assert_eq!(d.code, "json-syntax");
    assert_eq!((d.line, d.column), (1, 14));
    assert!(d.message.contains("EOF while parsing a string"), "{}", d.message);
}

#[test]
fn duplicate_state_names_in_one_object_are_errors() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Succeed"},
  "A": {"Type": "Succeed"}
}}"#,
    );
    assert_eq!(d.code, "duplicate-key");
    assert_eq!((d.line, d.column), (3, 3));
    assert_eq!(d.pointer, "/States/A");
    assert_eq!(d.state.as_deref(), Some("A"));
    assert!(d.message.contains("first at 2:3"), "{}", d.message);
}

#[test]
fn unknown_state_type_suggests_the_right_one() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Tsk", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true}
}}"#,
    );
    assert_eq!(d.code, "unknown-state-type");
    assert_eq!((d.line, d.column), (2, 17));
    assert_eq!(d.pointer, "/States/A/Type");
    assert_eq!(d.state.as_deref(), Some("A"));
    assert_eq!(
        d.message,
        "unknown state type \"Tsk\" (did you mean \"Task\"?); valid types are Pass, Task, \
         Choice, Wait, Succeed, Fail, Parallel, Map"
    );
}

#[test]
fn missing_next() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Pass"},
  "B": {"Type": "Succeed"}
}}"#,
    );
    assert_eq!(d.code, "missing-next");
    assert_eq!((d.line, d.column), (2, 3));
    assert_eq!(d.pointer, "/States/A");
    assert_eq!(d.state.as_deref(), Some("A"));
    assert!(d.message.starts_with("state \"A\" has neither Next nor End"), "{}", d.message);
}

#[test]
fn unreachable_state() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Pass", "End": true},
  "Orphan": {"Type": "Succeed"}
}}"#,
    );
    assert_eq!(d.code, "unreachable-state");
    assert_eq!((d.line, d.column), (3, 3));
    assert_eq!(d.pointer, "/States/Orphan");
    assert_eq!(d.state.as_deref(), Some("Orphan"));
}

#[test]
fn compensate_on_a_non_task_state() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Pass", "End": true, "Compensate": {"Resource": "grpc://p/p.v1.P/Undo"}}
}}"#,
    );
    assert_eq!(d.code, "compensate-not-on-task");
    assert_eq!((d.line, d.column), (2, 38));
    assert_eq!(d.pointer, "/States/A/Compensate");
    assert!(d.message.contains("this is a Pass state"), "{}", d.message);
}

#[test]
fn states_all_not_alone() {
    let d = only(
        r#"{"StartAt": "A", "States": {
  "A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
        "Retry": [{"ErrorEquals": ["States.Timeout", "States.ALL"]}]}
}}"#,
    );
    assert_eq!(d.code, "states-all-not-alone");
    assert_eq!(d.pointer, "/States/A/Retry/0/ErrorEquals/1");
    assert_eq!((d.line, d.column), (3, 54));
}

#[test]
fn states_all_must_be_last() {
    let codes = codes_of(json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B"},
                        {"ErrorEquals": ["X"], "Next": "B"}]},
        "B": {"Type": "Succeed"}}}));
    assert_eq!(codes, ["states-all-not-last"]);
}

#[test]
fn did_you_mean_for_a_misspelled_target() {
    let d = only(
        r#"{"StartAt": "Reserve", "States": {
  "Reserve": {"Type": "Pass", "Next": "ChargePaymnt"},
  "ChargePayment": {"Type": "Succeed"}
}}"#,
    );
    assert_eq!(d.code, "unknown-state");
    assert_eq!((d.line, d.column), (2, 39));
    assert_eq!(d.pointer, "/States/Reserve/Next");
    assert_eq!(d.state.as_deref(), Some("Reserve"));
    assert_eq!(d.message, "state \"ChargePaymnt\" does not exist (did you mean \"ChargePayment\"?)");
    assert_eq!(
        d.display_in("order.asl.json").to_string(),
        "order.asl.json:2:39 /States/Reserve/Next: state \"ChargePaymnt\" does not exist (did \
         you mean \"ChargePayment\"?)"
    );
}

#[test]
fn several_problems_at_once_in_source_order() {
    let all = diagnostics(
        r#"{"StartAt": "A", "Bogus": 1, "States": {
  "A": {"Type": "Pass", "Next": "B", "End": true},
  "B": {"Type": "Wait", "Seconds": -1, "Next": "C"},
  "C": {"Type": "Choice", "Choices": [], "Next": "A"},
  "P": {"Type": "Parallel", "End": true, "Branches": [
    {"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Nowhere"}}}
  ]}
}}"#,
    );
    let found: Vec<(&str, &str)> = all.iter().map(|d| (d.code, d.pointer.as_str())).collect();
    assert_eq!(
        found,
        [
            ("unknown-field", "/Bogus"),
            ("next-and-end", "/States/A/End"),
            ("invalid-value", "/States/B/Seconds"),
            ("invalid-value", "/States/C/Choices"),
            ("field-not-allowed", "/States/C/Next"),
            ("unreachable-state", "/States/P"),
            ("unknown-state", "/States/P/Branches/0/States/X/Next"),
        ]
    );
    assert!(all.iter().all(Diagnostic::is_error));
    assert_eq!(all[6].state.as_deref(), Some("X"));
}

#[test]
fn warnings_are_kept_apart_from_errors() {
    let source = r#"{"StartAt": "Charge", "States": {
  "Charge": {"Type": "Task", "Resource": "grpc://payment/payment.v1.Payment/Charge", "End": true}
}}"#;
    let compiled = compile(source).expect("warnings do not fail compilation");
    assert_eq!(compiled.warnings.len(), 1);
    let w = &compiled.warnings[0];
    assert_eq!((w.severity, w.code), (Severity::Warning, "no-saga-role"));
    assert_eq!(w.pointer, "/States/Charge");

    // With an error too: errors come first, then warnings.
    let all = diagnostics(
        r#"{"StartAt": "Charge", "States": {
  "Charge": {"Type": "Task", "Resource": "grpc://payment/payment.v1.Payment/Charge", "Next": "Ship"},
  "Ship": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "Edn": true}
}}"#,
    );
    let severities: Vec<Severity> = all.iter().map(|d| d.severity).collect();
    assert_eq!(severities, [Severity::Error, Severity::Error, Severity::Warning, Severity::Warning]);
    assert_eq!(all[0].code, "missing-next");
    assert_eq!(all[1].code, "unknown-field");
    assert!(all[1].message.contains("did you mean \"End\""), "{}", all[1].message);
}

#[test]
fn jsonata_is_refused_clearly() {
    let d = only(r#"{"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Succeed"}}}"#);
    assert_eq!(d.code, "unsupported-query-language");
    assert_eq!(d.message, "JSONata is not supported yet; use JSONPath");
}

#[test]
fn field_rules_per_state_type() {
    let task = |extra: serde_json::Value| {
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true});
        for (k, v) in extra.as_object().expect("object") {
            state[k] = v.clone();
        }
        codes_of(json!({"StartAt": "T", "States": {"T": state}}))
    };
    assert_eq!(task(json!({"TimeoutSeconds": 5, "TimeoutSecondsPath": "$.t"})), ["exclusive-fields"]);
    assert_eq!(task(json!({"TimeoutSeconds": 5, "HeartbeatSeconds": 5})), ["invalid-value"]);
    assert_eq!(task(json!({"Retry": [{"ErrorEquals": ["States.Timout"]}]})), ["unknown-error-name"]);
    assert_eq!(
        task(json!({"Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 0, "MaxAttempts": -1,
                               "BackoffRate": 0.5, "MaxDelaySeconds": 0, "JitterStrategy": "SOME"}]})),
        ["invalid-value"; 5]
    );
    assert_eq!(task(json!({"Retry": [{"ErrorEquals": []}]})), ["invalid-value"]);
    assert_eq!(task(json!({"Credentials": {}})), ["unsupported-field"]);
    assert_eq!(task(json!({"Resource": "lambda"})), ["invalid-resource"]);
    assert_eq!(task(json!({"Resource": "grpc://payment/Payment/Charge"})), ["invalid-resource"]);
    assert_eq!(task(json!({"Parameters": {"a.$": 3}})), ["invalid-template"]);
    assert_eq!(task(json!({"Parameters": {"a.$": "$$$"}})), ["invalid-template"]);
    assert_eq!(task(json!({"ResultPath": "$$.x"})), ["invalid-path"]);
    assert_eq!(task(json!({"InputPath": "$.a[*]"})), ["invalid-path"]);
    assert_eq!(task(json!({"Assign": {"1x": 1}})), ["invalid-variable-name"]);

    let one = |state: serde_json::Value| codes_of(json!({"StartAt": "S", "States": {"S": state}}));
    assert_eq!(one(json!({"Type": "Wait", "End": true})), ["missing-field"]);
    assert_eq!(one(json!({"Type": "Wait", "End": true, "Seconds": 1, "SecondsPath": "$.s"})), ["exclusive-fields"]);
    assert_eq!(one(json!({"Type": "Wait", "End": true, "Timestamp": "yesterday"})), ["invalid-timestamp"]);
    assert_eq!(one(json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})), ["exclusive-fields"]);
    assert_eq!(one(json!({"Type": "Fail", "CausePath": "States.Nope("})), ["invalid-expression"]);
    assert_eq!(one(json!({"Type": "Succeed", "Next": "S"})), ["field-not-allowed"]);
    assert_eq!(one(json!({"Type": "Parallel", "End": true})), ["missing-field"]);
    assert_eq!(one(json!({"Type": "Map", "End": true})), ["missing-field"]);
    assert_eq!(one(json!({"Type": "Pass", "End": true, "SagaRole": "pivot"})), ["saga-role-not-on-task"]);
    assert_eq!(one(json!({"Type": "Pass", "End": true, "QueryLanguage": "JSONata"})), ["unsupported-query-language"]);
    assert_eq!(one(json!({"Type": "Pass", "End": true, "Arguments": {}})), ["unknown-field"]);
    let processor = json!({"StartAt": "I", "States": {"I": {"Type": "Succeed"}}});
    assert_eq!(
        one(json!({"Type": "Map", "End": true, "ItemProcessor": processor, "Iterator": processor})),
        ["exclusive-fields"]
    );
    assert_eq!(
        one(json!({"Type": "Map", "End": true, "ItemProcessor": processor, "ItemReader": {}})),
        ["unsupported-field"]
    );
    assert_eq!(
        one(json!({"Type": "Map", "End": true, "ItemSelector": {}, "Parameters": {},
                   "ItemProcessor": processor})),
        ["exclusive-fields"]
    );
    assert_eq!(
        one(json!({"Type": "Map", "End": true, "ToleratedFailurePercentage": 150,
                   "ItemProcessor": {"ProcessorConfig": {"Mode": "PARALLEL"},
                                     "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}})),
        ["invalid-value", "invalid-value"]
    );
}

#[test]
fn choice_rules() {
    let choice = |rule: serde_json::Value| {
        codes_of(json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [rule], "Default": "D"},
            "D": {"Type": "Succeed"}}}))
    };
    assert!(choice(json!({"Variable": "$.a", "IsPresent": true, "Next": "D"})).is_empty());
    assert_eq!(choice(json!({"Variable": "$.a", "Next": "D"})), ["missing-choice-operator"]);
    assert_eq!(
        choice(json!({"Variable": "$.a", "StringEquals": "x", "IsNull": true, "Next": "D"})),
        ["multiple-choice-operators"]
    );
    assert_eq!(choice(json!({"StringEquals": "x", "Next": "D"})), ["missing-field"]);
    assert_eq!(choice(json!({"Variable": "$.a", "StringEqual": "x", "Next": "D"})), ["unknown-field"]);
    assert_eq!(choice(json!({"Variable": "$.a", "IsNull": "yes", "Next": "D"})), ["invalid-type"]);
    assert_eq!(choice(json!({"Variable": "$.a", "NumericEquals": "1", "Next": "D"})), ["invalid-type"]);
    assert_eq!(choice(json!({"Variable": "$.a", "TimestampEquals": "noon", "Next": "D"})), ["invalid-timestamp"]);
    assert_eq!(choice(json!({"Variable": "$.a", "StringEqualsPath": "a", "Next": "D"})), ["invalid-path"]);
    assert_eq!(choice(json!({"Variable": "$.a", "IsNull": true})), ["missing-field"]);
    assert_eq!(choice(json!({"And": [], "Next": "D"})), ["invalid-value"]);
    assert_eq!(choice(json!({"Not": [], "Next": "D"})), ["invalid-type"]);
    assert_eq!(
        choice(json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "D"}], "Next": "D"})),
        ["nested-choice-next"]
    );
    assert_eq!(
        choice(json!({"And": [{"Variable": "$.a", "IsNull": true}], "Variable": "$.b", "Next": "D"})),
        ["invalid-choice-rule"]
    );
}

#[test]
fn saga_soundness() {
    let grpc = |method: &str| format!("grpc://shop/shop.v1.Shop/{method}");
    let compensate = json!({"Resource": grpc("Undo")});
    let retry_all = json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]);
    // Sound: compensatable, then the pivot, then retriable steps.
    let sound = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": grpc("Reserve"), "Compensate": compensate, "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": grpc("Charge"), "SagaRole": "pivot", "Next": "Ship"},
        "Ship": {"Type": "Task", "Resource": grpc("Ship"), "SagaRole": "retriable", "Retry": retry_all, "End": true}}});
    assert!(codes_of(sound).is_empty());

    let after_pivot = json!({"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": grpc("Charge"), "SagaRole": "pivot", "Next": "Reserve"},
        "Reserve": {"Type": "Task", "Resource": grpc("Reserve"), "Compensate": compensate, "Next": "Notify"},
        "Notify": {"Type": "Task", "Resource": grpc("Notify"), "SagaRole": "readonly", "Next": "Again"},
        "Again": {"Type": "Task", "Resource": grpc("Again"), "SagaRole": "pivot", "Retry": retry_all, "End": true}}});
    assert_eq!(codes_of(after_pivot), ["compensatable-after-pivot", "not-retriable-after-pivot", "multiple-pivots"]);

    let two_branches = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": grpc("A"), "SagaRole": "pivot", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": grpc("B"), "SagaRole": "pivot", "End": true}}}]}}});
    assert_eq!(codes_of(two_branches), ["multiple-pivots"]);

    let roles = json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": grpc("A"), "SagaRole": "compensatable", "Next": "B"},
        "B": {"Type": "Task", "Resource": grpc("B"), "SagaRole": "readonly", "Compensate": compensate, "Next": "C"},
        "C": {"Type": "Task", "Resource": grpc("C"), "SagaRole": "retriable", "End": true}}});
    assert_eq!(
        codes_of(roles),
        ["compensatable-without-compensation", "saga-role-conflict", "retriable-without-retry"]
    );

    // A Catch that ends the execution in Succeed after Reserve completed: a warning.
    let catch_to_success = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": grpc("Reserve"), "Compensate": compensate, "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": grpc("Charge"), "SagaRole": "pivot", "End": true,
                   "Catch": [{"ErrorEquals": ["Payment.Declined"], "Next": "Declined"}]},
        "Declined": {"Type": "Succeed"}}});
    let compiled = compile_value(&catch_to_success).expect("only a warning");
    assert_eq!(compiled.warnings.len(), 1);
    assert_eq!(compiled.warnings[0].code, "catch-skips-compensation");
    assert_eq!(compiled.warnings[0].pointer, "/States/Charge/Catch/0/Next");
    assert!(compiled.warnings[0].message.contains("\"Reserve\""));

    // The same Catch routed to a Fail state compensates: no warning.
    let catch_to_fail = json!({"StartAt": "Reserve", "States": {
        "Reserve": {"Type": "Task", "Resource": grpc("Reserve"), "Compensate": compensate, "Next": "Charge"},
        "Charge": {"Type": "Task", "Resource": grpc("Charge"), "SagaRole": "pivot", "End": true,
                   "Catch": [{"ErrorEquals": ["Payment.Declined"], "Next": "Declined"}]},
        "Declined": {"Type": "Fail", "Error": "Declined"}}});
    assert!(codes_of(catch_to_fail).is_empty());

    // Any Task without a role or a compensation is warned about, whatever its resource.
    let lambda = json!({"StartAt": "L", "States": {
        "L": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true}}});
    let warnings = compile_value(&lambda).expect("valid").warnings;
    assert_eq!(warnings.iter().map(|w| w.code).collect::<Vec<_>>(), ["no-saga-role"]);
}

#[test]
fn nested_machines_are_checked_and_names_are_unique_everywhere() {
    let codes = codes_of(json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "X", "Branches": [
            {"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "P"}}}]},
        "X": {"Type": "Succeed"}}}));
    assert_eq!(codes, ["unknown-state", "duplicate-state-name"]);
}

#[test]
fn the_model_is_filled_completely() {
    let source = json!({
        "Comment": "all of it", "TimeoutSeconds": 300, "Version": "1.0",
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task", "Comment": "reserve stock",
                "Resource": "grpc://inventory/inventory.v1.Inventory/Reserve",
                "InputPath": "$.order", "OutputPath": null,
                "Parameters": {"sku.$": "$.sku", "n": 1},
                "ResultSelector": {"id.$": "$.reservationId"},
                "ResultPath": "$.reservation",
                "TimeoutSecondsPath": "$.timeout", "HeartbeatSeconds": 10,
                "Retry": [{"ErrorEquals": ["Grpc.Unavailable"], "IntervalSeconds": 2,
                           "MaxAttempts": 4, "BackoffRate": 1.5, "MaxDelaySeconds": 30,
                           "JitterStrategy": "FULL"}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
                "Compensate": {"Resource": "grpc://inventory/inventory.v1.Inventory/Release",
                               "Parameters": {"id.$": "$.Result.id"},
                               "Retry": [{"ErrorEquals": ["States.ALL"]}], "TimeoutSeconds": 20},
                "Assign": {"reserved": true},
                "Next": "Route"
            },
            "Route": {"Type": "Choice", "Choices": [
                {"Not": {"Variable": "$.n", "NumericGreaterThanPath": "$.max"}, "Next": "Wait"},
                {"And": [{"Variable": "$.a", "IsPresent": true},
                         {"Or": [{"Variable": "$.t", "TimestampLessThan": "2016-03-14T01:59:00Z"}]}],
                 "Next": "Fan", "Assign": {"routed": "and"}}],
                "Default": "Failed"},
            "Wait": {"Type": "Wait", "Timestamp": "2016-03-14T01:59:00Z", "Next": "Fan"},
            "Fan": {"Type": "Parallel", "Next": "Each", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Result": [1], "End": true}}}]},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrencyPath": "$.mc",
                     "ToleratedFailureCount": 2, "ToleratedFailurePercentagePath": "$.p",
                     "Label": "each", "ItemSelector": {"item.$": "$$.Map.Item.Value"},
                     "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                                       "StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                     "End": true},
            "Failed": {"Type": "Fail", "Error": "Order.Failed", "CausePath": "$.error.Cause"}
        }
    });
    let compiled = compile_value(&source).expect("valid");
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let definition = compiled.definition;
    assert_eq!(definition.comment.as_deref(), Some("all of it"));
    assert_eq!(definition.timeout_seconds, Some(300));
    let machine = &definition.machine;
    assert_eq!(machine.start_at, "Reserve");
    let names: Vec<&str> = machine.states.keys().map(String::as_str).collect();
    assert_eq!(names, ["Reserve", "Route", "Wait", "Fan", "Each", "Failed"]);

    let reserve = machine.state("Reserve").expect("Reserve");
    assert_eq!(reserve.comment.as_deref(), Some("reserve stock"));
    assert!(matches!(&reserve.input_path, PathField::Path(p) if p.as_str() == "$.order"));
    assert!(matches!(reserve.output_path, PathField::Null));
    assert_eq!(reserve.transition, Some(Transition::Next("Route".into())));
    assert!(reserve.assign.is_some());
    let StateKind::Task(task) = &reserve.kind else { panic!("Task") };
    assert_eq!(task.resource, "grpc://inventory/inventory.v1.Inventory/Reserve");
    assert!(task.parameters.is_some());
    assert!(task.resilience.result_selector.is_some());
    assert!(matches!(&task.resilience.result_path, PathField::Path(p) if p.as_str() == "$.reservation"));
    assert!(matches!(&task.timeout, Some(Timeout::Path(p)) if p.as_str() == "$.timeout"));
    assert!(matches!(task.heartbeat, Some(Timeout::Seconds(10))));
    let retrier = &task.resilience.retry[0];
    assert_eq!(retrier.error_equals, ["Grpc.Unavailable"]);
    assert_eq!((retrier.interval_seconds, retrier.max_attempts), (2, 4));
    assert_eq!(retrier.backoff_rate, 1.5);
    assert_eq!(retrier.max_delay_seconds, Some(30));
    assert_eq!(retrier.jitter, JitterStrategy::Full);
    let catcher = &task.resilience.catch[0];
    assert_eq!((catcher.error_equals.as_slice(), catcher.next.as_str()), (&["States.ALL".to_string()][..], "Failed"));
    let compensation = task.compensate.as_ref().expect("compensation");
    assert_eq!(compensation.resource, "grpc://inventory/inventory.v1.Inventory/Release");
    assert!(compensation.parameters.is_some());
    assert_eq!(compensation.retry[0].max_attempts, 3, "defaults apply");
    assert_eq!(compensation.retry[0].backoff_rate, 2.0);
    assert_eq!(compensation.timeout_seconds, Some(20));
    assert_eq!(task.saga_role, None);
    assert_eq!(task.effective_role(), Some(SagaRole::Compensatable));

    let StateKind::Choice(choice) = &machine.states["Route"].kind else { panic!("Choice") };
    assert_eq!(choice.default.as_deref(), Some("Failed"));
    assert_eq!(choice.choices.len(), 2);
    let ChoiceRule::Not(inner) = &choice.choices[0].rule else { panic!("Not") };
    assert!(matches!(
        &**inner,
        ChoiceRule::Compare { operator: Operator::NumericGreaterThan, operand: Operand::Path(_), .. }
    ));
    assert!(choice.choices[1].assign.is_some());
    assert!(matches!(&choice.choices[1].rule, ChoiceRule::And(rules) if rules.len() == 2));
    assert!(machine.states["Route"].transition.is_none());

    assert!(
        matches!(&machine.states["Wait"].kind, StateKind::Wait(WaitState::Timestamp(t)) if t == "2016-03-14T01:59:00Z")
    );

    let StateKind::Parallel(parallel) = &machine.states["Fan"].kind else { panic!("Parallel") };
    assert_eq!(parallel.branches[0].start_at, "B1");
    let StateKind::Pass(pass) = &parallel.branches[0].states["B1"].kind else { panic!("Pass") };
    assert_eq!(pass.result, Some(json!([1])));

    let StateKind::Map(map) = &machine.states["Each"].kind else { panic!("Map") };
    assert!(map.distributed);
    assert_eq!(map.label.as_deref(), Some("each"));
    assert!(map.item_selector.is_some());
    assert!(matches!(&map.items_path, PathField::Path(p) if p.as_str() == "$.items"));
    assert!(matches!(&map.max_concurrency, MaxConcurrency::Path(_)));
    assert!(matches!(map.tolerated_failure.count, Some(crate::model::NumberOrPath::Number(n)) if n == 2.0));
    assert!(matches!(map.tolerated_failure.percentage, Some(crate::model::NumberOrPath::Path(_))));
    assert_eq!(map.processor.start_at, "I");
    assert_eq!(machine.states["Each"].transition, Some(Transition::End));

    let StateKind::Fail(fail) = &machine.states["Failed"].kind else { panic!("Fail") };
    assert!(matches!(&fail.error, Some(FailField::Literal(e)) if e == "Order.Failed"));
    assert!(matches!(&fail.cause, Some(FailField::Dynamic(_))));
}

#[test]
fn a_500_state_definition_compiles_quickly() {
    let mut states = serde_json::Map::new();
    for i in 0..500 {
        let next = if i == 499 { json!({"End": true}) } else { json!({"Next": format!("S{}", i + 1)}) };
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "Parameters": {"a.$": "$.a", "i": i}, "ResultPath": "$.r",
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "S499"}]});
        for (k, v) in next.as_object().expect("object") {
            state[k] = v.clone();
        }
        states.insert(format!("S{i}"), state);
    }
    let definition = json!({"StartAt": "S0", "States": states});
    let text = serde_json::to_string_pretty(&definition).expect("text");
    // Correctness only: timing is not asserted in tests (debug builds, shared machines).
    let compiled = compile(&text).expect("valid");
    assert_eq!(compiled.definition.machine.states.len(), 500);
}
