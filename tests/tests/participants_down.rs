//! Participants that fail: down for a while (Retry carries the saga through once it is
//! back), down for good (the saga compensates), and a compensation that keeps failing (the
//! saga parks in COMPENSATION_STUCK and nothing older in the stack runs until repaired).

mod common;

use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::invariants::{self, stock_before};
use sagaflow_e2e::serial;
use sagaflow_proto::participants::v1::ClearFaultsRequest;
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_down_for_a_while_is_retried_through() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    // Deterministic backoff for this test: 2 s, 4 s, 8 s... without jitter.
    register_variant(&cluster, "order-steady", |d| {
        d["States"]["CreateShipment"]["Retry"] = json!([{
            "ErrorEquals": ["Grpc.Unavailable", "States.Timeout"], "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0
        }]);
    })
    .await;
    let before = stock_before(&cluster, &["SKU-TEE-M"]).await.expect("stock");
    cluster.participants.get_mut("fulfillment").expect("fulfillment").kill();
    let request = order("e2e-down-while", "SKU-TEE-M", 1, "tok_ok");
    let execution = start_variant(&cluster, "order-steady", &request, false).await;
    // The first shipment attempt fails at once; the retries come at +2 s and +6 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster
        .participants
        .get_mut("fulfillment")
        .expect("fulfillment")
        .restart(Duration::from_secs(30))
        .await
        .expect("restarts");
    let status = wait_status(&cluster, &execution.execution_id, Duration::from_secs(60), settled).await;
    assert_eq!(status, "SUCCEEDED", "{}", cluster.logs());
    let events = history(&cluster, 0, &execution.execution_id).await;
    assert!(events.iter().any(|e| e.r#type == "TaskRetryScheduled" && e.state == "CreateShipment"));
    let violations = invariants::check(&cluster, &[placed(&request, &status)], &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_down_for_good_makes_the_saga_compensate() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let before = stock_before(&cluster, &["SKU-TEE-M"]).await.expect("stock");
    cluster.participants.get_mut("fulfillment").expect("fulfillment").kill();
    let request = order("e2e-down-good", "SKU-TEE-M", 1, "tok_ok");
    let r = place_and_wait(&cluster, 0, request.clone()).await;
    assert_eq!((r.status.as_str(), r.error.as_str()), ("COMPENSATED", "Grpc.Unavailable"), "{r:?}");
    let compensated = assert_reverse_order(&history(&cluster, 0, &r.execution_id).await);
    assert_eq!(compensated, ["ChargePayment", "ReserveInventory"]);
    // Back up, so the invariants can be read through it.
    cluster
        .participants
        .get_mut("fulfillment")
        .expect("fulfillment")
        .restart(Duration::from_secs(30))
        .await
        .expect("restarts");
    let violations = invariants::check(&cluster, &[placed(&request, &r.status)], &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_parks_the_saga_until_repaired() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let before = stock_before(&cluster, &["SKU-POSTER"]).await.expect("stock");
    let (request, execution) = stuck_order(&cluster, "e2e-stuck", 2).await;
    let mut chaos = cluster.chaos("payment").await.expect("chaos client");
    let events = history(&cluster, 0, &execution.execution_id).await;
    assert!(events.iter().any(|e| e.r#type == "CompensationStuck" && e.state == "ChargePayment"));
    assert!(
        !events.iter().any(|e| e.r#type == "CompensationScheduled" && e.state == "ReserveInventory"),
        "nothing older in the stack runs while a compensation is stuck"
    );
    let stuck_stock = stock_before(&cluster, &["SKU-POSTER"]).await.expect("stock");
    assert_eq!(stuck_stock["SKU-POSTER"].1, before["SKU-POSTER"].1 + 1, "the reservation is still held");

    // The operator fixes the payment service and retries: the saga finishes compensating.
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    let mut sagas = cluster.sagas(0).await.expect("sagas client");
    sagas
        .repair_compensation(pb::RepairCompensationRequest {
            execution_id: execution.execution_id.clone(),
            action: pb::repair_compensation_request::Action::Retry as i32,
            reason: String::new(),
        })
        .await
        .expect("repair accepted");
    let status = wait_status(&cluster, &execution.execution_id, Duration::from_secs(60), |s| s == "COMPENSATED").await;
    assert_eq!(status, "COMPENSATED");
    let events = history(&cluster, 0, &execution.execution_id).await;
    assert!(events.iter().any(|e| e.r#type == "CompensationRetried"), "the repair is an audited event");
    let violations = invariants::check(&cluster, &[placed(&request, &status)], &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}
