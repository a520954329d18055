//! Speed of the pure language crate: parsing and validating a large definition, and one
//! interpreter step on the order saga (a task answers; the next task is scheduled).
//! Targets (issue #2): 500-state parse+validate under 5 ms; one step under 10 µs.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sagaflow_language::compile;
use sagaflow_language::interpreter::{Action, Envelope, Event, Execution, Start, step};
use serde_json::{Value, json};

/// A 500-state definition mixing every common shape: Tasks with Retry, Catch and
/// Compensate, Choices, Pass states with Parameters.
fn large_definition(states: usize) -> String {
    let mut map = serde_json::Map::new();
    for i in 0..states {
        let next = if i + 1 < states { format!("S{}", i + 1) } else { "Done".into() };
        let state = match i % 4 {
            0 => json!({
                "Type": "Task",
                "Resource": format!("grpc://p{}/svc.v1.Service/Method{i}", i % 7),
                "Parameters": { "orderId.$": "$.orderId", "step": i, "items.$": "$.items" },
                "ResultSelector": { "id.$": "$.id" },
                "ResultPath": format!("$.results.s{i}"),
                "TimeoutSeconds": 10,
                "Retry": [{ "ErrorEquals": ["Grpc.Unavailable", "States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0 }],
                "Catch": [{ "ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error" }],
                "Compensate": { "Resource": format!("grpc://p{}/svc.v1.Service/Undo{i}", i % 7), "Parameters": { "orderId.$": "$.Input.orderId" } },
                "Next": next
            }),
            1 => json!({
                "Type": "Choice",
                "Choices": [
                    { "And": [ { "Variable": "$.amount", "NumericGreaterThan": 100 }, { "Variable": "$.kind", "StringEquals": "vip" } ], "Next": next },
                    { "Variable": "$.flag", "IsPresent": true, "Next": next }
                ],
                "Default": next
            }),
            2 => {
                json!({ "Type": "Pass", "Parameters": { "a.$": "$.a", "f.$": "States.Format('{}-{}', $.orderId, $.a)" }, "ResultPath": "$.pass", "Next": next })
            }
            _ => {
                json!({ "Type": "Task", "Resource": "grpc://fraud/fraud.v1.Fraud/Check", "SagaRole": "readonly", "Next": next })
            }
        };
        map.insert(format!("S{i}"), state);
    }
    map.insert("Done".into(), json!({ "Type": "Succeed" }));
    map.insert("Failed".into(), json!({ "Type": "Fail", "Error": "Bench.Failed" }));
    serde_json::to_string_pretty(&json!({ "StartAt": "S0", "States": map })).expect("serializable")
}

fn bench_compile(c: &mut Criterion) {
    let text = large_definition(500);
    assert!(compile(&text).is_ok(), "the benchmark definition is valid");
    c.bench_function("compile 500-state definition", |b| b.iter(|| compile(std::hint::black_box(&text))));
    let order = include_str!("../../../saga-definitions/order.asl.json");
    c.bench_function("compile order saga", |b| b.iter(|| compile(std::hint::black_box(order))));
}

fn bench_step(c: &mut Criterion) {
    let order = include_str!("../../../saga-definitions/order.asl.json");
    let def = compile(order).expect("order saga is valid").definition;
    let input = json!({
        "orderId": "order-1", "customerId": "c-1", "currency": "USD", "amountCents": 2500, "paymentToken": "tok_ok",
        "items": [{ "sku": "SKU-1", "quantity": 2, "unitPriceCents": 1250 }],
        "shippingAddress": { "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US" }
    });
    let mut ex = Execution::new();
    let start = Start {
        execution_id: "0190b4d2-0000-7000-8000-000000000001".into(),
        execution_name: "bench".into(),
        state_machine_id: "order".into(),
        state_machine_name: "order".into(),
        input,
        seed: 1,
        redrive_count: 0,
        key_namespace: None,
        fork_at: None,
    };
    let first = step(&def, &mut ex, Envelope { now_ms: 1, event: Event::Started(start) }).expect("starts");
    let call_id = first
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Invoke(call) => Some(call.id),
            _ => None,
        })
        .expect("ReserveInventory is called");
    let answer: Value = json!({ "reservationId": "res-1", "expiresAt": "2024-01-01T00:30:00Z" });
    c.bench_function("step: task succeeded, next task scheduled", |b| {
        b.iter_batched(
            || {
                (
                    ex.clone(),
                    Envelope { now_ms: 2, event: Event::TaskSucceeded { id: call_id, output: answer.clone() } },
                )
            },
            // Return the execution too, so dropping it is not timed.
            |(mut ex, envelope)| {
                let step = step(&def, &mut ex, envelope).expect("applies");
                (ex, step)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_compile, bench_step);
criterion_main!(benches);
