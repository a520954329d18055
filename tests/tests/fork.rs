//! `sagaflow fork`: an operator terminates a saga that keeps retrying a dead participant,
//! brings the participant back, and forks the saga from the failing step. The fork keeps the
//! reservation and the charge (not made again) and finishes the order; the invariants hold
//! for the order as the fork left it.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::invariants::{self, stock_before};
use sagaflow_e2e::process::binary;
use sagaflow_e2e::serial;
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_saga_forked_from_its_failing_step_finishes_without_repeating_earlier_steps() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    register_variant(&cluster, "order-patient", |d| {
        d["States"]["CreateShipment"]["Retry"] = json!([{
            "ErrorEquals": ["Grpc.Unavailable"], "IntervalSeconds": 1, "MaxAttempts": 50, "BackoffRate": 1.0
        }]);
    })
    .await;
    let before = stock_before(&cluster, &["SKU-TEE-M"]).await.expect("stock");
    cluster.participants.get_mut("fulfillment").expect("fulfillment").kill();
    let request = order("e2e-fork-1", "SKU-TEE-M", 2, "tok_ok");
    let original = start_variant(&cluster, "order-patient", &request, false).await;
    // Let it reach the shipment and retry a couple of times, then stop it without compensating.
    wait_for_event(&cluster, &original.execution_id, "TaskRetryScheduled", "CreateShipment").await;
    let mut sagas = cluster.sagas(0).await.expect("sagas client");
    sagas
        .terminate_execution(pb::TerminateExecutionRequest {
            execution_id: original.execution_id.clone(),
            reason: "fulfillment is down; will fork once it is back".into(),
        })
        .await
        .expect("terminate accepted");
    wait_status(&cluster, &original.execution_id, Duration::from_secs(30), |s| s == "TERMINATED").await;

    cluster
        .participants
        .get_mut("fulfillment")
        .expect("fulfillment")
        .restart(Duration::from_secs(30))
        .await
        .expect("back");
    let output = std::process::Command::new(binary("sagaflow").expect("binary"))
        .args(["fork", &original.execution_id[..13], "--from-state", "CreateShipment", "--output", "json", "--server"])
        .arg(cluster.replicas[0].url())
        .output()
        .expect("fork runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let forked: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let fork_id = forked["executionId"].as_str().expect("fork id").to_owned();
    let status = wait_status(&cluster, &fork_id, Duration::from_secs(60), settled).await;
    assert_eq!(status, "SUCCEEDED", "{}", cluster.logs());

    let events = history(&cluster, 0, &fork_id).await;
    let called: Vec<&str> = events.iter().filter(|e| e.r#type == "TaskScheduled").map(|e| e.state.as_str()).collect();
    assert!(events.iter().any(|e| e.r#type == "ExecutionForked"));
    // The copied steps appear once each (replayed from the original), then the fork's own.
    assert_eq!(called, ["ReserveInventory", "CheckFraud", "ChargePayment", "CreateShipment", "CommitInventory"]);
    let violations = invariants::check(&cluster, &[placed(&request, &status)], &before).await.expect("check");
    assert!(violations.is_empty(), "{violations:#?}");
    cluster.shutdown().await.expect("shutdown");
}

async fn wait_for_event(cluster: &Cluster, id: &str, kind: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if history(cluster, 0, id).await.iter().any(|e| e.r#type == kind && e.state == state) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} for {state}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
