//! Operator actions through the real `sagaflow` binary against a running server: a redrive
//! resumes at the failed state without calling completed steps again; replay finds the first
//! divergence of a definition that reorders two steps; a bulk cancel by filter needs `--yes`,
//! then compensates every matching execution and no other.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::serial;
use sagaflow_proto::fraud::v1::GetDecisionsRequest;
use sagaflow_proto::fraud::v1::fraud_client::FraudClient;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, SetFaultRequest};
use sagaflow_proto::payment::v1::GetPaymentsRequest;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_resumes_at_the_failed_state_without_repeating_completed_steps() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    // Screen first, then charge: a charge that cannot reach the payment service fails the
    // saga with nothing to compensate (FAILED), and the screening is a completed step.
    register_variant(&cluster, "screen-then-charge", |d| {
        let states = d["States"].as_object().expect("states").clone();
        let mut fraud = states["CheckFraud"].clone();
        fraud["Next"] = json!("ChargePayment");
        let mut charge = states["ChargePayment"].clone();
        charge["Retry"] = json!([{ "ErrorEquals": ["Grpc.Unavailable"], "IntervalSeconds": 1, "MaxAttempts": 1 }]);
        charge.as_object_mut().expect("object").remove("Next");
        charge["End"] = json!(true);
        *d = json!({ "StartAt": "CheckFraud", "States": { "CheckFraud": fraud, "ChargePayment": charge } });
    })
    .await;
    cluster.participants.get_mut("payment").expect("payment").kill();
    let request = order("e2e-redrive-1", "SKU-RED-MUG", 1, "tok_ok");
    let execution = start_variant(&cluster, "screen-then-charge", &request, true).await;
    assert_eq!(execution.status, "FAILED", "{execution:?}\n{}", cluster.logs());
    assert_eq!(execution.error, "Grpc.Unavailable");

    cluster.participants.get_mut("payment").expect("payment").restart(Duration::from_secs(30)).await.expect("back");
    let (ok, stdout, stderr) = cli(&cluster, &["redrive", &execution.execution_id[..13]]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("redriven"), "{stdout}");
    // The request is queued; the execution stays FAILED until a replica picks it up.
    let status = wait_status(&cluster, &execution.execution_id, Duration::from_secs(30), |s| s == "SUCCEEDED").await;
    assert_eq!(status, "SUCCEEDED");

    // The screening was not repeated; the charge was made once.
    let mut fraud = FraudClient::new(
        tonic::transport::Channel::from_shared(cluster.participants["fraud"].url())
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let decisions =
        fraud.get_decisions(GetDecisionsRequest { order_id: "e2e-redrive-1".into() }).await.expect("decisions");
    assert_eq!(decisions.into_inner().decisions.len(), 1, "the completed screening was not called again");
    let payments = cluster
        .payment()
        .await
        .expect("client")
        .get_payments(GetPaymentsRequest { order_id: "e2e-redrive-1".into() })
        .await
        .expect("payments")
        .into_inner()
        .payments;
    assert_eq!(payments.len(), 1);
    let events = history(&cluster, 0, &execution.execution_id).await;
    assert!(events.iter().any(|e| e.r#type == "ExecutionRedriven"));

    let (ok, json_out, _) = cli(&cluster, &["show", &execution.execution_id, "--output", "json"]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&json_out).expect("show JSON");
    assert_eq!(shown["status"], "SUCCEEDED");
    assert_eq!(shown["redriveCount"], 1);
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_the_first_divergence_of_a_reordered_definition() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let r = place_and_wait(&cluster, 0, order("e2e-replay-1", "SKU-BLUE-MUG", 1, "tok_ok")).await;
    assert_eq!(r.status, "SUCCEEDED");

    // Unchanged: the same path.
    let original = std::fs::read_to_string(sagaflow_e2e::cluster::repo_root().join("saga-definitions/order.asl.json"))
        .expect("order saga");
    let dir = std::env::temp_dir().join(format!("sagaflow-replay-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let same = dir.join("same.asl.json");
    std::fs::write(&same, &original).expect("write");
    let (ok, stdout, stderr) =
        cli(&cluster, &["replay", &r.execution_id, "--definition", same.to_str().expect("path")]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("same path"), "{stdout}");

    // Reordered: screen for fraud before reserving stock.
    let mut d: Value = serde_json::from_str(&original).expect("JSON");
    d["StartAt"] = json!("CheckFraud");
    d["States"]["CheckFraud"]["Next"] = json!("ReserveInventory");
    d["States"]["ReserveInventory"]["Next"] = json!("ChargePayment");
    let reordered = dir.join("reordered.asl.json");
    std::fs::write(&reordered, d.to_string()).expect("write");
    let (ok, stdout, _) =
        cli(&cluster, &["replay", &r.execution_id, "--definition", reordered.to_str().expect("path")]);
    assert!(!ok, "a divergence exits non-zero");
    assert!(stdout.contains("diverges at event 2") && stdout.contains("ReserveInventory"), "{stdout}");
    let (_, json_out, _) = cli(
        &cluster,
        &["replay", &r.execution_id, "--definition", reordered.to_str().expect("path"), "--output", "json"],
    );
    let report: Value = serde_json::from_str(&json_out).expect("replay JSON");
    assert_eq!(report["same"], false, "{report}");
    assert_eq!(report["divergence"]["state"], "ReserveInventory", "{report}");
    let _ = std::fs::remove_dir_all(&dir);
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cancel_by_filter_asks_first_then_compensates_every_match_and_no_other() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    register_variant(&cluster, "order-slow", |_| {}).await;
    // Slow shipments so the sagas are still running when cancelled.
    let mut chaos = cluster.chaos("fulfillment").await.expect("chaos");
    chaos
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "fulfillment.v1.Fulfillment/CreateShipment".into(),
                latency_ms: 4000,
                ..Default::default()
            }),
        })
        .await
        .expect("latency set");
    let mut slow = Vec::new();
    for i in 0..3 {
        slow.push(
            start_variant(
                &cluster,
                "order-slow",
                &order(&format!("e2e-bulk-slow-{i}"), "SKU-TEE-M", 1, "tok_ok"),
                false,
            )
            .await,
        );
    }
    let other = start_variant(&cluster, "order", &order("e2e-bulk-other", "SKU-TEE-M", 1, "tok_ok"), false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Without --yes (and no terminal to ask on), nothing is done.
    let (ok, _, stderr) = cli(&cluster, &["cancel", "--definition", "order-slow", "--status", "RUNNING"]);
    assert!(!ok);
    assert!(stderr.contains("3 execution(s) match") && stderr.contains("--yes"), "{stderr}");
    for e in &slow {
        assert_eq!(wait_status(&cluster, &e.execution_id, Duration::from_secs(5), |_| true).await, "RUNNING");
    }

    let (ok, stdout, stderr) =
        cli(&cluster, &["cancel", "--definition", "order-slow", "--status", "RUNNING", "--yes", "--output", "json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let acted: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(acted.as_array().map(Vec::len), Some(3));
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    for e in &slow {
        let status = wait_status(&cluster, &e.execution_id, Duration::from_secs(60), settled).await;
        assert_eq!(status, "CANCELLED");
        let events = history(&cluster, 0, &e.execution_id).await;
        assert!(events.iter().any(|h| h.r#type == "CompensationSucceeded" && h.state == "ReserveInventory"));
    }
    let status = wait_status(&cluster, &other.execution_id, Duration::from_secs(60), settled).await;
    assert_eq!(status, "SUCCEEDED", "an execution outside the filter is left alone");
    cluster.shutdown().await.expect("shutdown");
}
