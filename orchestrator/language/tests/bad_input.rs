//! Bad input never hurts: definitions and execution data that are broken on purpose (deeply
//! nested JSON, huge strings, invalid UTF-8, a wrong type at every field, numbers out of
//! range) end in a clear, positioned error that names any limit involved, never in a panic, a
//! hang or a stack overflow. The short, in-CI form of the fuzz targets in `fuzz/`; every crash
//! a fuzzer or a reader found is kept here as a regression.

use proptest::prelude::*;
use sagaflow_language::driver::{self, Options, TaskOutcome};
use sagaflow_language::interpreter::{Call, Execution, HistoryEvent, Status};
use sagaflow_language::limits::{DEFINITION_LIMIT_BYTES, NESTING_LIMIT};
use sagaflow_language::{Diagnostics, compile, compile_bytes, compile_value};
use serde_json::{Value, json};

const ORDER: &str = include_str!("../../../saga-definitions/order.asl.json");

/// A definition that uses every state type and nearly every field.
fn everything() -> Value {
    json!({
        "Comment": "all of it", "TimeoutSeconds": 300, "Version": "1.0",
        "StartAt": "Reserve",
        "States": {
            "Reserve": {
                "Type": "Task", "Comment": "reserve stock",
                "Resource": "grpc://inventory/inventory.v1.Inventory/Reserve",
                "InputPath": "$.order", "OutputPath": null,
                "Parameters": {"sku.$": "$.sku", "n": 1, "f.$": "States.Format('{}', $.sku)"},
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
            "Wait": {"Type": "Wait", "Seconds": 5, "Next": "Fan"},
            "Fan": {"Type": "Parallel", "Next": "Each", "Branches": [
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Result": [1], "End": true}}}]},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                     "ToleratedFailureCount": 2, "ToleratedFailurePercentagePath": "$.p",
                     "Label": "each", "ItemSelector": {"item.$": "$$.Map.Item.Value"},
                     "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"},
                                       "StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                     "End": true},
            "Failed": {"Type": "Fail", "Error": "Order.Failed", "CausePath": "$.error.Cause"}
        }
    })
}

/// The refusal of `source`, checked to be clear: at least one error, each positioned
/// (1-based line and column) and saying something.
fn refused(source: &str) -> Diagnostics {
    let diagnostics = match compile(source) {
        Ok(_) => panic!("accepted: {}", &source[..source.len().min(300)]),
        Err(diagnostics) => diagnostics,
    };
    assert_clear(&diagnostics);
    diagnostics
}

fn assert_clear(diagnostics: &Diagnostics) {
    assert!(diagnostics.errors().next().is_some(), "refused without an error");
    for d in diagnostics.errors() {
        assert!(d.line >= 1 && d.column >= 1, "unpositioned: {d:?}");
        assert!(!d.message.is_empty(), "silent: {d:?}");
    }
}

fn codes(diagnostics: &Diagnostics) -> Vec<&'static str> {
    diagnostics.errors().map(|d| d.code).collect()
}

/// `value` with the member at `pointer` replaced.
fn replaced(value: &Value, pointer: &str, with: Value) -> Value {
    let mut copy = value.clone();
    *copy.pointer_mut(pointer).expect("the pointer exists") = with;
    copy
}

/// Every pointer to a member or an element of `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let next = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(next.clone());
                pointers(child, next, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let next = format!("{at}/{i}");
                out.push(next.clone());
                pointers(child, next, out);
            }
        }
        _ => {}
    }
}

/// The start of a message that may repeat a huge input.
fn head(text: &str) -> String {
    text.chars().take(300).collect()
}

fn nested(levels: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(levels), "]".repeat(levels))
}

// ------------------------------------------------------------------------ deep nesting

#[test]
fn nesting_past_the_limit_is_refused_at_the_bracket_that_passes_it() {
    // The definition object is level 1, Parameters level 4; the array inside adds the rest.
    let inside = |levels: usize| {
        format!(
            "{{\"StartAt\": \"A\", \"States\": {{\"A\": {{\"Type\": \"Pass\", \"End\": true,\n\"Parameters\": {{\"x\": {}}}}}}}}}",
            nested(levels, "1")
        )
    };
    compile(&inside(NESTING_LIMIT - 4)).expect("64 levels in all is within the limit");
    let diagnostics = refused(&inside(NESTING_LIMIT - 3));
    assert_eq!(codes(&diagnostics), ["json-too-deep"]);
    let d = diagnostics.errors().next().expect("one");
    // Line 2 is `"Parameters": {"x": [[[...`: the 61st '[' is level 65.
    assert_eq!((d.line, d.column), (2, "\"Parameters\": {\"x\": ".len() + NESTING_LIMIT - 3));
    assert!(d.message.contains("more than 64 levels deep") && d.message.contains("64 levels is the limit"));
}

#[test]
fn very_deep_nesting_is_refused_without_exhausting_the_stack() {
    for levels in [129, 10_000, 200_000] {
        for open in ["[", "{\"a\":"] {
            let text = open.repeat(levels);
            assert_eq!(codes(&refused(&text)), ["json-too-deep"], "{levels} x {open}");
        }
    }
    // Brackets inside strings are text, not nesting.
    let source = format!(
        "{{\"StartAt\": \"A\", \"Comment\": \"{}\", \"States\": {{\"A\": {{\"Type\": \"Succeed\"}}}}}}",
        "[{".repeat(50_000)
    );
    compile(&source).expect("brackets in a string do not nest");
}

/// Regression: the JSONPath filter parser is recursive; a path with thousands of nested
/// parentheses used to overflow the stack while the definition was compiled.
#[test]
fn deeply_nested_filters_are_refused() {
    for depth in [65, 100_000] {
        let path = format!("$.items[?{}@.a{}]", "(".repeat(depth), ")".repeat(depth));
        let source =
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": path}, "End": true}}});
        let diagnostics = compile_value(&source).expect_err("too deep");
        assert_clear(&diagnostics);
        let d = diagnostics.errors().next().expect("one");
        assert_eq!(d.pointer, "/States/A/Parameters/x.$");
        assert!(d.message.contains("more than 64 levels deep (64 is the limit)"), "{}", head(&d.message));
    }
}

/// Regression: intrinsic calls nested thousands deep (`States.Array(States.Array(...))`)
/// overflowed the stack of the recursive call parser.
#[test]
fn deeply_nested_intrinsics_are_refused() {
    let call = |depth: usize| format!("{}$.a{}", "States.Array(".repeat(depth), ")".repeat(depth));
    let source = |depth: usize| json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": call(depth)}, "End": true}}});
    compile_value(&source(64)).expect("64 nested calls are within the limit");
    for depth in [65, 60_000] {
        let diagnostics = compile_value(&source(depth)).expect_err("too deep");
        assert_clear(&diagnostics);
        let d = diagnostics.errors().next().expect("one");
        assert!(d.message.contains("nest more than 64 calls deep (64 is the limit)"), "{}", head(&d.message));
    }
}

/// Regression: a ResultPath with a hundred thousand steps built a value as deep, which then
/// overflowed the stack when it was measured, stored or dropped.
#[test]
fn reference_paths_with_too_many_steps_are_refused() {
    let path = |steps: usize| format!("${}", ".a".repeat(steps));
    let source = |steps: usize| json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "ResultPath": path(steps), "End": true}}});
    compile_value(&source(64)).expect("64 steps are within the limit");
    for steps in [65, 100_000] {
        let diagnostics = compile_value(&source(steps)).expect_err("too many steps");
        assert_clear(&diagnostics);
        let d = diagnostics.errors().next().expect("one");
        assert_eq!(d.pointer, "/States/A/ResultPath");
        assert!(d.message.contains(&format!("has {steps} steps, more than the limit of 64")));
    }
}

// ------------------------------------------------------------------------ huge strings, sizes

#[test]
fn a_definition_over_one_mebibyte_is_refused_with_its_size() {
    let source = format!(
        "{{\"StartAt\": \"A\", \"Comment\": \"{}\", \"States\": {{\"A\": {{\"Type\": \"Succeed\"}}}}}}",
        "x".repeat(DEFINITION_LIMIT_BYTES)
    );
    let diagnostics = refused(&source);
    assert_eq!(codes(&diagnostics), ["definition-too-large"]);
    let message = &diagnostics.errors().next().expect("one").message;
    assert_eq!(
        message,
        &format!(
            "the definition is {} bytes, over the limit of 1048576 bytes (1 MiB); split it into smaller state machines",
            source.len()
        )
    );
    let diagnostics = compile_bytes(source.as_bytes()).expect_err("too large");
    assert_eq!(codes(&diagnostics), ["definition-too-large"]);
}

#[test]
fn huge_strings_under_the_size_limit_get_ordinary_errors() {
    let huge = "S".repeat(DEFINITION_LIMIT_BYTES / 16);
    // A state name far past 80 characters, used as StartAt and as a key.
    let mut states = serde_json::Map::new();
    states.insert(huge.clone(), json!({"Type": "Succeed"}));
    let source = json!({"StartAt": huge, "States": states}).to_string();
    let diagnostics = refused(&source);
    assert!(diagnostics.errors().any(|d| d.message.contains("1 to 80 characters")), "{:?}", codes(&diagnostics));
    // Huge values in every string field of a task: each answered, the long ones within reason.
    let task = json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "grpc://p/a.B/C", "End": true,
        "SagaRole": "readonly", "Comment": "c", "InputPath": "$", "Catch": [{"ErrorEquals": ["E"], "Next": "A"}]}}});
    for (pointer, value) in [
        ("/States/A/Resource", format!("grpc://{huge}")),
        ("/States/A/Comment", huge.clone()),
        ("/States/A/InputPath", format!("$.{huge}")),
        ("/States/A/SagaRole", huge.clone()),
        ("/States/A/Catch/0/ErrorEquals/0", huge.clone()),
        ("/States/A/Catch/0/Next", huge.clone()),
    ] {
        if let Err(diagnostics) = compile_value(&replaced(&task, pointer, json!(value))) {
            assert_clear(&diagnostics);
            assert!(
                diagnostics.errors().any(|d| d.pointer.starts_with(pointer)),
                "{pointer}: {:?}",
                codes(&diagnostics)
            );
        }
    }
}

// ------------------------------------------------------------------------ invalid UTF-8

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let mut bytes = b"{\n  \"StartAt\": \"A\",\n  \"Comment\": \"caf\xC3\xA9 ".to_vec();
    bytes.extend_from_slice(b"\xFF\xFE\",\n  \"States\": {}\n}");
    let diagnostics = compile_bytes(&bytes).expect_err("not UTF-8");
    assert_eq!(codes(&diagnostics), ["invalid-utf8"]);
    let d = diagnostics.errors().next().expect("one");
    // Line 3 is `  "Comment": "café ` + 0xFF: the bad byte is the 20th character.
    assert_eq!((d.line, d.column), (3, 20));
    assert!(d.message.contains("byte 0xFF") && d.message.contains("save the file as UTF-8"), "{}", d.message);
    // A truncated multi-byte character at the very end.
    let diagnostics = compile_bytes(b"{\"StartAt\": \"\xE2\x82").expect_err("truncated");
    assert_eq!(codes(&diagnostics), ["invalid-utf8"]);
    // Valid UTF-8 bytes go through the ordinary compiler.
    compile_bytes(ORDER.as_bytes()).expect("order.asl.json is valid");
}

// ------------------------------------------------------------------------ wrong types

/// Every member and element of a valid definition, replaced by a value of each JSON type
/// (and by numbers out of range): the compiler answers every one, positioned, and when it
/// refuses, an error points at the replaced member, one of its ancestors or its content.
#[test]
fn a_wrong_type_at_every_field_is_answered_at_that_field() {
    let wrong = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(18_446_744_073_709_551_615u64),
        json!("x"),
        json!([]),
        json!({}),
    ];
    let mut checked = 0;
    // `everything()` holds every state type and nearly every field; the order saga's own
    // fields are covered by the generated cases below.
    let definition = everything();
    compile_value(&definition).expect("the starting point is valid");
    let mut all = Vec::new();
    pointers(&definition, String::new(), &mut all);
    for pointer in &all {
        for value in &wrong {
            let source = replaced(&definition, pointer, value.clone());
            checked += 1;
            let Err(diagnostics) = compile_value(&source) else { continue };
            assert_clear(&diagnostics);
            let related = diagnostics.errors().any(|d| {
                d.pointer.is_empty() || pointer.starts_with(&d.pointer) || d.pointer.starts_with(pointer.as_str())
            });
            // A state renamed away or a Next pointing elsewhere is reported where the name
            // is used (unreachable or unknown state), not where it was changed.
            let graph = diagnostics.errors().any(|d| matches!(d.code, "unknown-state" | "unreachable-state"));
            assert!(
                related || graph,
                "{pointer} = {value}: {:?}",
                diagnostics.errors().map(|d| (&d.pointer, &d.message)).collect::<Vec<_>>()
            );
        }
    }
    assert!(checked > 900, "only {checked} cases");
}

// ------------------------------------------------------------------------ numbers out of range

/// Regression: `"Seconds": 9223372036854775807` (or any whole number past i64 / 1000) was
/// accepted, and the interpreter then overflowed computing the due time (a panic in debug
/// builds, a timer in the past in release). Durations and counts now stop at 99,999,999.
#[test]
fn durations_and_counts_past_99999999_are_refused() {
    let cases = [
        ("/States/Wait/Seconds", json!(9_223_372_036_854_775_807u64)),
        ("/States/Wait/Seconds", json!(100_000_000)),
        ("/TimeoutSeconds", json!(18_446_744_073_709_551_615u64)),
        ("/States/Reserve/HeartbeatSeconds", json!(9_223_372_036_854_775u64)),
        ("/States/Reserve/Retry/0/IntervalSeconds", json!(1e18)),
        ("/States/Reserve/Retry/0/MaxAttempts", json!(4_294_967_296u64)),
        ("/States/Reserve/Retry/0/MaxDelaySeconds", json!(-1)),
        ("/States/Reserve/Compensate/TimeoutSeconds", json!(100_000_000)),
        ("/States/Each/MaxConcurrency", json!(1u64 << 63)),
    ];
    for (pointer, value) in cases {
        let source = replaced(&everything(), pointer, value.clone());
        let diagnostics = compile_value(&source).expect_err("out of range");
        assert_clear(&diagnostics);
        let d = diagnostics.errors().next().expect("one");
        assert_eq!(d.pointer, pointer, "{value}");
        assert!(d.message.contains("to 99999999; found"), "{pointer} = {value}: {}", d.message);
    }
    let source = replaced(&everything(), "/States/Wait/Seconds", json!(99_999_999));
    compile_value(&source).expect("99,999,999 is the largest allowed");
}

#[test]
fn numbers_json_cannot_hold_are_positioned_syntax_errors() {
    let source = "{\"StartAt\": \"A\", \"TimeoutSeconds\": 1e400, \"States\": {}}";
    let diagnostics = refused(source);
    assert_eq!(codes(&diagnostics), ["json-syntax"]);
    let d = diagnostics.errors().next().expect("one");
    assert!(d.message.contains("number out of range"), "{}", d.message);
    assert_eq!(d.line, 1);
}

/// A wait far in the future, read from data at run time, saturates instead of overflowing.
#[test]
fn huge_seconds_from_data_do_not_overflow() {
    let definition = compile_value(&json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "T"},
        "T": {"Type": "Task", "Resource": "grpc://p/a.B/C", "TimeoutSecondsPath": "$.s", "SagaRole": "readonly",
              "End": true}}}))
    .expect("valid")
    .definition;
    for seconds in [json!(i64::MAX), json!(u64::MAX), json!(1e300), json!(-1)] {
        let mut handler = |call: &Call, _: i64| TaskOutcome::Succeed(call.input.clone());
        let end = driver::run(&definition, json!({"s": seconds}), &mut handler, &Options::default()).expect("ends");
        assert!(matches!(end.status, Status::Succeeded | Status::Failed), "{seconds}: {:?}", end.status);
    }
}

// ------------------------------------------------------------------------ data at run time

fn run(definition: Value, input: Value) -> driver::Outcome {
    let definition = compile_value(&definition).expect("valid").definition;
    let mut handler = |call: &Call, _: i64| TaskOutcome::Succeed(call.input.clone());
    let end = driver::run(&definition, input, &mut handler, &Options::default()).expect("ends");
    // What the engine stores must read back, or the execution could never be loaded again.
    let snapshot = serde_json::to_string(&end.execution).expect("serializes");
    serde_json::from_str::<Execution>(&snapshot).expect("the snapshot reads back");
    for event in &end.history {
        let text = serde_json::to_string(event).expect("serializes");
        serde_json::from_str::<HistoryEvent>(&text).expect("the event reads back");
    }
    end
}

fn deep_value(levels: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!([value]);
    }
    value
}

#[test]
fn an_input_past_the_nesting_limit_fails_the_execution_naming_the_limit() {
    let definition = json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}});
    run(definition.clone(), deep_value(NESTING_LIMIT)).output.expect("64 levels are fine");
    let end = run(definition, deep_value(NESTING_LIMIT + 1));
    assert_eq!(end.status, Status::Failed);
    assert_eq!(end.error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(
        end.cause.as_deref(),
        Some("The execution input nests arrays and objects more than 64 levels deep, over the limit of 64 levels.")
    );
}

/// Regression: a loop whose Pass state wraps its input once more on every visit nested the
/// data without bound (6,000 levels within the history limit), until storing, reading or
/// dropping it overflowed a stack; serde_json also refuses to read back past 128 levels, so
/// such an execution could never be loaded again.
#[test]
fn data_that_nests_deeper_on_every_loop_stops_at_the_limit() {
    let definition = json!({"StartAt": "Wrap", "States": {
        "Wrap": {"Type": "Pass", "Parameters": {"inner.$": "$"}, "Next": "Again"},
        "Again": {"Type": "Choice", "Choices": [{"Variable": "$.inner", "IsPresent": true, "Next": "Wrap"}],
                  "Default": "Wrap"}}});
    let end = run(definition, json!({}));
    assert_eq!(end.status, Status::Failed);
    assert_eq!(end.error.as_deref(), Some("States.DataLimitExceeded"));
    let cause = end.cause.expect("a cause");
    assert!(cause.contains("more than 64 levels deep, over the limit of 64 levels"), "{cause}");
    assert!(end.history.len() < 1000, "stopped early: {} events", end.history.len());
}

/// The same through variables, which no state output check sees.
#[test]
fn variables_that_nest_deeper_on_every_loop_stop_at_the_limit() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"x": []}, "Next": "Grow"},
        "Grow": {"Type": "Pass", "Assign": {"x.$": "States.Array($x)"}, "Next": "Grow"}}});
    let end = run(definition, json!({}));
    assert_eq!(end.error.as_deref(), Some("States.DataLimitExceeded"));
    assert!(end.cause.expect("a cause").contains("more than 64 levels deep"));
}

/// Regression: data that doubles on every visit (or, within one expression, at every level of
/// nested intrinsic calls) grew without bound until memory ran out. Evaluation now stops once
/// it has built far more than a payload may hold.
#[test]
fn data_that_doubles_stops_at_the_payload_limit() {
    let doubling_loop = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"x": "0123456789"}, "Next": "Grow"},
        "Grow": {"Type": "Pass", "Assign": {"x.$": "States.Array($x, $x)"}, "Next": "Grow"}}});
    let copies = |n: usize| format!("States.Array({})", vec!["$"; n].join(", "));
    let mut nested = "$".to_owned();
    for _ in 0..40 {
        nested = format!("States.Array({nested}, {nested})");
        if nested.len() > 4096 {
            break;
        }
    }
    let one_state = |expr: String| json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x.$": expr}, "End": true}}});
    let big_input = json!({"text": "y".repeat(200_000)});
    for (definition, input) in
        [(doubling_loop, json!({})), (one_state(copies(2_000)), big_input.clone()), (one_state(nested), big_input)]
    {
        let end = run(definition, input);
        assert_eq!(end.error.as_deref(), Some("States.DataLimitExceeded"));
        let cause = end.cause.expect("a cause");
        assert!(cause.contains("larger than the payload limit of 262144 bytes (256 KiB)"), "{}", head(&cause));
    }
}

/// A task result past the nesting limit fails the state like one past the size limit.
#[test]
fn a_task_result_past_the_nesting_limit_is_refused() {
    let definition = compile_value(&json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "grpc://p/a.B/C", "SagaRole": "readonly", "End": true}}}))
    .expect("valid")
    .definition;
    let mut handler = |_: &Call, _: i64| TaskOutcome::Succeed(deep_value(NESTING_LIMIT + 1));
    let end = driver::run(&definition, json!({}), &mut handler, &Options::default()).expect("ends");
    assert_eq!(end.error.as_deref(), Some("States.DataLimitExceeded"));
    assert_eq!(
        end.cause.as_deref(),
        Some(
            "The state/task 'T' returned a result that nests arrays and objects more than 64 levels deep, over the limit of 64 levels."
        )
    );
}

/// Regression, found by the `interpret` fuzz target (the conformance case
/// `map_state_break_condition` with `MaxConcurrency` 2 instead of 1): a Map iteration that
/// failed at once aborted its siblings, whose starts were still queued in the same step; the
/// queued start then looked up the dropped thread and panicked (`no entry found for key`).
/// Any Map whose MaxConcurrency is not 1, with an iteration that fails at once; a Parallel
/// whose first branch fails at once is checked alongside.
#[test]
fn a_child_failing_beside_queued_siblings_fails_the_state_cleanly() {
    let map = |concurrency: u64| {
        json!({"StartAt": "Start", "States": {
            "Start": {"Type": "Pass", "Result": [1, "Hello", {}, 3.3, 3, 4, 5], "ResultPath": "$.arr", "Next": "Map"},
            "Map": {"Type": "Map", "InputPath": "$.arr", "ResultPath": null, "MaxConcurrency": concurrency,
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Equals4", "States": {
                        "Equals4": {"Type": "Choice", "Default": "Pass", "Choices": [
                            {"And": [{"Variable": "$", "IsNumeric": true}, {"Variable": "$", "NumericEquals": 4}],
                             "Next": "Break"}]},
                        "Break": {"Type": "Fail", "Error": "SomeFailure", "Cause": "break"},
                        "Pass": {"Type": "Pass", "End": true}}},
                    "End": true}}})
    };
    for concurrency in [0, 1, 2, 3, 7] {
        let end = run(map(concurrency), json!({}));
        assert_eq!(end.status, Status::Failed, "MaxConcurrency {concurrency}");
        assert_eq!(end.error.as_deref(), Some("SomeFailure"), "MaxConcurrency {concurrency}");
    }
    let parallel = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}},
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]}}});
    let end = run(parallel, json!({}));
    assert_eq!((end.status, end.error.as_deref()), (Status::Failed, Some("Boom")));
}

// ------------------------------------------------------------------------ generated

/// Arbitrary JSON, up to `depth` levels, with numbers and strings of every kind.
fn any_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["$", "$.a", "$$.Execution.Id", "States.Array($)", "$[?(@.a)]", "$.a[0:2]"])
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any JSON value at any member of a valid definition is answered clearly.
    #[test]
    fn any_value_at_any_field_is_answered(pick in any::<prop::sample::Index>(), value in any_json(4)) {
        let definition = everything();
        let mut all = Vec::new();
        pointers(&definition, String::new(), &mut all);
        let pointer = pick.get(&all);
        if let Err(diagnostics) = compile_value(&replaced(&definition, pointer, value)) {
            assert_clear(&diagnostics);
        }
    }

    /// Any bytes: valid UTF-8 or not, JSON or not.
    #[test]
    fn any_bytes_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(diagnostics) = compile_bytes(&bytes) {
            assert_clear(&diagnostics);
        }
    }

    /// A valid definition cut or spliced anywhere is answered with a positioned error.
    #[test]
    fn a_definition_cut_anywhere_is_answered(cut in 0usize..4096, insert in prop::sample::select(vec!["", "[", "{", "\"", "\\", "\u{0}", "é", "]]]]", "1e999"])) {
        let cut = cut.min(ORDER.len());
        let cut = (0..=cut).rev().find(|&i| ORDER.is_char_boundary(i)).unwrap_or(0);
        let source = format!("{}{insert}", &ORDER[..cut]);
        if let Err(diagnostics) = compile(&source) {
            assert_clear(&diagnostics);
        }
    }

    /// Any input and any mix of task outcomes on the order saga: it ends, and what would be
    /// stored reads back.
    #[test]
    fn the_order_saga_survives_any_input(input in any_json(5), answers in prop::collection::vec(0u8..4, 1..8)) {
        let definition = compile(ORDER).expect("valid").definition;
        let mut n = 0usize;
        let mut handler = |call: &Call, _: i64| {
            let answer = answers[n % answers.len()];
            n += 1;
            match answer {
                0 => TaskOutcome::Succeed(call.input.clone()),
                1 => TaskOutcome::Succeed(json!({"reservationId": "r", "paymentId": "p", "decision": "APPROVE"})),
                2 => TaskOutcome::Fail { error: "Payment.CardDeclined".into(), cause: None, outcome_unknown: false },
                _ => TaskOutcome::Fail { error: "States.Timeout".into(), cause: None, outcome_unknown: true },
            }
        };
        let end = driver::run(&definition, input, &mut handler, &Options::default()).expect("ends");
        let snapshot = serde_json::to_string(&end.execution).expect("serializes");
        prop_assert!(serde_json::from_str::<Execution>(&snapshot).is_ok());
    }
}
