//! The API's request checks on arbitrary requests: protobuf bytes decoded as the server
//! decodes them, then the same checks the handlers run before acting (StartOrder and its saga
//! input, StartExecution, RegisterDefinition, ids, reasons, page tokens, `grpc-timeout`).
//! Every request must be accepted within the limits or refused with field violations that
//! stay small, never a panic.
//!
//! Input: one byte naming the request (see the match), then its bytes.

#![no_main]

// The checks themselves, compiled from the server's own file: it depends on nothing in the
// server crate, so the fuzzer does not build the server (sqlx, tonic's transport, ...).
#[path = "../../orchestrator/src/api/input.rs"]
#[allow(dead_code)]
mod input;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sagaflow_language::limits::{self, PAYLOAD_LIMIT_BYTES};
use sagaflow_proto::sagaflow::v1 as pb;

/// A refusal names fields and says what is wrong without repeating a huge value.
fn check_refusal(e: &input::Invalid) {
    assert!(!e.violations.is_empty(), "a refusal names the fields: {e:?}");
    for (field, description) in &e.violations {
        assert!(field.len() <= 64, "field name too long: {field:?}");
        assert!(!description.is_empty() && description.len() <= 1024, "description: {description:?}");
    }
}

/// An accepted payload is within every limit the interpreter applies again.
fn check_payload(value: &serde_json::Value) {
    assert!(!limits::too_deep(value), "an accepted payload is too deep");
    let text = serde_json::to_string(value).expect("serializes");
    assert!(text.len() <= PAYLOAD_LIMIT_BYTES, "an accepted payload is {} bytes", text.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let text = std::str::from_utf8(rest).ok();
    match kind {
        b'O' => {
            let Ok(order) = pb::StartOrderRequest::decode(rest) else { return };
            match input::order(&order) {
                Ok(total) => {
                    assert!(total > 0);
                    check_payload(&input::saga_input(&order, total));
                }
                Err(e) => check_refusal(&e),
            }
        }
        b'S' => {
            let Ok(request) = pb::StartExecutionRequest::decode(rest) else { return };
            match input::start_execution(&request) {
                Ok(start) => check_payload(&start.input),
                Err(e) => check_refusal(&e),
            }
        }
        b'R' => {
            let Ok(request) = pb::RegisterDefinitionRequest::decode(rest) else { return };
            match input::definition_name("name", &request.name) {
                Ok(()) => {
                    let _ = sagaflow_language::compile(&request.content);
                }
                Err(e) => check_refusal(&e),
            }
        }
        b'J' => match text.map(|t| input::payload("input_json", t)) {
            Some(Ok(value)) => check_payload(&value),
            Some(Err(e)) => check_refusal(&e),
            None => {}
        },
        b'I' => {
            if let Some(Err(e)) = text.map(|t| input::execution_ref("execution_id", t)) {
                check_refusal(&e);
            }
        }
        b'N' => {
            if let Some(t) = text {
                for check in [input::definition_name, input::state_name, input::reason] {
                    if let Err(e) = check("field", t) {
                        check_refusal(&e);
                    }
                }
                assert!(input::shown(t).len() <= 1024, "shown() repeats too much");
            }
        }
        b'T' => {
            if let Some(Some(deadline)) = text.map(input::grpc_timeout) {
                // Whatever the caller asks, the deadline must fit an Instant from now.
                assert!(std::time::Instant::now().checked_add(deadline).is_some());
            }
        }
        b'P' => {
            if let Some(Err(e)) = text.map(input::page_token) {
                check_refusal(&e);
            }
        }
        _ => {}
    }
});
