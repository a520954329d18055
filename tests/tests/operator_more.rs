//! The remaining operator commands through the real binary, human and JSON output:
//! `definitions deploy|list|show`, `history`, `rerun`, `terminate` and `stuck resolve`.

mod common;

use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options, repo_root};
use sagaflow_e2e::serial;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, SetFaultRequest};
use serde_json::{Value, json};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_history_rerun_terminate_and_resolve() {
    let _serial = serial().await;
    let cluster = Cluster::start(Options::default()).await.expect("cluster starts");
    let order_file = repo_root().join("saga-definitions/order.asl.json");
    let order_path = order_file.to_str().expect("path");

    // definitions deploy: unchanged content is not a new version; a changed one is.
    let (ok, out, err) = cli(&cluster, &["definitions", "deploy", order_path, "--name", "order"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("order v1") && out.contains("unchanged"), "{out}");
    let dir = std::env::temp_dir().join(format!("sagaflow-defs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut changed: Value = parse(&std::fs::read_to_string(&order_file).expect("read"));
    changed["Comment"] = json!("a second version");
    let v2 = dir.join("order.asl.json");
    std::fs::write(&v2, changed.to_string()).expect("write");
    let (ok, out, _) = cli(&cluster, &["definitions", "deploy", v2.to_str().expect("path"), "--output", "json"]);
    assert!(ok, "{out}");
    assert_eq!(parse(&out)["version"], 2, "{out}");
    // An invalid definition is refused with its diagnostics, exit 1.
    let bad = dir.join("bad.asl.json");
    std::fs::write(&bad, r#"{"StartAt": "Missing", "States": {"A": {"Type": "Succeed"}}}"#).expect("write");
    let (ok, out, err) = cli(&cluster, &["definitions", "deploy", bad.to_str().expect("path")]);
    assert!(!ok);
    assert!(format!("{out}{err}").contains("Missing"), "{out}{err}");
    let (ok, out, _) = cli(&cluster, &["definitions", "list"]);
    assert!(ok && out.contains("order"), "{out}");
    let (ok, out, _) = cli(&cluster, &["definitions", "list", "--output", "json"]);
    assert!(ok);
    let versions: Vec<i64> = parse(&out)
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["name"] == "order")
        .filter_map(|d| d["version"].as_i64())
        .collect();
    assert_eq!(versions, [1, 2]);
    let (ok, out, _) = cli(&cluster, &["definitions", "show", "order@2"]);
    assert!(ok && out.contains("a second version"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);

    // history (human and JSON) and rerun of a finished order.
    let done = place_and_wait(&cluster, 0, order("e2e-more-1", "SKU-RED-MUG", 1, "tok_ok")).await;
    assert_eq!(done.status, "SUCCEEDED");
    let (ok, out, _) = cli(&cluster, &["history", &done.execution_id[..13]]);
    assert!(ok && out.contains("ExecutionSucceeded") && out.contains("TaskScheduled"), "{out}");
    let (ok, out, _) = cli(&cluster, &["history", &done.execution_id, "--output", "json"]);
    assert!(ok);
    let events = parse(&out);
    assert_eq!(events.as_array().and_then(|e| e.first()).map(|e| e["type"].clone()), Some(json!("ExecutionStarted")));
    let (ok, out, _) = cli(&cluster, &["rerun", &done.execution_id, "--output", "json"]);
    assert!(ok, "{out}");
    let rerun = parse(&out);
    let new_id = rerun[0]["newExecutionId"].as_str().expect("new id").to_owned();
    assert_ne!(new_id, done.execution_id);
    // The rerun is a new execution with the same input and new idempotency keys: it places
    // the order again (that is what rerun is for; redrive and fork reuse what was done).
    wait_status(&cluster, &new_id, Duration::from_secs(60), settled).await;

    // terminate (human output) stops a slow saga without compensating.
    let mut chaos = cluster.chaos("fulfillment").await.expect("chaos");
    chaos
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "fulfillment.v1.Fulfillment/CreateShipment".into(),
                latency_ms: 3000,
                ..Default::default()
            }),
        })
        .await
        .expect("latency");
    let slow = start_variant(&cluster, "order", &order("e2e-more-2", "SKU-RED-MUG", 1, "tok_ok"), false).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (ok, out, err) = cli(&cluster, &["terminate", &slow.execution_id, "--reason", "testing terminate"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("terminated"), "{out}");
    let status = wait_status(&cluster, &slow.execution_id, Duration::from_secs(30), |s| s == "TERMINATED").await;
    assert_eq!(status, "TERMINATED");
    let events = history(&cluster, 0, &slow.execution_id).await;
    assert!(!events.iter().any(|e| e.r#type == "CompensationScheduled"), "terminate does not compensate");
    chaos.clear_faults(ClearFaultsRequest { method: String::new() }).await.expect("cleared");

    // stuck resolve: needs a reason, is audited, and lets the rollback go on.
    let (_, stuck) = stuck_order(&cluster, "e2e-more-stuck", 1).await;
    let (ok, out, err) = cli(
        &cluster,
        &["stuck", "resolve", &stuck.execution_id[..13], "--reason", "refunded by hand", "--output", "json"],
    );
    assert!(ok, "{out}{err}");
    let status = wait_status(&cluster, &stuck.execution_id, Duration::from_secs(60), |s| s == "COMPENSATED").await;
    assert_eq!(status, "COMPENSATED");
    let events = history(&cluster, 0, &stuck.execution_id).await;
    let resolved = events.iter().find(|e| e.r#type == "CompensationResolved").expect("an audited resolve event");
    assert!(resolved.details_json.contains("refunded by hand"), "{}", resolved.details_json);
    cluster.shutdown().await.expect("shutdown");
}
