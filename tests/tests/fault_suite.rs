//! The fault suite in its short form, so every test run has it: 60 orders against two
//! replicas on a private PostgreSQL while 3 replica kills, a PostgreSQL restart, 4
//! participant faults and 3 network faults land at random moments. Every check must hold
//! and every planned fault must have been injected. The long form is the `fault-suite`
//! binary (docs/reliability.md).

use std::time::Duration;

use sagaflow_e2e::fault_suite::faults::FaultPlan;
use sagaflow_e2e::fault_suite::{self, SuiteOptions};
use sagaflow_e2e::serial;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_ride_out_every_kind_of_fault() {
    let _serial = serial().await;
    // A new schedule on every run; the report names the seed to replay it with
    // `fault-suite --seed`.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    let options = SuiteOptions {
        orders: 60,
        plan: FaultPlan { kills: 3, pg_restarts: 1, participant_faults: 4, network_faults: 3 },
        window: Some(Duration::from_secs(30)),
        settle_limit: Duration::from_secs(240),
        seed,
        ..SuiteOptions::default()
    };
    let report = fault_suite::run(options).await.expect("the fault suite runs");
    let text = report.render();
    eprintln!("{text}");
    assert_eq!(report.violations(), 0, "{text}\nlogs: {}", report.log_dir.display());
    assert!(report.shortfalls().is_empty(), "{:?}\n{text}", report.shortfalls());
    assert_eq!(report.outcomes.len(), 60);
    assert!(report.outcomes.iter().any(|o| o.status == "SUCCEEDED"), "{text}");
    assert!(report.outcomes.iter().any(|o| o.status == "COMPENSATED"), "{text}");
}

/// Regression: a replica (re)started while PostgreSQL was down exited after its 5-second
/// connection timeout, so under a supervisor it crash-looped for as long as the outage
/// lasted. It must wait for the database and then serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_postgres_is_down_serves_once_it_is_back() {
    use sagaflow_e2e::cluster::{Cluster, Options};
    use sagaflow_e2e::pg_cluster::{PgCluster, StopMode};
    use sagaflow_proto::sagaflow::v1 as pb;

    let _serial = serial().await;
    let mut pg = tokio::task::spawn_blocking(PgCluster::create).await.expect("task").expect("private PostgreSQL");
    let options = Options { database_url: Some(pg.admin_url()), ..Options::default() };
    let mut cluster = Cluster::start(options).await.expect("cluster starts");
    let mut pg = tokio::task::spawn_blocking(move || pg.stop(StopMode::Immediate).map(|()| pg))
        .await
        .expect("task")
        .expect("PostgreSQL stops");
    cluster.replicas[0].respawn().expect("replica starts");
    // Longer than the pool's connection timeout (5 s): the old replica had exited by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(cluster.replicas[0].is_running(), "the replica exited:\n{}", cluster.replicas[0].log_tail(20));
    let pg =
        tokio::task::spawn_blocking(move || pg.start().map(|()| pg)).await.expect("task").expect("PostgreSQL starts");
    cluster.replicas[0].ready(Duration::from_secs(60)).await.expect("the replica serves once the database is back");

    let mut orders = cluster.orders(0).await.expect("orders client");
    let request = pb::StartOrderRequest {
        order_id: "after-outage-1".into(),
        customer_id: "cust-1".into(),
        items: vec![pb::OrderItem { sku: "SKU-RED-MUG".into(), quantity: 1, unit_price_cents: 1250 }],
        currency: "USD".into(),
        payment_token: "tok_ok".into(),
        shipping_address: Some(pb::Address {
            line1: "1 Main St".into(),
            city: "Springfield".into(),
            postal_code: "12345".into(),
            country: "US".into(),
        }),
        wait_for_completion: true,
    };
    let answer = orders.start_order(request).await.expect("order placed").into_inner();
    assert_eq!(answer.status, "SUCCEEDED", "{answer:?}\n{}", cluster.logs());
    cluster.shutdown().await.expect("shutdown");
    drop(pg);
}
