//! The operator commands, run as the real `sagaflow` binary against a cluster: `list`,
//! `show` by prefix, `export` then `replay --file`, `cancel` of a running saga, and `stuck`
//! plus `stuck retry` on a saga parked in COMPENSATION_STUCK, and `chaos set|list|clear`
//! on a participant.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::process::binary;
use sagaflow_e2e::serial;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, ListFaultsRequest, SetFaultRequest};
use serde_json::{Value, json};

/// Run `sagaflow --server URL ARGS...`; (exit code, stdout, stderr).
async fn sagaflow(cluster: &Cluster, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary("sagaflow").expect("sagaflow is built"))
        .args(args)
        .arg("--server")
        .arg(cluster.replicas[0].url())
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("sagaflow runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// Run it and parse its `--output json`; panics with stderr when it fails.
async fn sagaflow_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (code, out, err) = sagaflow(cluster, &all).await;
    assert_eq!(code, 0, "sagaflow {args:?} failed:\n{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("sagaflow {args:?} printed no JSON ({e}):\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_show_export_replay_and_cancel() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let done = place_and_wait(&cluster, 0, order("e2e-cli-ok", "SKU-TEE-M", 1, "tok_ok")).await;
    assert_eq!(done.status, "SUCCEEDED", "{done:?}");
    let id = done.execution_id.clone();

    let listed = sagaflow_json(&cluster, &["list", "--status", "succeeded", "--since", "1h"]).await;
    let ids: Vec<&str> =
        listed["executions"].as_array().expect("executions").iter().filter_map(|e| e["executionId"].as_str()).collect();
    assert!(ids.contains(&id.as_str()), "{listed}");
    let (code, human, _) = sagaflow(&cluster, &["list"]).await;
    assert_eq!(code, 0);
    assert!(human.contains(&id[..13]) && human.contains("SUCCEEDED"), "{human}");

    let shown = sagaflow_json(&cluster, &["show", &id[..13]]).await;
    assert_eq!(shown["executionId"], json!(id));
    let ledger: Vec<(&str, &str)> = shown["ledger"]
        .as_array()
        .expect("ledger")
        .iter()
        .map(|r| (r["state"].as_str().unwrap_or(""), r["compensation"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(ledger, [("ReserveInventory", "done"), ("ChargePayment", "done"), ("CreateShipment", "done")]);
    assert!(shown["timeline"].as_array().expect("timeline").iter().any(|s| s["state"] == "ChargePayment"));
    let (code, human, _) = sagaflow(&cluster, &["show", &id]).await;
    assert_eq!(code, 0);
    assert!(human.contains("saga ledger") && human.contains("timeline"), "{human}");

    // Export, then replay the file offline: the recorded definition takes the same path.
    let (code, export, err) = sagaflow(&cluster, &["export", &id]).await;
    assert_eq!(code, 0, "{err}");
    let file = cluster.log_dir.join("history.json");
    std::fs::write(&file, &export).expect("export written");
    let document: Value = serde_json::from_str(&export).expect("export is JSON");
    assert_eq!(document["definition"]["name"], "order");
    assert!(document["events"][0]["cause"].is_object(), "events carry their cause");
    let replayed = sagaflow_json(&cluster, &["replay", "--file", file.to_str().expect("path")]).await;
    assert_eq!(replayed["same"], json!(true), "{replayed}");
    assert_eq!(replayed["events"].as_u64(), document["events"].as_array().map(|e| e.len() as u64));

    // Cancel a saga that is still running (its shipment is slow).
    let mut chaos = cluster.chaos("fulfillment").await.expect("chaos client");
    chaos
        .set_fault(SetFaultRequest {
            fault: Some(Fault { method: "*".into(), latency_ms: 8_000, ..Default::default() }),
        })
        .await
        .expect("fault set");
    let running = start_variant(&cluster, "order", &order("e2e-cli-cancel", "SKU-TEE-M", 1, "tok_ok"), false).await;
    wait_status(&cluster, &running.execution_id, Duration::from_secs(30), |s| s == "RUNNING").await;
    let (code, out, err) = sagaflow(&cluster, &["cancel", &running.execution_id, "--reason", "operator test"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("cancelled"), "{out}");
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    let status = wait_status(&cluster, &running.execution_id, Duration::from_secs(60), settled).await;
    assert_eq!(status, "CANCELLED", "{}", cluster.logs());
    let events = history(&cluster, 0, &running.execution_id).await;
    assert!(events.iter().any(|e| e.r#type == "ExecutionCancelRequested"));
    cluster.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_and_retry_a_stuck_saga() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let (_, execution) = stuck_order(&cluster, "e2e-cli-stuck", 1).await;
    let id = execution.execution_id;

    let stuck = sagaflow_json(&cluster, &["stuck"]).await;
    let entry = stuck.as_array().expect("list").iter().find(|s| s["executionId"] == json!(id)).expect("listed");
    assert_eq!(entry["stuck"][0]["scope"], "ChargePayment", "{entry}");
    assert!(entry["stuck"][0]["attempts"].as_u64().unwrap_or(0) >= 1);
    let (code, human, _) = sagaflow(&cluster, &["stuck"]).await;
    assert_eq!(code, 0);
    assert!(human.contains(&id[..13]) && human.contains("ChargePayment"), "{human}");
    let shown = sagaflow_json(&cluster, &["show", &id]).await;
    let stuck_row = shown["ledger"].as_array().expect("ledger").iter().find(|r| r["state"] == "ChargePayment").cloned();
    assert_eq!(stuck_row.map(|r| r["compensation"].clone()), Some(json!("stuck")));

    // Skip needs a reason.
    let (code, _, err) = sagaflow(&cluster, &["stuck", "skip", &id]).await;
    assert_ne!(code, 0, "skip without --reason must be refused");
    assert!(err.contains("--reason"), "{err}");

    let mut payment_chaos = cluster.chaos("payment").await.expect("chaos client");
    payment_chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");
    let (code, out, err) = sagaflow(&cluster, &["stuck", "retry", &id[..13]]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let status = wait_status(&cluster, &id, Duration::from_secs(60), |s| s == "COMPENSATED").await;
    assert_eq!(status, "COMPENSATED");
    let events = history(&cluster, 0, &id).await;
    assert!(events.iter().any(|e| e.r#type == "CompensationRetried"), "the repair is an audited event");
    // The whole story, stuck and repaired, still replays to the same path.
    let replayed = sagaflow_json(&cluster, &["replay", &id]).await;
    assert_eq!(replayed["same"], json!(true), "{replayed}");
    cluster.shutdown().await.expect("shutdown");
}

/// Run `sagaflow chaos ARGS...` against the payment participant (found through
/// SAGAFLOW_CHAOS_PARTICIPANT); (exit code, stdout, stderr).
async fn chaos(cluster: &Cluster, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary("sagaflow").expect("sagaflow is built"))
        .arg("chaos")
        .args(args)
        .env("SAGAFLOW_CHAOS_PARTICIPANT", cluster.participants["payment"].url())
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("sagaflow runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_set_list_and_clear_faults() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let charge = "payment.v1.Payment/Charge";
    let (code, out, err) = chaos(
        &cluster,
        &["set", "--method", charge, "--error-code", "Payment.CardDeclined", "--latency", "50ms", "--remaining", "1"],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("fault set"), "{out}");

    let (code, out, err) = chaos(&cluster, &["list", "--output", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("list prints JSON");
    assert_eq!(
        listed,
        json!([{ "method": charge, "errorRate": 1.0, "latencyMs": 50, "errorCode": "Payment.CardDeclined",
                 "applyThenFail": false, "remaining": 1 }])
    );
    // The same fault, seen by the participant's own Chaos client.
    let mut client = cluster.chaos("payment").await.expect("chaos client");
    let faults = client.list_faults(ListFaultsRequest {}).await.expect("listed").into_inner().faults;
    assert_eq!(faults.len(), 1, "{faults:?}");

    // A fault the participant refuses: its reason, exit 1.
    let (code, _, err) = chaos(&cluster, &["set", "--method", "Charge", "--error-rate", "1"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("full method"), "{err}");

    let (code, out, err) = chaos(&cluster, &["clear", "--method", charge]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(charge), "{out}");
    let (code, out, _) = chaos(&cluster, &["list", "--output", "json"]).await;
    assert_eq!((code, out.trim()), (0, "[]"));
    cluster.shutdown().await.expect("shutdown");
}
