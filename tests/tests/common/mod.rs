//! Helpers shared by the end-to-end test files: building orders, placing them, reading
//! histories, registering variants of the order saga.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use sagaflow_e2e::cluster::{Cluster, repo_root};
use sagaflow_e2e::invariants::PlacedOrder;
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::Value;

pub fn order(id: &str, sku: &str, quantity: u32, token: &str) -> pb::StartOrderRequest {
    pb::StartOrderRequest {
        order_id: id.to_owned(),
        customer_id: "cust-e2e".into(),
        items: vec![pb::OrderItem { sku: sku.to_owned(), quantity, unit_price_cents: 1250 }],
        currency: "USD".into(),
        payment_token: token.to_owned(),
        shipping_address: Some(pb::Address {
            line1: "1 Main St".into(),
            city: "Springfield".into(),
            postal_code: "12345".into(),
            country: "US".into(),
        }),
        wait_for_completion: false,
    }
}

pub fn placed(request: &pb::StartOrderRequest, status: &str) -> PlacedOrder {
    PlacedOrder {
        order_id: request.order_id.clone(),
        amount_cents: request.items.iter().map(|i| i64::from(i.quantity) * i.unit_price_cents).sum(),
        items: request.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect(),
        status: status.to_owned(),
    }
}

/// Place an order and wait for its saga to settle.
pub async fn place_and_wait(
    cluster: &Cluster,
    replica: usize,
    mut request: pb::StartOrderRequest,
) -> pb::StartOrderResponse {
    request.wait_for_completion = true;
    let mut client = cluster.orders(replica).await.expect("orders client");
    let mut r = tonic::Request::new(request);
    r.set_timeout(Duration::from_secs(120));
    match client.start_order(r).await {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("StartOrder failed: {status:?}\n{}", cluster.logs()),
    }
}

pub async fn history(cluster: &Cluster, replica: usize, id: &str) -> Vec<pb::HistoryEvent> {
    let mut client = cluster.sagas(replica).await.expect("sagas client");
    let mut events: Vec<pb::HistoryEvent> = Vec::new();
    loop {
        let after = events.last().map(|e| e.id).unwrap_or(0);
        let page = client
            .get_execution_history(pb::GetExecutionHistoryRequest {
                execution_id: id.to_owned(),
                after_event_id: after,
                page_size: 1000,
            })
            .await
            .expect("history")
            .into_inner();
        events.extend(page.events);
        if !page.has_more {
            return events;
        }
    }
}

fn details(e: &pb::HistoryEvent) -> Value {
    serde_json::from_str(&e.details_json).unwrap_or(Value::Null)
}

/// Forward steps that completed or may have (succeeded, or failed with an unknown outcome),
/// in order, and the first attempts of compensations, in order.
pub fn forward_and_compensations(events: &[pb::HistoryEvent]) -> (Vec<String>, Vec<String>) {
    let mut forward = Vec::new();
    let mut compensations = Vec::new();
    for e in events {
        match e.r#type.as_str() {
            "TaskSucceeded" if !forward.contains(&e.state) => forward.push(e.state.clone()),
            "TaskFailed" | "TaskTimedOut"
                if details(e)["outcomeUnknown"] == Value::Bool(true) && !forward.contains(&e.state) =>
            {
                forward.push(e.state.clone())
            }
            "CompensationScheduled" if details(e)["attempt"] == 1 => compensations.push(e.state.clone()),
            _ => {}
        }
    }
    (forward, compensations)
}

/// The steps of the order saga that have a compensation.
pub const COMPENSATABLE: [&str; 3] = ["ReserveInventory", "ChargePayment", "CreateShipment"];

/// Assert compensations ran in exactly the reverse order of the completed compensatable steps.
pub fn assert_reverse_order(events: &[pb::HistoryEvent]) -> Vec<String> {
    let (forward, compensations) = forward_and_compensations(events);
    let mut expected: Vec<String> = forward.into_iter().filter(|s| COMPENSATABLE.contains(&s.as_str())).collect();
    expected.reverse();
    assert_eq!(compensations, expected, "compensations must run in reverse order of completion");
    compensations
}

/// Register a variant of the order saga under `name`, edited by `edit`.
pub async fn register_variant(cluster: &Cluster, name: &str, edit: impl FnOnce(&mut Value)) {
    let text = std::fs::read_to_string(repo_root().join("saga-definitions/order.asl.json")).expect("order saga");
    let mut definition: Value = serde_json::from_str(&text).expect("JSON");
    edit(&mut definition);
    let mut client = cluster.sagas(0).await.expect("sagas client");
    client
        .register_definition(pb::RegisterDefinitionRequest { name: name.to_owned(), content: definition.to_string() })
        .await
        .expect("variant registers");
}

/// Start the order saga variant `definition` for `request`, as StartOrder would.
pub async fn start_variant(
    cluster: &Cluster,
    definition: &str,
    request: &pb::StartOrderRequest,
    wait: bool,
) -> pb::Execution {
    let amount: i64 = request.items.iter().map(|i| i64::from(i.quantity) * i.unit_price_cents).sum();
    let a = request.shipping_address.clone().unwrap_or_default();
    let input = serde_json::json!({
        "orderId": request.order_id, "customerId": request.customer_id,
        "items": request.items.iter().map(|i| serde_json::json!({"sku": i.sku, "quantity": i.quantity, "unitPriceCents": i.unit_price_cents})).collect::<Vec<_>>(),
        "currency": request.currency, "amountCents": amount, "paymentToken": request.payment_token,
        "shippingAddress": {"line1": a.line1, "city": a.city, "postalCode": a.postal_code, "country": a.country},
    });
    let mut client = cluster.sagas(0).await.expect("sagas client");
    let mut r = tonic::Request::new(pb::StartExecutionRequest {
        definition_name: definition.to_owned(),
        definition_version: 0,
        input_json: input.to_string(),
        execution_id: String::new(),
        idempotency_key: request.order_id.clone(),
        wait_for_completion: wait,
    });
    r.set_timeout(Duration::from_secs(120));
    client.start_execution(r).await.expect("starts").into_inner().execution.expect("execution")
}

/// Poll until the execution's status satisfies `done`, or panic after `limit`.
pub async fn wait_status(cluster: &Cluster, id: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let mut client = cluster.sagas(cluster.replicas.len() - 1).await.expect("sagas client");
        let status = client
            .describe_execution(pb::DescribeExecutionRequest { execution_id: id.to_owned() })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or_default();
        if done(&status) {
            return status;
        }
        if Instant::now() > deadline {
            panic!("execution {id} is {status} after {limit:?}\n{}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn settled(status: &str) -> bool {
    matches!(status, "SUCCEEDED" | "FAILED" | "COMPENSATED" | "CANCELLED" | "TERMINATED" | "COMPENSATION_STUCK")
}

/// Run the real `sagaflow` binary against replica 0; returns (exit success, stdout, stderr).
pub fn cli(cluster: &Cluster, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(sagaflow_e2e::process::binary("sagaflow").expect("binary"))
        .args(args)
        .arg("--server")
        .arg(cluster.replicas[0].url())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sagaflow runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Park an order saga in COMPENSATION_STUCK: every refund fails, the refund gives up after
/// `refund_attempts`, and the order is refused at shipping (no country). Returns the order
/// and its execution; the refund fault stays armed until the caller clears it.
pub async fn stuck_order(
    cluster: &Cluster,
    order_id: &str,
    refund_attempts: u32,
) -> (pb::StartOrderRequest, pb::Execution) {
    use sagaflow_proto::participants::v1::{Fault, SetFaultRequest};
    register_variant(cluster, "order-fast-undo", |d| {
        d["States"]["ChargePayment"]["Compensate"]["Retry"] = serde_json::json!([{
            "ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": refund_attempts, "BackoffRate": 1.0
        }]);
    })
    .await;
    let mut chaos = cluster.chaos("payment").await.expect("chaos client");
    chaos
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "payment.v1.Payment/Refund".into(),
                error_rate: 1.0,
                error_code: "INTERNAL".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("fault set");
    let mut request = order(order_id, "SKU-POSTER", 1, "tok_ok");
    if let Some(a) = request.shipping_address.as_mut() {
        a.country.clear();
    }
    let execution = start_variant(cluster, "order-fast-undo", &request, true).await;
    assert_eq!(execution.status, "COMPENSATION_STUCK", "{execution:?}\n{}", cluster.logs());
    (request, execution)
}
