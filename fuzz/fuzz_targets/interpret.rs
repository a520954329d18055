//! The interpreter on fuzzed definitions, inputs and task outcomes, run to the end in memory
//! (virtual clock, stubbed participants). Whatever happens, it must not panic, and what the
//! engine would store (the execution snapshot, every history event) must read back: a stored
//! execution that cannot be loaded is stuck for good.
//!
//! Input: `definition \0 input \0 outcomes`; each outcome byte answers one call.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaflow_language::compile_bytes;
use sagaflow_language::driver::{self, Options, TaskOutcome};
use sagaflow_language::interpreter::{Call, Execution, HistoryEvent};
use sagaflow_language::limits;
use serde_json::{Value, json};

fn outcome(byte: u8, call: &Call) -> TaskOutcome {
    let fail = |error: &str, unknown: bool| TaskOutcome::Fail {
        error: error.to_owned(),
        cause: Some(format!("{error} from the fuzzer")),
        outcome_unknown: unknown,
    };
    match byte {
        0..=127 => TaskOutcome::Succeed(call.input.clone()),
        128..=159 => TaskOutcome::Succeed(json!({"n": byte, "attempt": call.attempt})),
        160..=191 => fail("Payment.CardDeclined", false),
        192..=223 => fail("States.Timeout", true),
        224..=239 => fail("Grpc.Unavailable", false),
        240..=247 => TaskOutcome::Succeed(Value::Null),
        248..=255 => TaskOutcome::Succeed(json!([[[[[[[[call.input.clone()]]]]]]]])),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let source = parts.next().unwrap_or_default();
    let input = parts.next().unwrap_or(b"{}");
    let outcomes = parts.next().unwrap_or_default();
    let Ok(compiled) = compile_bytes(source) else { return };
    // Inputs the API would have accepted; the interpreter checks its own limits as well.
    let input = std::str::from_utf8(input)
        .ok()
        .filter(|text| limits::check_json_depth(text).is_ok())
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or_else(|| json!({}));
    let mut calls = 0usize;
    let mut handler = |call: &Call, _now: i64| {
        let byte = if outcomes.is_empty() { 0 } else { outcomes[calls % outcomes.len()] };
        calls += 1;
        outcome(byte, call)
    };
    let options = Options { max_events: 3_000, ..Options::default() };
    let Ok(end) = driver::run(&compiled.definition, input, &mut handler, &options) else { return };

    let snapshot = serde_json::to_string(&end.execution).expect("a snapshot serializes");
    serde_json::from_str::<Execution>(&snapshot).expect("a stored snapshot reads back");
    for event in &end.history {
        let text = serde_json::to_string(event).expect("an event serializes");
        serde_json::from_str::<HistoryEvent>(&text).expect("a stored history event reads back");
    }
});
