//! The `sagaflow-participant` binary as a real process: opens the database its URL names
//! (PostgreSQL or a SQLite file it creates), migrates, seeds, serves, and stops cleanly on
//! SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use sagaflow_proto::inventory::v1::GetStockRequest;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use tonic::transport::Channel;

use crate::common::{Db, Scratch};

async fn the_binary_serves_and_stops_on_sigterm(db: Db) {
    let db = Scratch::create(db).await;
    // Pick a free port; the tiny window before the child binds it is acceptable in tests.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagaflow-participant"))
        .arg("all")
        .arg("--listen")
        .arg(&listen)
        .arg("--seed-demo-catalog")
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the participant");

    // Wait (bounded) until it answers.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(channel) = Channel::from_shared(format!("http://{listen}")).expect("endpoint").connect().await {
            client = Some(InventoryClient::new(channel));
            break;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the participant exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("the participant answers within 10 s");
    let stock =
        client.get_stock(GetStockRequest { sku: "SKU-SOLD-OUT".into() }).await.expect("seeded catalog").into_inner();
    assert_eq!(stock.available, 0);

    let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("send SIGTERM");
    assert!(killed.success());
    let mut exit = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("child status") {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(exit) = exit else {
        let _ = child.kill();
        panic!("the participant did not stop within 10 s of SIGTERM");
    };
    assert!(exit.success(), "exit status {exit}");
    drop(client);
    db.remove().await;
}

on_both_backends!(the_binary_serves_and_stops_on_sigterm);
