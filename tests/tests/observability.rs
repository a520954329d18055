//! Observability end to end: the orchestrator's and the participants' spans reach an OTLP
//! receiver as one connected trace under the caller's `traceparent`, across a SIGKILL and a
//! resume on another replica; `/metrics` counts what the executions actually did.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::otlp::{OtlpReceiver, ReceivedSpan, disconnected};
use sagaflow_e2e::process::free_port;
use sagaflow_e2e::serial;
use sagaflow_proto::participants::v1::{Fault, SetFaultRequest};
use sagaflow_proto::sagaflow::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// OTLP's span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Starts an order on `replica` with a W3C `traceparent` naming the caller's span; returns the
/// execution id.
async fn start_traced(cluster: &Cluster, replica: usize, order: pb::StartOrderRequest, traceparent: &str) -> String {
    let mut client = cluster.orders(replica).await.expect("orders client");
    let mut request = tonic::Request::new(order);
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ASCII"));
    client.start_order(request).await.expect("StartOrder accepted").into_inner().execution_id
}

fn names_from<'a>(spans: &'a [ReceivedSpan], service: &str, kind: i32) -> Vec<&'a str> {
    spans.iter().filter(|s| s.service == service && s.kind == kind).map(|s| s.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_is_one_trace_under_the_callers_span_across_a_crash() {
    let _serial = serial().await;
    let receiver = OtlpReceiver::start("127.0.0.1:0".parse().expect("address")).await.expect("receiver");
    let envs = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), receiver.endpoint()),
        // Export within 100 ms, so what a replica ended before its SIGKILL has left it.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let mut cluster =
        Cluster::start(Options { replicas: 2, envs, ..Options::default() }).await.expect("cluster starts");
    // The first charge takes 4 s: the saga is inside ChargePayment when its replica dies.
    cluster
        .chaos("payment")
        .await
        .expect("chaos client")
        .set_fault(SetFaultRequest {
            fault: Some(Fault {
                method: "payment.v1.Payment/Charge".into(),
                latency_ms: 4000,
                remaining: 1,
                ..Default::default()
            }),
        })
        .await
        .expect("latency set");

    let (trace_id, caller) = (random_hex(16), random_hex(8));
    let id = start_traced(
        &cluster,
        0,
        order("e2e-trace-crash", "SKU-RED-MUG", 1, "tok_ok"),
        &format!("00-{trace_id}-{caller}-01"),
    )
    .await;
    // The states before the charge are exported by replica 0 (they ended before the crash).
    let before = receiver
        .wait_for(&trace_id, Duration::from_secs(30), |spans| {
            let states = names_from(spans, "sagaflow", 1);
            states.contains(&"ReserveInventory") && states.contains(&"CheckFraud")
        })
        .await;
    assert!(names_from(&before, "sagaflow", 1).contains(&"CheckFraud"), "no spans before the crash: {before:#?}");
    cluster.replicas[0].kill();

    let status = wait_status(&cluster, &id, Duration::from_secs(90), settled).await;
    assert_eq!(status, "SUCCEEDED", "{}", cluster.logs());
    // Each process exports on its own schedule: wait for everything asserted below, the
    // participant's last call included, not only for the saga's own span.
    let spans = receiver
        .wait_for(&trace_id, Duration::from_secs(30), |spans| {
            let served = |name: &str| spans.iter().filter(|s| s.name == name && s.kind == SERVER).count();
            spans.iter().any(|s| s.name == "saga order")
                && served("payment.v1.Payment/Charge") >= 2
                && served("inventory.v1.Inventory/Commit") >= 1
                && spans.iter().filter(|s| s.service == "sagaflow-participant" && s.kind == SERVER).count() >= 6
        })
        .await;

    // One tree: every span's parent is in the trace, except the root's, which is the caller.
    let broken = disconnected(&spans, &caller);
    assert!(broken.is_empty(), "spans outside the tree: {broken:#?}\nall: {spans:#?}");
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.parent_span_id == caller).collect();
    assert_eq!(roots.len(), 1, "one span under the caller: {roots:#?}");
    assert_eq!(roots[0].name, "saga order");
    assert_eq!(roots[0].attribute("sagaflow.execution.id"), Some(id.as_str()));
    assert_eq!(roots[0].attribute("sagaflow.definition"), Some("order"));
    assert_eq!(roots[0].attribute("sagaflow.status"), Some("SUCCEEDED"));

    // Every state of the order saga has its span, as does each call on both sides.
    let states = names_from(&spans, "sagaflow", 1);
    for state in ["ReserveInventory", "CheckFraud", "ChargePayment", "CreateShipment", "CommitInventory", "OrderPlaced"]
    {
        assert!(states.contains(&state), "no span for state {state}: {states:?}");
    }
    let by_id: BTreeMap<&str, &ReceivedSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let served: Vec<&ReceivedSpan> =
        spans.iter().filter(|s| s.service == "sagaflow-participant" && s.kind == SERVER).collect();
    assert!(served.len() >= 6, "participant spans: {served:#?}");
    for span in &served {
        let parent = by_id[span.parent_span_id.as_str()];
        assert_eq!((parent.service.as_str(), parent.kind), ("sagaflow", CLIENT), "{span:#?} under {parent:#?}");
        assert_eq!(parent.name, span.name, "the attempt and the call name the same method");
        assert_eq!(span.attribute("sagaflow.idempotency_key"), parent.attribute("sagaflow.idempotency_key"));
    }
    // The charge replica 0 sent and the one replica 1 sent again after taking over are two
    // calls of one attempt span, which replica 1 ended.
    let charges: Vec<&&ReceivedSpan> = served.iter().filter(|s| s.name == "payment.v1.Payment/Charge").collect();
    assert!(charges.len() >= 2, "{charges:#?}");
    assert!(charges.iter().all(|c| c.parent_span_id == charges[0].parent_span_id), "{charges:#?}");
    let attempt = by_id[charges[0].parent_span_id.as_str()];
    assert_eq!(attempt.attribute("sagaflow.reissued"), Some("true"), "{attempt:#?}");
    assert_eq!(attempt.attribute("sagaflow.participant"), Some("payment"));
    assert_eq!(attempt.attribute("sagaflow.attempt"), Some("1"));
    assert_eq!(by_id[attempt.parent_span_id.as_str()].name, "ChargePayment");

    // A compensated order on the surviving replica: rollback and compensations in its trace.
    let (trace_id, caller) = (random_hex(16), random_hex(8));
    let mut bad_address = order("e2e-trace-compensate", "SKU-RED-MUG", 1, "tok_ok");
    if let Some(a) = bad_address.shipping_address.as_mut() {
        a.postal_code.clear();
    }
    let id = start_traced(&cluster, 1, bad_address, &format!("00-{trace_id}-{caller}-01")).await;
    let status = wait_status(&cluster, &id, Duration::from_secs(60), settled).await;
    assert_eq!(status, "COMPENSATED", "{}", cluster.logs());
    let spans = receiver
        .wait_for(&trace_id, Duration::from_secs(30), |spans| spans.iter().any(|s| s.name == "saga order"))
        .await;
    let broken = disconnected(&spans, &caller);
    assert!(broken.is_empty(), "spans outside the tree: {broken:#?}");
    let rollback = spans.iter().find(|s| s.name == "rollback").expect("a rollback span");
    let compensations: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name.starts_with("compensate ")).collect();
    let mut undone: Vec<&str> = compensations.iter().map(|s| s.name.as_str()).collect();
    undone.sort_unstable();
    assert_eq!(undone, ["compensate ChargePayment", "compensate ReserveInventory"]);
    assert!(compensations.iter().all(|c| c.parent_span_id == rollback.span_id));
    let shipment = spans.iter().find(|s| s.name == "CreateShipment").expect("the failed state");
    assert_eq!(shipment.attribute("error.type"), Some("Fulfillment.AddressRejected"));
    assert_eq!(shipment.status_code, 2, "an error status");
    cluster.shutdown().await.expect("shutdown");
}

/// `GET /metrics` over a plain HTTP/1.1 connection.
async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample `name{labels}`, or of `name` alone; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample of a metric, whatever its labels.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_executions_did() {
    let _serial = serial().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let options = Options { serve_args: vec!["--metrics-listen".into(), metrics.clone()], ..Options::default() };
    let cluster = Cluster::start(options).await.expect("cluster starts");

    let mut orders = Vec::new();
    for i in 0..6 {
        orders.push(order(&format!("e2e-metrics-good-{i}"), "SKU-RED-MUG", 1, "tok_ok"));
    }
    for i in 0..2 {
        orders.push(order(&format!("e2e-metrics-declined-{i}"), "SKU-RED-MUG", 1, "tok_decline"));
        let mut bad = order(&format!("e2e-metrics-address-{i}"), "SKU-RED-MUG", 1, "tok_ok");
        if let Some(a) = bad.shipping_address.as_mut() {
            a.postal_code.clear();
        }
        orders.push(bad);
    }
    orders.push(order("e2e-metrics-sold-out", "SKU-SOLD-OUT", 1, "tok_ok"));
    let mut handles = Vec::new();
    for request in orders.clone() {
        let cluster_url = cluster.replicas[0].url();
        handles.push(tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(cluster_url).expect("url").connect().await?;
            let mut client = pb::order_service_client::OrderServiceClient::new(channel);
            let mut request = tonic::Request::new(pb::StartOrderRequest { wait_for_completion: true, ..request });
            request.set_timeout(Duration::from_secs(120));
            client.start_order(request).await.map_err(anyhow::Error::from)
        }));
    }
    for h in handles {
        let status = h.await.expect("task").expect("StartOrder").into_inner().status;
        assert!(settled(&status), "{status}");
    }

    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.orchestrator_db).await.expect("database");
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM sagaflow.executions GROUP BY status")
            .fetch_all(&mut db)
            .await
            .expect("statuses");
    let calls: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sagaflow.history WHERE type IN ('TaskScheduled', 'CompensationScheduled')",
    )
    .fetch_one(&mut db)
    .await
    .expect("calls");
    let compensated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sagaflow.history WHERE type = 'CompensationSucceeded'")
            .fetch_one(&mut db)
            .await
            .expect("compensations");
    let statuses: BTreeMap<String, i64> = statuses.into_iter().collect();
    assert_eq!(statuses.values().sum::<i64>(), orders.len() as i64);
    assert!(statuses.len() >= 3, "a mix of outcomes: {statuses:?}");

    let text = scrape(&metrics).await;
    assert_eq!(
        sample(&text, r#"sagaflow_executions_started_total{definition="order"}"#),
        orders.len() as f64,
        "{text}"
    );
    for (status, count) in &statuses {
        let series = format!(r#"sagaflow_executions_finished_total{{definition="order",status="{status}"}}"#);
        assert_eq!(sample(&text, &series), *count as f64, "{series}\n{text}");
        let latency = format!(r#"sagaflow_execution_duration_seconds_count{{definition="order",status="{status}"}}"#);
        assert_eq!(sample(&text, &latency), *count as f64, "{latency}");
    }
    assert_eq!(total(&text, "sagaflow_executions_finished_total"), orders.len() as f64);
    assert_eq!(sample(&text, "sagaflow_executions_in_flight"), 0.0);
    assert_eq!(sample(&text, "sagaflow_executions_compensation_stuck"), 0.0);
    assert_eq!(total(&text, "sagaflow_task_duration_seconds_count"), calls as f64, "one observation per call");
    assert_eq!(
        sample(&text, r#"sagaflow_compensations_total{definition="order",outcome="succeeded"}"#),
        compensated as f64
    );
    assert!(compensated > 0);
    assert!(
        sample(
            &text,
            r#"sagaflow_task_errors_total{participant="payment",method="payment.v1.Payment/Charge",error="Payment.CardDeclined"}"#
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(sample(&text, "sagaflow_db_pool_max_connections"), 16.0);
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    cluster.shutdown().await.expect("shutdown");
}
